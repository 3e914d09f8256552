"""Train augmentation and eval preprocessing, as the papers use them.

Small sets (numpy, on uint8 [B, H, W, C] batches): ``pad_crop_flip`` -- zero-pad 4 pixels, random
crop back to H x W, random horizontal flip (the CIFAR recipe of ResNet/VGG papers); ``pad_crop`` the
same without flip (for digits/clothes, where mirroring changes meaning less but is not customary).
The random choices are drawn for the whole *global* batch from one seed, so a process that keeps
rows [a, b) of the batch augments them exactly as a single process would.

ImageNet (TensorFlow ops on one encoded JPEG): Inception-style random-resized crop (area 8%-100%,
aspect 3/4-4/3) + flip for train; resize + center crop (crop = size / (size + 32) of the short
side) for eval. Stateless ops keyed by (seed, example index) make it deterministic.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

SMALL_AUGMENTATIONS = ("none", "pad_crop", "pad_crop_flip")
PAD = 4
CROP_PADDING = 32  # eval: center crop of image_size / (image_size + 32) of the short side


def draw_pad_crop_flip(rng: np.random.Generator, batch: int, pad: int = PAD
                       ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Random (dy [B], dx [B] in [0, 2*pad], flip [B] bool) for one global batch."""
  dy = rng.integers(0, 2 * pad + 1, size=batch)
  dx = rng.integers(0, 2 * pad + 1, size=batch)
  flip = rng.random(batch) < 0.5
  return dy, dx, flip


def pad_crop_flip(images: np.ndarray, dy: np.ndarray, dx: np.ndarray, flip: np.ndarray | None,
                  pad: int = PAD) -> np.ndarray:
  """Crops [B, H, W, C] from the zero-padded images at offsets (dy, dx); mirrors rows where ``flip``.

  An offset of ``pad`` in both axes (and no flip) returns the images unchanged.
  """
  b, h, w, _ = images.shape
  padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  rows = dy[:, None] + np.arange(h)[None, :]                           # [B, H]
  cols = dx[:, None] + np.arange(w)[None, :]                           # [B, W]
  if flip is not None:
    cols = np.where(flip[:, None], cols[:, ::-1], cols)
  return padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]


# ----------------------------------------------------------------------------- ImageNet (tf)

def _tf():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf


def inception_crop_flip(jpeg, seed, image_size: int):
  """Random-resized crop of an encoded JPEG to [S, S, 3] float32 in [0, 255], random flip.

  ``seed`` is an int32/int64 [2] tensor (stateless ops): same seed, same crop.
  """
  tf = _tf()
  shape = tf.image.extract_jpeg_shape(jpeg)
  seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4]),
      seed=seeds[0], min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3),
      area_range=(0.08, 1.0), max_attempts=10, use_image_if_no_bounding_boxes=True)
  window = tf.stack([begin[0], begin[1], size[0], size[1]])
  image = tf.image.decode_and_crop_jpeg(jpeg, window, channels=3)
  image = tf.image.resize(image, [image_size, image_size], method="bicubic")
  image = tf.image.stateless_random_flip_left_right(image, seed=seeds[1])
  return tf.clip_by_value(image, 0.0, 255.0)


def center_crop(jpeg, image_size: int):
  """Center crop of an encoded JPEG (image_size/(image_size+32) of the short side), resized: [S, S, 3]."""
  tf = _tf()
  shape = tf.image.extract_jpeg_shape(jpeg)
  h, w = shape[0], shape[1]
  crop = tf.cast(image_size / (image_size + CROP_PADDING)
                 * tf.cast(tf.minimum(h, w), tf.float32), tf.int32)
  window = tf.stack([(h - crop + 1) // 2, (w - crop + 1) // 2, crop, crop])
  image = tf.image.decode_and_crop_jpeg(jpeg, window, channels=3)
  image = tf.image.resize(image, [image_size, image_size], method="bicubic")
  return tf.clip_by_value(image, 0.0, 255.0)
