"""Winograd F(2x2, 3x3) equals lax.conv; where it applies; its channel threshold."""
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdr import cpu_runtime
from jaxdr.ops import winograd


@pytest.mark.parametrize("n,hw,cin,cout", [(2, 4, 3, 5), (1, 8, 4, 4), (3, 6, 2, 3), (2, 2, 3, 2)])
def test_winograd_conv_equals_lax_conv(n, hw, cin, cout, assert_matches_lax_conv, lax_conv):
  """Values, input and kernel gradients equal XLA's, also in a lax.scan and vmapped."""
  rng = np.random.default_rng(hw * 10 + cin)
  x = jnp.asarray(rng.normal(size=(n, hw, hw, cin)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(3, 3, cin, cout)), jnp.float32)
  assert_matches_lax_conv(winograd.winograd_conv, lax_conv(1, 1), x, w)


def test_applies_to_wide_even_3x3_same_convs_with_enough_pixels():
  c, n = winograd.min_channels(), winograd.MIN_PIXELS // 64
  assert winograd.applies((n, 8, 8, c), (3, 3, c, c), 1, 1)
  for x_shape, k_shape, stride, pad in [((n - 1, 8, 8, c), (3, 3, c, c), 1, 1),      # too few pixels
                                        ((n, 8, 8, c - 1), (3, 3, c - 1, c), 1, 1),  # too narrow
                                        ((n, 9, 9, c), (3, 3, c, c), 1, 1),          # odd map
                                        ((n, 8, 8, c), (3, 3, c, c), 2, 1),          # stride
                                        ((n, 8, 8, c), (5, 5, c, c), 1, 2)]:         # kernel
    assert not winograd.applies(x_shape, k_shape, stride, pad), (x_shape, k_shape, stride)


def test_threshold_follows_the_cpu_conv(monkeypatch):
  """YNNPACK's convs are slow from 48 channels on, XLA's own only below 128."""
  monkeypatch.setenv("XLA_FLAGS", "")
  assert winograd.min_channels() == winograd.MIN_CHANNELS["ynn"]
  monkeypatch.setenv("XLA_FLAGS", "--foo " + cpu_runtime.YNN_OFF)
  assert winograd.min_channels() == winograd.MIN_CHANNELS["xla"]
