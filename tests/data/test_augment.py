"""Pad-crop-flip pinned against explicit slicing."""
import numpy as np

from jaxdr.data import augment


def _images(b=3, h=6, w=5, c=2):
  return np.arange(b * h * w * c, dtype=np.uint8).reshape(b, h, w, c) + 1


def test_center_offset_without_flip_is_identity():
  x = _images()
  p = augment.PAD
  out = augment.pad_crop_flip(x, np.full(3, p), np.full(3, p), np.zeros(3, bool))
  np.testing.assert_array_equal(out, x)


def test_crop_and_flip_match_explicit_slices():
  x = _images()
  dy, dx, flip = np.array([0, 8, 3]), np.array([8, 0, 5]), np.array([False, True, True])
  out = augment.pad_crop_flip(x, dy, dx, flip)
  padded = np.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
  for i in range(3):
    want = padded[i, dy[i]:dy[i] + 6, dx[i]:dx[i] + 5]
    if flip[i]:
      want = want[:, ::-1]
    np.testing.assert_array_equal(out[i], want)
  assert (out[0, :4] == 0).all() and (out[0, 4:, :1] != 0).all()  # shifted down, zero border


def test_no_flip_argument_never_mirrors():
  x = _images()
  out = augment.pad_crop_flip(x, np.full(3, 4), np.full(3, 4), None)
  np.testing.assert_array_equal(out, x)


def test_draws_are_deterministic_and_in_range():
  a = augment.draw_pad_crop_flip(np.random.default_rng(7), 64)
  b = augment.draw_pad_crop_flip(np.random.default_rng(7), 64)
  for u, v in zip(a, b):
    np.testing.assert_array_equal(u, v)
  dy, dx, flip = a
  assert dy.min() >= 0 and dy.max() <= 8 and dx.min() >= 0 and dx.max() <= 8
  assert 0 < flip.sum() < 64
