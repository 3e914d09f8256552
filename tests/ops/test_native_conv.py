"""The opt-in native 3x3 conv kernel: equal to XLA's conv (values, gradients, scan, vmap) where
the CPU supports it (skipped with the reason elsewhere); built only by `load()`, never during
a trace; where it cannot run, models with conv_impl 'native' run the 'auto' paths and say why
once."""
import os
import platform
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdr import models, ops
from jaxdr.ops import native_conv


def _should_load() -> bool:
  """Where the kernel must build: switch on, x86-64 Linux, avx512f in /proc/cpuinfo, a compiler."""
  return (native_conv.enabled() and platform.system() == "Linux" and platform.machine() == "x86_64"
          and any(" avx512f " in f" {line} " for line in open("/proc/cpuinfo") if line.startswith("flags"))
          and shutil.which(os.environ.get("CXX", "g++")) is not None)


needs_native = pytest.mark.skipif(not native_conv.load(),
                                  reason=f"native conv unavailable: {native_conv.unavailable_reason()}")


@pytest.fixture
def fresh_state(monkeypatch):
  """A process that has not loaded the kernel yet (and has warned about nothing)."""
  monkeypatch.setattr(native_conv, "_loaded", False)
  monkeypatch.setattr(native_conv, "_failure", None)
  monkeypatch.setattr(native_conv, "_warned", set())


@pytest.fixture
def warnings_logged(monkeypatch):
  """The native conv's warnings, as a list of formatted messages."""
  logged = []
  monkeypatch.setattr(native_conv.logging, "warning", lambda msg, *args: logged.append(msg % args))
  return logged


def _normal(seed, *shape):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def test_loads_exactly_where_it_can():
  """No silent skip: on x86-64 Linux with AVX-512 and a compiler (switch on) it must load;
  elsewhere it must decline (with a reason) and not fail."""
  if _should_load():
    assert native_conv.load(), native_conv.unavailable_reason()
    assert native_conv.ready() and native_conv.unavailable_reason() is None
  else:
    assert not native_conv.load() and not native_conv.ready()
    assert native_conv.unavailable_reason()


# Output channels <= 8 take the paired-lanes path, 9-16 one 16-lane block, more a mix; widths
# above 16 pixels take several tiles with a ragged last one; odd input channels are padded.
@needs_native
@pytest.mark.parametrize("n,h,w,cin,cout", [
    (2, 5, 7, 3, 5), (1, 6, 17, 8, 8), (3, 4, 33, 5, 21), (2, 3, 3, 16, 40), (1, 1, 1, 2, 1),
    (2, 8, 8, 40, 16), (1, 2, 16, 1, 9)])
def test_equals_lax_conv(n, h, w, cin, cout, assert_matches_lax_conv, lax_conv):
  x = _normal(n * h + w, n, h, w, cin)
  k = _normal(cin * cout, 3, 3, cin, cout) / np.sqrt(9 * cin)  # unit-scale outputs, as in a network
  assert_matches_lax_conv(native_conv.conv3x3, lax_conv(1, 1), x, k)


@needs_native
def test_vmap_equals_lax_conv(lax_conv):
  """A vmapped input folds into the batch; vmapped kernels (with or without a vmapped input)
  run one call each; all equal XLA's conv, vmapped."""
  x, k = _normal(0, 3, 2, 6, 5, 7), _normal(1, 3, 3, 3, 7, 9)
  for axes in [(0, None), (0, 0), (None, 0)]:
    xs = x if axes[0] == 0 else x[0]
    ks = k if axes[1] == 0 else k[0]
    np.testing.assert_allclose(jax.jit(jax.vmap(native_conv.conv3x3, axes))(xs, ks),
                               jax.vmap(lax_conv(1, 1), axes)(xs, ks), rtol=1e-5, atol=1e-5, err_msg=str(axes))


@needs_native
def test_large_batch_splits_over_threads(lax_conv):
  """Enough images and rows for every thread to take several (image, row band) items."""
  x, k = _normal(2, 33, 9, 20, 8), _normal(3, 3, 3, 8, 8)
  np.testing.assert_allclose(jax.jit(native_conv.conv3x3)(x, k), lax_conv(1, 1)(x, k), rtol=1e-5, atol=1e-5)


def test_applicability():
  x, k = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 3))
  assert not native_conv.applies(x, k, 2, 1, 1)                                      # stride
  assert not native_conv.applies(x, jnp.ones((5, 5, 2, 3)), 1, 2, 1)                 # kernel size
  assert not native_conv.applies(x.astype(jnp.bfloat16), k.astype(jnp.bfloat16), 1, 1, 1)
  assert not native_conv.applies(x, k, 1, 1, 1)                                      # tiny map
  x = jnp.ones((native_conv.MIN_PIXELS // 64, 8, 8, 2))
  assert native_conv.applies(x, k, 1, 1, 1) == (jax.default_backend() == "cpu")


def test_tracing_builds_nothing(fresh_state, warnings_logged, monkeypatch):
  """A trace with conv_impl 'native' before `load()` neither builds nor loads the kernel: it
  runs the 'auto' paths and says (once) that load() was not called."""
  monkeypatch.setattr(native_conv, "_build", lambda *a: pytest.fail("built during a trace"))
  monkeypatch.setattr(native_conv, "_build_and_register", lambda: pytest.fail("loaded during a trace"))
  x = jnp.ones((16, 9, 9, 4))
  conv = lambda x: ops.conv2d(x, jnp.ones((3, 3, 4, 4)), stride=1, padding=1, groups=1, impl="native")  # noqa: E731
  for _ in range(2):
    assert native_conv.TARGET not in str(jax.make_jaxpr(conv)(x))
  why = native_conv.unavailable_reason() or "load() was not called"  # no AVX-512 here: that
  assert len(warnings_logged) == 1 and why in warnings_logged[0], warnings_logged


def _assert_native_model_runs_as_xla(images):
  model = models.create("resnet20", num_classes=3, image_size=8, width=0.5, conv_impl="native")
  x = images(16, size=8, channels=3)
  shapes = jax.eval_shape(lambda: models.init(model, jax.random.PRNGKey(0)))
  variables = jax.tree.map(lambda s: jnp.asarray(np.random.default_rng(0).normal(0, 0.3, s.shape), jnp.float32),
                           shapes)
  assert native_conv.TARGET not in str(jax.make_jaxpr(lambda x: models.apply(model, variables, x))(x))
  ours = jax.jit(lambda x: models.apply(model, variables, x))(x)
  want = jax.jit(lambda x: models.apply(model.clone(conv_impl="xla"), variables, x))(x)
  np.testing.assert_allclose(ours, want, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(want))))
  models.create("resnet20", num_classes=3, image_size=8, width=0.5, conv_impl="native")  # warns no more


def test_without_avx512_native_runs_as_auto_and_says_why_once(fresh_state, warnings_logged, monkeypatch,
                                                                images):
  """A CPU without AVX-512 (the flag reader monkeypatched): the model still runs, equals XLA,
  and the reason is logged once."""
  monkeypatch.setenv(native_conv.ENV_SWITCH, "1")
  monkeypatch.setattr(native_conv, "cpu_flags", lambda: ["model name : Some CPU", "flags : fpu sse2 avx2 fma"])
  monkeypatch.setattr(native_conv, "_build_and_register", lambda: pytest.fail("tried to build"))
  _assert_native_model_runs_as_xla(images)
  assert warnings_logged == ["jaxdr native conv kernel unavailable (the CPU has no AVX-512 (avx512f)): "
                             "conv_impl 'native' runs as 'auto'"]


def test_switched_off_native_runs_as_auto_and_says_why_once(fresh_state, warnings_logged, monkeypatch, images):
  monkeypatch.setenv(native_conv.ENV_SWITCH, "0")
  monkeypatch.setattr(native_conv, "_build_and_register", lambda: pytest.fail("tried to build"))
  _assert_native_model_runs_as_xla(images)
  assert len(warnings_logged) == 1 and f"({native_conv.ENV_SWITCH}=0)" in warnings_logged[0]


def test_switch_off_after_load_stops_using_it(monkeypatch):
  """The switch is read at trace time too: set to 0 after a load, the kernel is not used."""
  monkeypatch.setenv(native_conv.ENV_SWITCH, "0")
  assert not native_conv.ready() and native_conv.unavailable_reason() == f"{native_conv.ENV_SWITCH}=0"


def test_missing_compiler_is_a_clear_error(monkeypatch, tmp_path):
  monkeypatch.setenv("CXX", "no-such-compiler-jaxdr")
  with pytest.raises(RuntimeError, match="no C.. compiler .'no-such-compiler-jaxdr' not on PATH"):
    native_conv._build(str(tmp_path))


def test_missing_compiler_is_a_reason_not_a_failure(fresh_state, warnings_logged, monkeypatch):
  monkeypatch.setenv(native_conv.ENV_SWITCH, "1")
  monkeypatch.setenv("CXX", "no-such-compiler-jaxdr")
  monkeypatch.setattr(native_conv, "has_avx512", lambda: True)
  monkeypatch.setattr(native_conv.platform, "system", lambda: "Linux")
  monkeypatch.setattr(native_conv.platform, "machine", lambda: "x86_64")
  assert not native_conv.load() and not native_conv.load()
  assert len(warnings_logged) == 1 and "no C++ compiler" in warnings_logged[0]


def test_compile_error_is_a_clear_error(monkeypatch, tmp_path):
  """A failing compile names the compiler and leaves no partial library in the cache."""
  bad = tmp_path / "bad.cc"
  bad.write_text("this is not C++\n")
  monkeypatch.setattr(native_conv, "SOURCE", str(bad))
  if not shutil.which(native_conv.compiler()):
    pytest.skip("no compiler")
  with pytest.raises(RuntimeError, match="failed: "):
    native_conv._build(str(tmp_path / "cache"))
  assert not list((tmp_path / "cache").glob("*.so"))
