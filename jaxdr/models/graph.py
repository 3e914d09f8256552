"""What a model is made of, read off one abstract call: gate points and layers.

`describe(model)` runs ``model.init`` under ``jax.eval_shape`` (no FLOPs, no memory)
with a Flax method interceptor that records every ConvUnit / DenseUnit / Gate call.
The result is the single source of truth for cost accounting and channel surgery.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Dict, List, Mapping, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdr import masks
from jaxdr.models import layers


@dataclasses.dataclass(frozen=True)
class Layer:
  """A conv or dense layer as cost accounting and surgery see it.

  ``src``: gate key feeding its input channels (None: the image / an ungated tensor);
  ``dst``: gate key its output channels flow through (None: logits or ungated).
  ``in_positions``: spatial positions per input channel of a flattening dense layer.
  """
  path: Tuple[str, ...]
  kind: str  # 'conv' | 'dense'
  src: Optional[str]
  dst: Optional[str]
  in_channels: int
  out_channels: int
  kernel: int = 1
  stride: int = 1
  depthwise: bool = False
  use_bias: bool = True
  use_bn: bool = False
  out_spatial: Tuple[int, int] = (1, 1)
  in_positions: int = 1

  @property
  def key(self) -> str:
    return layers.path_key(self.path)


@dataclasses.dataclass(frozen=True)
class Graph:
  """``groups``: ``(key, members)`` of group gates (DMNN's sub-block gates): channel i of gate
  ``key`` opens or closes every channel of the gate points ``members[i]`` (`expand_groups`)."""
  gates: Tuple[masks.GatePoint, ...]
  layers: Tuple[Layer, ...]
  groups: Tuple[Tuple[str, Tuple[Tuple[str, ...], ...]], ...] = ()

  def gate(self, key: str) -> masks.GatePoint:
    return self._gates_by_key[key]

  @functools.cached_property
  def _gates_by_key(self) -> Dict[str, masks.GatePoint]:
    return {g.key: g for g in self.gates}

  def consumers(self, key: str) -> List[Layer]:
    return [l for l in self.layers if l.src == key]

  def producers(self, key: str) -> List[Layer]:
    return [l for l in self.layers if l.dst == key]


def _record(records: list):
  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    out = next_fun(*args, **kwargs)
    if context.method_name != "__call__":
      return out
    if isinstance(module, (layers.ConvUnit, layers.DenseUnit, layers.Gate)):
      records.append((module, args, kwargs, out))
    return out
  return interceptor


def _model_key(model: nn.Module):
  fields = tuple((f.name, getattr(model, f.name)) for f in dataclasses.fields(model)
                 if f.name not in ("parent", "name"))
  return type(model), fields


@functools.lru_cache(maxsize=64)
def _describe(model_key) -> Graph:
  cls, fields = model_key
  model = cls(**dict(fields))
  records: list = []
  x = jax.ShapeDtypeStruct((1, model.image_size, model.image_size, model.input_channels), jnp.float32)
  with nn.intercept_methods(_record(records)):
    jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), x)
  gate_list, layer_list, group_list = [], [], []
  for module, args, kwargs, out in records:
    key = layers.path_key(module.scope.path)
    x_in = args[0]
    gated = getattr(module, "gate", True)
    if gated:
      spatial = tuple(out.shape[1:3]) if out.ndim == 4 else (1, 1)
      gate_list.append((key, out.shape[-1], module.space or key, spatial))
    if isinstance(module, layers.Gate):
      if getattr(module, "members", ()):
        group_list.append((key, tuple(tuple(m) for m in module.members)))
      continue
    dst = key if module.gate else kwargs.get("dst")
    common = dict(path=tuple(module.scope.path), src=kwargs.get("src"), dst=dst,
                  out_channels=out.shape[-1])
    if isinstance(module, layers.ConvUnit):
      layer_list.append(Layer(kind="conv", in_channels=x_in.shape[-1], kernel=module.kernel,
                              stride=module.stride, depthwise=module.depthwise,
                              use_bias=module.use_bias, use_bn=module.use_bn,
                              out_spatial=tuple(out.shape[1:3]), **common))
    else:
      positions = x_in.shape[1] * x_in.shape[2] if x_in.ndim == 4 else 1
      layer_list.append(Layer(kind="dense", in_channels=x_in.shape[-1], in_positions=positions,
                              **common))
  counts: Dict[str, int] = {}
  for _, _, space, _ in gate_list:
    counts[space] = counts.get(space, 0) + 1
  gates = tuple(masks.GatePoint(key=k, channels=c, space=s, coupled=counts[s] > 1, spatial=sp)
                for k, c, s, sp in gate_list)
  return Graph(gates=gates, layers=tuple(layer_list), groups=tuple(group_list))


def expand_groups(graph: Graph, mask: Optional[Mapping[str, Any]]):
  """``mask`` with each group gate folded into its members' channel gates: member gate points
  of group channel i are multiplied by it ([N] or [B, N] group gates give [C] or [B, C]
  member gates). numpy in, numpy out; jax arrays otherwise. Other entries stay as they are."""
  if not mask or not graph.groups:
    return mask
  out = dict(mask)
  xp = np if all(isinstance(v, np.ndarray) for v in mask.values()) else jnp
  for key, members in graph.groups:
    if key not in mask:
      continue
    group = xp.asarray(mask[key])
    for i, keys in enumerate(members):
      for member in keys:
        gate = xp.broadcast_to(group[..., i:i + 1], group.shape[:-1] + (graph.gate(member).channels,))
        out[member] = gate if member not in out else xp.asarray(out[member]) * gate
  return out


def describe(model: nn.Module) -> Graph:
  """Gate points and layers of ``model`` (cached per model configuration)."""
  return _describe(_model_key(model))
