"""CAR's greedy compression (Algorithm 1): score every remaining filter, remove the least
important, score again on the smaller network, and so on.

    state = greedy_compress(model, variables, score_x, score_y, ["conv1"], num_classes=10,
                            options=GreedyOptions(min_kept=6), state_dir=workdir / "car_state" / "conv1")
    state.order("conv1")     # filters in pruning order (removed first, then the kept ones)
    state.removed            # [{iteration, layer, filter, car, loss_increase, accuracy}, ...]

With ``state_dir`` the state is a `toolkit.state.MethodState`: saved after every iteration
(document ``greedy``), resumed by a rerun, refused (`jaxdr.errors.ConfigError`) when the
layers, the scoring set or the options that shape the path differ.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from absl import logging
import flax.linen as nn
import jax
import numpy as np

from jaxdr import models
from jaxdr import options as options_lib
from jaxdr.errors import ConfigError
from jaxdr.methods.car.scoring import car_index, score_layer
from jaxdr.toolkit import state as state_lib

PyTree = Any
STATE_DOCUMENT = "greedy"


@dataclasses.dataclass
class GreedyState:
  """What an interrupted compression needs to continue: the current 0/1 gates of the layers
  being compressed and the removal log (one entry per removed filter, in order)."""
  keys: List[str]
  masks: Dict[str, List[float]]
  removed: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
  iteration: int = 0
  reference_accuracy: float = float("nan")
  done: bool = False
  stop_reason: str = ""

  def kept(self, key: str) -> int:
    return int(np.sum(np.asarray(self.masks[key]) > 0))

  def mask(self) -> Dict[str, np.ndarray]:
    return {k: np.asarray(v, np.float32) for k, v in self.masks.items()}

  def order(self, key: str) -> List[int]:
    """Filters of ``key`` in pruning order: removed ones first, then the kept ones."""
    gone = [r["filter"] for r in self.removed if r["layer"] == key]
    return gone + [i for i in range(len(self.masks[key])) if i not in gone]

  def as_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class GreedyOptions:
  """Stopping rules and the paper's speed-ups (0 disables a rule).

  per_iteration: filters removed per iteration (the paper's tweak 1; 1 = Algorithm 1).
  subset_size: scoring images drawn afresh each iteration (tweak 2; 0 = all).
  min_kept: never keep fewer filters in a layer (>= 1).
  target_ratio: stop once original / kept filters (all compressed layers) reaches it.
  max_relative_drop: stop before the scoring accuracy would fall below
    (1 - max_relative_drop) x the uncompressed accuracy (the paper's 5% for AlexNet).
  max_iterations: stop after this many iterations (0: no limit).
  """
  per_iteration: int = 1
  subset_size: int = 0
  min_kept: int = 1
  target_ratio: float = 0.0
  max_relative_drop: float = 0.0
  max_iterations: int = 0
  batch_size: int = 1000
  seed: int = 0

  def __post_init__(self):
    options_lib.check(self.per_iteration >= 1 and self.min_kept >= 1,
                      f"per_iteration and min_kept must be >= 1, got {self.per_iteration}, {self.min_kept}")
    options_lib.check(0.0 <= self.max_relative_drop < 1.0,
                      f"max_relative_drop must be in [0, 1), got {self.max_relative_drop}")


def fingerprint(model: nn.Module, keys: Sequence[str], labels: np.ndarray, options: GreedyOptions,
                base_mask: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
  """What a saved greedy state must match to be resumed: the model's gate points, the layers,
  the scoring set (size and a checksum of its labels), the base mask and the options that
  shape the removal path (not the stopping rules, so a rerun may go further)."""
  labels = np.asarray(labels).astype(np.int64)
  return {"model": repr(models.describe(model).gates), "keys": list(keys), "images": int(labels.size),
          "labels_sum": int(np.sum(labels * np.arange(1, labels.size + 1) % 1000003)),
          "base_mask": {k: np.asarray(v).tolist() for k, v in sorted(dict(base_mask or {}).items())},
          "per_iteration": options.per_iteration, "subset_size": options.subset_size,
          "batch_size": options.batch_size, "seed": options.seed}


def greedy_compress(model: nn.Module, variables: PyTree, images: np.ndarray, labels: np.ndarray,
                    keys: Sequence[str], *, num_classes: int,
                    options: GreedyOptions = GreedyOptions(), state_dir=None,
                    base_mask: Optional[Mapping[str, Any]] = None,
                    mesh: Optional[jax.sharding.Mesh] = None,
                    log: Callable[[str], None] = logging.info) -> GreedyState:
  """Algorithm 1: score every remaining filter of ``keys``, remove the least important, repeat.

  One key is the paper's single-layer mode; several keys let their filters compete for
  removal (multi-layer mode). Ties in CAR are broken by the smaller loss increase. With
  ``state_dir`` the state is saved there after every iteration and a rerun continues from it
  (module docstring). ``log`` receives one progress line per iteration.
  """
  graph = models.describe(model)
  keys = list(keys)
  for key in keys:
    if key not in {g.key for g in graph.gates}:
      raise ConfigError(f"unknown gate {key!r}; gate points are {[g.key for g in graph.gates][:8]}")
  saved = None
  if state_dir is not None:
    saved = state_lib.MethodState(state_dir, fingerprint(model, keys, labels, options, base_mask),
                                  what="CAR greedy compression")
  document = saved.read_json(STATE_DOCUMENT) if saved is not None else None
  if document is not None:
    state = GreedyState(**document)
    log(f"car: resuming {keys} at iteration {state.iteration} ({len(state.removed)} filters removed)")
  else:
    init = dict(base_mask or {})
    state = GreedyState(keys=keys, masks={
        k: [float(x) for x in np.asarray(init.get(k, np.ones(graph.gate(k).channels)))] for k in keys})
  images, labels = np.asarray(images), np.asarray(labels)
  fixed = {k: np.asarray(v, np.float32) for k, v in dict(base_mask or {}).items() if k not in keys}
  original = sum(graph.gate(k).channels for k in keys)
  opt = options
  while not state.done:
    if opt.max_iterations and state.iteration >= opt.max_iterations:
      break
    idx = np.arange(len(labels))
    if opt.subset_size and opt.subset_size < len(labels):
      rng = np.random.default_rng([opt.seed, state.iteration])
      idx = np.sort(rng.choice(len(labels), opt.subset_size, replace=False))
    x, y = images[idx], labels[idx]
    mask = {**fixed, **state.mask()}
    candidates = []  # (car, loss increase, key, filter, accuracy after)
    reference = None
    for key in keys:
      if state.kept(key) <= opt.min_kept:
        continue
      s = score_layer(model, variables, x, y, mask, key, num_classes=num_classes,
                      batch_size=opt.batch_size, mesh=mesh)
      car, acc = car_index(s), s.accuracy
      reference = acc[0]
      for j in range(1, len(s.removed)):
        f = int(s.removed[j])
        if mask[key][f] > 0:
          candidates.append((float(car[j]), float(s.loss[j] - s.loss[0]) / len(y), key, f, float(acc[j])))
    if reference is None:
      state.done, state.stop_reason = True, f"every layer is at min_kept={opt.min_kept}"
      break
    if state.iteration == 0 and not np.isfinite(state.reference_accuracy):
      state.reference_accuracy = float(reference)
    candidates.sort(key=lambda c: (c[0], c[1]))
    taken, left = [], {k: state.kept(k) for k in keys}
    for c in candidates:
      if len(taken) == opt.per_iteration:
        break
      if left[c[2]] > opt.min_kept:
        taken.append(c)
        left[c[2]] -= 1
    floor = (1.0 - opt.max_relative_drop) * state.reference_accuracy
    if opt.max_relative_drop and taken[0][4] < floor:
      state.done = True
      state.stop_reason = (f"removing {taken[0][2]}/{taken[0][3]} would drop the scoring accuracy to "
                           f"{taken[0][4]:.4f} < {floor:.4f}")
      log(f"car: stop: {state.stop_reason}")
      break
    state.iteration += 1
    for car, dloss, key, f, acc in taken:
      state.masks[key][f] = 0.0
      state.removed.append(dict(iteration=state.iteration, layer=key, filter=f, car=car,
                                loss_increase=dloss, accuracy=acc))
    kept_total = sum(state.kept(k) for k in keys)
    left_txt = ", ".join(f"{k} {state.kept(k)}/{graph.gate(k).channels}" for k in keys)
    removed_txt = ", ".join(f"{k}/{f} (CAR {c:+.4f})" for c, _, k, f, _ in taken)
    log(f"car: iteration {state.iteration}: removed {removed_txt}; filters left {left_txt}; "
        f"accuracy {taken[-1][4]:.4f}")
    if all(state.kept(k) <= opt.min_kept for k in keys):
      state.done, state.stop_reason = True, f"every layer is at min_kept={opt.min_kept}"
    elif opt.target_ratio and original / max(kept_total, 1) >= opt.target_ratio:
      state.done, state.stop_reason = True, f"compression ratio {original / kept_total:.3f} reached"
    if saved is not None:
      saved.write_json(STATE_DOCUMENT, state.as_dict())
  if saved is not None:
    saved.write_json(STATE_DOCUMENT, state.as_dict())
  return state

