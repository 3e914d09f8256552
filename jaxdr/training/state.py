"""The train state and its orbax checkpoints (exact resume).

A checkpoint holds the whole `TrainState` (step, params, batch statistics, extra trainables,
optimiser state) and the float32 running sums of the metrics logged since the last log step,
so a run killed at any checkpoint and started again continues bit for bit.
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

from etils import epath
import flax
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jaxdr import checkpoints
from jaxdr.training import distributed

PyTree = Any


@flax.struct.dataclass
class TrainState:
  """Everything a training step reads and writes (replicated across devices).
  ``extra``: a method's trainables beside the params (`Objective.init_extra`)."""
  step: jnp.ndarray
  params: PyTree
  batch_stats: PyTree
  extra: PyTree
  opt_state: PyTree

  @property
  def trainable(self) -> Dict[str, PyTree]:
    return {"params": self.params, "extra": self.extra}

  @property
  def variables(self) -> Dict[str, PyTree]:
    if not jax.tree.leaves(self.batch_stats):  # a model without BatchNorm (LeNet-5)
      return {"params": self.params}
    return {"params": self.params, "batch_stats": self.batch_stats}


def checkpoint_manager(workdir: epath.Path) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=2, create=True)
  return ocp.CheckpointManager(epath.Path(workdir) / "checkpoints", options=options)


def restore(manager: ocp.CheckpointManager, state: TrainState, accum: Dict[str, Any], mesh
            ) -> Tuple[TrainState, Dict[str, Any]]:
  """The latest checkpoint's state and metric sums (``state``/``accum`` when there is none)."""
  step = manager.latest_step()
  if step is None:
    return state, accum
  target = {"state": state, "accum": accum}
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), jnp.asarray(x).dtype,
                                                         sharding=distributed.replicated(mesh)), target)
  try:
    restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
  except Exception as e:  # orbax raises many types for unreadable files
    raise checkpoints.CheckpointError(
        f"checkpoint {manager.directory}/{step} is corrupt, unreadable or from another run "
        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
  return restored["state"], restored["accum"]


def save(manager: ocp.CheckpointManager, state: TrainState, accum: Dict[str, Any]) -> None:
  manager.save(int(state.step), args=ocp.args.StandardSave({"state": state, "accum": accum}),
               force=True)
