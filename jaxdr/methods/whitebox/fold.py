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

``into='bn'`` (`WhiteboxOptions.fold_into`'s default) follows the published code where that is
exact: a channel whose gate is ``>= 0`` and whose producers all end in BatchNorm -> ReLU gets the
gate in the producers' BatchNorm scale and shift (``relu(v (g x + b)) = v relu(g x + b)``, in
train and eval mode), so the consumers' kernels keep the trained scale; negative gates still go
into the consumers' input weights. Whether a producer's activation is positively homogeneous
(ReLU yes, ReLU6 no) is checked numerically on the probe images with a gate of 8, per gate key;
a key that fails is folded into its consumers instead. ``into='inputs'``: every gate into the consumers.

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
from jaxdr.methods.whitebox.options import FOLD_INTO
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


def scale_bn(graph: graph_lib.Graph, variables: Mapping[str, Any],
             gates: Mapping[str, Any]) -> Dict[str, Any]:
  """A copy of ``variables`` (numpy leaves) with the BatchNorm scale and shift of every producer
  of each gate key's channels multiplied by its gate ``[C]`` (>= 0 entries; a key whose producers
  do not all have BatchNorm raises ValueError). Equals the gate after a ReLU."""
  variables = jax.tree.map(lambda x: np.array(x, copy=True), flax.core.unfreeze(dict(variables)))
  params = variables["params"]
  for key, v in gates.items():
    v = np.asarray(v, np.float32)
    if np.any(v < 0):
      raise ValueError(f"gate {key!r} has negative entries: they do not move into a BatchNorm")
    if not _produced_by_bn(graph, key):
      raise ValueError(f"gate {key!r}: not every producer has a BatchNorm")
    for layer in graph.producers(key):
      bn = _get(params, layer.path)["bn"]
      bn["scale"] = bn["scale"] * v
      bn["bias"] = bn["bias"] * v
  return variables


def _produced_by_bn(graph: graph_lib.Graph, key: str) -> bool:
  """Whether the channels of gate ``key`` have producers and every one ends in BatchNorm."""
  producers = graph.producers(key)
  return bool(producers) and all(l.use_bn for l in producers)


def _bn_part(graph: graph_lib.Graph, gates: Mapping[str, Any]) -> Dict[str, np.ndarray]:
  """``{key: the gate where >= 0, else 1}`` for the keys whose producers all have BatchNorm."""
  return {key: np.where(np.asarray(v) >= 0, np.asarray(v), 1.0).astype(np.float32)
          for key, v in gates.items() if _produced_by_bn(graph, key)}


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


def fold(model, variables: Mapping[str, Any], gates: Mapping[str, Any], images=None, *,
         into: str) -> Folded:
  """Folds the per-channel ``gates`` ({key: [C]}) into the weights (module docstring; ``into``
  'inputs' or 'bn'): the result without a mask equals ``model`` under ``gates``, except for the
  channels listed in ``Folded.inexact``. ``images`` [N, H, W, C] feed the sign and BatchNorm
  probes (None: two random images)."""
  if into not in FOLD_INTO:
    raise ValueError(f"fold into must be one of {FOLD_INTO}, got {into!r}")
  graph = models.describe(model)
  if images is None:
    images = jax.random.normal(jax.random.PRNGKey(0), (2, model.image_size, model.image_size,
                                                        model.input_channels), jnp.float32)
  images = jnp.asarray(images, jnp.float32)
  if into == "bn":
    bn = _bn_part(graph, gates)
    if bn:
      ones = {k: jnp.ones(np.shape(g), jnp.float32) for k, g in bn.items()}

      def exact(keys) -> bool:  # probed with a gate of 8 (ReLU6 saturates differently then)
        part = {k: np.full_like(bn[k], 8.0) for k in keys}
        gated = np.asarray(forward(model)(variables, images, {**ones, **{k: jnp.asarray(g) for k, g in part.items()}}))
        moved = np.asarray(forward(model)(scale_bn(graph, variables, part), images, ones))
        return bool(np.allclose(gated, moved, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(gated).max()))))
      if not exact(list(bn)):  # e.g. a ReLU6 producer: those keys go into the consumers
        bn = {k: g for k, g in bn.items() if exact([k])}
      variables = scale_bn(graph, variables, bn)
      gates = {k: (np.where(np.asarray(v) >= 0, 1.0, np.asarray(v)).astype(np.float32) if k in bn else v)
               for k, v in gates.items()}
  signs = {k: np.where(np.asarray(v) < 0, -1.0, 1.0).astype(np.float32) for k, v in gates.items()
           if np.any(np.asarray(v) < 0)}
  inexact = {}
  if signs:
    commutes = _sign_probe(model, variables, gates, images)
    if not commutes(signs):  # find the gates that do not commute, one at a time
      inexact = {k: np.flatnonzero(s < 0) for k, s in signs.items() if not commutes({k: s})}
  return Folded(variables=scale_inputs(graph, variables, gates), inexact=inexact)
