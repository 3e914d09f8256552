"""Class-wise masks and the gates they put on a batch (White-Box section III-C).

A class-wise mask is a float array ``M [K classes, C channels]`` per masked gate point,
initialised to a constant (1 in the paper). For an image of class ``y`` the gate on the layer's
channels is ``s @ M`` (``[C]``), where the soft label ``s [K]`` has ``s[y] = 1`` and an independent
Uniform[0, 1) draw for every other class, drawn afresh per image, per layer and per step (the
published code's ``torch.rand``; the paper's text says a normal distribution). Variants:

  'soft'    the paper: gate = s @ M with soft labels s;
  'hard'    "w/o soft mask": s = one_hot(y), gate = M[y];
  'shared'  "w/o class-wise mask": one mask ``M [1, C]`` for every image, gate = M[0].

After training, a channel's score is ``|sum_k M[k, c]|`` (the global vote's ranking) and the
class-agnostic gate folded into the pruned network is ``sum_k M[k] / 2`` (soft, as the published
code), ``sum_k M[k] / K`` (hard: the mean class gate) or ``M[0]`` (shared).

    masks = init_masks(graph, keys, num_classes=10, gating="soft")     # {key: [10, C]}
    gates = batch_gates(masks, labels, rng, "soft")                     # {key: [B, C]}, inside jit
    models.apply(model, variables, images, gates, train=True)
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdr.errors import ConfigError
from jaxdr.models import graph as graph_lib

GATING_MODES = ("soft", "hard", "shared")
Masks = Dict[str, Any]


def _check_mode(gating: str) -> None:
  if gating not in GATING_MODES:
    raise ConfigError(f"gating must be one of {GATING_MODES}, got {gating!r}")


def init_masks(graph: graph_lib.Graph, keys: Sequence[str], num_classes: int, gating: str = "soft",
               value: float = 1.0) -> Masks:
  """``{key: float32 [K, C]}`` filled with ``value`` (``[1, C]`` for 'shared')."""
  _check_mode(gating)
  rows = 1 if gating == "shared" else int(num_classes)
  return {k: jnp.full((rows, graph.gate(k).channels), float(value), jnp.float32) for k in keys}


def check_labels(labels, num_classes: int) -> None:
  """ConfigError when concrete ``labels`` fall outside [0, num_classes) (traced labels pass:
  the entry points check their data before training)."""
  if isinstance(labels, jax.core.Tracer):
    return
  labels = np.asarray(labels)
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ConfigError(f"labels must lie in [0, {num_classes}) for {num_classes} class-wise mask rows, "
                      f"got labels from {labels.min()} to {labels.max()}")


def soft_labels(rng: jax.Array, labels: jnp.ndarray, num_classes: int) -> jnp.ndarray:
  """[B, K]: 1 at each image's label, independent Uniform[0, 1) draws elsewhere."""
  check_labels(labels, num_classes)
  noise = jax.random.uniform(rng, (labels.shape[0], num_classes), jnp.float32)
  return jnp.where(jax.nn.one_hot(labels, num_classes, dtype=jnp.bool_), 1.0, noise)


def batch_gates(masks: Mapping[str, jnp.ndarray], labels: jnp.ndarray, rng: jax.Array,
                gating: str) -> Dict[str, jnp.ndarray]:
  """The gates of a batch with integer ``labels [B]``: ``{key: [B, C]}`` ('soft', 'hard') or
  ``{key: [C]}`` ('shared'). 'soft' draws a fresh soft label per image and per layer from
  ``rng`` (one key per layer, by position in ``masks``)."""
  _check_mode(gating)
  if gating == "shared":
    return {k: m[0] for k, m in masks.items()}
  out = {}
  for i, (key, m) in enumerate(sorted(masks.items())):
    k = m.shape[0]
    if gating == "hard":
      check_labels(labels, k)
      out[key] = jnp.take(m, labels, axis=0)
    else:
      out[key] = soft_labels(jax.random.fold_in(rng, i), labels, k) @ m
  return out


def channel_sums(masks: Mapping[str, Any]) -> Dict[str, np.ndarray]:
  """``{key: sum_k M[k] [C]}`` as numpy float64."""
  return {k: np.asarray(m, np.float64).sum(axis=0) for k, m in masks.items()}


def scores(masks: Mapping[str, Any]) -> Dict[str, np.ndarray]:
  """The vote's channel importance ``|sum_k M[k, c]|`` per key (section III-D, Eq. 11)."""
  return {k: np.abs(s) for k, s in channel_sums(masks).items()}


def fold_vectors(masks: Mapping[str, Any], gating: str) -> Dict[str, np.ndarray]:
  """The class-agnostic gate ``[C]`` folded into the pruned network (module docstring)."""
  _check_mode(gating)
  sums = channel_sums(masks)
  if gating == "soft":
    return {k: s / 2.0 for k, s in sums.items()}
  return {k: s / np.asarray(masks[k]).shape[0] for k, s in sums.items()}  # hard: mean; shared: M[0]
