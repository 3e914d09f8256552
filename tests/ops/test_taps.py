"""The shifted-taps conv (one-channel inputs) equals lax.conv: values, both gradients, in a
scan and vmapped."""
import functools

import jax.numpy as jnp
import numpy as np
import pytest

from jaxdr.ops import taps


@pytest.mark.parametrize("n,hw,cout,kernel,pad", [
    (2, 7, 5, 3, 1),    # 'same' on an odd map (Fashion-MNIST's first layer, tiny)
    (3, 6, 4, 3, 0),    # no padding
    (1, 5, 3, 1, 0),    # 1x1
    (2, 8, 4, 3, 2),    # more padding than 'same'
])
def test_taps_conv_equals_lax_conv(n, hw, cout, kernel, pad, assert_matches_lax_conv, lax_conv):
  rng = np.random.default_rng(hw * 10 + pad)
  x = jnp.asarray(rng.normal(size=(n, hw, hw, 1)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(kernel, kernel, 1, cout)), jnp.float32)
  assert_matches_lax_conv(functools.partial(taps.taps_conv, padding=pad), lax_conv(1, pad), x, w)


def test_applies_only_to_few_taps_stride_1_square_kernels():
  assert taps.applies((2, 9, 9, 1), (3, 3, 1, 8), 1, 1, 1)
  assert not taps.applies((2, 9, 9, 2), (3, 3, 2, 8), 1, 1, 1)     # 18 taps > MAX_TAPS
  assert not taps.applies((2, 9, 9, 1), (3, 3, 1, 8), 2, 1, 1)     # stride 2
  assert not taps.applies((2, 9, 9, 1), (3, 1, 1, 8), 1, 1, 1)     # not square
  assert not taps.applies((2, 9, 9, 1), (3, 3, 1, 8), 1, 3, 1)     # padding >= kernel
