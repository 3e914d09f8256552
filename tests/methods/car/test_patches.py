"""Top activating patches: the receptive field read off the network equals the hand-computed one
(unpadded LeNet with pooling, a padded VGG clipped at the border), and each patch is the field of
the image's highest activation."""
import jax
import numpy as np

from jaxdr.methods import car
from jaxdr.methods.car import patches
from tests.methods.car import nets


def test_receptive_field_of_a_tiny_lenet():
  model, variables = nets.tiny_lenet()  # conv 5x5 (16 -> 12), max-pool 2, conv 5x5 (6 -> 2)
  rows, cols = car.receptive_field(model, variables, "conv1")
  np.testing.assert_array_equal(rows, [(i, i + 5) for i in range(12)])
  np.testing.assert_array_equal(cols, rows)
  rows, cols = car.receptive_field(model, variables, "conv2")  # pool rows i..i+4 -> input 2i .. 2i+13
  np.testing.assert_array_equal(rows, [(0, 14), (2, 16)])
  np.testing.assert_array_equal(cols, rows)
  assert patches.field_size(rows, cols) == (14, 14)


def test_receptive_field_is_clipped_at_padded_borders():
  model, variables = nets.tiny_vgg()  # 8x8: conv 3x3 pad 1, pool, conv 3x3 pad 1, pool, conv
  rows, _ = car.receptive_field(model, variables, "conv0")
  np.testing.assert_array_equal(rows, [(max(i - 1, 0), min(i + 2, 8)) for i in range(8)])
  # conv1 (4x4 map) row i: pooled rows i-1..i+1 -> conv0 rows 2i-2..2i+3 -> input rows 2i-3..2i+4.
  rows, _ = car.receptive_field(model, variables, "conv1")
  np.testing.assert_array_equal(rows, [(max(2 * i - 3, 0), min(2 * i + 5, 8)) for i in range(4)])


def test_top_patches_are_the_fields_of_the_highest_activations():
  model, variables = nets.tiny_lenet(seed=1)
  x, _ = nets.images(12, 16, seed=2)
  rows, cols = car.receptive_field(model, variables, "conv2")
  top = car.top_activations(model, variables, x, "conv2", [1, 4], k=3, batch_size=5)
  act = np.asarray(jax.jit(lambda v, i: patches.activation(model, v, i, "conv2"))(variables, x))
  for f in (1, 4):
    best = np.argsort(-act[..., f].reshape(12, -1).max(1))[:3]
    assert [h.index for h in top[f]] == list(best)
    for h in top[f]:
      assert h.value == np.float32(act[h.index, h.row, h.col, f]) == act[h.index, ..., f].max()
      (r0, r1), (c0, c1) = rows[h.row], cols[h.col]
      np.testing.assert_array_equal(patches.crop(x, h, rows, cols), x[h.index, r0:r1, c0:c1])
  m = patches.mosaic([patches.crop(x, h, rows, cols) for h in top[1]])
  assert m.shape == (14, 3 * 14 + 2, 1) and m.min() >= 0 and m.max() <= 1


def test_crop_pads_a_clipped_field():
  model, variables = nets.tiny_vgg()
  x = np.arange(2 * 8 * 8 * 3, dtype=np.float32).reshape(2, 8, 8, 3)
  rows, cols = car.receptive_field(model, variables, "conv0")
  p = patches.crop(x, patches.Hit(1.0, 1, 0, 7), rows, cols)  # top-right corner: rows 0-1, cols 6-7
  assert p.shape == (3, 3, 3) and np.isnan(p[0]).all() and np.isnan(p[:, 2]).all()
  np.testing.assert_array_equal(p[1:, :2], x[1, 0:2, 6:8])
