"""Run a benchmark under tcmalloc, so timings measure compute rather than page faults.

XLA's CPU runtime allocates every call's output and temporary buffers afresh. glibc malloc
serves blocks above its mmap threshold (32 MiB at most) with fresh mmaps and unmaps them on
free, so each call page-faults and zeroes its activation memory again: one 3x3 conv,
64 channels on 32x32 maps at batch 128 (a 32 MiB output), takes ~94 ms with glibc and
~59 ms with tcmalloc, which keeps freed memory for reuse. PyTorch's CPU allocator goes
through malloc too, so both sides of a comparison gain. ``--allocator=system`` keeps glibc.

Debian/Ubuntu: ``apt-get install -y libtcmalloc-minimal4``.
"""
from __future__ import annotations

import glob
import os
import sys

CHOICES = ("tcmalloc", "system")
_PATTERNS = ("/usr/lib/*-linux-gnu/libtcmalloc_minimal.so.4", "/usr/lib/*-linux-gnu/libtcmalloc.so.4",
             "/usr/lib64/libtcmalloc_minimal.so.4", "/usr/lib/libtcmalloc_minimal.so.4")


def find_tcmalloc() -> str | None:
  """Path of an installed tcmalloc shared library, or None."""
  for pattern in _PATTERNS:
    found = sorted(glob.glob(pattern))
    if found:
      return found[0]
  return None


def in_use() -> str:
  """The allocator this process runs with, for result headers."""
  preload = os.environ.get("LD_PRELOAD", "")
  return f"tcmalloc (LD_PRELOAD={preload})" if "tcmalloc" in preload else "glibc malloc"


def ensure(allocator: str) -> None:
  """With 'tcmalloc', re-executes this script with tcmalloc preloaded (unless it already is);
  exits with one line if the library is missing. Call first thing in main()."""
  if allocator not in CHOICES:
    sys.exit(f"--allocator must be one of {CHOICES}, got {allocator!r}")
  if allocator == "system" or "tcmalloc" in os.environ.get("LD_PRELOAD", ""):
    return
  path = find_tcmalloc()
  if path is None:
    sys.exit("tcmalloc not found (apt-get install -y libtcmalloc-minimal4), or pass --allocator=system")
  env = dict(os.environ, LD_PRELOAD=":".join(p for p in (path, os.environ.get("LD_PRELOAD")) if p))
  sys.stdout.flush()
  os.execve(sys.executable, [sys.executable] + sys.argv, env)
