"""The mask pytree: one float gate vector per gate point, shared by all four methods.

A mask is a flat ``dict`` mapping a gate point's key (its module path, e.g.
``"stage1_block0/conv1"``) to a float array of shape ``[..., C]``: ``[C]`` for one
gate for the whole batch, ``[B, C]`` for per-example gates (CDRP, White-Box's
label-selected masks, DMNN's sub-block gates). Missing keys mean "open" (all ones),
so ``mask=None`` == ``{}`` == the all-ones mask. Gates multiply the activation of a
gate point, so 0/1 masks, continuous gates, ``jit``, ``grad`` and ``vmap`` all work.

Gate points belong to a channel *space*: a block's internal channels form a space of
one gate point (removable on its own), while all gate points on one residual stream
share a *coupled* space whose channel can be cut only when closed at every one of them.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Mapping, Optional, Sequence

import jax.numpy as jnp
import numpy as np

from jaxdr.ops import channel_scale

Mask = Dict[str, "jnp.ndarray"]


class MaskError(ValueError):
  """A mask does not fit the model's gate points."""


@dataclasses.dataclass(frozen=True)
class GatePoint:
  """One place in the network where a gate vector multiplies the activations.

  Attributes:
    key: the mask key (module path joined by '/').
    channels: gate vector length C.
    space: channel space; gate points sharing a space see the same channels
      (a residual stream).
    coupled: True when the space has several gate points (a residual stream);
      its channels are removable only as a whole group.
    spatial: (H, W) of the gated activation for the model's image size.
  """
  key: str
  channels: int
  space: str
  coupled: bool
  spatial: tuple

  @property
  def removable_alone(self) -> bool:
    return not self.coupled


def gate_for(x: jnp.ndarray, mask: Optional[Mapping[str, jnp.ndarray]], key: str) -> Optional[jnp.ndarray]:
  """``mask[key]`` in ``x``'s dtype, checked against activations ``x`` [B, ..., C]: shape [C]
  or [B, C] with x's channels and batch. None when the gate is open (no mask, or no key)."""
  if mask is None or key not in mask:
    return None
  gate = jnp.asarray(mask[key], x.dtype)
  if gate.shape[-1] != x.shape[-1]:
    raise MaskError(f"gate {key!r} has {gate.shape[-1]} channels, activation has {x.shape[-1]}")
  if gate.ndim == 2:  # per-example [B, C]
    if gate.shape[0] != x.shape[0]:
      raise MaskError(f"per-example gate {key!r} has batch {gate.shape[0]}, activations have {x.shape[0]}")
  elif gate.ndim != 1:
    raise MaskError(f"gate {key!r} must have shape [C] or [B, C], got {gate.shape}")
  return gate


def apply_gate(x: jnp.ndarray, mask: Optional[Mapping[str, jnp.ndarray]], key: str) -> jnp.ndarray:
  """Multiplies NHWC (or NC) activations ``x`` by ``mask[key]`` ([C] or [B, C]); plain
  autodiff (the model units choose `jaxdr.ops.scale_channels`' CPU gradient themselves)."""
  gate = gate_for(x, mask, key)
  return x if gate is None else channel_scale.scale_channels(x, gate)


def ones_mask(points: Sequence[GatePoint], batch_size: Optional[int] = None, dtype=jnp.float32) -> Mask:
  """All-ones mask for ``points``; with ``batch_size`` the gates get a leading batch axis."""
  lead = () if batch_size is None else (batch_size,)
  return {p.key: jnp.ones(lead + (p.channels,), dtype) for p in points}


def validate_mask(mask: Optional[Mapping[str, jnp.ndarray]], points: Sequence[GatePoint]) -> None:
  """Raises MaskError (one clear line) when ``mask`` has unknown keys or wrong lengths."""
  if mask is None:
    return
  by_key = {p.key: p for p in points}
  unknown = sorted(set(mask) - set(by_key))
  if unknown:
    raise MaskError(f"unknown gate point(s) {unknown[:5]}; the model's gate points are e.g. {list(by_key)[:5]}")
  for key, gate in mask.items():
    shape = np.shape(gate)
    if len(shape) not in (1, 2) or shape[-1] != by_key[key].channels:
      raise MaskError(f"gate {key!r} must have shape [{by_key[key].channels}] or "
                      f"[B, {by_key[key].channels}], got {tuple(shape)}")


def spaces(points: Sequence[GatePoint]) -> Dict[str, list]:
  """Channel space -> the gate points in it (in network order)."""
  out: Dict[str, list] = {}
  for p in points:
    out.setdefault(p.space, []).append(p)
  return out


def expand_groups(gates: jnp.ndarray, channels: int) -> jnp.ndarray:
  """Repeats [..., G] group gates (DMNN sub-blocks) to [..., C] channel gates, C % G == 0."""
  groups = gates.shape[-1]
  if channels % groups:
    raise MaskError(f"{channels} channels do not split into {groups} equal groups")
  return jnp.repeat(gates, channels // groups, axis=-1)
