"""Fixtures for the ops tests: every conv path against lax.conv."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest


@functools.lru_cache(maxsize=None)
def lax_conv(stride=1, padding=1):
  """``(x, w) -> lax.conv`` NHWC x HWIO with symmetric ``padding`` (one function per
  setting, so its compiled checks are shared by the tests that compare against it)."""
  return lambda x, w: jax.lax.conv_general_dilated(x, w, (stride, stride), [(padding, padding)] * 2,
                                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))


@functools.lru_cache(maxsize=None)
def _checks(conv):
  """One jitted function of (x, w): conv's values, both gradients, a lax.scan over a
  loop-invariant kernel, and per-example input gradients (vmap, as in CDRP's fit)."""
  loss = lambda x, w: jnp.sum(jnp.sin(conv(x, w)))  # noqa: E731

  def scanned(x, w):
    body = lambda c, _: (c + 0.01 * jax.grad(loss)(c, w), None)  # noqa: E731
    return jax.lax.scan(body, x, None, length=2)[0]

  per_example = lambda x, w: jax.vmap(jax.grad(lambda xi: loss(xi[None], w)))(x)  # noqa: E731
  return jax.jit(lambda x, w: (conv(x, w), jax.grad(loss, (0, 1))(x, w), scanned(x, w), per_example(x, w)))


def _matches_lax_conv(conv, lax, x, w):
  """conv(x, w) and its input and kernel gradients equal lax's, also in a lax.scan (where the
  kernel, and whatever a conv derives from it, is a loop invariant) and vmapped per example.
  Each side is one compiled call (op by op, every op would compile on its own)."""
  got, want = _checks(conv)(x, w), _checks(lax)(x, w)
  for name, a, b in zip(("values", "gradients", "scan", "vmap"), got, want):
    chex.assert_trees_all_close(a, b, rtol=1e-5, atol=1e-5, custom_message=name)


@pytest.fixture(scope="session")
def assert_matches_lax_conv():
  """``assert_matches_lax_conv(conv, lax, x, w)``: values and both gradients equal, also in a
  scan and vmapped per example."""
  return _matches_lax_conv


@pytest.fixture(name="lax_conv", scope="session")
def lax_conv_fixture():
  """``lax_conv(stride=1, padding=1) -> (x, w) -> lax.conv``."""
  return lax_conv
