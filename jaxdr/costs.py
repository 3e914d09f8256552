"""Parameters and MACs of a model under a 0/1 mask, per layer and in total.

Conventions:
  * MACs: multiply-accumulates of conv and dense layers only (k*k*Cin*Cout*H'*W' for a
    conv, k*k*C*H'*W' for a depthwise conv, rows*Cout for a dense layer). BN, activations,
    pooling, residual adds and biases cost no MACs. "FLOPs" in the papers are these MACs.
  * params: trainable parameters only: kernels, biases, BN scale and offset (not BN running
    statistics), so a full model's count equals the size of ``variables['params']``.
  * A closed gate (exactly 0) removes that output channel from its producers and the
    matching input channel from every consumer (``Layer.src`` == gate key). A depthwise
    layer's channel exists only if open at both its input gate and its own gate.
Modes:
  'masked'   every gate point on its own: the saving the mask expresses.
  'physical' what `jaxdr.surgery` really cuts (`surgery.removal_plan`, strict=False):
             residual-stream channels only where closed at every gate point of their space.
Group gates (`graph.Graph.groups`: DMNN's sub-block gates) count through the channel gates
they control: a closed sub-block costs nothing. Exact counts are numpy int64. For a
per-example mask [B, C] the exact counts treat a channel as open if it is open for any
example; `soft_costs` gives per-example differentiable counts.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdr import masks, surgery
from jaxdr.models import graph as graph_lib

MODES = ("masked", "physical")


@dataclasses.dataclass(frozen=True)
class LayerCost:
  """One conv / dense layer: ``gate`` is the gate point of its output channels (None: logits
  or an ungated output), ``out_kept``/``out_total`` its output channels."""
  path: str
  kind: str
  gate: Optional[str]
  in_kept: int
  in_total: int
  out_kept: int
  out_total: int
  params: int
  macs: int


@dataclasses.dataclass(frozen=True)
class Costs:
  params: int
  macs: int
  layers: Tuple[LayerCost, ...]

  def as_dict(self) -> dict:
    return {"params": int(self.params), "macs": int(self.macs),
            "layers": [{k: (int(v) if isinstance(v, np.integer) else v)
                        for k, v in dataclasses.asdict(l).items()} for l in self.layers]}


def layer_costs(layer: graph_lib.Layer, cin, cout):
  """(params, MACs) of ``layer`` with ``cin`` input / ``cout`` output channels (for a depthwise
  layer both are its channel count). Works on ints, numpy and traced jnp arrays alike."""
  if layer.kind == "dense":
    weights = cin * layer.in_positions * cout
    return weights + (cout if layer.use_bias else 0), weights
  k2 = layer.kernel * layer.kernel
  weights = k2 * cout if layer.depthwise else k2 * cin * cout
  params = weights + (cout if layer.use_bias else 0) + (2 * cout if layer.use_bn else 0)
  return params, weights * layer.out_spatial[0] * layer.out_spatial[1]


def _graph(model_or_graph) -> graph_lib.Graph:
  if isinstance(model_or_graph, graph_lib.Graph):
    return model_or_graph
  if isinstance(model_or_graph, nn.Module):
    return graph_lib.describe(model_or_graph)
  raise TypeError(f"expected a jaxdr model or Graph, got {type(model_or_graph).__name__}")


def count(model_or_graph, mask: Optional[Mapping[str, Any]] = None, mode: str = "masked",
          channel_multiple: int = 1) -> Costs:
  """Exact params / MACs (numpy int64) of a model under a 0/1 ``mask`` in ``mode``
  ('physical' with ``channel_multiple``: of ``surgery.slice_model(..., channel_multiple)``)."""
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
  graph = _graph(model_or_graph)
  masks.validate_mask(mask, graph.gates)
  if mask and graph.groups:  # DMNN sub-block gates close their sub-blocks' channels
    mask = graph_lib.expand_groups(graph, {k: np.asarray(v) for k, v in mask.items()})
  if mode == "physical":
    open_ = surgery.removal_plan(graph, mask, strict=False, channel_multiple=channel_multiple)
  else:
    given = {k: np.asarray(v) for k, v in (mask or {}).items()}
    open_ = {p.key: (np.any(given[p.key] != 0, axis=0) if given[p.key].ndim == 2 else given[p.key] != 0)
             if p.key in given else np.ones(p.channels, bool) for p in graph.gates}
  rows, total_p, total_m = [], np.int64(0), np.int64(0)
  for layer in graph.layers:
    keep_in = open_[layer.src] if layer.src else np.ones(layer.in_channels, bool)
    keep_out = open_[layer.dst] if layer.dst else np.ones(layer.out_channels, bool)
    if layer.depthwise:
      keep_out = keep_in = keep_in & keep_out
    cin, cout = np.int64(keep_in.sum()), np.int64(keep_out.sum())
    params, macs = layer_costs(layer, cin, cout)
    params, macs = np.int64(params), np.int64(macs)
    rows.append(LayerCost(path=layer.key, kind=layer.kind, gate=layer.dst, in_kept=int(cin),
                          in_total=layer.in_channels, out_kept=int(cout),
                          out_total=layer.out_channels, params=int(params), macs=int(macs)))
    total_p, total_m = total_p + params, total_m + macs
  return Costs(params=total_p, macs=total_m, layers=tuple(rows))


def soft_costs(graph: graph_lib.Graph, mask: Optional[Mapping[str, jnp.ndarray]]):
  """Differentiable (params, MACs) under soft gates: a gate's open count is the sum of its
  values (so 0/1 gates give the 'masked' count). jit/grad-friendly; a [B, C] mask gives [B]
  per-example counts."""
  mask = graph_lib.expand_groups(graph, mask) or {}
  params, macs = 0.0, 0.0
  for layer in graph.layers:
    g_in = mask.get(layer.src) if layer.src else None
    g_out = mask.get(layer.dst) if layer.dst else None
    if layer.depthwise:
      if g_in is None and g_out is None:
        cin = cout = layer.out_channels
      else:
        g = (1.0 if g_in is None else g_in) * (1.0 if g_out is None else g_out)
        cin = cout = jnp.sum(g, axis=-1)
    else:
      cin = layer.in_channels if g_in is None else jnp.sum(g_in, axis=-1)
      cout = layer.out_channels if g_out is None else jnp.sum(g_out, axis=-1)
    p, m = layer_costs(layer, cin, cout)
    params, macs = params + p, macs + m
  return jnp.asarray(params, jnp.float32), jnp.asarray(macs, jnp.float32)


def expected_macs(graph: graph_lib.Graph, mask: Optional[Mapping[str, jnp.ndarray]]) -> jnp.ndarray:
  """MACs under soft gates (see `soft_costs`): the differentiable FLOPs of a gate vector."""
  return soft_costs(graph, mask)[1]


def param_count(variables: Mapping[str, Any]) -> int:
  """Number of trainable parameters in ``variables['params']``."""
  return int(sum(np.size(x) for x in jax.tree.leaves(variables["params"])))
