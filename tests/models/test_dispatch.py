"""Row dispatch: a function runs only on the rows that are on, in the smallest capacity."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdr.models import dispatch


def test_capacities():
  assert dispatch.capacities(128, 8) == (16, 32, 48, 64, 80, 96, 112, 128)
  assert dispatch.capacities(1, 8) == (1,)
  assert dispatch.capacities(5, 4) == (2, 3, 4, 5)
  with pytest.raises(ValueError):
    dispatch.capacities(0, 2)


def test_compact_and_scatter():
  on = jnp.asarray([0, 1, 1, 0, 1], bool)
  rows, slots = dispatch.compact(on, 4)
  np.testing.assert_array_equal(rows, [1, 2, 4, 0])  # padded with row 0
  np.testing.assert_array_equal(slots, [4, 0, 1, 4, 2])
  y = jnp.asarray([[10.0], [20.0], [30.0], [99.0]])
  np.testing.assert_array_equal(dispatch.scatter_rows(y, slots), [[0.0], [10.0], [20.0], [0.0], [30.0]])
  np.testing.assert_array_equal(dispatch.branch_index(on, (2, 4, 5)), 2)
  np.testing.assert_array_equal(dispatch.branch_index(jnp.zeros(5, bool), (2, 4, 5)), 0)


def test_on_rows_runs_only_what_is_on():
  """acc + scale * the dense result where on, acc elsewhere, for every count (0 .. all); the
  function sees only as many rows as the chosen capacity (traced shapes recorded)."""
  x = jax.random.normal(jax.random.PRNGKey(0), (6, 3))
  w = jax.random.normal(jax.random.PRNGKey(1), (3, 2))
  scale = jnp.arange(6.0)[:, None]
  seen = set()

  def fn(rows, per_row, shared):
    seen.add(rows.shape[0])
    return jnp.tanh(rows @ shared) * per_row

  acc, gain = jnp.full((6, 2), 0.5), jnp.linspace(0.5, 1.0, 6)
  run = jax.jit(lambda x, on: dispatch.on_rows(fn, x, on, (2, 4, 6), acc, scale=gain, per_row=scale,
                                               shared=w))
  rng = np.random.default_rng(0)
  for count in range(7):
    on = np.zeros(6, bool)
    on[rng.permutation(6)[:count]] = True
    want = 0.5 + np.where(on[:, None], np.tanh(x @ w) * scale * gain[:, None], 0.0)
    np.testing.assert_allclose(run(x, jnp.asarray(on)), want, rtol=1e-6, atol=1e-6)
  assert seen == {2, 4, 6}
  with pytest.raises(ValueError, match="capacities"):
    dispatch.on_rows(fn, x, jnp.ones(6, bool), (2, 4), acc, per_row=scale, shared=w)
