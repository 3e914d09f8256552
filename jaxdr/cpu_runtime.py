"""Process-level CPU settings that must be made before JAX starts: the memory allocator and
whether XLA hands convolutions to YNNPACK.

Allocator. XLA's CPU runtime allocates each call's output and temporary buffers afresh. glibc
serves blocks above its mmap threshold (32 MiB at most) with fresh mmaps and unmaps them on
free, so every call page-faults and zeroes its activation memory again. tcmalloc keeps freed
memory for reuse: measured here (2-core CPU), the quickstart trains at ~3400 instead of ~2550
img/s, and a ResNet-56 forward at batch 128 is ~20% faster. The library must be preloaded
before the process starts, so `ensure_allocator` re-executes the current command with
``LD_PRELOAD`` set. Debian/Ubuntu: ``apt-get install -y libtcmalloc-minimal4``.

YNNPACK. By default XLA's CPU compiler wraps many convolutions in YNNPACK fusions. With them
off (`set_ynn(False)`), XLA's own convolutions run wide layers much faster here (64 channels on
32x32 maps at batch 128: 30 vs 49 ms; the CDRP fit of a full VGG-16: +15%), but narrow
networks slower (the quickstart's 1/8-width VGG trains ~9% slower). XLA has no per-op switch,
hence a process-wide one.

Both apply only when JAX will run on CPU (`runs_on_cpu`, decided before JAX starts, without
importing it): elsewhere (TPU, GPU) `ensure_allocator` and `set_ynn` do nothing.
"""
from __future__ import annotations

import glob
import importlib.metadata
import importlib.util
import os
import pkgutil
import platform
import subprocess
import sys
from typing import Tuple

# 'auto': tcmalloc when installed, else the system allocator; 'tcmalloc': required.
ALLOCATORS = ("auto", "tcmalloc", "system")
YNN_OFF = "--xla_cpu_experimental_ynn_fusion_type="  # an empty list: no YNNPACK fusions
# JAX_PLATFORMS entries that mean an accelerator, and the packages that bring one to JAX
# (plus any `jax_plugins` namespace module or entry point, and any jax_rocm*_plugin).
ACCELERATOR_PLATFORMS = ("tpu", "cuda", "gpu", "rocm")
ACCELERATOR_PACKAGES = ("libtpu", "jax_cuda12_plugin", "jax_cuda13_plugin")
_PATTERNS = ("/usr/lib/*-linux-gnu/libtcmalloc_minimal.so.4", "/usr/lib/*-linux-gnu/libtcmalloc.so.4",
             "/usr/lib64/libtcmalloc_minimal.so.4", "/usr/lib/libtcmalloc_minimal.so.4")


def _accelerator_plugins() -> list:
  """Installed packages that give JAX an accelerator backend (import specs only: nothing is
  imported)."""
  found = [name for name in ACCELERATOR_PACKAGES if importlib.util.find_spec(name) is not None]
  found += sorted(m.name for m in pkgutil.iter_modules()
                  if m.name.startswith("jax_rocm") and m.name.endswith("_plugin"))
  spec = importlib.util.find_spec("jax_plugins")
  if spec is not None and spec.submodule_search_locations:
    found += sorted(f"jax_plugins.{m.name}" for m in pkgutil.iter_modules(spec.submodule_search_locations))
  try:
    found += sorted(f"entry point {ep.name}" for ep in importlib.metadata.entry_points(group="jax_plugins"))
  except Exception:  # pylint: disable=broad-except  (broken metadata must not stop a run)
    pass
  return found


def platform_decision() -> Tuple[bool, str]:
  """(JAX will run on CPU, why), decided before JAX starts and without importing it: the
  first entry of ``JAX_PLATFORMS`` when set ('cpu' -> CPU; 'tpu', 'cuda', 'gpu', 'rocm' or
  anything else -> not), else CPU exactly when no accelerator plugin is installed."""
  platforms = os.environ.get("JAX_PLATFORMS", "").strip()
  if platforms:
    first = platforms.split(",")[0].strip().lower()
    return first == "cpu", f"JAX_PLATFORMS={platforms}"
  plugins = _accelerator_plugins()
  if plugins:
    return False, f"accelerator plugin installed: {', '.join(plugins)}"
  return True, "no accelerator plugin installed"


def runs_on_cpu() -> bool:
  """Whether JAX will run on CPU in this process (`platform_decision`)."""
  return platform_decision()[0]


def find_tcmalloc() -> str | None:
  """Path of an installed tcmalloc shared library, or None."""
  for pattern in _PATTERNS:
    found = sorted(glob.glob(pattern))
    if found:
      return found[0]
  return None


def ensure_allocator(choice: str) -> None:
  """Re-executes the current command (``sys.orig_argv``) with tcmalloc preloaded, unless
  ``choice`` is 'system', it already is preloaded, ('auto') it is not installed, or JAX will
  not run on CPU (`runs_on_cpu`). Exits with one line for a bad choice, or for 'tcmalloc'
  when the library is missing. Call it first thing, before work that a restart would repeat."""
  if choice not in ALLOCATORS:
    sys.exit(f"--allocator must be one of {ALLOCATORS}, got {choice!r}")
  if not runs_on_cpu():
    return
  if choice == "system" or "tcmalloc" in os.environ.get("LD_PRELOAD", ""):
    return
  path = find_tcmalloc()
  if path is None:
    if choice == "auto":
      return
    sys.exit("tcmalloc not found (apt-get install -y libtcmalloc-minimal4); use --allocator=system")
  env = dict(os.environ, LD_PRELOAD=":".join(p for p in (path, os.environ.get("LD_PRELOAD")) if p))
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable] + sys.orig_argv[1:], env)


def set_ynn(enabled: bool) -> None:
  """Lets XLA's CPU compiler use YNNPACK fusions (its default) or not, through ``XLA_FLAGS``;
  nothing when JAX will not run on CPU (`runs_on_cpu`). Raises if JAX's backends already
  started (the flags are read once)."""
  if not runs_on_cpu():
    return
  if "jax" in sys.modules:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
    if xla_bridge.backends_are_initialized() and ynn_enabled() != enabled:
      raise RuntimeError("set_ynn must be called before JAX starts (XLA_FLAGS is read once)")
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if f != YNN_OFF]
  os.environ["XLA_FLAGS"] = " ".join(flags + ([] if enabled else [YNN_OFF]))


def ynn_enabled() -> bool:
  return YNN_OFF not in os.environ.get("XLA_FLAGS", "").split()


def _command_output(args) -> str:
  """stdout of a small system command, '' when it is missing or fails."""
  try:
    return subprocess.run(args, capture_output=True, text=True, timeout=5, check=True).stdout
  except (OSError, subprocess.SubprocessError):
    return ""


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
  """The CPU, for result headers. x86: /proc/cpuinfo's model name, family and model, and whether
  it has AVX-512 (e.g. 'AMD EPYC (family 25, model 17), AVX-512'). Where cpuinfo has no model
  name (Linux on ARM: `lscpu` names the core from its part number, e.g. 'Neoverse-N1 (aarch64)';
  macOS: sysctl's brand string, e.g. 'Apple M2 (arm64)'); else the platform's name."""
  info = {}
  try:
    with open(cpuinfo) as f:
      for line in f:
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
  except OSError:
    pass
  if "model name" in info:
    avx512 = "AVX-512" if "avx512f" in info.get("flags", "").split() else "no AVX-512"
    return f"{info['model name']} (family {info.get('cpu family', '?')}, model {info.get('model', '?')}), {avx512}"
  if platform.system() == "Darwin":
    name = _command_output(["sysctl", "-n", "machdep.cpu.brand_string"]).strip()
  else:
    name = next((line.partition(":")[2].strip() for line in _command_output(["lscpu"]).splitlines()
                 if line.startswith("Model name:")), "")
  if name:
    return f"{name} ({platform.machine()})"
  return platform.processor() or platform.machine()


def describe() -> str:
  """The settings this process runs with, for logs and result headers."""
  preload = os.environ.get("LD_PRELOAD", "")
  alloc = f"tcmalloc (LD_PRELOAD={preload})" if "tcmalloc" in preload else "glibc malloc"
  on_cpu, why = platform_decision()
  if not on_cpu:
    return f"{alloc}; JAX not on CPU ({why}): no CPU tuning"
  return f"{alloc}, XLA CPU YNNPACK fusions {'on' if ynn_enabled() else 'off'}; JAX on CPU ({why})"
