"""Evaluation of a trained DMNN: accuracy, executed FLOPs per image, the paths it took.

    ev = evaluate.run_split(model, variables, table, "fashion_mnist", batch_size=500)
    ev = evaluate.run_arrays(model, variables, table, images, labels)      # in memory
    summary = evaluate.summarise(ev, table, superclass_names, superclass_of)

Gates are the controllers' argmax (no noise). `Evaluation` holds per-image arrays in test-set
order: label, correct, executed MACs, gates [M, L, N]; and, for the easiest / hardest images
figure (paper Fig. 6), the pixels of the cheapest and the most expensive image of each class
(from this process's rows in a multi-process run).
"""
from __future__ import annotations

import collections
import dataclasses
import functools
from typing import Dict, Iterable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdr import batching, training
from jaxdr.methods.dmnn.flops import CostTable
from jaxdr.models import dmnn
from jaxdr.training import distributed


@dataclasses.dataclass
class Evaluation:
  """Per-image results (``M`` test images): ``labels``, ``correct`` (bool), ``macs`` (executed,
  float64), ``gates`` (uint8 [M, L, N]), ``loss_sum``; ``extremes``: class -> {'easy'|'hard':
  (test index, MACs, image [H, W, C] as the pipeline gives it)}."""
  labels: np.ndarray
  correct: np.ndarray
  macs: np.ndarray
  gates: np.ndarray
  loss_sum: float
  extremes: Dict[int, Dict[str, tuple]]

  @property
  def accuracy(self) -> float:
    return float(self.correct.mean()) if self.correct.size else 0.0


@functools.lru_cache(maxsize=16)
def _step(model, out_shardings=None):
  """The jitted eval step of ``model`` (compiled once per batch shape and mask structure)."""
  def fn(variables, batch, mask, sub_macs, base_macs):
    logits, paths, _ = dmnn.forward(model, variables, batch["image"], mask)
    return {"correct": jnp.argmax(logits, -1) == batch["label"],
            "loss": training.cross_entropy(logits, batch["label"]),
            "macs": base_macs + jnp.einsum("bln,ln->b", paths.gates, sub_macs),
            "gates": paths.gates.astype(jnp.uint8), "label": batch["label"], "mask": batch["mask"]}
  return jax.jit(fn, out_shardings=out_shardings)


def _bind(step, table: CostTable, mask):
  mask = None if mask is None else {k: jnp.asarray(v, jnp.float32) for k, v in dict(mask).items()}
  sub, base = jnp.asarray(table.sub_macs, jnp.float32), jnp.float32(table.base_macs)
  return lambda variables, batch: step(variables, batch, mask, sub, base)


def _track(extremes, labels, macs, images, offset: int) -> None:
  """Keeps each class's cheapest and most expensive image (ties: the first)."""
  for i, (label, m) in enumerate(zip(labels, macs)):
    entry = extremes.setdefault(int(label), {})
    if "easy" not in entry or m < entry["easy"][1]:
      entry["easy"] = (offset + i, float(m), np.asarray(images[i]))
    if "hard" not in entry or m > entry["hard"][1]:
      entry["hard"] = (offset + i, float(m), np.asarray(images[i]))


def _collect(step, variables, batches: Iterable[tuple]) -> Evaluation:
  """``batches``: (device batch, local images, local row slice of the global batch)."""
  parts = collections.defaultdict(list)
  loss_sum, extremes, seen = 0.0, {}, 0
  for device_batch, local_images, rows in batches:
    out = jax.device_get(step(variables, device_batch))
    keep = np.asarray(out["mask"]) > 0
    loss_sum += float(np.sum(np.asarray(out["loss"])[keep]))
    for k in ("label", "correct", "macs", "gates"):
      parts[k].append(np.asarray(out[k])[keep])
    local = keep[rows]
    # Padding rows come last, so the kept rows before this slice are its offset in the set.
    _track(extremes, np.asarray(out["label"])[rows][local], np.asarray(out["macs"])[rows][local],
           np.asarray(local_images)[local], seen + int(keep[:rows.start].sum()))
    seen += int(keep.sum())
  cat = {k: np.concatenate(v) for k, v in parts.items()} if parts else {}
  empty = np.zeros((0,))
  return Evaluation(labels=cat.get("label", empty).astype(np.int64),
                    correct=cat.get("correct", empty).astype(bool),
                    macs=cat.get("macs", empty).astype(np.float64),
                    gates=cat.get("gates", np.zeros((0, 0, 0))).astype(np.uint8),
                    loss_sum=loss_sum, extremes=extremes)


def run_arrays(model, variables, table: CostTable, images: np.ndarray, labels: np.ndarray,
               batch_size: int = 256, mask: Optional[Mapping[str, jnp.ndarray]] = None) -> Evaluation:
  """`Evaluation` of in-memory images [M, H, W, C] / labels [M] (the default device); ``mask``
  as in `dmnn.forward` (e.g. every sub-block forced on)."""
  step = _bind(_step(model), table, mask)
  arrays = {"image": np.asarray(images, np.float32), "label": np.asarray(labels, np.int32)}
  batches = ((b, b["image"], slice(0, batch_size)) for b in batching.fixed_batches(arrays, batch_size))
  return _collect(step, variables, batches)


def run_split(model, variables, table: CostTable, dataset: str, *, batch_size: int,
              data_dir: Optional[str] = None, image_size: Optional[int] = None,
              limit: int = 0, mask: Optional[Mapping[str, jnp.ndarray]] = None) -> Evaluation:
  """`Evaluation` on a dataset's test split (its first ``limit`` images when > 0; padded
  rows and rows past the limit do not count), data parallel over every device of every
  process; every process gets every row's results."""
  mesh = distributed.data_mesh()
  step = _bind(_step(model, distributed.replicated(mesh)), table, mask)
  local_bs = distributed.local_batch_size(batch_size)
  rows = slice(jax.process_index() * local_bs, (jax.process_index() + 1) * local_bs)
  batches = ((batch, local["image"], rows) for batch, local in training.test_batches(
      mesh, dataset=dataset, batch_size=batch_size, data_dir=data_dir, image_size=image_size,
      limit=limit))
  return _collect(step, variables, batches)


def modal_paths(gates: np.ndarray) -> np.ndarray:
  """gates [images, blocks, N] (0/1) -> [blocks, N] float32: each block's most common on/off
  pattern (a static path: the benchmarks' pruned-to-one-path reference)."""
  out = []
  for b in range(gates.shape[1]):
    patterns, counts = np.unique(gates[:, b, :], axis=0, return_counts=True)
    out.append(patterns[np.argmax(counts)])
  return np.stack(out).astype(np.float32)


def summarise(ev: Evaluation, table: CostTable, group_names: Sequence[str],
              group_of: Sequence[int], bins: int = 20) -> dict:
  """What results.json reports: top-1, loss, executed-FLOPs statistics and histogram (Fig. 5),
  execution rates per sub-block overall / per group (superclass, Fig. 7) / per class, the
  easiest and hardest image of each class (Fig. 6), and path statistics."""
  total = float(table.total_macs)
  ratio = ev.macs / total
  low = float(table.base_macs) / total
  counts, edges = np.histogram(ratio, bins=bins, range=(min(low, float(ratio.min(initial=low))), 1.0))
  group_of = np.asarray(group_of, np.int64)
  groups = group_of[ev.labels] if ev.labels.size else ev.labels
  gates = ev.gates.astype(np.float64)
  by_group = {name: gates[groups == g].mean(axis=0).tolist()
              for g, name in enumerate(group_names) if np.any(groups == g)}
  patterns = collections.Counter(
      "".join(str(int(v)) for v in row.reshape(-1)) for row in ev.gates)
  m = max(int(ev.labels.size), 1)
  return {
      "test_accuracy": ev.accuracy, "test_loss": ev.loss_sum / m, "test_examples": int(ev.labels.size),
      "mean_executed_macs": float(ev.macs.mean()) if ev.macs.size else 0.0,
      "flops_ratio": float(ratio.mean()) if ratio.size else 0.0,
      "flops_ratio_std": float(ratio.std()) if ratio.size else 0.0,
      "flops_ratio_min": float(ratio.min(initial=1.0)), "flops_ratio_max": float(ratio.max(initial=0.0)),
      "histogram": {"ratio_edges": edges.tolist(), "counts": counts.astype(int).tolist()},
      "execution_rates": gates.mean(axis=0).tolist() if gates.size else [],
      "execution_rates_by_superclass": by_group,
      "execution_rates_by_class": {int(c): gates[ev.labels == c].mean(axis=0).tolist()
                                   for c in np.unique(ev.labels)},
      "extremes": {int(c): {k: {"index": int(v[0]), "macs": v[1], "flops_ratio": v[1] / total}
                            for k, v in e.items()} for c, e in sorted(ev.extremes.items())},
      "distinct_paths": len(patterns),
      "top_paths": [{"path": p, "fraction": n / m} for p, n in patterns.most_common(5)],
  }
