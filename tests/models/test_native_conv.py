"""The native 3x3 conv kernel: equal to XLA's conv (values, gradients, vmap), and built or
declined cleanly. Needs a C++ compiler and AVX-512; CI has both, and there it must build."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdr.models import native_conv

needs_native = pytest.mark.skipif(not native_conv.available(),
                                  reason=f"native conv unavailable: {native_conv.unavailable_reason()}")


def _lax(x, w):
  return jax.lax.conv_general_dilated(x, w, (1, 1), [(1, 1)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _normal(seed, *shape):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def test_builds_on_ci():
  """The suite must not silently skip the kernel where it is meant to run."""
  if not os.environ.get("CI"):
    pytest.skip("only required on CI")
  assert native_conv.available(), native_conv.unavailable_reason()


# Output channels <= 8 take the paired-lanes path, 9-16 one 16-lane block, more a mix; widths
# above 16 pixels take several tiles with a ragged last one; odd input channels are padded.
@needs_native
@pytest.mark.parametrize("n,h,w,cin,cout", [
    (2, 5, 7, 3, 5), (1, 6, 17, 8, 8), (3, 4, 33, 5, 21), (2, 3, 3, 16, 40), (1, 1, 1, 2, 1),
    (2, 8, 8, 40, 16), (1, 2, 16, 1, 9)])
def test_equals_lax_conv(n, h, w, cin, cout, assert_matches_lax_conv):
  x = _normal(n * h + w, n, h, w, cin)
  k = _normal(cin * cout, 3, 3, cin, cout) / np.sqrt(9 * cin)  # unit-scale outputs, as in a network
  assert_matches_lax_conv(native_conv.conv3x3, _lax, x, k)


@needs_native
def test_vmap_equals_lax_conv():
  """A vmapped input folds into the batch; vmapped kernels (with or without a vmapped input)
  run one call each; all equal XLA's conv, vmapped."""
  x, k = _normal(0, 3, 2, 6, 5, 7), _normal(1, 3, 3, 3, 7, 9)
  for axes in [(0, None), (0, 0), (None, 0)]:
    xs = x if axes[0] == 0 else x[0]
    ks = k if axes[1] == 0 else k[0]
    np.testing.assert_allclose(jax.jit(jax.vmap(native_conv.conv3x3, axes))(xs, ks),
                               jax.vmap(_lax, axes)(xs, ks), rtol=1e-5, atol=1e-5, err_msg=str(axes))
  per_example = jax.vmap(jax.grad(lambda x: jnp.sum(jnp.sin(native_conv.conv3x3(x, k[0])))))(x)
  want = jax.vmap(jax.grad(lambda x: jnp.sum(jnp.sin(_lax(x, k[0])))))(x)
  np.testing.assert_allclose(per_example, want, rtol=1e-5, atol=1e-5)


@needs_native
def test_large_batch_splits_over_threads():
  """Enough images and rows for every thread to take several (image, row band) items."""
  x, k = _normal(2, 33, 9, 20, 8), _normal(3, 3, 3, 8, 8)
  np.testing.assert_allclose(jax.jit(native_conv.conv3x3)(x, k), _lax(x, k), rtol=1e-5, atol=1e-5)


def test_switch_and_applicability(monkeypatch):
  x, k = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 3))
  assert not native_conv.applies(x, k, 2, 1, 1)                                      # stride
  assert not native_conv.applies(x, jnp.ones((5, 5, 2, 3)), 1, 2, 1)                 # kernel size
  assert not native_conv.applies(x.astype(jnp.bfloat16), k.astype(jnp.bfloat16), 1, 1, 1)
  assert not native_conv.applies(x, k, 1, 1, 1)                                      # tiny map
  x = jnp.ones((native_conv.MIN_PIXELS // 64, 8, 8, 2))
  assert native_conv.applies(x, k, 1, 1, 1) == native_conv.available()
  monkeypatch.setenv(native_conv.ENV_SWITCH, "0")
  assert not native_conv.available() and not native_conv.applies(x, k, 1, 1, 1)
  assert native_conv.unavailable_reason() == f"{native_conv.ENV_SWITCH}=0"


def test_missing_compiler_is_a_clear_error(monkeypatch, tmp_path):
  monkeypatch.setenv("CXX", "no-such-compiler-jaxdr")
  with pytest.raises(RuntimeError, match="no C.. compiler .'no-such-compiler-jaxdr' not on PATH"):
    native_conv._build(str(tmp_path))


def test_compile_error_is_a_clear_error(monkeypatch, tmp_path):
  """A failing compile names the compiler and leaves no partial library in the cache."""
  bad = tmp_path / "bad.cc"
  bad.write_text("this is not C++\n")
  monkeypatch.setattr(native_conv, "SOURCE", str(bad))
  if not native_conv.shutil.which(os.environ.get("CXX", "g++")):
    pytest.skip("no compiler")
  with pytest.raises(RuntimeError, match="failed: "):
    native_conv._build(str(tmp_path / "cache"))
  assert not list((tmp_path / "cache").glob("*.so"))
