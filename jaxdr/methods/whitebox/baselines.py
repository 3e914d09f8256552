"""The L1-norm baseline's channel scores (Li et al., "Pruning Filters for Efficient ConvNets").

A channel's score is the L1 norm of the filter that produces it (the producing layer's kernel
over every axis but the output channel), divided by the mean filter norm of its layer: Li et al.
prune each layer at its own rate; dividing by the layer's mean puts all layers on one scale, so
the same global vote and budget as White-Box's decide the per-layer rates.

    scores = l1_scores(graph, variables, keys)      # {key: [C]}
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Sequence

import numpy as np

from jaxdr.models import graph as graph_lib


def _kernel(variables: Mapping[str, Any], layer: graph_lib.Layer) -> np.ndarray:
  p = variables["params"]
  for part in layer.path:
    p = p[part]
  return np.asarray(p["dense"]["kernel"] if layer.kind == "dense" else p["kernel"], np.float64)


def filter_l1(graph: graph_lib.Graph, variables: Mapping[str, Any], key: str) -> np.ndarray:
  """[C]: L1 norm of each output filter of the layer(s) producing gate ``key``'s channels."""
  total = np.zeros(graph.gate(key).channels)
  for layer in graph.producers(key):
    k = _kernel(variables, layer)
    total += np.abs(k).reshape(-1, k.shape[-1]).sum(axis=0)
  return total


def l1_scores(graph: graph_lib.Graph, variables: Mapping[str, Any], keys: Sequence[str]
              ) -> Dict[str, np.ndarray]:
  """``{key: filter L1 norm / the layer's mean filter L1 norm}`` (module docstring)."""
  out = {}
  for key in keys:
    norms = filter_l1(graph, variables, key)
    out[key] = norms / max(float(norms.mean()), 1e-12)
  return out
