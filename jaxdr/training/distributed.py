"""Data parallelism over every device of every process: the mesh, shardings, global batches.

One 1-D mesh ``('data',)`` spans ``jax.devices()``. A step's batch is sharded along it and
the train state is replicated; XLA inserts the gradient all-reduce, and BatchNorm statistics
are taken over the global batch, so any device count computes the same step. Each process
holds only its rows of a global batch; `global_batch` stitches them into one array.
"""
from __future__ import annotations

import os
from typing import Dict, Mapping

import jax
import numpy as np

from jaxdr.errors import ConfigError

DATA_AXIS = "data"


def maybe_initialize_distributed(coordinator_address: str = "", num_processes: int = 0,
                                 process_id: int = -1) -> None:
  """Joins a multi-process run (``jax.distributed.initialize``) when one is asked for.

  Explicit arguments win; otherwise JAX's own auto-detection runs on Cloud TPU / SLURM /
  when ``JAX_COORDINATOR_ADDRESS`` is set. A single local process does nothing.
  """
  if jax.distributed.is_initialized():
    return
  if coordinator_address:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes or None,
                               process_id=None if process_id < 0 else process_id)
  elif os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("TPU_WORKER_HOSTNAMES"):
    jax.distributed.initialize()


def data_mesh() -> jax.sharding.Mesh:
  """1-D mesh over all devices of all processes; Auto axes so plain jit + NamedSharding works."""
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh) -> jax.sharding.NamedSharding:
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def batch_sharded(mesh) -> jax.sharding.NamedSharding:
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(DATA_AXIS))


def global_batch(mesh, local: Mapping[str, np.ndarray]) -> Dict[str, jax.Array]:
  """This process's rows of a batch -> one global array per key, sharded along 'data'."""
  sharding = batch_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local.items()}


def local_batch_size(global_batch_size: int) -> int:
  """Per-process share of a global batch; it must split evenly over every device."""
  if global_batch_size % jax.device_count():
    raise ConfigError(f"batch size {global_batch_size} is not divisible by the "
                      f"{jax.device_count()} devices")
  return global_batch_size // jax.process_count()


def local_rows(global_batch_size: int) -> slice:
  """This process's rows of a global batch."""
  local = local_batch_size(global_batch_size)
  return slice(jax.process_index() * local, (jax.process_index() + 1) * local)
