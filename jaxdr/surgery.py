"""Channel surgery: turn a model under a 0/1 mask into a physically smaller dense model.

    small, small_vars, rest = surgery.slice_model(model, variables, mask)
    models.apply(small, small_vars, x, rest) == models.apply(model, variables, x, mask)

What is removed (`removal_plan`, also used by `jaxdr.costs` in 'physical' mode):
  * a channel whose gate is exactly 0 in a space of one gate point: it is removed from
    the producers' outputs and from every consumer's inputs (``Layer.src`` == gate key);
  * a residual-stream channel (coupled space) only when closed at *every* gate point of
    the stream. Closed at some but not all: ``strict=True`` raises, ``strict=False``
    keeps it (it stays masked in the remaining mask);
  * depthwise layers tie their input space (``src``) to their own space (one channel in,
    one out). A channel closed at the depthwise gate is removed with its input channel
    when the input space feeds only that layer. A channel closed at the input but open at
    the depthwise gate makes a constant map (BN shift through the activation, times the
    gate); it is folded exactly into its consumers (1x1 convs / dense layers: into their
    bias, else their BN running mean) so the channel can still go. Where that is not exact
    (a consumer with a spatial kernel, no bias and no BN, a coupled output space, or
    per-example [B, C] masks) the channel is kept and stays masked.
    The fold is exact in eval mode; in train mode it is exact when the consumer has BN
    (batch statistics cancel the constant) except for that consumer's running-mean update.
  * non-zero gate values (continuous gates) are kept; the remaining mask carries them.
  * a space never drops below one channel (zero-width layers): when every channel of a
    space is removable, its first channel is kept and stays masked.
  * ``channel_multiple=m`` (default 1) keeps each space's width a multiple of m (or its full
    width): removable channels are kept back, lowest index first, and stay masked. On
    CPU, XLA's convolutions are 2-4x slower at odd widths (11, 22, 45) than at the next
    multiple of 8 (benchmarks/results/surgery_speed.md), so the kept-back channels cost
    less time than they save.
For a per-example mask [B, C], a channel counts as closed when it is 0 for every example.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdr import masks
from jaxdr.models import graph as graph_lib

Graph = graph_lib.Graph


class SurgeryError(ValueError):
  """A mask asks for a removal surgery cannot realise (partial residual group, strict)."""


@dataclasses.dataclass(frozen=True)
class Plan:
  """What surgery removes. ``keep``: gate key -> bool [C]; ``folds``: depthwise layer key ->
  bool [C] of channels removed whose constant output is folded into the consumers."""
  keep: Dict[str, np.ndarray]
  folds: Dict[str, np.ndarray]


def _concrete(mask: Mapping[str, Any]) -> Dict[str, np.ndarray]:
  try:
    return {k: np.asarray(v) for k, v in mask.items()}
  except jax.errors.TracerArrayConversionError as e:
    raise ValueError("surgery needs a concrete mask, not a traced one (call it outside jit)") from e


def _closed(gate: np.ndarray) -> np.ndarray:
  """bool [C]: exactly 0 (for every example of a [B, C] gate)."""
  return np.all(gate == 0, axis=0) if gate.ndim == 2 else gate == 0


def _foldable(graph: Graph, dw: graph_lib.Layer, mask: Mapping[str, np.ndarray]) -> bool:
  """Can a constant on ``dw``'s output channels be folded exactly into its consumers?"""
  point = graph.gate(dw.dst)
  if point.coupled or any(np.ndim(g) == 2 for g in mask.values()):
    return False
  for consumer in graph.consumers(dw.dst):
    spatial_kernel = consumer.kind == "conv" and (consumer.kernel != 1 or consumer.depthwise)
    if spatial_kernel or not (consumer.use_bias or consumer.use_bn):
      return False
  return True


def _round_up_width(keep: np.ndarray, multiple: int) -> None:
  """Keeps back removable channels (lowest index first) until ``keep.sum()`` is a multiple of
  ``multiple`` or the full width. In place."""
  want = min(keep.size, -(-int(keep.sum()) // multiple) * multiple)
  extra = want - int(keep.sum())
  if extra > 0:
    keep[np.flatnonzero(~keep)[:extra]] = True


def plan(graph: Graph, mask: Optional[Mapping[str, Any]], strict: bool = True,
         channel_multiple: int = 1) -> Plan:
  """The full removal plan (keep vectors and depthwise folds); see the module docstring."""
  if int(channel_multiple) < 1:
    raise ValueError(f"channel_multiple must be >= 1, got {channel_multiple}")
  masks.validate_mask(mask, graph.gates)
  mask = _concrete(mask or {})
  closed = {p.key: (_closed(mask[p.key]) if p.key in mask else np.zeros(p.channels, bool))
            for p in graph.gates}
  keep_space: Dict[str, np.ndarray] = {}
  for space, points in masks.spaces(graph.gates).items():
    every = np.logical_and.reduce([closed[p.key] for p in points])
    some = np.logical_or.reduce([closed[p.key] for p in points])
    partial = np.flatnonzero(some & ~every)
    if strict and partial.size:
      c = int(partial[0])
      shut = [p.key for p in points if closed[p.key][c]]
      open_ = [p.key for p in points if not closed[p.key][c]]
      raise SurgeryError(
          f"residual space {space!r}: channel {c} is closed at {shut} but open at {open_}; a "
          f"coupled channel is removable only when closed at every gate point of its space "
          f"({partial.size} such channel(s); strict=False keeps them masked)")
    keep_space[space] = ~every
  space_of = {p.key: p.space for p in graph.gates}
  ties = []  # (depthwise layer, input space, own space, channels closed at its own gate)
  for layer in graph.layers:
    if not layer.depthwise:
      continue
    s_out = space_of[layer.dst]
    if layer.src is None:  # input channels are the image: nothing to remove
      keep_space[s_out] = np.ones(layer.out_channels, bool)
      continue
    s_in = space_of[layer.src]
    in_closed, out_closed = ~keep_space[s_in], closed[layer.dst]
    removed = in_closed & out_closed
    if _foldable(graph, layer, mask):
      removed |= in_closed
    in_private = (not graph.gate(layer.src).coupled
                  and [l.key for l in graph.consumers(layer.src)] == [layer.key])
    if in_private:  # the input channel exists only for this layer: it goes with it
      keep_space[s_in] = ~(removed | out_closed)
    else:  # other consumers may need it: remove no more than was already removable
      keep_space[s_in] = keep_space[s_in] | ~removed
    ties.append((layer, s_in, s_out, out_closed))
  tied = {s_out for _, _, s_out, _ in ties}
  for space, keep in keep_space.items():
    if not keep.any():
      keep[0] = True
    if channel_multiple > 1 and space not in tied:  # tied spaces copy their input's below
      _round_up_width(keep, int(channel_multiple))
  folds: Dict[str, np.ndarray] = {}
  for layer, s_in, s_out, out_closed in ties:
    keep_space[s_out] = keep_space[s_in].copy()
    folds[layer.key] = ~keep_space[s_in] & ~out_closed
  keep = {p.key: keep_space[p.space] for p in graph.gates}
  return Plan(keep=keep, folds={k: v for k, v in folds.items() if v.any()})


def removal_plan(graph: Graph, mask: Optional[Mapping[str, Any]], strict: bool = True,
                 channel_multiple: int = 1) -> Dict[str, np.ndarray]:
  """Gate key -> bool [C]: the channels that physically remain after surgery."""
  return plan(graph, mask, strict, channel_multiple).keep


def _get(tree, path):
  for p in path:
    tree = tree[p]
  return tree


def _fold_constants(model, variables, mask, folded_layers) -> Dict[str, np.ndarray]:
  """Depthwise layer key -> its (constant) gated output per channel [C], eval mode. One
  compiled forward (op by op, every op of the network compiled on its own, took seconds)."""
  paths = {tuple(k.split("/")) for k in folded_layers}
  images = jnp.zeros((1, model.image_size, model.image_size, model.input_channels), jnp.float32)

  @jax.jit
  def intermediates(variables, mask):
    _, state = model.apply(variables, images, mask, False,
                           capture_intermediates=lambda m, name: name == "__call__" and
                           tuple(m.scope.path) in paths, mutable=["intermediates"])
    return state["intermediates"]

  inter = intermediates(variables, jax.device_put({k: np.asarray(v) for k, v in (mask or {}).items()}))
  return {k: np.asarray(_get(inter, k.split("/"))["__call__"][0])[0, 0, 0] for k in folded_layers}


def _fold_shift(consumer: graph_lib.Layer, kernel: np.ndarray, const: np.ndarray) -> np.ndarray:
  """[out] shift a constant input ``const`` [Cin] adds to ``consumer``'s pre-activation."""
  if consumer.kind == "conv":
    return const @ kernel[0, 0]
  rows = kernel.reshape(consumer.in_positions, consumer.in_channels, -1)  # (H, W, C) flattening
  return np.einsum("c,pco->o", const, rows)


def slice_variables(graph: Graph, variables: Mapping[str, Any], the_plan: Plan,
                    constants: Mapping[str, np.ndarray] = None) -> Dict[str, Any]:
  """Slices every layer's kernel / bias / BN leaves to the plan's kept channels."""
  variables = jax.tree.map(np.asarray, flax.core.unfreeze(variables))
  params, stats = variables["params"], variables.get("batch_stats", {})
  shifts: Dict[str, np.ndarray] = {}
  for dw_key, folded in the_plan.folds.items():
    dst = next(l.dst for l in graph.layers if l.key == dw_key)
    const = np.where(folded, constants[dw_key], 0.0).astype(np.float32)
    for consumer in graph.consumers(dst):
      p = _get(params, consumer.path)
      kernel = p["kernel"] if consumer.kind == "conv" else p["dense"]["kernel"]
      shifts[consumer.key] = shifts.get(consumer.key, 0.0) + _fold_shift(consumer, kernel, const)
  for layer in graph.layers:
    p = _get(params, layer.path)
    keep_in = the_plan.keep[layer.src] if layer.src else np.ones(layer.in_channels, bool)
    keep_out = the_plan.keep[layer.dst] if layer.dst else np.ones(layer.out_channels, bool)
    shift = shifts.get(layer.key)
    if layer.kind == "dense":
      d = p["dense"]
      rows = np.tile(keep_in, layer.in_positions)
      d["kernel"] = d["kernel"][rows][:, keep_out]
      if shift is not None:
        d["bias"] = d["bias"] + shift
      d["bias"] = d["bias"][keep_out]
      continue
    kernel = p["kernel"]
    if not layer.depthwise:
      kernel = kernel[:, :, keep_in, :]
    p["kernel"] = kernel[..., keep_out]
    if shift is not None and layer.use_bias:
      p["bias"] = p["bias"] + shift
    elif shift is not None:
      s = _get(stats, layer.path)["bn"]
      s["mean"] = s["mean"] - shift
    if layer.use_bias:
      p["bias"] = p["bias"][keep_out]
    if layer.use_bn:
      for leaf in ("scale", "bias"):
        p["bn"][leaf] = p["bn"][leaf][keep_out]
      s = _get(stats, layer.path)["bn"]
      for leaf in ("mean", "var"):
        s[leaf] = s[leaf][keep_out]
  return jax.device_put(variables)  # (jnp.asarray compiles a staging op per new shape)


def remaining_mask(mask: Optional[Mapping[str, Any]], keep: Mapping[str, np.ndarray]) -> masks.Mask:
  """``mask`` restricted to kept channels, without gates that are all ones ({} if none left)."""
  out = {}
  for key, gate in (mask or {}).items():
    gate = np.asarray(gate)[..., keep[key]]  # concrete: numpy (jnp compiles each op per shape)
    if not np.all(gate == 1):
      out[key] = jax.device_put(gate)
  return out


def slice_model(model: nn.Module, variables: Mapping[str, Any], mask: Optional[Mapping[str, Any]],
                strict: bool = True, channel_multiple: int = 1
                ) -> Tuple[nn.Module, Dict[str, Any], masks.Mask]:
  """(small model, its variables, remaining mask) computing what ``model`` computes under
  ``mask``: ``apply(small, small_vars, x, rest) == apply(model, variables, x, mask)``.

  The small model is ``model`` with ``channels`` (space -> width) set to the kept widths,
  a normal jaxdr model (train it, checkpoint it, slice it again): it equals
  ``models.create(name, ..., channels=dict(small.channels))`` for a model made by ``create``.
  ``mask`` must be concrete (not traced); ``strict``, ``channel_multiple``: see the module
  docstring.
  """
  graph = graph_lib.describe(model)
  the_plan = plan(graph, mask, strict, channel_multiple)
  constants = _fold_constants(model, variables, mask, the_plan.folds) if the_plan.folds else {}
  widths = dict(model.channels)
  for point in graph.gates:
    widths[point.space] = int(the_plan.keep[point.key].sum())
  small = model.clone(channels=tuple(sorted(widths.items())))
  small_graph = graph_lib.describe(small)
  for point in small_graph.gates:
    want = int(the_plan.keep[point.key].sum())
    if point.channels != want:
      raise SurgeryError(f"{type(model).__name__} ignores channels[{point.space!r}]: gate "
                         f"{point.key!r} has {point.channels} channels, surgery kept {want}")
  small_vars = slice_variables(graph, variables, the_plan, constants)
  return small, small_vars, remaining_mask(mask, the_plan.keep)
