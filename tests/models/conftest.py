"""Fixtures for the model tests."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest


def _matches_lax_conv(conv, lax, x, w):
  """conv(x, w) and its input and kernel gradients equal lax's, also in a lax.scan (where the
  kernel, and whatever a conv derives from it, is a loop invariant)."""
  def loss(conv):
    return lambda x, w: jnp.sum(jnp.sin(conv(x, w)))
  np.testing.assert_allclose(conv(x, w), lax(x, w), rtol=1e-5, atol=1e-5)
  chex.assert_trees_all_close(jax.grad(loss(conv), (0, 1))(x, w), jax.grad(loss(lax), (0, 1))(x, w),
                              rtol=1e-5, atol=1e-5)
  def scanned(conv):
    body = lambda c, _: (c + 0.01 * jax.grad(loss(conv))(c, w), None)  # noqa: E731
    return jax.jit(lambda x: jax.lax.scan(body, x, None, length=2)[0])(x)
  np.testing.assert_allclose(scanned(conv), scanned(lax), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="session")
def assert_matches_lax_conv():
  """``assert_matches_lax_conv(conv, lax, x, w)``: values and both gradients equal, also in a scan."""
  return _matches_lax_conv
