"""MobileNetV2 (Sandler et al. 2018) in torchvision's layout, plus a CIFAR variant.

Inverted residual block: expand 1x1 (ReLU6, gated ``.../expand``; absent when t=1) ->
depthwise 3x3 (ReLU6, gated ``.../dw``) -> linear project 1x1 (no activation, flows to
``.../out``) -> [+ identity when stride 1 and in == out; no activation after the add] ->
gate ``.../out``. As in resnet.py, a block with an identity shortcut continues the
coupled stream space of its input; a block without one starts a new space at its ``out``.

A depthwise unit has as many channels as its input (the expand gate, or the previous
block's ``out`` when t=1), so its width follows that space: ``channels`` entries for
``.../dw`` spaces are ignored.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp

from jaxdr.models import layers

# (expansion t, channels c, repeats n, first stride s) for each stage: paper Table 2.
IMAGENET_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                   (6, 160, 3, 2), (6, 320, 1, 1))
# 32x32 inputs: stride 1 in the 24-channel stage (and a stride-1 stem, see MobileNetV2).
CIFAR_STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1))


def make_divisible(v: float, divisor: int = 8, min_value: Optional[int] = None) -> int:
  """Rounds a channel count to a multiple of ``divisor``, never more than 10% down
  (the rounding of torchvision / the TF reference implementation)."""
  min_value = divisor if min_value is None else min_value
  new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
  if new_v < 0.9 * v:
    new_v += divisor
  return new_v


class InvertedResidual(nn.Module):
  """expand 1x1 -> depthwise 3x3 -> project 1x1 [+ x] -> gate.  [N, H, W, Cin] -> [N, H/s, W/s, out]."""
  hidden: Optional[int]  # expand width; None when t=1 (no expand conv)
  out_width: int
  stride: int
  residual: bool
  space: str  # channel space of the ``out`` gate
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, mask, train, src):
    out_key = layers.child_key(self, "out")
    kw = dict(act="relu6", conv_impl=self.conv_impl)
    y = x
    if self.hidden is not None:
      y = layers.ConvUnit(self.hidden, kernel=1, name="expand", **kw)(y, mask, train, src=src)
      src = layers.child_key(self, "expand")
    y = layers.ConvUnit(y.shape[-1], kernel=3, stride=self.stride, depthwise=True, name="dw", **kw)(
        y, mask, train, src=src)
    y = layers.ConvUnit(self.out_width, kernel=1, act=None, gate=False, conv_impl=self.conv_impl,
                        name="project")(y, mask, train, src=layers.child_key(self, "dw"), dst=out_key)
    if self.residual:
      y = y + x
    return layers.Gate(space=self.space, conv_impl=self.conv_impl, name="out")(y, mask)


class MobileNetV2(layers.Backbone):
  """MobileNetV2: stem 3x3 conv, 7 stages of inverted residual blocks, 1x1 conv to 1280
  (x max(1, width)), global average pool, dropout, linear.

  Width 1.0 at 224 with 1000 classes: 3,504,872 params, ~300M MACs. Gate points:
  ``stem``, ``stageS_blockB/{expand,dw,out}``, ``head``. Dropout (rate ``dropout``)
  before the classifier acts only when ``train=True`` and a 'dropout' rng is given.
  """
  stages: Sequence[Tuple[int, int, int, int]] = IMAGENET_STAGES
  stem_stride: int = 2
  stem_width: int = 32
  head_width: int = 1280
  dropout: float = 0.2

  def width_of(self, space: str, default: float) -> int:
    """``channels[space]`` if set, else ``default`` x width rounded to a multiple of 8."""
    return dict(self.channels).get(space, make_divisible(default * self.width))

  def _exact(self, space: str, default: int) -> int:
    """``channels[space]`` if set, else the already-rounded ``default``."""
    return dict(self.channels).get(space, default)

  @nn.compact
  def __call__(self, x, mask=None, train: bool = False):
    stem_key = layers.child_key(self, "stem")
    stem_default = make_divisible(self.stem_width * self.width)
    x = layers.ConvUnit(self.width_of(stem_key, self.stem_width), kernel=3, stride=self.stem_stride,
                        act="relu6", conv_impl=self.conv_impl, name="stem")(x, mask, train)
    # Defaults (not surgery's widths) decide the architecture: residuals, expand widths.
    src, space, in_default = stem_key, stem_key, stem_default
    for s, (t, c, n, first_stride) in enumerate(self.stages):
      out_default = make_divisible(c * self.width)
      for b in range(n):
        name = f"stage{s + 1}_block{b}"
        block_key = layers.child_key(self, name)
        stride = first_stride if b == 0 else 1
        residual = stride == 1 and in_default == out_default
        if not residual:
          space = block_key + "/out"
        hidden = None
        if t != 1:
          hidden = self._exact(block_key + "/expand", int(round(in_default * t)))
        x = InvertedResidual(hidden=hidden, out_width=self._exact(space, out_default), stride=stride,
                             residual=residual, space=space, conv_impl=self.conv_impl,
                             name=name)(x, mask, train, src=src)
        src, in_default = block_key + "/out", out_default
    head_key = layers.child_key(self, "head")
    head = self._exact(head_key, make_divisible(self.head_width * max(1.0, self.width)))
    x = layers.ConvUnit(head, kernel=1, act="relu6", conv_impl=self.conv_impl, name="head")(
        x, mask, train, src=src)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(self.dropout, deterministic=not (train and self.has_rng("dropout")))(x)
    return layers.DenseUnit(self.num_classes, name="classifier")(x, src=head_key)
