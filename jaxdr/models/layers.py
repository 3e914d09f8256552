"""Building blocks shared by every model: gated conv / dense units and stream gates.

Every unit knows where its input channels come from (``src``: the key of the gate
point that produced them, ``None`` for the image) and which gate point its output
flows through (its own key when it gates itself, else ``dst``). `jaxdr.models.describe`
records these by intercepting the calls, which is all cost accounting and channel
surgery need to know about an architecture.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import flax.linen as nn
import jax.numpy as jnp

from jaxdr import masks, ops

ACTIVATIONS = {None: lambda x: x, "relu": nn.relu, "relu6": lambda x: jnp.minimum(nn.relu(x), 6.0)}


def path_key(path) -> str:
  return "/".join(path)


def child_key(module: nn.Module, name: str) -> str:
  """Mask key of the submodule ``name`` of ``module`` (call inside a compact method)."""
  return path_key(tuple(module.scope.path) + (name,))


def _gate(x, mask, key: str, conv_impl: str):
  """masks.apply_gate, with the gate gradient as a tree sum where ``conv_impl`` takes the
  CPU fast paths (`ops.cpu_fast_paths`)."""
  gate = masks.gate_for(x, mask, key)
  if gate is None:
    return x
  return ops.scale_channels(x, gate, tree_grad=ops.cpu_fast_paths(conv_impl))


class ConvUnit(nn.Module):
  """conv -> [BN] -> [activation] -> [gate].  x: [N, H, W, Cin] -> [N, H', W', features].

  ``depthwise`` makes a per-channel conv (features == Cin). With ``gate`` the unit is a
  gate point of channel space ``space`` (default: its own key).
  """
  features: int
  kernel: int = 3
  stride: int = 1
  padding: Optional[int] = None  # default kernel // 2
  depthwise: bool = False
  use_bias: bool = False
  use_bn: bool = True
  act: Optional[str] = "relu"
  gate: bool = True
  space: Optional[str] = None
  conv_impl: str = "auto"
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, mask: Optional[Mapping[str, Any]] = None, train: bool = False,
               src: Optional[str] = None, dst: Optional[str] = None):
    del src, dst  # recorded by jaxdr.models.describe
    cin = x.shape[-1]
    if self.depthwise and self.features != cin:
      raise ValueError(f"depthwise unit needs features == input channels ({self.features} != {cin})")
    groups = cin if self.depthwise else 1
    kernel = self.param("kernel", nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
                        (self.kernel, self.kernel, cin // groups, self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32) if self.use_bias else None
    y = self.preactivation(x, kernel, bias)
    if self.use_bn:
      y = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                       epsilon=1e-5, name="bn")(y)
    y = ACTIVATIONS[self.act](y)
    if self.gate:
      y = _gate(y, mask, path_key(self.scope.path), self.conv_impl)
    return y

  def preactivation(self, x, kernel, bias=None):
    """conv(x, kernel) [+ bias]: its own method so a Flax method interceptor can supply it
    (CAR scores candidates by handing each its next layer's pre-activation)."""
    pad = self.kernel // 2 if self.padding is None else self.padding
    groups = x.shape[-1] if self.depthwise else 1
    y = ops.conv2d(x, kernel, stride=self.stride, padding=pad, groups=groups, impl=self.conv_impl)
    return y if bias is None else y + bias


class DenseUnit(nn.Module):
  """[flatten] -> dense -> [activation] -> [gate].  x: [N, ..., Cin] -> [N, features].

  A 4-D input is flattened in (H, W, C) order, so input channel c owns rows c, c+C, ...
  """
  features: int
  act: Optional[str] = None
  gate: bool = False
  space: Optional[str] = None
  bias_init: Callable[..., Any] = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x, mask=None, train: bool = False, src: Optional[str] = None,
               dst: Optional[str] = None):
    del train, src, dst
    x = x.reshape((x.shape[0], -1))
    y = nn.Dense(self.features, bias_init=self.bias_init, name="dense")(x)
    y = ACTIVATIONS[self.act](y)
    if self.gate:
      y = masks.apply_gate(y, mask, path_key(self.scope.path))
    return y


class Gate(nn.Module):
  """A parameter-free gate point (e.g. a residual block's output on the stream ``space``);
  ``conv_impl`` as its model's (on CPU fast paths the gate gradient is a tree sum)."""
  space: Optional[str] = None
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, mask=None):
    return _gate(x, mask, path_key(self.scope.path), self.conv_impl)


class Backbone(nn.Module):
  """Fields every jaxdr model has; ``channels`` overrides widths per channel space."""
  num_classes: int = 10
  image_size: int = 32
  input_channels: int = 3
  width: float = 1.0
  conv_impl: str = "auto"  # jaxdr.ops.CONV_IMPLS: how the convs run (a run option)
  channels: tuple = ()  # ((space, width), ...): set by channel surgery

  def width_of(self, space: str, default: float) -> int:
    return dict(self.channels).get(space, max(1, int(round(default * self.width))))
