"""Folding per-channel gates into the weights, so the pruned network needs no mask.

A gate ``v [C]`` multiplies a layer's activations after its activation function. Every layer
that reads those channels (``graph.consumers(key)``: convs, depthwise convs, dense layers,
projection shortcuts alike) computes a linear function of them, so scaling its input-channel
weights by ``v`` gives the same pre-activation, for either sign of ``v``, and everything after
it (BatchNorm in train or eval mode included) is unchanged. The published code instead multiplies
the producer's BatchNorm scale and shift by ``v``, which equals the gate only where ``v >= 0``
(``relu(v y) = v relu(y)``) and not for ReLU6: it turns a negative gate into a different function.

What is between the gate and its consumers must commute with the scale. Average pooling and
flattening do for any sign; max-pooling only for ``v >= 0`` (``max(-x) = -min(x)``). `fold`
checks this numerically (a sign-flip probe) for the gates that have negative entries and reports
the channels it could not fold exactly in ``Folded.inexact`` (their scale is folded anyway; a
VGG channel whose expected gate is negative in front of a max-pool is the only case here).

    folded = fold(model, variables, {"conv3": v3, ...})
    models.apply(model, folded.variables, x) == models.apply(model, variables, x, {"conv3": v3, ...})
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Dict, Mapping

import flax
import jax
import jax.numpy as jnp
import numpy as np

from jaxdr import models
from jaxdr.models import graph as graph_lib


@dataclasses.dataclass(frozen=True)
class Folded:
  """``variables`` with the gates folded in; ``inexact``: gate key -> channel indices whose
  (negative) gate could not be moved exactly into the weights (empty when the fold is exact)."""
  variables: Dict[str, Any]
  inexact: Dict[str, np.ndarray]

  @property
  def inexact_channels(self) -> int:
    return int(sum(v.size for v in self.inexact.values()))


def _get(tree, path):
  for p in path:
    tree = tree[p]
  return tree


def scale_inputs(graph: graph_lib.Graph, variables: Mapping[str, Any],
                 gates: Mapping[str, Any]) -> Dict[str, Any]:
  """A copy of ``variables`` (numpy leaves) with every consumer of each gate key's channels
  reading them scaled by its gate ``[C]``: conv kernels along their input axis, depthwise
  kernels along their channel axis, dense kernels along the rows of each channel."""
  variables = jax.tree.map(lambda x: np.array(x, copy=True), flax.core.unfreeze(dict(variables)))
  params = variables["params"]
  for key, v in gates.items():
    v = np.asarray(v, np.float32)
    if v.shape != (graph.gate(key).channels,):
      raise ValueError(f"gate {key!r} must have shape [{graph.gate(key).channels}], got {v.shape}")
    for layer in graph.consumers(key):
      p = _get(params, layer.path)
      if layer.kind == "dense":
        k = p["dense"]["kernel"]
        rows = k.reshape(layer.in_positions, layer.in_channels, k.shape[-1])  # (H, W, C) flattening
        p["dense"]["kernel"] = (rows * v[None, :, None]).reshape(k.shape)
      elif layer.depthwise:
        p["kernel"] = p["kernel"] * v  # [kh, kw, 1, C]: channel c reads input channel c
      else:
        p["kernel"] = p["kernel"] * v[None, None, :, None]
  return variables


@functools.lru_cache(maxsize=16)
def forward(model):
  """``f(variables, images, mask) -> logits``: ``model``'s jitted eval-mode forward (cached per
  model, so the fold's sign probe and the cut check share one compile)."""
  return jax.jit(lambda variables, images, mask: models.apply(model, variables, images, mask))


def _sign_probe(model, variables, gates, images):
  """``commutes(signs: {key: [C] of +-1}) -> bool``: whether flipping channel signs as gates equals
  flipping them in the consumers' weights (true unless a max-pool sits between) on ``images``.
  Every call runs one compiled forward (its mask always holds every key of ``gates``)."""
  graph = models.describe(model)
  ones = {k: jnp.ones(np.shape(g), jnp.float32) for k, g in gates.items()}

  def commutes(signs) -> bool:
    flipped = {**ones, **{k: jnp.asarray(s) for k, s in signs.items()}}
    gated = np.asarray(forward(model)(variables, images, flipped))
    moved = np.asarray(forward(model)(scale_inputs(graph, variables, signs), images, ones))
    return bool(np.allclose(gated, moved, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(gated).max()))))
  return commutes


def fold(model, variables: Mapping[str, Any], gates: Mapping[str, Any], images=None) -> Folded:
  """Folds the per-channel ``gates`` ({key: [C]}) into the consumers of each gate point (module
  docstring): the result without a mask equals ``model`` under ``gates``, except for the
  channels listed in ``Folded.inexact``. ``images`` [N, H, W, C] feed the sign probe (None: two
  random images)."""
  graph = models.describe(model)
  signs = {k: np.where(np.asarray(v) < 0, -1.0, 1.0).astype(np.float32) for k, v in gates.items()
           if np.any(np.asarray(v) < 0)}
  inexact = {}
  if signs:
    if images is None:
      images = jax.random.normal(jax.random.PRNGKey(0), (2, model.image_size, model.image_size,
                                                          model.input_channels), jnp.float32)
    commutes = _sign_probe(model, variables, gates, jnp.asarray(images, jnp.float32))
    if not commutes(signs):  # find the gates that do not commute, one at a time
      inexact = {k: np.flatnonzero(s < 0) for k, s in signs.items() if not commutes({k: s})}
  return Folded(variables=scale_inputs(graph, variables, gates), inexact=inexact)
