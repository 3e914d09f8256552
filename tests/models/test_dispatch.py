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


def test_on_patterns_runs_the_functions_that_are_on():
  """Every on/off pattern of 3 functions: the branch that runs traced exactly the functions that
  are on (recorded per branch), and its value is their sum; more than MAX_PATTERN_BITS is refused."""
  x = jnp.linspace(-1.0, 1.0, 5)
  funcs = (jnp.sin, jnp.tanh, jnp.exp)
  traced = []

  def fn(subset, x):
    traced.append(subset)
    return sum((funcs[n](x) for n in subset), jnp.zeros_like(x))

  run = jax.jit(lambda on, x: dispatch.on_patterns(fn, on, x))
  for k in range(8):
    on = np.array([k >> n & 1 for n in range(3)], bool)
    np.testing.assert_array_equal(dispatch.pattern_index(jnp.asarray(on)), k)
    want = sum((funcs[n](x) for n in range(3) if on[n]), jnp.zeros_like(x))
    np.testing.assert_allclose(run(jnp.asarray(on), x), want, rtol=1e-6)
  assert sorted(traced) == sorted(tuple(n for n in range(3) if k >> n & 1) for k in range(8))
  with pytest.raises(ValueError, match="N <= 8"):
    dispatch.on_patterns(fn, jnp.ones(dispatch.MAX_PATTERN_BITS + 1, bool), x)
  with pytest.raises(ValueError, match="must be"):
    dispatch.on_patterns(fn, jnp.asarray(True), x)
