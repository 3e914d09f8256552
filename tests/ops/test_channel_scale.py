"""Channel gates: the tree-sum gate gradient equals plain autodiff, shared and per example."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdr import ops


@pytest.mark.parametrize("gate_shape", [(5,), (3, 5)])
def test_tree_grad_equals_plain(gate_shape):
  rng = np.random.default_rng(len(gate_shape))
  x = jnp.asarray(rng.normal(size=(3, 7, 6, 5)), jnp.float32)
  gate = jnp.asarray(rng.uniform(0.5, 1.0, gate_shape), jnp.float32)
  g = jnp.asarray(rng.normal(size=x.shape), jnp.float32)

  def loss(tree_grad):
    return lambda x, gate: jnp.sum(jnp.sin(ops.scale_channels(x, gate, tree_grad=tree_grad)) * g)

  np.testing.assert_array_equal(ops.scale_channels(x, gate, tree_grad=True), ops.scale_channels(x, gate))
  fast = jax.jit(jax.grad(loss(True), (0, 1)))(x, gate)
  plain = jax.jit(jax.grad(loss(False), (0, 1)))(x, gate)
  for a, b in zip(fast, plain):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  assert "custom_vjp" in str(jax.make_jaxpr(loss(True))(x, gate))
  assert "custom_vjp" not in str(jax.make_jaxpr(loss(False))(x, gate))
  _, jvp = jax.jvp(lambda gate: loss(False)(x, gate), (gate,), (jnp.ones_like(gate),))  # plain: forward mode
  np.testing.assert_allclose(jvp, jnp.sum(plain[1]), rtol=1e-4)


def test_nc_inputs_take_the_plain_product():
  x, gate = jnp.ones((2, 4)), jnp.arange(4.0)
  assert "custom_vjp" not in str(jax.make_jaxpr(lambda x: ops.scale_channels(x, gate, tree_grad=True))(x))
  np.testing.assert_array_equal(ops.scale_channels(x, jnp.stack([gate, -gate]))[1], -gate)
