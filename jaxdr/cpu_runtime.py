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
"""
from __future__ import annotations

import glob
import os
import sys

# 'auto': tcmalloc when installed, else the system allocator; 'tcmalloc': required.
ALLOCATORS = ("auto", "tcmalloc", "system")
YNN_OFF = "--xla_cpu_experimental_ynn_fusion_type="  # an empty list: no YNNPACK fusions
_PATTERNS = ("/usr/lib/*-linux-gnu/libtcmalloc_minimal.so.4", "/usr/lib/*-linux-gnu/libtcmalloc.so.4",
             "/usr/lib64/libtcmalloc_minimal.so.4", "/usr/lib/libtcmalloc_minimal.so.4")


def find_tcmalloc() -> str | None:
  """Path of an installed tcmalloc shared library, or None."""
  for pattern in _PATTERNS:
    found = sorted(glob.glob(pattern))
    if found:
      return found[0]
  return None


def ensure_allocator(choice: str) -> None:
  """Re-executes the current command (``sys.orig_argv``) with tcmalloc preloaded, unless
  ``choice`` is 'system', it already is preloaded, or ('auto') it is not installed. Exits
  with one line for a bad choice, or for 'tcmalloc' when the library is missing. Call it
  first thing, before work that a restart would repeat."""
  if choice not in ALLOCATORS:
    sys.exit(f"--allocator must be one of {ALLOCATORS}, got {choice!r}")
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
  """Lets XLA's CPU compiler use YNNPACK fusions (its default) or not, through ``XLA_FLAGS``.
  Raises if JAX's backends already started (the flags are read once)."""
  if "jax" in sys.modules:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
    if xla_bridge.backends_are_initialized() and ynn_enabled() != enabled:
      raise RuntimeError("set_ynn must be called before JAX starts (XLA_FLAGS is read once)")
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if f != YNN_OFF]
  os.environ["XLA_FLAGS"] = " ".join(flags + ([] if enabled else [YNN_OFF]))


def ynn_enabled() -> bool:
  return YNN_OFF not in os.environ.get("XLA_FLAGS", "").split()


def describe() -> str:
  """The settings this process runs with, for logs and result headers."""
  preload = os.environ.get("LD_PRELOAD", "")
  alloc = f"tcmalloc (LD_PRELOAD={preload})" if "tcmalloc" in preload else "glibc malloc"
  return f"{alloc}, XLA CPU YNNPACK fusions {'on' if ynn_enabled() else 'off'}"
