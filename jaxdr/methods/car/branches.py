"""Residual branches pruned to nothing (the paper's Fig. 4B: "fully prune the filters in this
layer, i.e. remove branch 2 from the residual block").

A gate point is *branch-internal* when its channels reach the rest of the network only
through residual joins: following its consumers through single-gate-point spaces always ends
in a layer writing into a join (a gate point that continues a residual stream, or one with
several producers: projection shortcut + branch). ResNet's ``stageS_blockB/conv1`` (and a
bottleneck's ``conv2``) are; LeNet's / VGG's convs and the stem are not. Only such a gate may
lose every filter: the block then passes its shortcut alone.

With every filter of a branch-internal gate closed, masking alone does not silence the
branch: the layers after it still add their BatchNorm shift (a constant map per channel).
`without_branch` removes the branch as the paper does, by zeroing the affine of the layer(s)
writing it into the join (BN scale and bias, or kernel and bias without BN), so the branch
adds exactly 0; `branch_mask` closes every gate inside the branch, so `jaxdr.costs` counts
none of its multiply-accumulates. ``car.empty_branch='mask'`` keeps the masking reading.

`jaxdr.surgery` still keeps one (masked, zero-output) channel of an all-closed space: the
models cannot build a zero-width conv (its initializer divides by the fan), so the sliced
model carries a one-channel stub of the branch.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

import jax
import numpy as np

from jaxdr import masks, models

PyTree = Any


def _is_join(graph: models.Graph, key: str) -> bool:
  point = graph.gate(key)
  stream = masks.spaces(graph.gates)[point.space]
  return stream[0].key != key or len(graph.producers(key)) >= 2


def _follow(graph: models.Graph, key: str, inside: List[str], outputs: List[models.Layer]) -> bool:
  """Walks from gate ``key`` through single-gate-point spaces to the joins, collecting the gates
  passed (``inside``) and the layers writing into a join (``outputs``); False when a path
  ends elsewhere (logits, a stream's start)."""
  inside.append(key)
  for layer in graph.consumers(key):
    if layer.dst is None:
      return False
    if _is_join(graph, layer.dst):
      outputs.append(layer)
    elif graph.gate(layer.dst).coupled:
      return False
    elif layer.dst not in inside and not _follow(graph, layer.dst, inside, outputs):
      return False
  return True


def branch_outputs(graph: models.Graph, key: str) -> Optional[List[models.Layer]]:
  """The layers writing gate ``key``'s branch into its residual join(s), or None when ``key``
  is not branch-internal (module docstring): every join must also get an input that does not
  come through ``key`` (the identity, or a shortcut from the block's input)."""
  if graph.gate(key).coupled:
    return None
  inside: List[str] = []
  outputs: List[models.Layer] = []
  if not _follow(graph, key, inside, outputs) or not outputs:
    return None
  for join in {l.dst for l in outputs}:
    identity = masks.spaces(graph.gates)[graph.gate(join).space][0].key != join
    if not identity and all(l.src in inside for l in graph.producers(join)):
      return None
  return outputs


def is_branch_gate(graph: models.Graph, key: str) -> bool:
  """True when gate ``key`` may be pruned to 0 filters (a residual branch's inner gate)."""
  return branch_outputs(graph, key) is not None


def branch_gates(graph: models.Graph, key: str) -> List[str]:
  """Gate ``key`` and every gate after it inside the same branch (all of them branch-internal)."""
  found = [key]
  for layer in graph.consumers(key):
    if layer.dst is not None and not _is_join(graph, layer.dst) and not graph.gate(layer.dst).coupled:
      found += [k for k in branch_gates(graph, layer.dst) if k not in found]
  return found


def branch_mask(graph: models.Graph, key: str, mask: Optional[Mapping[str, Any]] = None
                ) -> Dict[str, np.ndarray]:
  """``mask`` with every gate of ``key``'s branch closed (the branch removed)."""
  out = {k: np.asarray(v, np.float32) for k, v in dict(mask or {}).items()}
  for k in branch_gates(graph, key):
    out[k] = np.zeros(graph.gate(k).channels, np.float32)
  return out


def without_branch(model, variables: PyTree, key: str) -> PyTree:
  """``variables`` with ``key``'s branch adding exactly 0 at its join: the affine of every
  layer writing the branch into the join is zeroed (BN scale and bias; kernel and bias
  without BN). ValueError when ``key`` is not branch-internal."""
  graph = models.describe(model)
  outputs = branch_outputs(graph, key)
  if outputs is None:
    raise ValueError(f"gate {key!r} is not inside a residual branch")
  out = jax.tree.map(np.array, dict(variables))
  for layer in outputs:
    p = out["params"]
    for name in layer.path:
      p = p[name]
    if layer.use_bn:
      p["bn"]["scale"] = np.zeros_like(p["bn"]["scale"])
      p["bn"]["bias"] = np.zeros_like(p["bn"]["bias"])
    else:
      p = p["dense"] if layer.kind == "dense" else p
      p["kernel"] = np.zeros_like(p["kernel"])
      if "bias" in p:
        p["bias"] = np.zeros_like(p["bias"])
  return out


def empty(mask_row: np.ndarray) -> bool:
  return not np.any(np.asarray(mask_row) != 0)
