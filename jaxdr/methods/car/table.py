"""Table 1 of the paper: per compressed layer, each method pruned (in its own order) until the
accuracy would fall a relative ``drop`` (5%) below the uncompressed network's; the filters
kept, the compression ratio, FLOPs and storage.

Section 2.1's definitions, for a conv layer L with n_L filters of f x f over n_{L-1} input
channels and a k x k output map: FLOPs = k^2 n_L f^2 n_{L-1} (multiply-accumulates: jaxdr's
MACs, not 2 x MACs) and storage = 4 f^2 n_{L-1} n_L bytes (float32 weights, no biases).
Pruning layer L shrinks L's filters and the input channels of the layers reading it, so both
are given (``macs`` / ``storage_bytes`` of L, ``next_*`` of its consumers; a dense consumer
counts its weight matrix). Counts come from `jaxdr.costs.layer_costs`.

Where the drop is crossed is decided on the scoring set (the paper's CAR half) and the
accuracy there is reported on the evaluation half as well.

    costs = layer_costs(graph, "conv1", kept=11)
    kept, crossed = kept_at_drop(lambda counts: accuracies, channels=20, lowest=1, floor=0.86)
"""
from __future__ import annotations

from typing import Callable, Dict, Sequence, Tuple

import numpy as np

from jaxdr import costs, models

BYTES_PER_WEIGHT = 4


def _weights_and_macs(layer: models.Layer, cin: int, cout: int) -> Tuple[int, int]:
  _, macs = costs.layer_costs(layer, cin, cout)
  spatial = 1 if layer.kind == "dense" else layer.out_spatial[0] * layer.out_spatial[1]
  return int(macs) // spatial, int(macs)


def layer_costs(graph: models.Graph, key: str, kept: int) -> Dict[str, int]:
  """MACs and storage bytes of the layer(s) writing gate ``key`` (``macs``, ``storage_bytes``)
  and of those reading it (``next_macs``, ``next_storage_bytes``) with ``kept`` of its
  filters (other layers unpruned)."""
  out = {"macs": 0, "storage_bytes": 0, "next_macs": 0, "next_storage_bytes": 0}
  for layer in graph.producers(key):
    w, m = _weights_and_macs(layer, kept if layer.depthwise else layer.in_channels, kept)
    out["macs"] += m
    out["storage_bytes"] += BYTES_PER_WEIGHT * w
  for layer in graph.consumers(key):
    w, m = _weights_and_macs(layer, kept, kept if layer.depthwise else layer.out_channels)
    out["next_macs"] += m
    out["next_storage_bytes"] += BYTES_PER_WEIGHT * w
  return out


def kept_at_drop(accuracy_of: Callable[[Sequence[int]], np.ndarray], channels: int, lowest: int,
                 floor: float, coarse: int = 32) -> Tuple[int, bool]:
  """Prunes from ``channels`` filters down (kept = channels - 1, channels - 2, ...) while the
  accuracy stays >= ``floor``: (the fewest filters kept before the first count below it,
  True), or (``lowest``, False) if no count down to ``lowest`` falls below it.

  ``accuracy_of(counts) -> [len(counts)]`` accuracies along the method's order. At most
  ``coarse`` counts are tried first (every count for small layers), then every count
  between the last good and the first bad one."""
  step = max(1, -(-(channels - lowest) // coarse))
  grid = list(range(channels, lowest, -step)) + [lowest]
  acc = np.asarray(accuracy_of(grid))
  bad = np.flatnonzero(acc < floor)
  if not len(bad):
    return lowest, False
  if bad[0] == 0:
    return channels, True
  good_n, bad_n = grid[bad[0] - 1], grid[bad[0]]
  between = list(range(good_n - 1, bad_n, -1))
  if between:
    fine = np.asarray(accuracy_of(between))
    fine_bad = np.flatnonzero(fine < floor)
    if len(fine_bad):
      return (between[fine_bad[0] - 1] if fine_bad[0] else good_n), True
    return between[-1], True
  return good_n, True


def smallest_passing(passes: Callable[[int], bool], lo: int, hi: int) -> Tuple[int, bool]:
  """Binary search on [lo, hi] for the fewest kept filters that ``passes`` (assumed monotone:
  more filters never fail where fewer pass; ``hi`` is taken to pass). (n, True) when some
  count in [lo, hi) fails, (lo, False) when even ``lo`` passes."""
  if passes(lo):
    return lo, False
  while hi - lo > 1:
    mid = (lo + hi) // 2
    if passes(mid):
      hi = mid
    else:
      lo = mid
  return hi, True


def row(graph: models.Graph, key: str, method: str, kept: int, crossed: bool, scoring_accuracy: float,
        test_accuracy: float) -> Dict[str, object]:
  """One Table 1 row: ``method`` keeping ``kept`` filters of ``key``."""
  channels = graph.gate(key).channels
  before, after = layer_costs(graph, key, channels), layer_costs(graph, key, kept)
  return {"layer": key, "method": method, "kept": int(kept), "filters": channels,
          "compression_ratio": channels / kept if kept else float("inf"),
          "drop_reached": bool(crossed), "scoring_accuracy": float(scoring_accuracy),
          "test_accuracy": float(test_accuracy),
          **{k: v for k, v in after.items()}, **{f"{k}_uncompressed": v for k, v in before.items()},
          "macs_ratio": before["macs"] / after["macs"] if after["macs"] else float("inf"),
          "layer_and_next_macs_ratio": ((before["macs"] + before["next_macs"])
                                        / max(after["macs"] + after["next_macs"], 1))}
