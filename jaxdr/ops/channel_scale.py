"""Activations times a channel gate ([C] or [B, C]), optionally with the gate's gradient
summed as a tree of adds.

The gate's gradient is a sum of ``x * cotangent`` over every axis but the gate's. XLA's CPU
reduce runs it ~3x slower than `reductions.tree_sum` (benchmarks/results/cdrp_speed.md), so
models on their CPU fast paths ask for ``tree_grad`` (a custom VJP, reverse mode only).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdr.ops import reductions


def broadcastable(gate, ndim: int):
  """[C] or [B, C] -> a shape that broadcasts against [B, ..., C] (ndim axes)."""
  if gate.ndim == 2:
    return gate.reshape((gate.shape[0],) + (1,) * (ndim - 2) + (gate.shape[1],))
  return gate


def scale_channels(x: jnp.ndarray, gate: jnp.ndarray, *, tree_grad: bool = False) -> jnp.ndarray:
  """``x`` [B, ..., C] times ``gate`` [C] (shared) or [B, C] (per example), checked by the
  caller (`jaxdr.masks.gate_for`). ``tree_grad``: the gate's gradient by a tree of adds for
  NHWC maps (reverse mode only; on NC inputs the plain product is used)."""
  if tree_grad and x.ndim > 2:
    return _scale_tree_grad(x, gate)
  return x * broadcastable(gate, x.ndim)


@jax.custom_vjp
def _scale_tree_grad(x, gate):
  return x * broadcastable(gate, x.ndim)


def _scale_fwd(x, gate):
  return _scale_tree_grad(x, gate), (x, gate)


def _scale_bwd(res, g):
  x, gate = res
  axes = range(gate.ndim - 1, x.ndim - 1)  # all but the gate's: (N,) H, W
  return g * broadcastable(gate, x.ndim), reductions.tree_sum(x * g, axes)


_scale_tree_grad.defvjp(_scale_fwd, _scale_bwd)
