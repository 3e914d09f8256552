"""DRNet: dissect a trained CNN into per-class channel importance, run sub-task sub-networks.

Dissection: the CIV of class c is the mean CDRP gate vector (`jaxdr.methods.cdrp`) of N
training images of class c, per gate point: ``civ[key]`` is float32 [num_classes, C].
Reconstruction: the CCIV of a sub-task (a set of classes) is a 0/1 mask, by union
(``max_c civ[c] >= union_thr``) or XOR (``|civ[c1] - civ[c2]| >= xor_thr``, two classes),
or by the threshold that keeps a requested fraction of channels. A sub-task runs the
masked network with a masked softmax (classes outside it get probability 0), or the same
sub-network physically cut out with `jaxdr.surgery` (residual streams: strict=False, so a
stream channel open at one of its gate points stays, masked).

Commands (``config.drnet.stage``: 'all' = dissect + evaluate, 'dissect' = CIV only):

    python -m jaxdr.main --config=configs/drnet_fashion_mnist.py --workdir=DIR
    python -m jaxdr.methods.drnet --config=configs/drnet_fashion_mnist.py --workdir=DIR \
        [--config.pretrained=TRAINED_WORKDIR] [--config.drnet.stage=dissect]

The model is ``config.pretrained`` or, if empty, trained first into ``DIR/train``.
Dissection saves per-class partial sums with orbax in ``DIR/civ`` every
``drnet.save_every`` batches and logs progress; run the same command again after an
interruption and it resumes from the last save. Evaluation writes ``DIR/results.json``
(``subtasks``, ``summary``, ``civ_similarity``), ``DIR/report.md`` (tables like DRNet's
Tables 1-5) and the PNGs ``civ_similarity.png`` (Formula 5) and ``layer_channels.png``
(Figure 7).
"""
from __future__ import annotations

import functools
import itertools
import json
import math
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging
from etils import epath
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jaxdr import costs, masks, models, reporting, surgery
from jaxdr.methods import cdrp

Civ = Dict[str, np.ndarray]  # gate key -> float32 [num_classes, C]
COMBINES = ("union", "xor")
STAGES = ("all", "dissect")


# ----------------------------------------------------------------------------- dissection


def select_images(labels: np.ndarray, classes: Sequence[int], per_class: int, seed: int) -> np.ndarray:
  """Indices of ``per_class`` images of each class (seeded, without replacement), class-major."""
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  picked = []
  for c in classes:
    pool = np.flatnonzero(labels == c)
    if pool.size == 0:
      raise ValueError(f"no training images of class {c} to dissect")
    picked.append(np.sort(rng.choice(pool, size=min(per_class, pool.size), replace=False)))
  return np.concatenate(picked)


def collect_images(name: str, split: str, classes: Sequence[int], per_class: int, seed: int,
                   data_dir=None, image_size=None, limit: int = 0) -> Tuple[np.ndarray, np.ndarray]:
  """(images, labels) holding ``per_class`` images of each class in ``classes`` and nothing else.

  In-memory datasets: a seeded choice (`select_images`) from the whole split. Others
  (ImageNet): the first ``per_class`` of each class in file order, streamed in eval mode.
  """
  from jaxdr import data  # pylint: disable=g-import-not-at-top
  if data.info(name).in_memory:
    images, labels = data.as_arrays(name, split, data_dir=data_dir, image_size=image_size,
                                    limit=limit or None)
    idx = select_images(labels, classes, per_class, seed)
    return images[idx], labels[idx]
  wanted = {int(c): [] for c in classes}
  seen = 0
  for batch in data.iterator(name, split, 256, train=False, data_dir=data_dir, image_size=image_size):
    for x, y, m in zip(batch["image"], batch["label"], batch["mask"]):
      if m and int(y) in wanted and len(wanted[int(y)]) < per_class:
        wanted[int(y)].append(x)
    seen += len(batch["label"])
    if all(len(v) >= per_class for v in wanted.values()) or (limit and seen >= limit):
      break
  images = np.stack([x for c in wanted for x in wanted[c]])
  labels = np.concatenate([np.full(len(wanted[c]), c, np.int32) for c in wanted])
  return images, labels


def _fingerprint(model, indices: np.ndarray, options: cdrp.Options, batch_size: int) -> dict:
  return {"model": repr(models.describe(model).gates), "images": int(indices.size),
          "indices_sum": int(np.sum(indices.astype(np.int64) * np.arange(1, indices.size + 1) % 1000003)),
          "options": repr(options), "batch_size": int(batch_size)}


class Dissection:
  """Resumable CIV computation: per-class sums of CDRP gates, saved with orbax as it goes.

  State (a pytree in graph order, so orbax needs no '/'-free keys): ``sums`` list of
  float32 [num_classes, C], ``counts`` float32 [num_classes], ``done`` (batches finished).
  """

  def __init__(self, model, num_classes: int, options: cdrp.Options, directory=None):
    self.model = model
    self.graph = models.describe(model)
    self.num_classes = num_classes
    self.options = options
    self.directory = None if directory is None else epath.Path(directory)
    self._fit = cdrp.make_fitter(model, options)

  def _empty(self) -> dict:
    return {"sums": [np.zeros((self.num_classes, g.channels), np.float32) for g in self.graph.gates],
            "counts": np.zeros((self.num_classes,), np.float32), "done": np.zeros((), np.int32)}

  def _manager(self):
    return ocp.CheckpointManager(self.directory.resolve(),
                                 options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True))

  def run(self, variables, images: np.ndarray, labels: np.ndarray, indices: np.ndarray,
          batch_size: int, save_every: int = 1) -> Civ:
    """CIV of every class over ``images[indices]``; resumes from ``directory`` if saved there."""
    indices = np.asarray(indices)
    batches = [indices[i:i + batch_size] for i in range(0, indices.size, batch_size)]
    state, manager = self._empty(), None
    if self.directory is not None:
      self.directory.mkdir(parents=True, exist_ok=True)
      meta_path = self.directory / "dissection.json"
      meta = _fingerprint(self.model, indices, self.options, batch_size)
      if meta_path.exists() and json.loads(meta_path.read_text()) != meta:
        raise ValueError(f"{self.directory} holds a dissection with other settings (model, images, "
                         "CDRP options or batch size); use another workdir or delete it")
      reporting.write_text_atomic(meta_path, json.dumps(meta))
      manager = self._manager()
      step = manager.latest_step()
      if step is not None:
        state = manager.restore(step, args=ocp.args.StandardRestore(state))
        state = jax.tree.map(np.asarray, state)
        logging.info("dissect: resuming after batch %d of %d (%s)", int(state["done"]), len(batches),
                     self.directory)
    try:
      self._loop(variables, images, labels, indices, batches, state, manager, batch_size, save_every)
    finally:  # an interrupted run still commits its last save
      if manager is not None:
        manager.wait_until_finished()
        manager.close()
    return self.civ(state)

  def _loop(self, variables, images, labels, indices, batches, state, manager, batch_size, save_every):
    start, t0, seen = int(state["done"]), time.time(), 0
    for b in range(start, len(batches)):
      idx = batches[b]
      x = images[idx]
      pad = batch_size - len(idx)
      if pad:  # one compiled shape for every batch
        x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
      gates, _ = self._fit(variables, jnp.asarray(x))
      onehot = np.eye(self.num_classes, dtype=np.float32)[labels[idx]]  # [n, K]
      for i, g in enumerate(self.graph.gates):
        state["sums"][i] = state["sums"][i] + onehot.T @ np.asarray(gates[g.key])[:len(idx)]
      state["counts"] = state["counts"] + onehot.sum(0)
      state["done"] = np.asarray(b + 1, np.int32)
      seen += len(idx)
      if manager is not None and ((b + 1) % save_every == 0 or b + 1 == len(batches)):
        manager.save(b + 1, args=ocp.args.StandardSave(state))
      rate = seen / max(time.time() - t0, 1e-9)
      left = sum(len(x) for x in batches[b + 1:])
      logging.info("dissect: batch %d/%d, %d/%d images, %.1f img/s, ETA %.0fs", b + 1, len(batches),
                   sum(len(x) for x in batches[:b + 1]), indices.size, rate, left / max(rate, 1e-9))

  def civ(self, state) -> Civ:
    counts = np.maximum(np.asarray(state["counts"]), 1.0)[:, None]
    return {g.key: (np.asarray(s) / counts).astype(np.float32)
            for g, s in zip(self.graph.gates, state["sums"])}


# ----------------------------------------------------------------------------- CCIV


def check_classes(classes: Sequence[int], num_classes: int) -> Tuple[int, ...]:
  """The sub-task's class ids as a sorted tuple; ValueError on an empty / bad / repeated id."""
  classes = tuple(classes)
  if not classes:
    raise ValueError("a sub-task needs at least one class, got an empty class list")
  for c in classes:
    if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer)):
      raise ValueError(f"class ids must be integers, got {c!r}")
    if not 0 <= c < num_classes:
      raise ValueError(f"class id {c} is out of range [0, {num_classes})")
  if len(set(classes)) != len(classes):
    raise ValueError(f"sub-task repeats a class: {classes}")
  return tuple(sorted(int(c) for c in classes))


def _num_classes(civ: Civ) -> int:
  return next(iter(civ.values())).shape[0]


def scores(civ: Civ, classes: Sequence[int], combine: str = "union") -> Civ:
  """Per-channel score a threshold is applied to: max over the classes' CIVs (union) or
  ``|civ[c1] - civ[c2]|`` (xor, exactly two classes)."""
  classes = check_classes(classes, _num_classes(civ))
  if combine == "union":
    return {k: np.max(v[list(classes)], axis=0) for k, v in civ.items()}
  if combine == "xor":
    if len(classes) != 2:
      raise ValueError(f"XOR combines exactly 2 classes, got {len(classes)}: {classes}")
    a, b = classes
    return {k: np.abs(v[a] - v[b]) for k, v in civ.items()}
  raise ValueError(f"combine must be one of {COMBINES}, got {combine!r}")


def threshold_for_fraction(score: Civ, fraction: float) -> float:
  """The largest threshold t with ``mean(score >= t) >= fraction`` over all channels."""
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"keep fraction must be in (0, 1], got {fraction}")
  flat = np.sort(np.concatenate([np.ravel(v) for v in score.values()]))[::-1]
  k = int(math.ceil(fraction * flat.size - 1e-9))
  return float(flat[max(k, 1) - 1])


def cciv(civ: Civ, classes: Sequence[int], combine: str = "union", threshold: Optional[float] = None,
         keep_fraction: float = 0.0, min_channels: int = 0) -> masks.Mask:
  """The sub-task's 0/1 mask {key: float32 [C]}: ``score >= threshold``, where the threshold is
  ``threshold`` or, with ``keep_fraction`` > 0, the one keeping that fraction of channels.
  ``min_channels`` keeps the best-scoring channels of a gate point that would keep fewer."""
  score = scores(civ, classes, combine)
  if keep_fraction:
    threshold = threshold_for_fraction(score, keep_fraction)
  elif threshold is None:
    raise ValueError("cciv needs a threshold or a keep_fraction > 0")
  out = {}
  for key, s in score.items():
    keep = s >= threshold
    if keep.sum() < min_channels:
      keep[np.argsort(-s, kind="stable")[:min_channels]] = True
    out[key] = keep.astype(np.float32)
  return out


def civ_similarity(civ: Civ, eps: float = 0.0) -> np.ndarray:
  """[K, K] IoU of the classes' important-channel sets (CIV > eps), DRNet Formula 5."""
  sets = np.concatenate([v > eps for v in civ.values()], axis=1)  # [K, total channels]
  inter = sets.astype(np.float64) @ sets.T.astype(np.float64)
  sizes = sets.sum(1).astype(np.float64)
  union = sizes[:, None] + sizes[None, :] - inter
  return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


# ----------------------------------------------------------------------------- sub-task inference


def class_mask(classes: Sequence[int], num_classes: int) -> np.ndarray:
  """bool [num_classes]: True for the sub-task's classes."""
  m = np.zeros((num_classes,), bool)
  m[list(check_classes(classes, num_classes))] = True
  return m


def masked_logits(logits: jnp.ndarray, in_task: jnp.ndarray) -> jnp.ndarray:
  """Logits with classes outside the sub-task at -inf: their softmax probability is exactly 0."""
  return jnp.where(in_task, logits, -jnp.inf)


def masked_softmax(logits: jnp.ndarray, in_task: jnp.ndarray) -> jnp.ndarray:
  return jax.nn.softmax(masked_logits(logits, in_task), axis=-1)


@functools.lru_cache(maxsize=64)
def _compiled_forward(model):
  """jit(variables, images, mask, in_task -> masked-softmax logits), shared per model."""
  def fwd(variables, images, mask, in_task):
    return masked_logits(models.apply(model, variables, images, mask), in_task)
  return jax.jit(fwd)


class SubtaskRunner:
  """Runs sub-tasks of one trained model, masked or physically sliced.

  The masked forward is compiled once: the channel mask (every gate point, [C]) and the
  sub-task's class mask are arguments, and images go in fixed-size padded batches, so
  switching sub-tasks costs no compile. Sliced networks are cached by their widths.
  """

  def __init__(self, model, variables, batch_size: int = 500):
    self.model, self.variables, self.batch_size = model, variables, batch_size
    self.graph = models.describe(model)
    self.num_classes = model.num_classes
    self._masked = _compiled_forward(model)
    self._sliced_fns: Dict[Any, Any] = {}
    self.sliced_compiles = 0

  def _full_mask(self, mask: Optional[Mapping[str, Any]], graph=None) -> masks.Mask:
    graph = graph or self.graph
    mask = mask or {}
    return {g.key: jnp.asarray(mask[g.key], jnp.float32) if g.key in mask else jnp.ones((g.channels,))
            for g in graph.gates}

  def _batched(self, fn, variables, images, mask, in_task) -> np.ndarray:
    out = []
    n = images.shape[0]
    for s in range(0, n, self.batch_size):
      x = np.asarray(images[s:s + self.batch_size])
      pad = self.batch_size - x.shape[0]
      if pad:
        x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
      out.append(np.asarray(fn(variables, jnp.asarray(x), mask, in_task))[:self.batch_size - pad])
    return np.concatenate(out) if out else np.zeros((0, self.num_classes), np.float32)

  def logits(self, images, mask=None, classes: Optional[Sequence[int]] = None) -> np.ndarray:
    """Masked-softmax logits [N, K] of the masked network (``classes`` None: all classes)."""
    in_task = (np.ones(self.num_classes, bool) if classes is None
               else class_mask(classes, self.num_classes))
    return self._batched(self._masked, self.variables, images, self._full_mask(mask), jnp.asarray(in_task))

  def slice(self, mask) -> Tuple[Any, Dict[str, Any], masks.Mask]:
    """(small model, its variables, remaining mask) of ``mask`` cut out physically."""
    small, small_vars, rest = surgery.slice_model(self.model, self.variables, mask, strict=False)
    return small, small_vars, self._full_mask(rest, models.describe(small))

  def sliced_logits(self, sliced, images, classes: Sequence[int]) -> np.ndarray:
    """Masked-softmax logits of a sliced network from `slice` (compiled once per width set)."""
    small, small_vars, rest = sliced
    key = small.channels
    if key not in self._sliced_fns:
      self._sliced_fns[key] = _compiled_forward(small)
      self.sliced_compiles += 1
    in_task = jnp.asarray(class_mask(classes, self.num_classes))
    return self._batched(self._sliced_fns[key], small_vars, images, rest, in_task)


# ----------------------------------------------------------------------------- evaluation


def _open_fraction(graph, mask) -> Tuple[float, Dict[str, Tuple[int, int]]]:
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
    mask = cciv(civ, classes, combine, keep_fraction=f, min_channels=min_channels)
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
                     labels: np.ndarray, full_logits: np.ndarray, section: Mapping[str, Any],
                     physical: bool = True, calibration: Optional[Tuple[np.ndarray, np.ndarray]] = None
                     ) -> dict:
  """Accuracies and running costs of one sub-task on its test images (see module docstring).
  With ``section.calibrate_tolerance`` > 0 the keep fraction is chosen per sub-task on the
  ``calibration`` (training) images with `calibrate_fraction`."""
  graph = runner.graph
  classes = check_classes(classes, runner.num_classes)
  keep = np.isin(labels, classes)
  if not keep.any():
    raise ValueError(f"no test images of sub-task {classes}")
  x, y = images[keep], labels[keep]
  combine = section.get("combine", "union")
  thr = section.get("union_thr") if combine == "union" else section.get("xor_thr")
  keep_fraction = float(section.get("keep_fraction", 0.0) or 0.0)
  min_channels = int(section.get("min_channels", 0))
  tolerance = float(section.get("calibrate_tolerance", 0.0) or 0.0)
  if tolerance > 0:
    if calibration is None:
      raise ValueError("drnet.calibrate_tolerance > 0 needs calibration (training) images")
    keep_fraction = calibrate_fraction(runner, civ, classes, *calibration,
                                       tuple(section.calibrate_fractions), tolerance, combine, min_channels)
  mask = cciv(civ, classes, combine=combine, threshold=thr, keep_fraction=keep_fraction,
              min_channels=min_channels)
  in_task = class_mask(classes, runner.num_classes)
  full_pred = np.argmax(np.where(in_task, full_logits[keep], -np.inf), -1)
  sub_pred = np.argmax(runner.logits(x, mask, classes), -1)
  full_costs, masked = costs.count(graph), costs.count(graph, mask, "masked")
  channels, per_layer = _open_fraction(graph, mask)
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


def named_subtasks(section, dataset: str, class_names: Sequence[str]) -> List[Tuple[str, Tuple[int, ...]]]:
  """Sub-tasks named in the config: ``named_subtasks`` lists of class names (or ids), plus the
  dataset's superclasses of >= 2 classes with ``superclass_subtasks``."""
  from jaxdr import data  # pylint: disable=g-import-not-at-top
  out = []
  lookup = {n.lower(): i for i, n in enumerate(class_names)}
  for names in section.get("named_subtasks", ()) or ():
    ids = []
    for n in names:
      if isinstance(n, str) and n.lower() in lookup:
        ids.append(lookup[n.lower()])
      elif isinstance(n, str) and n.isdigit():
        ids.append(int(n))
      elif isinstance(n, int):
        ids.append(n)
      else:
        raise ValueError(f"unknown class {n!r} in drnet.named_subtasks; classes: {', '.join(class_names)}")
    label = "-".join(class_names[i] if i < len(class_names) else str(i) for i in ids)
    out.append((label, tuple(ids)))
  if section.get("superclass_subtasks", False):
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


def _plot_similarity(sim: np.ndarray, names: Sequence[str], path) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg", force=False)
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from jaxdr import reporting  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6.5, 5.5))
  im = ax.imshow(sim, cmap="viridis", vmin=0, vmax=1)
  ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
  ax.set_yticks(range(len(names)), names)
  for i in range(len(names)):
    for j in range(len(names)):
      ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=6,
              color="white" if sim[i, j] < 0.6 else "black")
  fig.colorbar(im, ax=ax, label="IoU of important-channel sets")
  ax.set_title("Class similarity (DRNet Formula 5)")
  reporting.save_figure(fig, path)


def _plot_layers(rec: dict, title: str, path) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg", force=False)
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from jaxdr import reporting  # pylint: disable=g-import-not-at-top
  keys = list(rec["layer_channels"])
  total = [rec["layer_channels"][k][1] for k in keys]
  kept = [rec["layer_channels"][k][0] for k in keys]
  fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(keys)), 3.5))
  pos = np.arange(len(keys))
  ax.bar(pos - 0.2, total, 0.4, label="channels", color="tab:blue")
  ax.bar(pos + 0.2, kept, 0.4, label="running channels", color="tab:pink")
  ax.set_xticks(pos, keys, rotation=60, ha="right", fontsize=7)
  ax.set_ylabel("channels")
  ax.set_title(f"Layer-wise running channels: {title} (DRNet Figure 7)")
  ax.legend()
  reporting.save_figure(fig, path)


def _pct(x: float) -> str:
  return f"{100 * x:.2f}%"


def _report_sections(full_row: dict, named: List[dict], randoms: List[dict], summary: dict) -> list:
  def row(r):
    out = {"sub-task": r["name"], "Full-Net Acc.": _pct(r["full_accuracy"]),
           "Sub-Net Acc.": _pct(r["sub_accuracy"]), "Running Channels": _pct(r["running_channels"]),
           "Running Param.": f"{r['running_params_count'] / 1e6:.3f}M ({_pct(r['running_params'])})",
           "Running FLOPs": f"{r['running_flops_count'] / 1e6:.2f}M ({_pct(r['running_flops'])})"}
    if "physical_params" in r:
      out["Sliced Param. / FLOPs"] = f"{_pct(r['physical_params'])} / {_pct(r['physical_flops'])}"
    if "sliced_agreement" in r:
      out["Sliced == Masked"] = _pct(r["sliced_agreement"])
    return out
  from jaxdr import reporting  # pylint: disable=g-import-not-at-top
  sections = []
  rows = [row(full_row)] + [row(r) for r in named]
  columns = max((list(r) for r in rows), key=len)
  sections.append(("Named sub-tasks (cf. DRNet Tables 1-3)", reporting.markdown_table(rows, columns)))
  avg = []
  for size, s in summary.items():
    r = {"sub-tasks": f"{s['count']} random {size}-class", "Full-Net Avg Acc.": _pct(s["full_accuracy"]),
         "Sub-Net Avg Acc.": _pct(s["sub_accuracy"]), "Avg Acc. Drop": _pct(s["accuracy_drop"]),
         "Avg Running Channels": _pct(s["running_channels"]), "Avg Running Param.": _pct(s["running_params"]),
         "Avg Running FLOPs": _pct(s["running_flops"])}
    if "physical_flops" in s:
      r["Avg Sliced Param. / FLOPs"] = f"{_pct(s['physical_params'])} / {_pct(s['physical_flops'])}"
    avg.append(r)
  sections.append(("Random sub-tasks, averages (cf. DRNet Tables 4-5)", reporting.markdown_table(avg)))
  if randoms:
    sections.append(("Every random sub-task", reporting.markdown_table([row(r) for r in randoms])))
  return sections


def run(config, workdir) -> dict:
  """Dissects the trained model of ``config`` and evaluates its sub-tasks (module docstring)."""
  from jaxdr import data, reporting, train  # pylint: disable=g-import-not-at-top
  section = config.drnet
  stage = section.get("stage", "all")
  if stage not in STAGES:
    raise ValueError(f"drnet.stage must be one of {STAGES}, got {stage!r}")
  if section.get("combine", "union") not in COMBINES:
    raise ValueError(f"drnet.combine must be one of {COMBINES}, got {section.combine!r}")
  workdir = epath.Path(workdir)
  ds_name, num_classes = config.dataset.name, int(config.dataset.num_classes)
  info = data.info(ds_name)
  class_names = list(info.class_names) or [str(i) for i in range(num_classes)]
  model, variables = train.get_or_train(config, workdir)
  data_dir = config.dataset.get("data_dir", "") or None
  image_size = int(config.dataset.image_size)
  seed = int(config.seed)

  # Which classes take part (ImageNet: a seeded pool, as DRNet section 4.5).
  pool = list(range(num_classes))
  if section.get("class_pool", 0):
    pool = sorted(np.random.default_rng(seed).choice(num_classes, int(section.class_pool), replace=False))

  options = cdrp.Options.from_config(section)
  t0 = time.time()
  train_images, train_labels = collect_images(ds_name, "train", pool, int(section.images_per_class), seed,
                                              data_dir, image_size, int(section.get("train_limit", 0)))
  indices = np.arange(len(train_labels))
  dissection = Dissection(model, num_classes, options, workdir / "civ")
  civ = dissection.run(variables, train_images, train_labels, indices, int(section.batch_size),
                       int(section.get("save_every", 1)))
  dissect_s = time.time() - t0
  calibration = (train_images, train_labels)  # the dissection images (N per class)
  if reporting.is_writer():
    np.savez(str(workdir / "civ.npz"), **{k.replace("/", "__"): v for k, v in civ.items()})
  if stage == "dissect":
    return {"stage": "dissect", "civ_images": int(indices.size), "dissect_time_s": dissect_s}

  t1 = time.time()
  if info.in_memory:
    test_images, test_labels = data.as_arrays(ds_name, "test", data_dir=data_dir, image_size=image_size,
                                              limit=int(section.get("test_limit", 0)) or None)
  else:  # ImageNet: the validation images of the class pool only
    test_images, test_labels = collect_images(ds_name, "test", pool, int(section.get("test_per_class", 50)),
                                              seed, data_dir, image_size)
  keep = np.isin(test_labels, pool)
  test_images, test_labels = test_images[keep], test_labels[keep]
  runner = SubtaskRunner(model, variables, int(section.get("eval_batch_size", 500)))
  full_logits = runner.logits(test_images)
  run_sliced = section.get("run_sliced", "named")
  if run_sliced not in ("all", "named", "none"):
    raise ValueError(f"drnet.run_sliced must be 'all', 'named' or 'none', got {run_sliced!r}")
  full_costs = costs.count(models.describe(model))
  full_row = {"name": f"{len(pool)} classes", "classes": pool,
              "full_accuracy": float(np.mean(np.argmax(np.where(class_mask(pool, num_classes), full_logits,
                                                                 -np.inf), -1) == test_labels)),
              "running_channels": 1.0, "running_params": 1.0, "running_flops": 1.0,
              "running_params_count": int(full_costs.params), "running_flops_count": int(full_costs.macs)}
  full_row["sub_accuracy"] = full_row["full_accuracy"]

  def evaluate(classes, kind, name):
    physical = run_sliced == "all" or (run_sliced == "named" and kind == "named")
    rec = evaluate_subtask(runner, civ, classes, test_images, test_labels, full_logits, section, physical,
                           calibration)
    rec.update(kind=kind, name=name)
    logging.info("drnet: %-28s full %.4f sub %.4f channels %.3f params %.3f flops %.3f", name,
                 rec["full_accuracy"], rec["sub_accuracy"], rec["running_channels"],
                 rec["running_params"], rec["running_flops"])
    return rec

  named = [evaluate(ids, "named", name) for name, ids in named_subtasks(section, ds_name, class_names)
           if set(ids) <= set(pool)]
  randoms = []
  for size, count in ((2, int(section.random_2class)), (3, int(section.random_3class))):
    for j, ids in enumerate(random_subtasks(pool, size, count, seed + size)):
      randoms.append(evaluate(ids, "random", "-".join(class_names[i] for i in ids)))
  summary = summarise(randoms)
  sim = civ_similarity(civ, float(section.get("similarity_eps", 0.0)))

  figures = []
  _plot_similarity(sim, class_names, workdir / "civ_similarity.png")
  figures.append("civ_similarity.png")
  fig_rec = named[0] if named else (randoms[0] if randoms else None)
  if fig_rec is not None:
    _plot_layers(fig_rec, fig_rec["name"], workdir / "layer_channels.png")
    figures.append("layer_channels.png")
  evaluate_s = time.time() - t1

  two = summary.get("2", {})
  metrics = {
      "full_test_accuracy": full_row["full_accuracy"],
      "mean_accuracy_drop_2class": two.get("accuracy_drop"),
      "mean_running_channels_2class": two.get("running_channels"),
      "mean_accuracy_drop_3class": summary.get("3", {}).get("accuracy_drop"),
      "mean_running_channels_3class": summary.get("3", {}).get("running_channels"),
      "civ_images": int(indices.size), "dissect_time_s": dissect_s, "evaluate_time_s": evaluate_s,
      "sliced_compiles": runner.sliced_compiles,
  }
  results = dict(metrics, full_task=full_row, subtasks=named + randoms, summary=summary,
                 summary_scope="random sub-tasks, by size", civ_similarity=sim,
                 class_names=class_names, class_pool=pool)
  reporting.write_results(workdir, results, config, method="drnet")
  reporting.write_report(workdir, f"DRNet: {config.model.name} on {ds_name}", metrics, config,
                         sections=_report_sections(full_row, named, randoms, summary), figures=figures)
  for size, s in summary.items():
    print(f"drnet: {s['count']} random {size}-class sub-tasks: full {s['full_accuracy']:.4f} "
          f"sub {s['sub_accuracy']:.4f} drop {100 * s['accuracy_drop']:.2f} points, running channels "
          f"{s['running_channels']:.3f} params {s['running_params']:.3f} flops {s['running_flops']:.3f}")
  print(f"drnet: results in {workdir / reporting.RESULTS_FILE}")
  return results


def load_civ(workdir) -> Civ:
  """The CIV a finished dissection left in ``workdir/civ.npz``."""
  path = epath.Path(workdir) / "civ.npz"
  if not path.exists():
    raise ValueError(f"no CIV in {workdir} (run the dissection first)")
  with np.load(str(path)) as f:
    return {k.replace("__", "/"): f[k] for k in f.files}


if __name__ == "__main__":
  # ``python -m jaxdr.methods.drnet --config=... --workdir=...``: jaxdr.main's flags and errors.
  from absl import app  # pylint: disable=g-import-not-at-top
  from jaxdr import main as jaxdr_main  # pylint: disable=g-import-not-at-top
  app.run(jaxdr_main.main, flags_parser=jaxdr_main._parse_flags)  # pylint: disable=protected-access
