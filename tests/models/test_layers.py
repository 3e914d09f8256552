"""Layer units: im2col conv == XLA conv, gate placement, flatten order, widths."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import chex
import flax.linen as nn
import pytest

from jaxdr import cpu_runtime
from jaxdr.models import layers, native_conv


@functools.partial(jax.jit, static_argnames=("stride", "padding", "impl"))
def _conv(x, kernel, stride, padding, impl):
  return layers.conv2d(x, kernel, stride=stride, padding=padding, groups=1, impl=impl)


@pytest.mark.parametrize("kernel,stride,pad", [
    (1, 1, 0), (1, 2, 0), (1, 1, 1),
    (3, 1, 1), (3, 2, 1), (3, 2, 0),
    (5, 1, 0), (5, 2, 2),           # LeNet; "same"
    (7, 2, 3), (7, 1, 4),           # ResNet-50 stem; more than "same"
    (11, 4, 2), (11, 2, 0),         # AlexNet conv1
])
def test_im2col_equals_lax_conv(kernel, stride, pad):
  rng = np.random.default_rng(kernel * 10 + stride)
  x = jnp.asarray(rng.normal(size=(2, 13, 13, 3)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(kernel, kernel, 3, 5)), jnp.float32)
  ref = jax.lax.conv_general_dilated(x, w, (stride, stride), [(pad, pad)] * 2,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
  ours = _conv(x, w, stride, pad, "im2col")
  assert ours.shape == ref.shape
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kernel,pad", [(3, 1), (5, 0), (1, 0), (7, 3), (5, 4)])
def test_auto_conv_gradients_equal_lax_conv(kernel, pad):
  """'auto' on CPU: stride-1 convs carry a custom VJP; values and both gradients must be
  XLA's, also inside a lax.scan over a loop-invariant kernel (where it matters)."""
  rng = np.random.default_rng(kernel + pad)
  x = jnp.asarray(rng.normal(size=(2, 9, 9, 3)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(kernel, kernel, 3, 4)), jnp.float32)
  def loss(impl):
    return lambda x, w: jnp.sum(jnp.sin(layers.conv2d(x, w, stride=1, padding=pad, groups=1, impl=impl)))
  want = jax.grad(loss("xla"), (0, 1))(x, w)
  np.testing.assert_allclose(loss("auto")(x, w), loss("xla")(x, w), rtol=1e-6)
  chex.assert_trees_all_close(jax.grad(loss("auto"), (0, 1))(x, w), want, rtol=1e-5, atol=1e-5)
  def scanned(x):
    body = lambda c, _: (c + 0.01 * jax.grad(loss("auto"))(c, w), None)  # noqa: E731
    return jax.lax.scan(body, x, None, length=2)[0]
  c = x + 0.01 * want[0]
  c = c + 0.01 * jax.grad(loss("xla"))(c, w)
  np.testing.assert_allclose(jax.jit(scanned)(x), c, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hw,cin,cout,kernel,stride,pad", [
    (2, 5, 4, 3, 1, 1),   # VGG-16's last block on 32x32 inputs
    (1, 3, 6, 3, 1, 1),   # ... and on 28x28 inputs: only the centre tap is real
    (3, 4, 2, 3, 2, 1),   # stride 2 onto 2x2
    (2, 4, 3, 2, 1, 0),   # even kernel, no padding
])
def test_dense_small_map_conv_equals_lax_conv(hw, cin, cout, kernel, stride, pad, assert_matches_lax_conv):
  """Tiny maps as one dense matmul: values, input and kernel gradients equal XLA's, also in
  a lax.scan (where the matrices are loop invariants)."""
  rng = np.random.default_rng(hw * 100 + cin)
  x = jnp.asarray(rng.normal(size=(3, hw, hw, cin)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(kernel, kernel, cin, cout)), jnp.float32)
  assert_matches_lax_conv(lambda x, w: layers._dense_conv(x, w, stride, pad),
                           lambda x, w: layers._xla_conv(x, w, stride, pad, 1), x, w)


def test_auto_conv_picks_dense_only_where_it_saves_macs():
  """'auto' on CPU: a 3x3 conv on a 2x2 map is one matmul when the batch amortises building
  the matrix (on 1x1 maps always); on 2x2 outputs of a 4x4 map (stride 2) each output sees
  only 9 of 16 pixels, so im2col (fewer MACs) stays."""
  def ops(n, hw, stride=1):
    x, w = jnp.ones((n, hw, hw, 2)), jnp.ones((3, 3, 2, 2))
    return str(jax.make_jaxpr(lambda x: layers.conv2d(x, w, stride=stride, padding=1, groups=1,
                                                      impl="auto"))(x))
  big = layers.DENSE_MIN_PIXELS // 4
  assert "custom_vjp" in ops(big, 2) and "conv_general_dilated" not in ops(big, 2)
  assert "custom_vjp" in ops(1, 1)
  assert "custom_vjp" not in ops(big - 1, 2) and "conv_general_dilated" not in ops(big - 1, 2)  # im2col
  assert "custom_vjp" not in ops(big, 4, 2) and "conv_general_dilated" not in ops(big, 4, 2)


@pytest.mark.parametrize("n,hw,cin,cout", [(2, 4, 3, 5), (1, 8, 4, 4), (3, 6, 2, 3), (2, 2, 3, 2)])
def test_winograd_conv_equals_lax_conv(n, hw, cin, cout, assert_matches_lax_conv):
  """Winograd F(2x2, 3x3): values, input and kernel gradients equal XLA's, also in a lax.scan."""
  rng = np.random.default_rng(hw * 10 + cin)
  x = jnp.asarray(rng.normal(size=(n, hw, hw, cin)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(3, 3, cin, cout)), jnp.float32)
  assert_matches_lax_conv(layers._winograd_conv, lambda x, w: layers._xla_conv(x, w, 1, 1, 1), x, w)


def test_auto_conv_uses_winograd_on_wide_even_maps_only(monkeypatch):
  """Winograd for 3x3 'same' convs on even maps with enough channels and enough pixels in
  the batch to amortise the kernel transform; else jaxdr's native kernel for 3x3 'same'
  convs where it is available (and switched on), and XLA's conv otherwise."""
  def ops(n, hw, cin, cout, kernel=3, stride=1):
    x, w = jnp.ones((n, hw, hw, cin)), jnp.ones((kernel, kernel, cin, cout))
    return str(jax.make_jaxpr(lambda x: layers.conv2d(x, w, stride=stride, padding=kernel // 2,
                                                      groups=1, impl="auto"))(x))
  wide, n = layers.winograd_min_channels(), layers.WINOGRAD_MIN_PIXELS // 64
  native = native_conv.TARGET if native_conv.available() else "conv_general_dilated"
  assert "custom_vjp" in ops(n, 8, wide, wide) and "conv_general_dilated" not in ops(n, 8, wide, wide)
  assert native_conv.TARGET not in ops(n, 8, wide, wide)
  for args in [(n - 1, 8, wide, wide), (n, 8, wide - 1, wide), (n, 9, wide, wide)]:
    assert native in ops(*args), args
  few_pixels = (native_conv.MIN_PIXELS - 1) // 81
  for args in [(n, 8, wide, wide, 5), (n, 8, wide, wide, 3, 2), (n, 7, wide, wide), (few_pixels, 9, wide, wide)]:
    assert "conv_general_dilated" in ops(*args) and native_conv.TARGET not in ops(*args), args
  monkeypatch.setenv(native_conv.ENV_SWITCH, "0")
  assert "conv_general_dilated" in ops(n, 9, wide, wide) and native_conv.TARGET not in ops(n, 9, wide, wide)


def test_conv2d_dispatch_and_errors():
  x = jnp.ones((1, 4, 4, 2))
  with pytest.raises(ValueError, match="conv_impl must be one of"):
    layers.conv2d(x, jnp.ones((3, 3, 2, 2)), stride=1, padding=1, groups=1, impl="fft")
  # Grouped (depthwise) convs always use XLA, whatever the impl.
  dw = layers.conv2d(x, jnp.ones((3, 3, 1, 2)), stride=1, padding=1, groups=2, impl="im2col")
  np.testing.assert_array_equal(dw[0, :, :, 0], [[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]])


def test_conv_unit_gates_after_activation():
  unit = layers.ConvUnit(4, kernel=3, use_bn=False, use_bias=True, act="relu6")
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 5, 3)) * 10, jnp.float32)
  variables = unit.init(jax.random.PRNGKey(0), x)
  y = unit.apply(variables, x)
  assert float(jnp.max(y)) == 6.0 and float(jnp.min(y)) == 0.0  # relu6 clips both ends
  gate = jnp.array([1.0, 0.0, -1.0, 0.5])  # a negative gate shows it multiplies after relu6
  gated = unit.apply(variables, x, {layers.path_key(()): gate})  # a top-level unit's key is ''
  np.testing.assert_array_equal(unit.apply(variables, x, {"other": gate}), y)
  np.testing.assert_allclose(gated, y * gate)


def test_depthwise_unit_needs_matching_width():
  with pytest.raises(ValueError, match=r"depthwise unit needs features == input channels \(4 != 3\)"):
    layers.ConvUnit(4, depthwise=True).init(jax.random.PRNGKey(0), jnp.ones((1, 5, 5, 3)))


def test_dense_unit_flattens_channels_last():
  """Input channel c of a [N, H, W, C] input owns dense rows c, c + C, ... (what surgery slices)."""
  unit = layers.DenseUnit(3)
  x = jnp.zeros((1, 2, 2, 4)).at[..., 1].set(1.0)
  variables = unit.init(jax.random.PRNGKey(0), x)
  kernel = variables["params"]["dense"]["kernel"]
  assert kernel.shape == (16, 3)
  expected = kernel[1::4].sum(0) + variables["params"]["dense"]["bias"]
  np.testing.assert_allclose(unit.apply(variables, x)[0], expected, rtol=1e-6)


def test_backbone_width_of():
  backbone = layers.Backbone(width=0.5, channels=(("conv1", 7),))
  assert backbone.width_of("conv1", 64) == 7
  assert backbone.width_of("conv2", 64) == 32
  assert layers.Backbone(width=0.01).width_of("conv2", 64) == 1


@pytest.mark.parametrize("shape,window,padding", [((3, 8, 8, 5), 2, "SAME"), ((2, 12, 6, 3), 3, "VALID"),
                                                  ((2, 7, 7, 4), 2, "SAME")])
def test_max_pool_equals_flax_values_and_gradients(shape, window, padding):
  # Rounded values and a ReLU make many tied windows: the gradient must go to the first
  # maximum of each window, as reduce-window's select-and-scatter gradient does.
  x = jnp.round(jax.random.normal(jax.random.PRNGKey(0), shape) * 2) / 2
  x = jax.nn.relu(x)
  g = jax.random.normal(jax.random.PRNGKey(1), layers.max_pool(x, window, window, padding).shape)
  ref = lambda x: nn.max_pool(x, (window, window), strides=(window, window), padding=padding)
  ours = lambda x: layers.max_pool(x, window, window, padding)
  chex.assert_trees_all_equal(ours(x), ref(x))
  grad_ours = jax.grad(lambda x: jnp.sum(ours(x) * g))(x)
  grad_ref = jax.grad(lambda x: jnp.sum(ref(x) * g))(x)
  chex.assert_trees_all_equal(grad_ours, grad_ref)
  assert int(jnp.sum(grad_ours != 0)) <= g.size  # one position per window, not split over ties


def test_winograd_threshold_follows_the_cpu_conv(monkeypatch):
  """YNNPACK's convs are slow from 48 channels on, XLA's own only below 128."""
  monkeypatch.setenv("XLA_FLAGS", "")
  assert layers.winograd_min_channels() == layers.WINOGRAD_MIN_CHANNELS["ynn"]
  monkeypatch.setenv("XLA_FLAGS", "--foo " + cpu_runtime.YNN_OFF)
  assert layers.winograd_min_channels() == layers.WINOGRAD_MIN_CHANNELS["xla"]
