"""Input pipelines: ``iterator`` (train/eval batches) and ``as_arrays`` (a whole small split).

Batches are numpy dicts ``{'image': float32 [B, H, W, C] normalised, 'label': int32 [B]}`` (plus
``'coarse_label'`` for cifar100). ``batch_size`` is the *global* batch size: with
``process_count`` P each process yields ``batch_size // P`` rows.

Train iterators shuffle and repeat forever (``repeat=False``: one epoch) and drop the remainder.
Eval iterators make one pass in file order (``repeat=True``: forever) and add ``'mask'`` float32 [B]
(1 real, 0 padding): the last batch is zero-padded to full size, and every process yields the same
number of batches (ceil(ceil(N / P) / (batch_size / P))), so sum(metric * mask) / sum(mask) over
all batches and processes is exact for any batch size and process count.

Small sets (mnist, fashion_mnist, cifar10, cifar100) are read once per process from the prepared
tfds dataset into uint8 numpy arrays (memoised) and batched in numpy. For train every process
computes the same seeded permutation per epoch and keeps its own rows [i*b, (i+1)*b) of each global
batch, so P processes together see exactly the batches of one process (the union is disjoint and
equals the single-process batch, augmentation included). Eval gives each process a disjoint,
contiguous shard. ImageNet streams through tf.data (decode, crop, flip, batch, prefetch); each
process reads its own ``tfds.even_splits`` shard.
"""
from __future__ import annotations

import functools
import math
from typing import Dict, Iterator, Optional, Tuple

import numpy as np

from jaxdr import batching
from jaxdr.data import augment as augment_lib
from jaxdr.data import sources
from jaxdr.data.datasets import DatasetInfo, info
from jaxdr.errors import ConfigError

Batch = Dict[str, np.ndarray]
_TRAIN_ORDER, _TRAIN_AUGMENT = 0, 1  # seed-stream tags


def _resolve_split(ds: DatasetInfo, split: str) -> str:
  if not isinstance(split, str) or not split:
    raise ConfigError(f"split must be a non-empty string such as 'train' or 'test', got {split!r}")
  if split == "test":
    return ds.test_split
  return split


def _image_size(ds: DatasetInfo, image_size: Optional[int]) -> int:
  if image_size is None:
    return ds.image_size
  if int(image_size) != image_size or image_size < 1:
    raise ConfigError(f"image_size must be a positive integer, got {image_size!r}")
  return int(image_size)


def _normalise(images: np.ndarray, ds: DatasetInfo) -> np.ndarray:
  """uint8/float [..., C] pixels in [0, 255] -> float32 (x / 255 - mean) / std."""
  std = np.asarray(ds.std, np.float32)
  scale = 1.0 / (255.0 * std)
  offset = -np.asarray(ds.mean, np.float32) / std
  return images.astype(np.float32) * scale + offset


# ----------------------------------------------------------------------------- small sets

@functools.lru_cache(maxsize=8)
def _load_uint8(name: str, split: str, directory: str, image_size: int
                ) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
  """A whole split as uint8 images [N, S, S, C] and int32 labels {key: [N]}, read once per process."""
  ds = info(name)
  keys = ("label",) + ds.extra_labels
  data = sources.read_split(sources.builder(ds, directory), split, ("image",) + keys)
  images = np.asarray(data["image"], np.uint8)
  if images.shape[1] != image_size or images.shape[2] != image_size:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    resized = tf.image.resize(images, [image_size, image_size], method="bilinear", antialias=True)
    images = np.clip(np.round(resized.numpy()), 0, 255).astype(np.uint8)
  labels = {k: np.asarray(data[k], np.int32) for k in keys}
  images.setflags(write=False)
  for v in labels.values():
    v.setflags(write=False)
  return images, labels


def _small_train(ds: DatasetInfo, images: np.ndarray, labels: Dict[str, np.ndarray],
                 batch_size: int, seed: int, process_index: int, process_count: int,
                 augment: str, repeat: bool) -> Iterator[Batch]:
  n = len(images)
  steps = n // batch_size
  if steps == 0:
    raise ConfigError(f"{ds.name}: batch_size {batch_size} exceeds the {n} training examples")
  local = slice(process_index * (batch_size // process_count),
                (process_index + 1) * (batch_size // process_count))
  epoch = 0
  while True:
    order = np.random.default_rng([_TRAIN_ORDER, seed, epoch]).permutation(n)
    for step in range(steps):
      rows = order[step * batch_size:(step + 1) * batch_size][local]
      x = images[rows]
      if augment != "none":
        dy, dx, flip = augment_lib.draw_pad_crop_flip(
            np.random.default_rng([_TRAIN_AUGMENT, seed, epoch, step]), batch_size)
        x = augment_lib.pad_crop_flip(x, dy[local], dx[local],
                                      flip[local] if augment == "pad_crop_flip" else None)
      batch = {"image": _normalise(x, ds)}
      batch.update({k: v[rows] for k, v in labels.items()})
      yield batch
    epoch += 1
    if not repeat:
      return


def _shard_bounds(n: int, process_index: int, process_count: int) -> Tuple[int, int]:
  return n * process_index // process_count, n * (process_index + 1) // process_count


def _eval_num_batches(n: int, local_batch: int, process_count: int) -> int:
  return max(1, math.ceil(math.ceil(n / process_count) / local_batch))


def _pad(batches: Iterator[Batch], local_batch: int, num_batches: int) -> Iterator[Batch]:
  """Each batch zero-padded to ``local_batch`` rows with a 'mask' (`batching.pad_batch`), then
  empty batches up to ``num_batches`` (so every process yields the same number)."""
  template = None
  count = 0
  for batch in batches:
    template = {k: v[:0] for k, v in batch.items()}
    count += 1
    yield batching.pad_batch(batch, local_batch)
  if count < num_batches and template is None:
    raise ValueError("eval split shard is empty and no example fixes the batch shapes")
  for _ in range(num_batches - count):
    yield batching.pad_batch(template, local_batch)


def _small_eval(ds: DatasetInfo, images: np.ndarray, labels: Dict[str, np.ndarray],
                local_batch: int, process_index: int, process_count: int,
                repeat: bool) -> Iterator[Batch]:
  n = len(images)
  start, end = _shard_bounds(n, process_index, process_count)
  num_batches = _eval_num_batches(n, local_batch, process_count)

  def one_pass():
    # An empty shard still yields one 0-row batch: it carries the shapes for the padding.
    for lo in range(start, max(end, start + 1), local_batch):
      rows = slice(lo, min(lo + local_batch, end))
      batch = {"image": _normalise(images[rows], ds)}
      batch.update({k: v[rows] for k, v in labels.items()})
      yield batch

  while True:
    yield from _pad(one_pass(), local_batch, num_batches)
    if not repeat:
      return


# ----------------------------------------------------------------------------- ImageNet

def _tf_dataset(ds: DatasetInfo, split: str, local_batch: int, *, train: bool, seed: int,
                directory: str, image_size: int, process_index: int, process_count: int,
                repeat: bool):
  """A tf.data pipeline over this process's ``tfds.even_splits`` shard of an encoded-JPEG split."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = sources.builder(ds, directory)
  shard = tfds.even_splits(split, n=process_count)[process_index] if process_count > 1 else split
  data = builder.as_dataset(
      split=shard, shuffle_files=train, decoders={"image": tfds.decode.SkipDecoding()},
      read_config=tfds.ReadConfig(shuffle_seed=seed, try_autocache=False))
  mean = tf.constant(ds.mean, tf.float32) * 255.0
  std = tf.constant(ds.std, tf.float32) * 255.0
  keys = ("label",) + ds.extra_labels

  def finish(image, example):
    out = {"image": (image - mean) / std}
    out.update({k: tf.cast(example[k], tf.int32) for k in keys})
    return out

  if train:
    data = data.shuffle(16 * local_batch, seed=seed, reshuffle_each_iteration=True)
    if repeat:
      data = data.repeat()
    data = data.enumerate().map(
        lambda i, ex: finish(augment_lib.inception_crop_flip(
            ex["image"], tf.stack([tf.constant(seed, tf.int64), i]), image_size), ex),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    data = data.batch(local_batch, drop_remainder=True)
  else:
    data = data.map(lambda ex: finish(augment_lib.center_crop(ex["image"], image_size), ex),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    data = data.batch(local_batch)
    if repeat:
      data = data.repeat()
  options = tf.data.Options()
  options.deterministic = True
  return builder, data.with_options(options).prefetch(tf.data.AUTOTUNE)


def _streamed(ds: DatasetInfo, split: str, local_batch: int, *, train: bool, seed: int,
              directory: str, image_size: int, process_index: int, process_count: int,
              repeat: bool) -> Iterator[Batch]:
  """Builds the tf.data pipeline now (so a missing dataset raises here) and iterates it lazily."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder, data = _tf_dataset(ds, split, local_batch, train=train, seed=seed, directory=directory,
                              image_size=image_size, process_index=process_index,
                              process_count=process_count, repeat=repeat and train)
  if train:
    return iter(tfds.as_numpy(data))
  num_batches = _eval_num_batches(builder.info.splits[split].num_examples, local_batch,
                                  process_count)

  def passes():
    while True:
      yield from _pad(iter(tfds.as_numpy(data)), local_batch, num_batches)
      if not repeat:
        return

  return passes()


# ----------------------------------------------------------------------------- public API

def iterator(name: str, split: str, batch_size: int, *, train: bool, seed: int = 0,
             data_dir: Optional[str] = None, image_size: Optional[int] = None,
             process_index: int = 0, process_count: int = 1, repeat: Optional[bool] = None,
             augment: Optional[str] = None) -> Iterator[Batch]:
  """Batches of split ``split`` of dataset ``name`` (see the module docstring for the contract).

  Args:
    batch_size: global batch size; each of the ``process_count`` processes yields
      ``batch_size // process_count`` rows (must divide).
    train: shuffle + augment + drop remainder (else: file order, no augmentation, 'mask').
    seed: fixes order and augmentation; the same seed gives the same batches.
    data_dir: tfds data dir ('' or None: $JAXDR_DATA_DIR, $TFDS_DATA_DIR, ~/tensorflow_datasets).
    image_size: output H = W (default: the dataset's native size; small sets are resized).
    repeat: None = train forever / eval one pass; True = forever; False = one pass.
    augment: small sets only: 'none' | 'pad_crop' | 'pad_crop_flip' (default: the dataset's
      paper recipe for train, 'none' for eval).
  """
  ds = info(name)
  split = _resolve_split(ds, split)
  size = _image_size(ds, image_size)
  if int(batch_size) != batch_size or batch_size < 1:
    raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ConfigError(f"need 0 <= process_index < process_count, got {process_index} of "
                     f"{process_count}")
  if batch_size % process_count:
    raise ConfigError(f"batch_size {batch_size} is not divisible by process_count {process_count}")
  if seed < 0:
    raise ConfigError(f"seed must be non-negative, got {seed}")
  local_batch = batch_size // process_count
  repeat = train if repeat is None else bool(repeat)
  directory = sources.data_dir(data_dir)
  if not ds.in_memory:
    if augment is not None:
      raise ConfigError(f"{name}: augment is fixed for streamed datasets (train: {ds.augment})")
    return _streamed(ds, split, local_batch, train=train, seed=seed, directory=directory,
                     image_size=size, process_index=process_index, process_count=process_count,
                     repeat=repeat)
  augment = (ds.augment if train else "none") if augment is None else augment
  if augment not in augment_lib.SMALL_AUGMENTATIONS:
    raise ConfigError(f"augment must be one of {augment_lib.SMALL_AUGMENTATIONS}, got {augment!r}")
  images, labels = _load_uint8(name, split, directory, size)
  if train:
    return _small_train(ds, images, labels, batch_size, seed, process_index, process_count,
                        augment, repeat)
  return _small_eval(ds, images, labels, local_batch, process_index, process_count, repeat)


def as_arrays(name: str, split: str, data_dir: Optional[str] = None,
              image_size: Optional[int] = None, limit: Optional[int] = None
              ) -> Tuple[np.ndarray, np.ndarray]:
  """The first ``limit`` (default all) examples of a split: (float32 [N, H, W, C] normalised,
  int32 [N] labels), in file order, eval preprocessing. ImageNet needs a ``limit``."""
  ds = info(name)
  split = _resolve_split(ds, split)
  size = _image_size(ds, image_size)
  if limit is not None and (int(limit) != limit or limit < 0):
    raise ConfigError(f"limit must be a non-negative integer, got {limit!r}")
  directory = sources.data_dir(data_dir)
  if ds.in_memory:
    images, labels = _load_uint8(name, split, directory, size)
    end = len(images) if limit is None else min(int(limit), len(images))
    return _normalise(images[:end], ds), np.array(labels["label"][:end])
  if limit is None:
    raise ConfigError(f"{name} does not fit in memory: pass a limit or use iterator()")
  if limit == 0:
    return (np.zeros((0, size, size, ds.channels), np.float32), np.zeros((0,), np.int32))
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  _, data = _tf_dataset(ds, f"{split}[:{int(limit)}]", 256, train=False, seed=0,
                        directory=directory, image_size=size, process_index=0, process_count=1,
                        repeat=False)
  batches = list(tfds.as_numpy(data))
  return (np.concatenate([b["image"] for b in batches]),
          np.concatenate([b["label"] for b in batches]))


def num_examples(name: str, split: str, data_dir: Optional[str] = None) -> int:
  """Examples in ``split`` of the prepared dataset (may differ from ``info(name)`` for subsets)."""
  ds = info(name)
  builder = sources.builder(ds, sources.data_dir(data_dir))
  return int(builder.info.splits[_resolve_split(ds, split)].num_examples)
