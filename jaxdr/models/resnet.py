"""ResNets: CIFAR (basic blocks: ResNet-18 kuangliu variant, ResNet-20/56/110 He et al.)
and ImageNet in torchvision's layout (7x7/2 stem + 3x3/2 max pool; basic blocks: ResNet-18
``resnet18_torchvision``; bottlenecks with the stride on the 3x3 conv: ResNet-50/101). BN
eps 1e-5 and momentum 0.9 (torch's 0.1) as torchvision's.

Gate points: every conv's activation inside a block (``.../conv1``, ``.../conv2``), the
stem, and every block output after the residual add (``.../out``). A block with an
identity shortcut continues its input's residual stream, so its ``out`` gate shares that
coupled space; a projection shortcut (1x1 conv + BN, when shape changes: He et al.'s
option B) starts a new stream.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxdr.models import layers


class Block(nn.Module):
  """Basic (3x3, 3x3) or bottleneck (1x1, 3x3, 1x1) residual block."""
  inner: Sequence[int]  # widths of the gated inner convs
  out_width: int
  stride: int
  bottleneck: bool
  space: str  # residual-stream space of the output
  projection: bool  # 1x1 conv + BN shortcut (shape changes), else identity
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, mask, train, src):
    out_key = layers.child_key(self, "out")
    kw = dict(conv_impl=self.conv_impl)
    if self.bottleneck:
      k1, k2 = layers.child_key(self, "conv1"), layers.child_key(self, "conv2")
      y = layers.ConvUnit(self.inner[0], kernel=1, name="conv1", **kw)(x, mask, train, src=src)
      y = layers.ConvUnit(self.inner[1], stride=self.stride, name="conv2", **kw)(y, mask, train, src=k1)
      y = layers.ConvUnit(self.out_width, kernel=1, act=None, gate=False, name="conv3", **kw)(
          y, mask, train, src=k2, dst=out_key)
    else:
      k1 = layers.child_key(self, "conv1")
      y = layers.ConvUnit(self.inner[0], stride=self.stride, name="conv1", **kw)(x, mask, train, src=src)
      y = layers.ConvUnit(self.out_width, act=None, gate=False, name="conv2", **kw)(
          y, mask, train, src=k1, dst=out_key)
    if self.projection:
      x = layers.ConvUnit(self.out_width, kernel=1, stride=self.stride, act=None, gate=False,
                          name="shortcut", **kw)(x, mask, train, src=src, dst=out_key)
    return layers.Gate(space=self.space, conv_impl=self.conv_impl, name="out")(nn.relu(y + x), mask)


class ResNet(layers.Backbone):
  """Stages of residual blocks on a stem; the last stream feeds avg-pool + linear."""
  stage_sizes: Sequence[int] = (3, 3, 3)
  stage_widths: Sequence[int] = (16, 32, 64)
  stem_width: int = 16
  bottleneck: bool = False
  imagenet_stem: bool = False  # 7x7/2 conv + 3x3/2 max-pool, else 3x3/1 conv

  @nn.compact
  def __call__(self, x, mask=None, train: bool = False):
    stem_key = layers.child_key(self, "stem")
    if self.imagenet_stem:
      x = layers.ConvUnit(self.width_of(stem_key, self.stem_width), kernel=7, stride=2,
                          conv_impl=self.conv_impl, name="stem")(x, mask, train)
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    else:
      x = layers.ConvUnit(self.width_of(stem_key, self.stem_width), conv_impl=self.conv_impl,
                          name="stem")(x, mask, train)
    src, space, space_default = stem_key, stem_key, self.stem_width
    expansion = 4 if self.bottleneck else 1
    for s, (blocks, width) in enumerate(zip(self.stage_sizes, self.stage_widths)):
      for b in range(blocks):
        name = f"stage{s + 1}_block{b}"
        block_key = layers.child_key(self, name)
        stride = 2 if (b == 0 and s > 0) else 1
        out_default = width * expansion
        # Architecture (not current widths) decides the shortcut, so surgery keeps it.
        new_stream = stride != 1 or out_default != space_default
        if new_stream:
          space, space_default = block_key + "/out", out_default
        inner = [self.width_of(f"{block_key}/conv{i + 1}", width)
                 for i in range(2 if self.bottleneck else 1)]
        x = Block(inner=inner, out_width=self.width_of(space, out_default), stride=stride,
                  bottleneck=self.bottleneck, space=space, projection=new_stream,
                  conv_impl=self.conv_impl, name=name)(x, mask, train, src=src)
        src = block_key + "/out"
    x = jnp.mean(x, axis=(1, 2))
    return layers.DenseUnit(self.num_classes, name="classifier")(x, src=src)
