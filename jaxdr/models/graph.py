"""What a model is made of, read off one abstract call: gate points and layers.

`describe(model)` runs ``model.init`` under ``jax.eval_shape`` (no FLOPs, no memory)
with a Flax method interceptor that records every ConvUnit / DenseUnit / Gate call.
The result is the single source of truth for cost accounting and channel surgery.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Dict, List, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

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
  gates: Tuple[masks.GatePoint, ...]
  layers: Tuple[Layer, ...]

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
  gate_list, layer_list = [], []
  for module, args, kwargs, out in records:
    key = layers.path_key(module.scope.path)
    x_in = args[0]
    gated = getattr(module, "gate", True)
    if gated:
      spatial = tuple(out.shape[1:3]) if out.ndim == 4 else (1, 1)
      gate_list.append((key, out.shape[-1], module.space or key, spatial))
    if isinstance(module, layers.Gate):
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
  return Graph(gates=gates, layers=tuple(layer_list))


def describe(model: nn.Module) -> Graph:
  """Gate points and layers of ``model`` (cached per model configuration)."""
  return _describe(_model_key(model))
