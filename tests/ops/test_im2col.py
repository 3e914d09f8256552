"""im2col and the dense tiny-map conv equal lax.conv (values; the dense conv's gradients too)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdr.ops import im2col


@pytest.mark.parametrize("kernel,stride,pad", [
    (1, 1, 0), (1, 2, 0), (1, 1, 1),
    (3, 1, 1), (3, 2, 1), (3, 2, 0),
    (5, 1, 0), (5, 2, 2),           # LeNet; "same"
    (7, 2, 3), (7, 1, 4),           # ResNet-50 stem; more than "same"
    (11, 4, 2), (11, 2, 0),         # AlexNet conv1
])
def test_im2col_equals_lax_conv(kernel, stride, pad, lax_conv):
  rng = np.random.default_rng(kernel * 10 + stride)
  x = jnp.asarray(rng.normal(size=(2, 13, 13, 3)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(kernel, kernel, 3, 5)), jnp.float32)
  ref = lax_conv(stride, pad)(x, w)
  ours = jax.jit(functools.partial(im2col.im2col_conv, stride=stride, padding=pad))(x, w)
  assert ours.shape == ref.shape
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("hw,cin,cout,kernel,stride,pad", [
    (2, 5, 4, 3, 1, 1),   # VGG-16's last block on 32x32 inputs
    (1, 3, 6, 3, 1, 1),   # ... and on 28x28 inputs: only the centre tap is real
    (3, 4, 2, 3, 2, 1),   # stride 2 onto 2x2
    (2, 4, 3, 2, 1, 0),   # even kernel, no padding
])
def test_dense_small_map_conv_equals_lax_conv(hw, cin, cout, kernel, stride, pad, assert_matches_lax_conv,
                                              lax_conv):
  """Tiny maps as one dense matmul: values, input and kernel gradients equal XLA's, also in
  a lax.scan (where the matrices are loop invariants) and vmapped."""
  rng = np.random.default_rng(hw * 100 + cin)
  x = jnp.asarray(rng.normal(size=(3, hw, hw, cin)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(kernel, kernel, cin, cout)), jnp.float32)
  assert_matches_lax_conv(lambda x, w: im2col.dense_conv(x, w, stride, pad), lax_conv(stride, pad), x, w)


def test_dense_is_cheaper_only_where_every_output_sees_the_whole_map():
  big = im2col.DENSE_MIN_PIXELS // 4
  assert im2col.dense_is_cheaper((big, 2, 2, 8), (3, 3), 4)
  assert not im2col.dense_is_cheaper((big - 1, 2, 2, 8), (3, 3), 4)  # matrix not amortised
  assert im2col.dense_is_cheaper((1, 1, 1, 8), (3, 3), 1)            # 1x1: the centre tap, free
  assert not im2col.dense_is_cheaper((big, 4, 4, 8), (3, 3), 4)      # 16 inputs > 9 taps
