"""Layer units: gate placement and gradients, flatten order, widths."""

import jax
import jax.numpy as jnp
import numpy as np
import chex
import flax.linen as nn
import pytest

from jaxdr.models import layers


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


@pytest.mark.parametrize("impl", ["auto", "native", "xla", "im2col"])
@pytest.mark.parametrize("lead", [(), (2,)])
def test_units_pick_the_tree_sum_gate_gradient_on_cpu_fast_paths(impl, lead):
  """'auto' / 'native' units take gate gradients as tree sums on CPU (a custom VJP), the
  others plain autodiff (forward mode too); shared [C] and per-example [B, C] gates get the
  same gradients either way. A conv unit and a stream Gate, as in a residual block."""
  class Block(nn.Module):
    conv_impl: str

    @nn.compact
    def __call__(self, x, mask):
      y = layers.ConvUnit(4, use_bn=False, conv_impl=self.conv_impl, name="conv")(x, mask)
      return layers.Gate(conv_impl=self.conv_impl, name="out")(y + x, mask)

  rng = np.random.default_rng(len(lead))
  x = jnp.asarray(rng.normal(size=(2, 6, 6, 4)), jnp.float32)
  gates = {k: jnp.asarray(rng.uniform(0.5, 1.0, lead + (4,)), jnp.float32) for k in ("conv", "out")}
  variables = Block("xla").init(jax.random.PRNGKey(0), x, gates)

  def loss(impl):
    return lambda g: jnp.sum(jnp.sin(Block(impl).apply(variables, x, g)))

  got, want = jax.jit(jax.grad(loss(impl)))(gates), jax.jit(jax.grad(loss("xla")))(gates)
  chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-5)
  tree_grad = impl in ("auto", "native") and jax.default_backend() == "cpu"
  # 'auto' / 'native': the conv's custom VJP and one per gate; 'xla' / 'im2col': none.
  assert str(jax.make_jaxpr(loss(impl))(gates)).count("custom_vjp") == (3 if tree_grad else 0)
  if not tree_grad:
    tangent = jax.tree.map(jnp.ones_like, gates)
    _, jvp = jax.jvp(loss(impl), (gates,), (tangent,))
    np.testing.assert_allclose(jvp, sum(jnp.sum(want[k]) for k in gates), rtol=1e-4)
