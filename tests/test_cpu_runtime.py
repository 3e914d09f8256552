"""jaxdr/cpu_runtime.py: a bad allocator choice exits with one line; 'tcmalloc' restarts the
command with the library really mapped; 'system' leaves the process alone; `set_ynn(False)`
really keeps convolutions out of YNNPACK; `python -m jaxdr.main` runs on tcmalloc by default;
all of it only when JAX will run on CPU, decided without importing JAX."""
import importlib.util
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
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_tcmalloc = pytest.mark.skipif(cpu_runtime.find_tcmalloc() is None,
                                    reason="libtcmalloc-minimal4 not installed")


def _env(**changes):
  env = dict(os.environ, **changes)
  return {k: v for k, v in env.items() if v is not None}


def _probe(tmp_path, allocator, ynn="on"):
  script = tmp_path / "probe.py"
  script.write_text(_PROBE)
  proc = subprocess.run([sys.executable, "-u", str(script), allocator, ynn], capture_output=True,
                        text=True, env=_env(LD_PRELOAD=None, XLA_FLAGS=None, JAX_PLATFORMS="cpu",
                                            PYTHONPATH=REPO))  # this checkout's jaxdr
  assert proc.returncode == 0, proc.stderr
  return [part.strip() for part in proc.stdout.split("|")]


def test_unknown_allocator_exits_with_one_line():
  with pytest.raises(SystemExit, match=r"--allocator must be one of \('auto', 'tcmalloc', 'system'\), got 'jemalloc'"):
    cpu_runtime.ensure_allocator("jemalloc")


def test_system_allocator_and_ynn_switch(tmp_path):
  on_cpu = "JAX on CPU (JAX_PLATFORMS=cpu)"
  assert _probe(tmp_path, "system", "on") == ["NOT LOADED", "YNN", f"glibc malloc, XLA CPU YNNPACK fusions on; {on_cpu}"]
  assert _probe(tmp_path, "system", "off") == ["NOT LOADED", "NO YNN",
                                               f"glibc malloc, XLA CPU YNNPACK fusions off; {on_cpu}"]


def test_set_ynn_edits_xla_flags_once(monkeypatch):
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
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
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
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
  assert proc.returncode == 2, proc.stderr  # a user error: one line, exit 2
  assert "cpu runtime: tcmalloc (LD_PRELOAD=" in proc.stderr and "YNNPACK fusions off" in proc.stderr


def _no_plugins(monkeypatch, installed=()):
  """find_spec sees only ``installed`` of the accelerator packages; no jax_plugins anywhere."""
  real = importlib.util.find_spec
  monkeypatch.setattr(cpu_runtime.importlib.util, "find_spec",
                      lambda name, *a: (real("os") if name in installed else None)
                      if name in cpu_runtime.ACCELERATOR_PACKAGES or name == "jax_plugins" else real(name, *a))
  monkeypatch.setattr(cpu_runtime.pkgutil, "iter_modules", lambda *a: iter(()))
  monkeypatch.setattr(cpu_runtime.importlib.metadata, "entry_points", lambda **kw: [])


@pytest.mark.parametrize("platforms,on_cpu", [("cpu", True), ("cpu,tpu", True), ("tpu", False), ("cuda", False),
                                              ("gpu,cpu", False), ("rocm", False), (" CPU ", True)])
def test_jax_platforms_decides(monkeypatch, platforms, on_cpu):
  monkeypatch.setenv("JAX_PLATFORMS", platforms)
  _no_plugins(monkeypatch, installed=("libtpu",))  # JAX_PLATFORMS wins over what is installed
  assert cpu_runtime.runs_on_cpu() == on_cpu
  assert cpu_runtime.platform_decision()[1] == f"JAX_PLATFORMS={platforms.strip()}"


@pytest.mark.parametrize("installed", [(), ("libtpu",), ("jax_cuda12_plugin",), ("jax_cuda13_plugin",)])
def test_installed_accelerator_plugins_decide(monkeypatch, installed):
  monkeypatch.delenv("JAX_PLATFORMS", raising=False)
  _no_plugins(monkeypatch, installed)
  on_cpu, why = cpu_runtime.platform_decision()
  assert on_cpu == (not installed)
  assert why == (f"accelerator plugin installed: {installed[0]}" if installed else "no accelerator plugin installed")


def test_rocm_and_jax_plugins_entry_points_are_accelerators(monkeypatch):
  monkeypatch.delenv("JAX_PLATFORMS", raising=False)
  _no_plugins(monkeypatch)
  module = type("Module", (), {"name": "jax_rocm7_plugin"})
  monkeypatch.setattr(cpu_runtime.pkgutil, "iter_modules", lambda *a: iter([module]))
  assert cpu_runtime.platform_decision() == (False, "accelerator plugin installed: jax_rocm7_plugin")
  _no_plugins(monkeypatch)
  entry_point = type("EntryPoint", (), {"name": "metal"})
  monkeypatch.setattr(cpu_runtime.importlib.metadata, "entry_points", lambda **kw: [entry_point])
  assert cpu_runtime.platform_decision() == (False, "accelerator plugin installed: entry point metal")


def test_no_cpu_tuning_off_cpu(monkeypatch):
  """On TPU / GPU: no tcmalloc restart (even when insisted on), XLA_FLAGS untouched, and
  describe() says why."""
  monkeypatch.setenv("JAX_PLATFORMS", "tpu")
  monkeypatch.setenv("XLA_FLAGS", "--foo")
  monkeypatch.delenv("LD_PRELOAD", raising=False)
  monkeypatch.setattr(cpu_runtime, "find_tcmalloc", lambda: pytest.fail("looked for tcmalloc"))
  monkeypatch.setattr(cpu_runtime.os, "execve", lambda *a: pytest.fail("restarted"))
  for choice in cpu_runtime.ALLOCATORS:
    cpu_runtime.ensure_allocator(choice)
  cpu_runtime.set_ynn(False)
  assert os.environ["XLA_FLAGS"] == "--foo"
  assert cpu_runtime.describe() == "glibc malloc; JAX not on CPU (JAX_PLATFORMS=tpu): no CPU tuning"
  with pytest.raises(SystemExit, match="--allocator must be one of"):  # still a usage error
    cpu_runtime.ensure_allocator("jemalloc")


def test_deciding_imports_no_jax():
  code = ("import sys; from jaxdr import cpu_runtime; cpu_runtime.describe(); cpu_runtime.runs_on_cpu(); "
          "print('jax' in sys.modules)")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        cwd=REPO)
  assert proc.stdout.strip() == "False", proc.stderr


def test_cpu_model_names_the_cpu():
  model = cpu_runtime.cpu_model()
  assert model and ("AVX-512" in model or not os.path.exists("/proc/cpuinfo"))


def test_cpu_model_without_a_model_name_asks_lscpu(tmp_path, monkeypatch):
  """Linux on ARM: /proc/cpuinfo has no 'model name'; lscpu names the core."""
  cpuinfo = tmp_path / "cpuinfo"
  cpuinfo.write_text("processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n")
  monkeypatch.setattr(cpu_runtime.platform, "system", lambda: "Linux")
  monkeypatch.setattr(cpu_runtime.platform, "machine", lambda: "aarch64")
  monkeypatch.setattr(cpu_runtime, "_command_output",
                      lambda args: "Architecture: aarch64\nModel name: Neoverse-N1\n" if args == ["lscpu"] else "")
  assert cpu_runtime.cpu_model(str(cpuinfo)) == "Neoverse-N1 (aarch64)"
  monkeypatch.setattr(cpu_runtime, "_command_output", lambda args: "")  # no lscpu
  monkeypatch.setattr(cpu_runtime.platform, "processor", lambda: "")
  assert cpu_runtime.cpu_model(str(cpuinfo)) == "aarch64"


def test_cpu_model_on_macos_reads_the_brand_string(tmp_path, monkeypatch):
  monkeypatch.setattr(cpu_runtime.platform, "system", lambda: "Darwin")
  monkeypatch.setattr(cpu_runtime.platform, "machine", lambda: "arm64")
  monkeypatch.setattr(cpu_runtime, "_command_output", lambda args: "Apple M2\n"
                      if args == ["sysctl", "-n", "machdep.cpu.brand_string"] else "")
  assert cpu_runtime.cpu_model(str(tmp_path / "missing")) == "Apple M2 (arm64)"
