"""Tiled max pooling equals flax's, values and gradients (ties go to the first maximum)."""
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdr import ops


@pytest.mark.parametrize("shape,window,padding", [((3, 8, 8, 5), 2, "SAME"), ((2, 12, 6, 3), 3, "VALID"),
                                                  ((2, 7, 7, 4), 2, "SAME")])
def test_max_pool_equals_flax_values_and_gradients(shape, window, padding):
  # Rounded values and a ReLU make many tied windows: the gradient must go to the first
  # maximum of each window, as reduce-window's select-and-scatter gradient does.
  rng = np.random.default_rng(window)
  x = jnp.asarray(np.maximum(np.round(rng.standard_normal(shape, np.float32) * 2) / 2, 0))
  g = jnp.asarray(rng.standard_normal(jax.eval_shape(lambda x: ops.max_pool(x, window, window, padding), x).shape,
                                      np.float32))
  ref = lambda x: nn.max_pool(x, (window, window), strides=(window, window), padding=padding)
  ours = lambda x: ops.max_pool(x, window, window, padding)
  chex.assert_trees_all_equal(jax.jit(ours)(x), jax.jit(ref)(x))
  grad_ours = jax.jit(jax.grad(lambda x: jnp.sum(ours(x) * g)))(x)
  grad_ref = jax.jit(jax.grad(lambda x: jnp.sum(ref(x) * g)))(x)
  chex.assert_trees_all_equal(grad_ours, grad_ref)
  assert int(jnp.sum(grad_ours != 0)) <= g.size  # one position per window, not split over ties
