"""DRNet sub-tasks: run a set of classes with only the channels its CCIV keeps.

A sub-task runs the masked network with a masked softmax (classes outside it get logit -inf,
probability 0), or the same sub-network physically cut out with `jaxdr.surgery`
(residual streams: strict=False, so a stream channel open at one of its gate points stays,
masked)::

    runner = SubtaskRunner(model, variables, batch_size=500)
    logits = runner.logits(images, mask, classes)                   # [N, K], -inf off the task
    sliced = runner.slice(mask); runner.sliced_logits(sliced, images, classes)
    rec = evaluate_subtask(runner, civ, classes, test_x, test_y, full_logits, options)
"""
from __future__ import annotations

import functools
import itertools
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdr import batching, costs, masks, models, surgery
from jaxdr.errors import ConfigError
from jaxdr.methods.drnet.cciv import Civ, check_classes, cciv_mask
from jaxdr.methods.drnet.options import DrnetOptions


def logit_mask(classes: Sequence[int], num_classes: int) -> np.ndarray:
  """bool [num_classes]: True for the sub-task's classes (a mask over logits, not channels)."""
  m = np.zeros((num_classes,), bool)
  m[list(check_classes(classes, num_classes))] = True
  return m


def subtask_logits(logits: jnp.ndarray, in_task: jnp.ndarray) -> jnp.ndarray:
  """Logits [..., K] with classes outside the sub-task (``in_task`` bool [K]) at -inf: their
  softmax probability is exactly 0."""
  return jnp.where(in_task, logits, -jnp.inf)


def subtask_softmax(logits: jnp.ndarray, in_task: jnp.ndarray) -> jnp.ndarray:
  """Softmax over the sub-task's classes only (`subtask_logits`)."""
  return jax.nn.softmax(subtask_logits(logits, in_task), axis=-1)


@functools.lru_cache(maxsize=64)
def _compiled_forward(model):
  """jit(variables, images, mask, in_task -> sub-task logits), shared per model."""
  def fwd(variables, images, mask, in_task):
    return subtask_logits(models.apply(model, variables, images, mask), in_task)
  return jax.jit(fwd)


class SubtaskRunner:
  """Runs sub-tasks of one trained model, masked or physically sliced.

  The masked forward is compiled once: the channel mask (every gate point, [C]) and the
  sub-task's logit mask are arguments, and images go in fixed-size padded batches
  (`jaxdr.batching`), so switching sub-tasks costs no compile. Sliced networks are cached by
  their widths.
  """

  def __init__(self, model, variables, batch_size: int = 500):
    self.model, self.variables, self.batch_size = model, variables, batch_size
    self.graph = models.describe(model)
    self.num_classes = model.num_classes
    self.masked_forward = _compiled_forward(model)
    self._sliced_fns: Dict[Any, Any] = {}
    self.sliced_compiles = 0

  def _full_mask(self, mask: Optional[Mapping[str, Any]], graph=None) -> masks.Mask:
    graph = graph or self.graph
    mask = mask or {}
    return {g.key: jnp.asarray(mask[g.key], jnp.float32) if g.key in mask else jnp.ones((g.channels,))
            for g in graph.gates}

  def _apply(self, fn, variables, images, mask, in_task) -> np.ndarray:
    out = batching.batched_apply(lambda b: fn(variables, b["image"], mask, in_task),
                                 {"image": np.asarray(images)}, self.batch_size)
    return np.zeros((0, self.num_classes), np.float32) if out is None else out

  def logits(self, images, mask=None, classes: Optional[Sequence[int]] = None) -> np.ndarray:
    """Sub-task logits [N, K] of the masked network (``classes`` None: all classes)."""
    in_task = (np.ones(self.num_classes, bool) if classes is None
               else logit_mask(classes, self.num_classes))
    return self._apply(self.masked_forward, self.variables, images, self._full_mask(mask), jnp.asarray(in_task))

  def slice(self, mask) -> Tuple[Any, Dict[str, Any], masks.Mask]:
    """(small model, its variables, remaining mask) of ``mask`` cut out physically."""
    small, small_vars, rest = surgery.slice_model(self.model, self.variables, mask, strict=False)
    return small, small_vars, self._full_mask(rest, models.describe(small))

  def sliced_logits(self, sliced, images, classes: Sequence[int]) -> np.ndarray:
    """Sub-task logits of a sliced network from `slice` (compiled once per width set)."""
    small, small_vars, rest = sliced
    key = small.channels
    if key not in self._sliced_fns:
      self._sliced_fns[key] = _compiled_forward(small)
      self.sliced_compiles += 1
    in_task = jnp.asarray(logit_mask(classes, self.num_classes))
    return self._apply(self._sliced_fns[key], small_vars, images, rest, in_task)


def open_fraction(graph, mask) -> Tuple[float, Dict[str, Tuple[int, int]]]:
  """(fraction of all channels open, {gate key: (open, total)})."""
  per = {g.key: (int(np.sum(np.asarray(mask[g.key]) != 0)), g.channels) for g in graph.gates}
  return sum(k for k, _ in per.values()) / sum(t for _, t in per.values()), per


def calibrate_fraction(runner: SubtaskRunner, civ: Civ, classes: Sequence[int], images: np.ndarray,
                       labels: np.ndarray, fractions: Sequence[float], tolerance: float,
                       combine: str = "union", min_channels: int = 0) -> float:
  """The smallest keep fraction (of ``fractions``, by bisection) whose sub-network loses at most ``tolerance``
  accuracy against the full network on ``images`` of the sub-task (training images: the
  per-sub-task tuning of union_thr that DRNet section 4.3 describes, done without test data)."""
  keep = np.isin(labels, classes)
  x, y = images[keep], labels[keep]
  full = np.mean(np.argmax(runner.logits(x, None, classes), -1) == y)

  def good(f):
    mask = cciv_mask(civ, classes, combine, keep_fraction=f, min_channels=min_channels)
    return full - np.mean(np.argmax(runner.logits(x, mask, classes), -1) == y) <= tolerance
  fractions = sorted(fractions)
  lo, hi = 0, len(fractions)  # binary search: accuracy grows with the fraction (nearly always)
  while lo < hi:
    mid = (lo + hi) // 2
    if good(fractions[mid]):
      hi = mid
    else:
      lo = mid + 1
  return float(fractions[lo]) if lo < len(fractions) else 1.0


def evaluate_subtask(runner: SubtaskRunner, civ: Civ, classes: Sequence[int], images: np.ndarray,
                     labels: np.ndarray, full_logits: np.ndarray, options: DrnetOptions,
                     physical: bool = True, calibration: Optional[Tuple[np.ndarray, np.ndarray]] = None
                     ) -> dict:
  """Accuracies and running costs of one sub-task on its test images (module docstring).
  With ``options.calibrate_tolerance`` > 0 the keep fraction is chosen per sub-task on the
  ``calibration`` (training) images with `calibrate_fraction`."""
  graph = runner.graph
  classes = check_classes(classes, runner.num_classes)
  keep = np.isin(labels, classes)
  if not keep.any():
    raise ConfigError(f"no test images of sub-task {classes}")
  x, y = images[keep], labels[keep]
  keep_fraction = float(options.keep_fraction or 0.0)
  if options.calibrate_tolerance > 0:
    if calibration is None:
      raise ValueError("drnet.calibrate_tolerance > 0 needs calibration (training) images")
    keep_fraction = calibrate_fraction(runner, civ, classes, *calibration, tuple(options.calibrate_fractions),
                                       float(options.calibrate_tolerance), options.combine,
                                       int(options.min_channels))
  mask = cciv_mask(civ, classes, combine=options.combine, threshold=options.threshold,
                   keep_fraction=keep_fraction, min_channels=int(options.min_channels))
  in_task = logit_mask(classes, runner.num_classes)
  full_pred = np.argmax(np.where(in_task, full_logits[keep], -np.inf), -1)
  sub_pred = np.argmax(runner.logits(x, mask, classes), -1)
  full_costs, masked = costs.count(graph), costs.count(graph, mask, "masked")
  channels, per_layer = open_fraction(graph, mask)
  rec = {
      "classes": list(classes), "num_images": int(keep.sum()),
      "full_accuracy": float(np.mean(full_pred == y)), "sub_accuracy": float(np.mean(sub_pred == y)),
      "running_channels": channels,
      "running_params": float(masked.params / full_costs.params),
      "running_flops": float(masked.macs / full_costs.macs),
      "running_params_count": int(masked.params), "running_flops_count": int(masked.macs),
      "keep_fraction": keep_fraction or None,
      "layer_channels": {k: list(v) for k, v in per_layer.items()},
  }
  rec["accuracy_drop"] = rec["full_accuracy"] - rec["sub_accuracy"]
  phys = costs.count(graph, mask, "physical")  # what surgery cuts (strict=False)
  kept = surgery.removal_plan(graph, mask, strict=False)
  rec.update({
      "physical_params": float(phys.params / full_costs.params),
      "physical_flops": float(phys.macs / full_costs.macs),
      "physical_params_count": int(phys.params),
      "physical_channels": sum(int(k.sum()) for k in kept.values()) / sum(g.channels for g in graph.gates),
  })
  if physical:  # run the sliced network too (one compile per new set of widths)
    sliced = runner.slice(mask)
    sliced_pred = np.argmax(runner.sliced_logits(sliced, x, classes), -1)
    rec.update({"sliced_accuracy": float(np.mean(sliced_pred == y)),
                "sliced_agreement": float(np.mean(sliced_pred == sub_pred))})
  return rec


def random_subtasks(classes: Sequence[int], size: int, count: int, seed: int) -> List[Tuple[int, ...]]:
  """``count`` distinct random ``size``-class sub-tasks of ``classes`` (all of them if fewer)."""
  combos = list(itertools.combinations(sorted(classes), size))
  rng = np.random.default_rng(seed)
  if count >= len(combos):
    return combos
  return [combos[i] for i in sorted(rng.choice(len(combos), size=count, replace=False))]


def named_subtasks(options: DrnetOptions, dataset: str, class_names: Sequence[str]
                   ) -> List[Tuple[str, Tuple[int, ...]]]:
  """Sub-tasks named in the options: ``named_subtasks`` lists of class names (or ids), plus
  the dataset's superclasses of >= 2 classes with ``superclass_subtasks``."""
  from jaxdr import data  # pylint: disable=g-import-not-at-top
  out = []
  lookup = {n.lower(): i for i, n in enumerate(class_names)}
  for names in options.named_subtasks or ():
    ids = []
    for n in names:
      if isinstance(n, str) and n.lower() in lookup:
        ids.append(lookup[n.lower()])
      elif isinstance(n, str) and n.isdigit():
        ids.append(int(n))
      elif isinstance(n, int):
        ids.append(n)
      else:
        raise ConfigError(f"unknown class {n!r} in drnet.named_subtasks; classes: {', '.join(class_names)}")
    label = "-".join(class_names[i] if i < len(class_names) else str(i) for i in ids)
    out.append((label, tuple(ids)))
  if options.superclass_subtasks:
    for name, ids in data.superclasses(dataset):
      if len(ids) >= 2:
        out.append((name, tuple(ids)))
  return out


def summarise(records: Sequence[dict]) -> Dict[str, dict]:
  """Means per sub-task size of the accuracy / cost fields."""
  fields = ("full_accuracy", "sub_accuracy", "accuracy_drop", "running_channels", "running_params",
            "running_flops", "physical_params", "physical_flops", "physical_channels", "sliced_agreement")
  out = {}
  for size in sorted({len(r["classes"]) for r in records}):
    group = [r for r in records if len(r["classes"]) == size]
    out[str(size)] = {"count": len(group)}
    for f in fields:
      if all(f in r for r in group):
        out[str(size)][f] = float(np.mean([r[f] for r in group]))
  return out
