"""Baseline filter-pruning orders CAR is compared with (He et al. 2014 / Li et al. 2016).

An order lists a layer's filters least important first; pruning ``C - n`` filters from the
front keeps ``n``. Weight-based importance is the mean absolute weight of a filter's
incoming kernel (the layer(s) producing gate ``key``) or of its outgoing connections (the
rows / input slices of the layers consuming it).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from jaxdr import models
from jaxdr.errors import ConfigError


def layer_kernel(variables: Mapping[str, Any], layer: models.Layer) -> np.ndarray:
  """The kernel of ``layer`` as numpy: HWIO for a conv, [in, out] for a dense layer."""
  params = variables["params"]
  for name in layer.path:
    params = params[name]
  return np.asarray(params["dense"]["kernel"] if layer.kind == "dense" else params["kernel"])


def incoming_importance(model, variables: Mapping[str, Any], key: str) -> np.ndarray:
  """[C]: mean |w| of each filter's incoming kernel (all layers writing gate ``key``)."""
  graph = models.describe(model)
  producers = graph.producers(key)
  if not producers:
    raise ConfigError(f"no layer produces gate {key!r}")
  return np.mean([np.abs(layer_kernel(variables, l)).reshape(-1, l.out_channels).mean(0)
                  for l in producers], axis=0)


def outgoing_importance(model, variables: Mapping[str, Any], key: str) -> np.ndarray:
  """[C]: mean |w| of each filter's outgoing connections (all layers reading gate ``key``)."""
  graph = models.describe(model)
  consumers = graph.consumers(key)
  if not consumers:
    raise ConfigError(f"no layer consumes gate {key!r}")
  channels = graph.gate(key).channels
  per_layer = []
  for l in consumers:
    w = np.abs(layer_kernel(variables, l))
    if l.kind == "dense":  # rows (position, channel)-major: channel c owns rows c, c + C, ...
      per_layer.append(w.reshape(-1, channels, w.shape[-1]).mean(axis=(0, 2)))
    elif l.depthwise:
      per_layer.append(w.reshape(-1, channels).mean(0))
    else:  # HWIO
      per_layer.append(w.transpose(2, 0, 1, 3).reshape(channels, -1).mean(1))
  return np.mean(per_layer, axis=0)


def order_by(importance: np.ndarray) -> np.ndarray:
  """Filters least important first (stable)."""
  return np.argsort(np.asarray(importance), kind="stable")


def random_orders(channels: int, repeats: int = 10, seed: int = 0) -> np.ndarray:
  """[repeats, C] uniformly random pruning orders."""
  rng = np.random.default_rng(seed)
  return np.stack([rng.permutation(channels) for _ in range(repeats)])


def masks_along(order: Sequence[int], kept: Sequence[int]) -> np.ndarray:
  """[len(kept), C] 0/1 masks keeping the last ``n`` filters of ``order`` for each ``n``."""
  order = np.asarray(order)
  channels = len(order)
  out = np.ones((len(kept), channels), np.float32)
  for row, n in enumerate(kept):
    if not 0 <= n <= channels:
      raise ValueError(f"cannot keep {n} of {channels} filters")
    out[row, order[:channels - n]] = 0.0
  return out
