"""Tree sums equal jnp.sum, on the shapes gate gradients reduce (odd sizes included)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdr.ops import reductions


@pytest.mark.parametrize("shape,axes", [
    ((4, 8, 8, 3), (1, 2)),       # per-example gate: NHWC -> NC
    ((3, 7, 5, 2), (0, 1, 2)),    # shared gate, odd sizes: NHWC -> C
    ((2, 6, 4), (1,)),
    ((5, 3), (0,)),
    ((2, 1, 1, 4), (1, 2)),       # 1x1 maps: nothing to halve
    ((2, 3), ()),
    ((3, 9, 9, 2), (-3, -2)),     # negative axes
])
def test_tree_sum_equals_jnp_sum(shape, axes):
  x = jnp.asarray(np.random.default_rng(sum(shape)).normal(size=shape), jnp.float32)
  want = jnp.sum(x, axis=axes)
  got = jax.jit(lambda v: reductions.tree_sum(v, axes))(x)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_tree_sum_is_elementwise_adds_only():
  """The sum is slices and adds: no XLA reduce (what makes it fast on CPU)."""
  x = jnp.ones((2, 8, 8, 3))
  jaxpr = str(jax.make_jaxpr(lambda v: reductions.tree_sum(v, (1, 2)))(x))
  assert "reduce_sum" not in jaxpr and "add" in jaxpr
