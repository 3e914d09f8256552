"""The XLA flags the test suite compiles with (``from tests import xla_flags``).

Most of the suite's time is XLA compiling small programs once each (tiny models, every
variant once), and most of a CPU compile is LLVM optimising the generated code. The tests
therefore compile with LLVM at -O0 (``--xla_backend_optimization_level=0``): the optimised
HLO (fusion, layouts, YNNPACK / Eigen library calls) is the same as at the default level,
only the machine code of the fused loops is less optimised; values may differ in the last
bit (FMA contraction), well inside every tolerance, and both sides of every comparison are
compiled alike. tests/conftest.py sets it for the pytest process (and so for subprocesses
that inherit its environment); tests that start `python -m jaxdr.main` with a clean
``XLA_FLAGS`` pass :func:`subprocess_flags` instead. tests/test_cpu_runtime.py and the
quickstart notebook test still run the command with XLA's defaults.

A level already given in ``$XLA_FLAGS`` is kept: ``XLA_FLAGS=--xla_backend_optimization_level=3
python3 -m pytest ...`` runs the whole suite, subprocesses included, at XLA's default level (3).
"""
import os

OPT_LEVEL = "--xla_backend_optimization_level"
DEFAULT = f"{OPT_LEVEL}=0"


def _opt_level_flags(flags):
  return [f for f in flags.split() if f.split("=", 1)[0] == OPT_LEVEL]


def apply_to_environ():
  """Adds the suite's opt level to ``$XLA_FLAGS`` unless one is there. Call before JAX starts
  a backend (XLA reads the variable once)."""
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
  flags = os.environ.get("XLA_FLAGS", "")
  if not _opt_level_flags(flags):
    assert not xla_bridge.backends_are_initialized(), "XLA_FLAGS would be ignored: JAX already started"
    os.environ["XLA_FLAGS"] = f"{flags} {DEFAULT}".strip()


def subprocess_flags(*extra):
  """``XLA_FLAGS`` for a subprocess that must not inherit the caller's other flags: the suite's
  opt level (as this process has it) and ``extra``."""
  level = _opt_level_flags(os.environ.get("XLA_FLAGS", "")) or [DEFAULT]
  return " ".join([level[-1], *extra])
