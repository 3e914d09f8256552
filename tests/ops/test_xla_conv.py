"""The stride-1 XLA conv with a forward-conv VJP equals lax.conv (values, gradients, scan, vmap)."""
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdr.ops import xla_conv


@pytest.mark.parametrize("kernel,pad", [(3, 1), (5, 0), (1, 0), (7, 3), (5, 4)])
def test_conv_stride1_equals_lax_conv(kernel, pad, assert_matches_lax_conv, lax_conv):
  rng = np.random.default_rng(kernel + pad)
  x = jnp.asarray(rng.normal(size=(2, 9, 9, 3)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(kernel, kernel, 3, 4)), jnp.float32)
  assert_matches_lax_conv(lambda x, w: xla_conv.conv_stride1(x, w, pad), lax_conv(1, pad), x, w)


def test_xla_conv_groups():
  x = jnp.ones((1, 4, 4, 2))
  dw = xla_conv.xla_conv(x, jnp.ones((3, 3, 1, 2)), 1, 1, 2)
  np.testing.assert_array_equal(dw[0, :, :, 0], [[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]])
