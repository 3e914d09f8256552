"""One XLA compilation cache shared by a test run (``from tests import compile_cache``).

The suite compiles ~4,300 small programs, many of them more than once: the same tiny model's
forward in several test files, the same train step in a run and in its resumed twin, in each
xdist worker and in every ``python -m jaxdr.main`` the tests start. JAX's persistent cache
(``JAX_COMPILATION_CACHE_DIR``, keyed by the program, the XLA flags and the CPU) compiles each
once per run: the pytest process that starts the run makes a temporary directory, its workers
and their subprocesses inherit it through the environment, and the starting process removes it
at the end. Nothing outlives the run. A cache directory already in the environment is used
as it is and kept (set one to keep compiled programs between runs).
"""
import os
import shutil
import tempfile

DIR_VAR = "JAX_COMPILATION_CACHE_DIR"
_OWNER_VAR = "JAXDR_TEST_COMPILE_CACHE_OWNER"  # pid of the process that made the directory
# Cache every program, however small or fast to compile (JAX's defaults skip those under 1 s).
_SETTINGS = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
             "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"}


def share_within_run():
  """Points this process (and what it starts) at the run's cache, making it if none is set.
  Call before JAX reads its configuration (before ``import jax``)."""
  for name, value in _SETTINGS.items():
    os.environ.setdefault(name, value)
  if not os.environ.get(DIR_VAR):
    os.environ[DIR_VAR] = tempfile.mkdtemp(prefix="jaxdr_test_xla_cache_")
    os.environ[_OWNER_VAR] = str(os.getpid())


def remove_if_made_here():
  """Removes the run's cache directory in the process that made it (at the end of the run)."""
  if os.environ.get(_OWNER_VAR) == str(os.getpid()):
    shutil.rmtree(os.environ[DIR_VAR], ignore_errors=True)
