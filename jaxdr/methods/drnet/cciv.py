"""DRNet's reconstruction: the CCIV of a sub-task (a set of classes) is a 0/1 channel mask.

By union (``max_c civ[c] >= union_thr``) or XOR (``|civ[c1] - civ[c2]| >= xor_thr``, two
classes), or by the threshold that keeps a requested fraction of channels::

    mask = cciv_mask(civ, (1, 8), "union", threshold=0.1)     # {gate key: float32 [C]}
    mask = cciv_mask(civ, (1, 8), keep_fraction=0.5)
    sim = civ_similarity(civ)                                   # [K, K] IoU, Formula 5
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from jaxdr import masks
from jaxdr.errors import ConfigError
from jaxdr.methods.drnet.options import COMBINES

Civ = Dict[str, np.ndarray]  # gate key -> float32 [num_classes, C]


def check_classes(classes: Sequence[int], num_classes: int) -> Tuple[int, ...]:
  """The sub-task's class ids as a sorted tuple; ConfigError on an empty / bad / repeated id."""
  classes = tuple(classes)
  if not classes:
    raise ConfigError("a sub-task needs at least one class, got an empty class list")
  for c in classes:
    if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer)):
      raise ConfigError(f"class ids must be integers, got {c!r}")
    if not 0 <= c < num_classes:
      raise ConfigError(f"class id {c} is out of range [0, {num_classes})")
  if len(set(classes)) != len(classes):
    raise ConfigError(f"sub-task repeats a class: {classes}")
  return tuple(sorted(int(c) for c in classes))


def _num_classes(civ: Civ) -> int:
  return next(iter(civ.values())).shape[0]


def scores(civ: Civ, classes: Sequence[int], combine: str = "union") -> Civ:
  """Per-channel score a threshold is applied to ({key: [C]}): max over the classes' CIVs
  (union) or ``|civ[c1] - civ[c2]|`` (xor, exactly two classes)."""
  classes = check_classes(classes, _num_classes(civ))
  if combine == "union":
    return {k: np.max(v[list(classes)], axis=0) for k, v in civ.items()}
  if combine == "xor":
    if len(classes) != 2:
      raise ConfigError(f"XOR combines exactly 2 classes, got {len(classes)}: {classes}")
    a, b = classes
    return {k: np.abs(v[a] - v[b]) for k, v in civ.items()}
  raise ConfigError(f"combine must be one of {COMBINES}, got {combine!r}")


def threshold_for_fraction(score: Civ, fraction: float) -> float:
  """The largest threshold t with ``mean(score >= t) >= fraction`` over all channels."""
  if not 0.0 < fraction <= 1.0:
    raise ConfigError(f"keep fraction must be in (0, 1], got {fraction}")
  flat = np.sort(np.concatenate([np.ravel(v) for v in score.values()]))[::-1]
  k = int(math.ceil(fraction * flat.size - 1e-9))
  return float(flat[max(k, 1) - 1])


def cciv_mask(civ: Civ, classes: Sequence[int], combine: str = "union", threshold: Optional[float] = None,
              keep_fraction: float = 0.0, min_channels: int = 0) -> masks.Mask:
  """The sub-task's 0/1 mask {key: float32 [C]}: ``score >= threshold``, where the threshold is
  ``threshold`` or, with ``keep_fraction`` > 0, the one keeping that fraction of channels.
  ``min_channels`` keeps the best-scoring channels of a gate point that would keep fewer."""
  score = scores(civ, classes, combine)
  if keep_fraction:
    threshold = threshold_for_fraction(score, keep_fraction)
  elif threshold is None:
    raise ConfigError("a CCIV needs a threshold or a keep_fraction > 0")
  out = {}
  for key, s in score.items():
    keep = s >= threshold
    if keep.sum() < min_channels:
      keep[np.argsort(-s, kind="stable")[:min_channels]] = True
    out[key] = keep.astype(np.float32)
  return out


def civ_similarity(civ: Civ, eps: float = 0.0) -> np.ndarray:
  """[K, K] IoU of the classes' important-channel sets (CIV > eps), DRNet Formula 5."""
  sets = np.concatenate([v > eps for v in civ.values()], axis=1)  # [K, total channels]
  inter = sets.astype(np.float64) @ sets.T.astype(np.float64)
  sizes = sets.sum(1).astype(np.float64)
  union = sizes[:, None] + sizes[None, :] - inter
  return np.where(union > 0, inter / np.maximum(union, 1), 1.0)
