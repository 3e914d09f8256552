"""jaxdr/cpu_runtime.py: a bad allocator choice exits with one line; 'tcmalloc' restarts the
command with the library really mapped; 'system' leaves the process alone; `set_ynn(False)`
really keeps convolutions out of YNNPACK; `python -m jaxdr.main` runs on tcmalloc by default."""
import os
import subprocess
import sys

import pytest

from jaxdr import cpu_runtime

_PROBE = """
import sys
from jaxdr import cpu_runtime
cpu_runtime.ensure_allocator(sys.argv[1])
cpu_runtime.set_ynn(sys.argv[2] == 'on')
import jax, jax.numpy as jnp
conv = lambda x, k: jax.nn.relu(jax.lax.conv_general_dilated(
    x, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')))
hlo = jax.jit(conv).lower(jnp.ones((8, 32, 32, 64)), jnp.ones((3, 3, 64, 64))).compile().as_text()
maps = open('/proc/self/maps').read()
print('LOADED' if 'tcmalloc' in maps else 'NOT LOADED', '|', 'YNN' if '__ynn_fusion' in hlo else 'NO YNN',
      '|', cpu_runtime.describe())
"""
needs_tcmalloc = pytest.mark.skipif(cpu_runtime.find_tcmalloc() is None,
                                    reason="libtcmalloc-minimal4 not installed")


def _env(**changes):
  env = dict(os.environ, **changes)
  return {k: v for k, v in env.items() if v is not None}


def _probe(tmp_path, allocator, ynn="on"):
  script = tmp_path / "probe.py"
  script.write_text(_PROBE)
  proc = subprocess.run([sys.executable, "-u", str(script), allocator, ynn], capture_output=True,
                        text=True, env=_env(LD_PRELOAD=None, XLA_FLAGS=None))
  assert proc.returncode == 0, proc.stderr
  return [part.strip() for part in proc.stdout.split("|")]


def test_unknown_allocator_exits_with_one_line():
  with pytest.raises(SystemExit, match=r"--allocator must be one of \('auto', 'tcmalloc', 'system'\), got 'jemalloc'"):
    cpu_runtime.ensure_allocator("jemalloc")


def test_system_allocator_and_ynn_switch(tmp_path):
  assert _probe(tmp_path, "system", "on") == ["NOT LOADED", "YNN", "glibc malloc, XLA CPU YNNPACK fusions on"]
  assert _probe(tmp_path, "system", "off") == ["NOT LOADED", "NO YNN", "glibc malloc, XLA CPU YNNPACK fusions off"]


def test_set_ynn_edits_xla_flags_once(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
  import jax  # noqa: F401  (started in this test process: only a no-op change is allowed)
  from jax._src import xla_bridge
  if xla_bridge.backends_are_initialized():
    with pytest.raises(RuntimeError, match="before JAX starts"):
      cpu_runtime.set_ynn(False)
    return
  cpu_runtime.set_ynn(False)
  cpu_runtime.set_ynn(False)
  assert os.environ["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 {cpu_runtime.YNN_OFF}"
  cpu_runtime.set_ynn(True)
  assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"


@needs_tcmalloc
@pytest.mark.parametrize("choice", ["tcmalloc", "auto"])
def test_restarts_with_tcmalloc_mapped(tmp_path, choice):
  loaded, _, described = _probe(tmp_path, choice)
  assert loaded == "LOADED" and described.startswith(f"tcmalloc (LD_PRELOAD={cpu_runtime.find_tcmalloc()}")


def test_missing_tcmalloc(monkeypatch):
  monkeypatch.setattr(cpu_runtime, "find_tcmalloc", lambda: None)
  monkeypatch.delenv("LD_PRELOAD", raising=False)
  cpu_runtime.ensure_allocator("auto")  # falls back to the system allocator
  with pytest.raises(SystemExit, match="tcmalloc not found .*--allocator=system"):
    cpu_runtime.ensure_allocator("tcmalloc")


@needs_tcmalloc
def test_main_runs_on_tcmalloc_by_default(tmp_path):
  """The entry point restarts itself before any work; a bad --allocator is a usage error."""
  base = [sys.executable, "-m", "jaxdr.main", "--config=configs/quickstart.py", f"--workdir={tmp_path}"]
  repo = os.path.join(os.path.dirname(__file__), "..")
  env = _env(LD_PRELOAD=None, XLA_FLAGS=None)
  bad = subprocess.run(base + ["--allocator=jemalloc"], cwd=repo, capture_output=True, text=True, env=env)
  assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--allocator" in bad.stderr
  # An unknown method fails after the restart, so the log shows what the process ran with.
  proc = subprocess.run(base + ["--config.method=nonexistent", "--noxla_cpu_ynn"], cwd=repo,
                        capture_output=True, text=True, env=env)
  assert proc.returncode == 1, proc.stderr
  assert "cpu runtime: tcmalloc (LD_PRELOAD=" in proc.stderr and "YNNPACK fusions off" in proc.stderr
