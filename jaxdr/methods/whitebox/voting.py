"""Global voting (White-Box section III-D): one ranking of every masked channel by its score,
channels removed least important first until the MACs removed reach the target.

The published code lowers a global keep ratio in 1% steps and overshoots the target; here
channels go one at a time, each removal's saving counted exactly (``costs.layer_costs`` of every
layer the channel touches, depthwise ties included), and the vote stops at the first removal that
reaches the target: the MACs removed exceed the target by less than that last channel's MACs.
A layer never drops below ``min_keep_fraction`` of its channels (rounded up; the published 0.3);
channels of a layer at its minimum are passed over. With ``channel_multiple`` m the widths
are counted as the next multiple of m (what runs fast on CPU) and the vote ends with the best
scored removed channels of each layer reopened up to that width; the target is then met within
one m-channel step's MACs. The per-layer keep rates come out of the vote.

    v = vote(graph, {"conv3": scores3, ...}, target=0.5)
    v.keep["conv3"]   # bool [C]: open after pruning
    v.reduction       # fraction of the MACs removed (>= 0.5), v.mask() the 0/1 mask
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from jaxdr import costs
from jaxdr.errors import ConfigError
from jaxdr.models import graph as graph_lib


def _own_layer(graph: graph_lib.Graph, key: str) -> Optional[graph_lib.Layer]:
  return next((l for l in graph.layers if l.key == key), None)


def prunable_problem(graph: graph_lib.Graph, key: str) -> Optional[str]:
  """Why gate point ``key`` cannot carry a class-wise mask for pruning (None when it can): it
  must be a conv / dense unit's own gate, outside any residual stream, and a depthwise unit's
  input channels must be its own (else surgery could not remove them)."""
  keys = [g.key for g in graph.gates]
  if key not in keys:
    return f"{key!r} is not a gate point of the model (e.g. {keys[:6]})"
  point = graph.gate(key)
  if point.coupled:
    return f"{key!r} is on a residual stream (channel space {point.space!r} is shared by several gate points)"
  layer = _own_layer(graph, key)
  if layer is None:
    return f"{key!r} gates a tensor no conv / dense unit of its own produces (a block output)"
  if layer.depthwise and layer.src is not None:
    src = graph.gate(layer.src)
    if src.coupled or [l.key for l in graph.consumers(layer.src)] != [layer.key]:
      return (f"depthwise {key!r} shares its input channels {layer.src!r} with other layers, so "
              "surgery cannot remove them")
  return None


def check_prunable(graph: graph_lib.Graph, keys: Sequence[str]) -> None:
  """ConfigError naming the first gate point White-Box cannot prune (see `prunable_problem`)."""
  if not keys:
    raise ConfigError("no gate point to prune")
  for key in keys:
    problem = prunable_problem(graph, key)
    if problem:
      raise ConfigError(f"gate point not prunable: {problem}")
  for l in graph.layers:
    if l.depthwise and l.src in keys and l.dst in keys:
      raise ConfigError(f"gate points {l.src!r} and {l.dst!r} share their channels (depthwise "
                        f"{l.key!r}): mask one of them")


def default_gates(graph: graph_lib.Graph) -> Tuple[str, ...]:
  """Where the masks sit by default (the published code): MobileNetV2 each block's hidden
  (depthwise) channels; ResNets the block-internal convs (basic: conv1; bottleneck: conv1, conv2);
  plain CNNs (VGG) every conv. Residual streams never."""
  keys = [g.key for g in graph.gates if prunable_problem(graph, g.key) is None]
  hidden = [k for k in keys if k.endswith("/dw")]
  if hidden:
    return tuple(hidden)
  inner = [k for k in keys if "/" in k]
  return tuple(inner or keys)


class _WidthModel:
  """Exact MACs of the model as a function of the kept width of each voted gate point."""

  def __init__(self, graph: graph_lib.Graph, keys: Sequence[str], multiple: int):
    self.multiple = int(multiple)
    self.full = {k: graph.gate(k).channels for k in keys}
    tie = {}
    for l in graph.layers:
      if l.depthwise and l.dst in self.full and l.src is not None:
        tie[l.src] = l.dst
      elif l.depthwise and l.src in self.full and l.dst is not None:
        tie[l.dst] = l.src
    var = lambda key: key if key in self.full else tie.get(key)  # noqa: E731
    self.layers = [(l, var(l.src) if l.src else None, var(l.dst) if l.dst else None) for l in graph.layers]
    self.touching: Dict[str, List[int]] = {k: [] for k in keys}
    for i, (_, s, d) in enumerate(self.layers):
      for v in {s, d} - {None}:
        self.touching[v].append(i)

  def physical(self, key: str, width: int) -> int:
    return min(self.full[key], -(-int(width) // self.multiple) * self.multiple)

  def layer_macs(self, i: int, widths: Mapping[str, int]) -> int:
    layer, s, d = self.layers[i]
    if layer.depthwise:
      v = d or s
      c = self.physical(v, widths[v]) if v else layer.out_channels
      return int(costs.layer_costs(layer, c, c)[1])
    cin = self.physical(s, widths[s]) if s else layer.in_channels
    cout = self.physical(d, widths[d]) if d else layer.out_channels
    return int(costs.layer_costs(layer, cin, cout)[1])

  def total(self, widths: Mapping[str, int]) -> int:
    return sum(self.layer_macs(i, widths) for i in range(len(self.layers)))


@dataclasses.dataclass(frozen=True)
class Vote:
  """The vote's outcome: ``keep`` (bool [C] per gate key), the model's MACs before and after,
  the ``target`` fraction and the MACs the last removal saved (the vote's resolution)."""
  keep: Dict[str, np.ndarray]
  macs_before: int
  macs_after: int
  target: float
  last_step_macs: int

  @property
  def reduction(self) -> float:
    return 1.0 - self.macs_after / self.macs_before

  def kept(self) -> Dict[str, int]:
    return {k: int(v.sum()) for k, v in self.keep.items()}

  def keep_rates(self) -> Dict[str, float]:
    return {k: float(v.mean()) for k, v in self.keep.items()}

  def mask(self) -> Dict[str, np.ndarray]:
    """The 0/1 float32 mask of the pruned channels."""
    return {k: v.astype(np.float32) for k, v in self.keep.items()}

  def as_dict(self) -> Dict[str, Any]:
    return {"target": self.target, "reduction": self.reduction, "macs_before": self.macs_before,
            "macs_after": self.macs_after, "last_step_macs": self.last_step_macs,
            "kept": self.kept(), "channels": {k: int(v.size) for k, v in self.keep.items()},
            "keep_rates": self.keep_rates()}


def minimum_kept(channels: int, fraction: float) -> int:
  """Channels a layer keeps at least: ``ceil(fraction * channels)``, at least 1."""
  return max(1, int(math.ceil(fraction * channels - 1e-9)))


def check_reachable(graph: graph_lib.Graph, keys: Sequence[str], target: float,
                    min_keep_fraction: float = 0.3, channel_multiple: int = 1) -> None:
  """ConfigError when keeping ``min_keep_fraction`` of every gate of ``keys`` cannot remove
  ``target`` of the MACs (checked before any training)."""
  model = _WidthModel(graph, keys, channel_multiple)
  before = model.total(model.full)
  least = model.total({k: minimum_kept(c, min_keep_fraction) for k, c in model.full.items()})
  if least > before * (1.0 - float(target)):
    raise ConfigError(f"a MACs reduction of {target:.1%} is out of reach: keeping "
                      f"{min_keep_fraction:.0%} of every masked layer removes {1 - least / before:.1%}; "
                      "lower the target or whitebox.min_keep_fraction, or mask more gate points")


def vote(graph: graph_lib.Graph, scores: Mapping[str, Any], target: float,
         min_keep_fraction: float = 0.3, channel_multiple: int = 1) -> Vote:
  """Removes the lowest-scored channels of ``scores`` ({gate key: [C]}, one global ranking; ties
  by gate order, then channel) until at least ``target`` of the MACs are gone (module docstring).
  ConfigError for a target outside (0, 1), a gate that is not prunable, non-finite scores, or a
  target the per-layer minimum makes unreachable."""
  if not 0.0 < float(target) < 1.0:
    raise ConfigError(f"the MACs reduction target must be in (0, 1), got {target}")
  keys = [g.key for g in graph.gates if g.key in scores]
  check_prunable(graph, list(scores))
  values = {k: np.asarray(scores[k], np.float64) for k in keys}
  for k, v in values.items():
    if v.shape != (graph.gate(k).channels,):
      raise ConfigError(f"scores of {k!r} must have shape [{graph.gate(k).channels}], got {v.shape}")
    if not np.all(np.isfinite(v)):
      raise ConfigError(f"scores of {k!r} are not all finite (a diverged mask training?)")
  model = _WidthModel(graph, keys, channel_multiple)
  widths = dict(model.full)
  before = model.total(widths)
  if before != int(costs.count(graph).macs):
    raise AssertionError(f"vote's MAC model gives {before}, costs.count {costs.count(graph).macs}")
  floor = {k: minimum_kept(c, min_keep_fraction) for k, c in model.full.items()}
  limit = before * (1.0 - float(target))
  cand_key = np.concatenate([np.full(model.full[k], i) for i, k in enumerate(keys)])
  cand_ch = np.concatenate([np.arange(model.full[k]) for k in keys])
  cand_score = np.concatenate([values[k] for k in keys])
  order = np.lexsort((cand_ch, cand_key, cand_score))
  removed = {k: np.zeros(c, bool) for k, c in model.full.items()}
  macs, last = before, 0
  layer_macs = [model.layer_macs(i, widths) for i in range(len(model.layers))]
  for j in order:
    key, c = keys[cand_key[j]], int(cand_ch[j])
    if widths[key] <= floor[key]:
      continue
    widths[key] -= 1
    removed[key][c] = True
    saved = 0
    for i in model.touching[key]:
      new = model.layer_macs(i, widths)
      saved += layer_macs[i] - new
      layer_macs[i] = new
    macs -= saved
    if saved:
      last = saved
    if macs <= limit:
      break
  else:
    raise ConfigError(f"a MACs reduction of {target:.1%} is out of reach: keeping "
                      f"{min_keep_fraction:.0%} of every masked layer removes {1 - macs / before:.1%}; "
                      "lower the target or whitebox.min_keep_fraction, or mask more gate points")
  keep = {}
  for k in keys:
    keep[k] = ~removed[k]
    extra = model.physical(k, widths[k]) - widths[k]
    if extra:  # reopen the best-scored removed channels up to the rounded width
      gone = np.flatnonzero(removed[k])
      keep[k][gone[np.argsort(-values[k][gone], kind="stable")[:extra]]] = True
  exact = int(costs.count(graph, {k: v.astype(np.float32) for k, v in keep.items()}, mode="physical").macs)
  if exact != macs:
    raise AssertionError(f"vote's MAC model gives {macs}, costs.count (physical) {exact}")
  return Vote(keep=keep, macs_before=int(before), macs_after=int(macs), target=float(target),
              last_step_macs=int(last))
