"""CAR's greedy compression (Algorithm 1): score every remaining filter, remove the least
important, score again on the smaller network, and so on, down to ``min_kept``.

    state = greedy_compress(model, variables, score_x, score_y, ["conv1"], num_classes=10,
                            options=GreedyOptions(max_relative_drop=0.05, per_iteration_past_drop=4),
                            state_dir=workdir / "car_state" / "conv1")
    state.order("conv1")     # filters in pruning order (removed first, then any never removed)
    state.removed            # [{iteration, layer, filter, car, loss_increase, accuracy, past_drop}, ...]
    state.drop_at            # removals made before the scoring accuracy first fell past the drop

The loop is greedy to the end: crossing ``max_relative_drop`` marks the stop point the
compressed model is cut at (``drop_at``) and, with ``past_drop='continue'`` (the default),
the loop goes on, ``per_iteration_past_drop`` filters per iteration (the paper's speed-up
1), so the curves of Figs. 2-4 are CAR's all the way; ``past_drop='stop'`` ends there (the
curves then end visibly). ``retrain`` (every ``retrain_every`` iterations) fine-tunes the
network under the current mask inside the loop, as the paper allows ("the network can be
retrained in each iteration"). A residual branch's inner gate may go down to 0 filters
(``min_kept=0``, `branches`); its last removal is scored with the branch removed.

With ``state_dir`` the state is a `toolkit.state.MethodState`: saved after every iteration
(document ``greedy``, and the retrained variables as arrays ``variables``), resumed by a
rerun, refused (`jaxdr.errors.ConfigError`) when the layers, the scoring set or the options
that shape the path differ; stopping rules may change between runs.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging
import flax.linen as nn
import jax
import numpy as np

from jaxdr import models
from jaxdr.errors import ConfigError
from jaxdr.methods.car import branches
from jaxdr.methods.car.options import GreedyOptions
from jaxdr.methods.car.scoring import car_index, score_layer, score_removals
from jaxdr.toolkit import state as state_lib

PyTree = Any
STATE_DOCUMENT = "greedy"
# retrain(variables, mask, iteration) -> (new variables, JSON-able info logged in state.retrained)
Retrain = Callable[[PyTree, Dict[str, np.ndarray], int], Tuple[PyTree, Dict[str, Any]]]


@dataclasses.dataclass
class GreedyState:
  """What an interrupted compression needs to continue: the current 0/1 gates of the layers
  being compressed, the removal log (one entry per removed filter, in order), the stop point
  (``drop_at``: removals before the first that crossed ``max_relative_drop``; None if none
  did) and the in-loop retrainings."""
  keys: List[str]
  masks: Dict[str, List[float]]
  removed: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
  iteration: int = 0
  reference_accuracy: float = float("nan")
  done: bool = False
  stop_reason: str = ""
  drop_at: Optional[int] = None
  retrained: List[Dict[str, Any]] = dataclasses.field(default_factory=list)

  def kept(self, key: str) -> int:
    return int(np.sum(np.asarray(self.masks[key]) > 0))

  def mask(self) -> Dict[str, np.ndarray]:
    return {k: np.asarray(v, np.float32) for k, v in self.masks.items()}

  def order(self, key: str) -> List[int]:
    """Filters of ``key`` in pruning order: removed ones first, then the kept ones (index order)."""
    gone = [r["filter"] for r in self.removed if r["layer"] == key]
    return gone + [i for i in range(len(self.masks[key])) if i not in gone]

  def greedy_floor(self, key: str) -> int:
    """The fewest filters of ``key`` the greedy path reached: its order is CAR's for every
    kept count >= this (below, the remaining filters would follow index order)."""
    return len(self.masks[key]) - sum(r["layer"] == key for r in self.removed)

  def kept_at_drop(self, key: str) -> Optional[int]:
    """Filters of ``key`` kept at the stop point (None when the drop was never crossed)."""
    if self.drop_at is None:
      return None
    return len(self.masks[key]) - sum(r["layer"] == key for r in self.removed[:self.drop_at])

  def as_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)


def fingerprint(model: nn.Module, keys: Sequence[str], labels: np.ndarray, options: GreedyOptions,
                base_mask: Optional[Mapping[str, Any]], extra: Optional[Mapping[str, Any]] = None
                ) -> Dict[str, Any]:
  """What a saved greedy state must match to be resumed: the model's gate points, the layers,
  the scoring set (size and a checksum of its labels), the base mask, the options that shape
  the removal path (not the stopping rules, so a rerun may go further) and ``extra`` (e.g.
  the retraining recipe)."""
  labels = np.asarray(labels).astype(np.int64)
  out = {"model": repr(models.describe(model).gates), "keys": list(keys), "images": int(labels.size),
         "labels_sum": int(np.sum(labels * np.arange(1, labels.size + 1) % 1000003)),
         "base_mask": {k: np.asarray(v).tolist() for k, v in sorted(dict(base_mask or {}).items())},
         "per_iteration": options.per_iteration, "subset_size": options.subset_size,
         "batch_size": options.batch_size, "seed": options.seed, "empty_branch": options.empty_branch}
  if options.past_per_iteration != options.per_iteration and options.max_relative_drop:
    out.update(max_relative_drop=options.max_relative_drop, per_iteration_past_drop=options.past_per_iteration)
  if options.retrain_every:
    out.update(retrain_every=options.retrain_every, retrain=dict(extra or {}))
  return out


def floors(graph: models.Graph, keys: Sequence[str], min_kept: int) -> Dict[str, int]:
  """The fewest filters each layer may keep: 0 only for a residual branch's inner gate."""
  return {k: 0 if min_kept == 0 and branches.is_branch_gate(graph, k) else max(1, min_kept) for k in keys}


def _candidates(model, variables, x, y, mask, key, opt: GreedyOptions, num_classes, mesh):
  """(reference accuracy, [(car, loss increase per image, key, filter, accuracy after)]) of
  every open filter of ``key`` under ``mask``."""
  s = score_layer(model, variables, x, y, mask, key, num_classes=num_classes,
                  batch_size=opt.batch_size, mesh=mesh)
  car, acc, loss = car_index(s), s.accuracy, s.loss
  open_ = [j for j in range(1, len(s.removed)) if mask[key][int(s.removed[j])] > 0]
  if len(open_) == 1 and opt.empty_branch == "remove" and branches.is_branch_gate(models.describe(model), key):
    f = int(s.removed[open_[0]])  # the last filter: scored with the branch removed
    e = score_removals(model, branches.without_branch(model, variables, key), x, y, mask, key, [f],
                       num_classes=num_classes, batch_size=opt.batch_size, mesh=mesh)
    acc, loss = acc.copy(), loss.copy()
    acc[open_[0]], loss[open_[0]] = e.accuracy[0], e.loss[0]
    car = acc[0] - acc
  return float(acc[0]), [(float(car[j]), float(loss[j] - loss[0]) / len(y), key, int(s.removed[j]), float(acc[j]))
                         for j in open_]


def greedy_compress(model: nn.Module, variables: PyTree, images: np.ndarray, labels: np.ndarray,
                    keys: Sequence[str], *, num_classes: int,
                    options: GreedyOptions = GreedyOptions(), state_dir=None,
                    base_mask: Optional[Mapping[str, Any]] = None,
                    mesh: Optional[jax.sharding.Mesh] = None, retrain: Optional[Retrain] = None,
                    retrain_fingerprint: Optional[Mapping[str, Any]] = None,
                    log: Callable[[str], None] = logging.info) -> GreedyState:
  """Algorithm 1: score every remaining filter of ``keys``, remove the least important, repeat.

  One key is the paper's single-layer mode; several keys let their filters compete for
  removal (multi-layer mode). Ties in CAR are broken by the smaller loss increase. With
  ``state_dir`` the state is saved there after every iteration and a rerun continues from it
  (module docstring). ``retrain`` is called every ``options.retrain_every`` iterations;
  ``retrain_fingerprint`` names its recipe in the state's fingerprint. ``log`` receives one
  progress line per iteration.
  """
  graph = models.describe(model)
  keys = list(keys)
  for key in keys:
    if key not in {g.key for g in graph.gates}:
      raise ConfigError(f"unknown gate {key!r}; gate points are {[g.key for g in graph.gates][:8]}")
  opt = options
  if opt.retrain_every and retrain is None:
    raise ValueError("retrain_every needs a retrain hook")
  saved = None
  if state_dir is not None:
    saved = state_lib.MethodState(state_dir, fingerprint(model, keys, labels, opt, base_mask, retrain_fingerprint),
                                  what="CAR greedy compression")
  document = saved.read_json(STATE_DOCUMENT) if saved is not None else None
  if document is not None:
    state = GreedyState(**document)
    log(f"car: resuming {keys} at iteration {state.iteration} ({len(state.removed)} filters removed)")
    if opt.retrain_every and state.retrained:
      _, variables = saved.restore_arrays("variables", jax.tree.map(np.asarray, variables))
  else:
    init = dict(base_mask or {})
    state = GreedyState(keys=keys, masks={
        k: [float(x) for x in np.asarray(init.get(k, np.ones(graph.gate(k).channels)))] for k in keys})
  state.done, state.stop_reason = False, ""
  images, labels = np.asarray(images), np.asarray(labels)
  fixed = {k: np.asarray(v, np.float32) for k, v in dict(base_mask or {}).items() if k not in keys}
  original = sum(graph.gate(k).channels for k in keys)
  floor_of = floors(graph, keys, opt.min_kept)
  try:
    while True:
      active = [k for k in keys if state.kept(k) > floor_of[k]]
      kept_total = sum(state.kept(k) for k in keys)
      if not active:
        state.done, state.stop_reason = True, f"every layer is at its fewest filters {floor_of}"
      elif opt.target_ratio and original / max(kept_total, 1) >= opt.target_ratio:
        state.done, state.stop_reason = True, f"compression ratio {original / max(kept_total, 1):.3f} reached"
      elif state.drop_at is not None and opt.past_drop == "stop":
        state.done, state.stop_reason = True, f"stopped at the {opt.max_relative_drop:.0%} drop (past_drop='stop')"
      if state.done or (opt.max_iterations and state.iteration >= opt.max_iterations):
        break
      idx = np.arange(len(labels))
      if opt.subset_size and opt.subset_size < len(labels):
        rng = np.random.default_rng([opt.seed, state.iteration])
        idx = np.sort(rng.choice(len(labels), opt.subset_size, replace=False))
      x, y = images[idx], labels[idx]
      mask = {**fixed, **state.mask()}
      candidates = []
      for key in active:
        reference, found = _candidates(model, variables, x, y, mask, key, opt, num_classes, mesh)
        candidates += found
      if state.iteration == 0 and not np.isfinite(state.reference_accuracy):
        state.reference_accuracy = float(reference)
      candidates.sort(key=lambda c: (c[0], c[1]))
      floor = (1.0 - opt.max_relative_drop) * state.reference_accuracy
      if opt.max_relative_drop and state.drop_at is None and candidates[0][4] < floor:
        state.drop_at = len(state.removed)
        log(f"car: stop point: removing {candidates[0][2]}/{candidates[0][3]} would drop the scoring accuracy "
            f"to {candidates[0][4]:.4f} < {floor:.4f} ({len(state.removed)} filters removed); "
            + ("stopping" if opt.past_drop == "stop" else
               f"continuing greedily, {opt.past_per_iteration} filter(s) per iteration"))
        if opt.past_drop == "stop":
          continue
      per = opt.per_iteration if state.drop_at is None else opt.past_per_iteration
      taken, left = [], {k: state.kept(k) for k in keys}
      for c in candidates:
        if len(taken) == per:
          break
        if left[c[2]] > floor_of[c[2]]:
          taken.append(c)
          left[c[2]] -= 1
      state.iteration += 1
      for car, dloss, key, f, acc in taken:
        state.masks[key][f] = 0.0
        state.removed.append(dict(iteration=state.iteration, layer=key, filter=f, car=car, loss_increase=dloss,
                                  accuracy=acc, past_drop=state.drop_at is not None))
      left_txt = ", ".join(f"{k} {state.kept(k)}/{graph.gate(k).channels}" for k in keys)
      removed_txt = ", ".join(f"{k}/{f} (CAR {c:+.4f})" for c, _, k, f, _ in taken)
      log(f"car: iteration {state.iteration}: removed {removed_txt}; filters left {left_txt}; "
          f"accuracy {taken[-1][4]:.4f}")
      last = all(state.kept(k) <= floor_of[k] for k in keys)
      if opt.retrain_every and (state.iteration % opt.retrain_every == 0 or last):
        variables, info = retrain(variables, {**fixed, **state.mask()}, state.iteration)
        state.retrained.append({"iteration": state.iteration, "removed": len(state.removed),
                                "kept": {k: state.kept(k) for k in keys}, **info})
        if saved is not None:
          saved.save_arrays("variables", state.iteration, variables)
      if saved is not None:
        saved.write_json(STATE_DOCUMENT, state.as_dict())
    if saved is not None:
      saved.write_json(STATE_DOCUMENT, state.as_dict())
  finally:
    if saved is not None:
      saved.close()
  return state
