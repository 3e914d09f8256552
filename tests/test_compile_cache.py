"""The test run's shared compilation cache (tests/compile_cache.py) is the one JAX uses in
this worker, and it keeps every program."""
import os

import jax
import jax.numpy as jnp

from tests import compile_cache


def test_jax_in_this_worker_caches_every_program_in_the_runs_directory():
  directory = os.environ[compile_cache.DIR_VAR]
  assert jax.config.jax_compilation_cache_dir == directory and os.path.isdir(directory)
  assert jax.config.jax_persistent_cache_min_compile_time_secs == 0
  before = sum(len(files) for _, _, files in os.walk(directory))
  offset = float(os.getpid())  # a constant of the program: one nobody else compiles
  jax.jit(lambda x: x * 3.0 + offset)(jnp.arange(7.0))
  assert sum(len(files) for _, _, files in os.walk(directory)) > before
