"""conv2d: every impl equals lax.conv through the dispatcher, and 'auto' / 'native' pick the
path each shape should take ('auto' never the native kernel)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdr import ops
from jaxdr.ops import conv, im2col, native_conv, winograd


def _ops(impl, n, hw, cin, cout, kernel=3, stride=1, padding=None):
  """The jaxpr of one conv2d call, as text."""
  x, w = jnp.ones((n, hw, hw, cin)), jnp.ones((kernel, kernel, cin, cout))
  pad = kernel // 2 if padding is None else padding
  return str(jax.make_jaxpr(lambda x: ops.conv2d(x, w, stride=stride, padding=pad, groups=1, impl=impl))(x))


@pytest.mark.parametrize("impl", ops.CONV_IMPLS)
@pytest.mark.parametrize("n,hw,cin,cout,kernel,stride,pad", [
    (2, 9, 3, 4, 3, 1, 1),    # stride-1 'same': lax.conv with a forward-conv VJP
    (8, 9, 3, 4, 3, 1, 1),    # ... on enough pixels for the native kernel ('native', where it loads)
    (2, 8, 3, 4, 5, 1, 4),    # more padding than 'same'
    (2, 9, 3, 4, 3, 2, 1),    # stride 2: plain lax.conv
    (3, 2, 3, 4, 3, 1, 1),    # tiny map: im2col
    (2, 4, 3, 4, 3, 1, 1),    # 4x4 map, narrow: im2col
    (2, 1, 3, 4, 3, 1, 1),    # 1x1 map: the dense conv
    (2, 9, 1, 4, 3, 1, 1),    # one input channel: shifted taps ('auto', 'native')
])
def test_every_impl_equals_lax_conv(impl, n, hw, cin, cout, kernel, stride, pad, assert_matches_lax_conv,
                                    lax_conv):
  if impl == "native":
    native_conv.load()
  rng = np.random.default_rng(hw * 10 + kernel)
  x = jnp.asarray(rng.normal(size=(n, hw, hw, cin)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(kernel, kernel, cin, cout)) / np.sqrt(kernel * kernel * cin), jnp.float32)
  f = lambda x, w: ops.conv2d(x, w, stride=stride, padding=pad, groups=1, impl=impl)  # noqa: E731
  assert_matches_lax_conv(f, lax_conv(stride, pad), x, w)


def test_auto_picks_dense_only_where_it_saves_macs():
  """A 3x3 conv on a 2x2 map is one matmul when the batch amortises building the matrix (on
  1x1 maps always); on 2x2 outputs of a 4x4 map (stride 2) each output sees only 9 of 16
  pixels, so im2col (fewer MACs) stays."""
  big = im2col.DENSE_MIN_PIXELS // 4
  assert "custom_vjp" in _ops("auto", big, 2, 2, 2) and "conv_general_dilated" not in _ops("auto", big, 2, 2, 2)
  assert "custom_vjp" in _ops("auto", 1, 1, 2, 2)
  for args in [(big - 1, 2, 2, 2), (big, 4, 2, 2, 3, 2)]:  # im2col: no custom VJP, no conv
    assert "custom_vjp" not in _ops("auto", *args) and "conv_general_dilated" not in _ops("auto", *args)


@pytest.mark.parametrize("impl", ["auto", "native"])
def test_winograd_on_wide_even_maps_else_lax_conv_or_native(impl, monkeypatch):
  """Winograd for 3x3 'same' convs on even maps with enough channels and pixels; else (3x3
  'same' float32, wide enough maps) the native kernel for 'native' where it is loaded; else
  lax.conv. 'auto' never uses the native kernel."""
  wide, n = winograd.min_channels(), winograd.MIN_PIXELS // 64
  native = native_conv.TARGET if impl == "native" and native_conv.load() else "conv_general_dilated"
  assert "custom_vjp" in _ops(impl, n, 8, wide, wide) and "conv_general_dilated" not in _ops(impl, n, 8, wide, wide)
  assert native_conv.TARGET not in _ops(impl, n, 8, wide, wide)
  for args in [(n - 1, 8, wide, wide), (n, 8, wide - 1, wide), (n, 9, wide, wide)]:
    assert native in _ops(impl, *args), args
  few_pixels = (native_conv.MIN_PIXELS - 1) // 81
  for args in [(n, 8, wide, wide, 5), (n, 8, wide, wide, 3, 2), (n, 7, wide, wide), (few_pixels, 9, wide, wide)]:
    assert "conv_general_dilated" in _ops(impl, *args) and native_conv.TARGET not in _ops(impl, *args), args
  monkeypatch.setenv(native_conv.ENV_SWITCH, "0")
  assert "conv_general_dilated" in _ops(impl, n, 9, wide, wide)
  assert native_conv.TARGET not in _ops(impl, n, 9, wide, wide)


@pytest.mark.parametrize("impl", ["auto", "native"])
def test_small_maps_that_winograd_leaves_take_im2col(impl):
  """Up to 4x4 output maps, a stride-1 conv Winograd does not take (too narrow, odd map,
  too few pixels) is im2col: no conv op, no custom VJP; from 5x5 it is lax.conv again."""
  if impl == "native":
    native_conv.load()
  narrow, wide = winograd.min_channels() - 1, winograd.min_channels()
  for args in [(128, 4, narrow, narrow), (1, 4, wide, wide), (128, 3, wide, wide)]:
    jaxpr = _ops(impl, *args)
    assert "conv_general_dilated" not in jaxpr and "custom_vjp" not in jaxpr, args
  assert "conv_general_dilated" in _ops(impl, 1, 5, narrow, narrow)
  assert "custom_vjp" in _ops(impl, 128, 4, wide, wide)  # Winograd


@pytest.mark.parametrize("impl", ["auto", "native"])
def test_one_channel_inputs_take_shifted_taps(impl):
  """A stride-1 conv of a one-channel input is a fused sum of taps (no conv op, no native
  call), at any map size; two channels, or stride 2, are not."""
  if impl == "native":
    native_conv.load()
  for hw in (2, 28):
    jaxpr = _ops(impl, 128, hw, 1, 16)
    assert "custom_vjp" in jaxpr and "conv_general_dilated" not in jaxpr and native_conv.TARGET not in jaxpr
  assert "custom_vjp" not in _ops(impl, 2, 9, 1, 4, 3, 2)
  assert "conv_general_dilated" in _ops(impl, 2, 9, 2, 4)


def test_xla_and_grouped_convs_are_lax_conv():
  assert "custom_vjp" not in _ops("xla", 4, 1, 2, 2) and "conv_general_dilated" in _ops("xla", 4, 1, 2, 2)
  x = jnp.ones((1, 4, 4, 2))
  for impl in ops.CONV_IMPLS:
    jaxpr = str(jax.make_jaxpr(lambda x: ops.conv2d(x, jnp.ones((3, 3, 1, 2)), stride=1, padding=1, groups=2,
                                                    impl=impl))(x))
    assert "conv_general_dilated" in jaxpr and "custom_vjp" not in jaxpr, impl


def test_bad_impl():
  with pytest.raises(ValueError, match="conv_impl must be one of"):
    ops.conv2d(jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 2)), stride=1, padding=1, groups=1, impl="fft")


def test_cpu_fast_paths():
  assert conv.cpu_fast_paths("auto") == conv.cpu_fast_paths("native") == (jax.default_backend() == "cpu")
  assert not conv.cpu_fast_paths("xla") and not conv.cpu_fast_paths("im2col")
