"""VGG for small images (CIFAR-style: 13 conv+BN+ReLU, one linear classifier)."""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from jaxdr import ops
from jaxdr.models import layers

VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG(layers.Backbone):
  """VGG-16 (DRNet Table 1: 14.73M params for 10 classes). Pools use ceil mode so
  28x28 inputs work too (28->14->7->4->2->1); gate points ``conv0`` ... ``conv12``."""
  cfg: tuple = VGG16

  @nn.compact
  def __call__(self, x, mask=None, train: bool = False):
    src, i = None, 0
    for v in self.cfg:
      if v == "M":
        x = ops.max_pool(x, 2, 2, "SAME")
        continue
      name = f"conv{i}"
      key = layers.child_key(self, name)
      x = layers.ConvUnit(self.width_of(key, v), use_bias=True, conv_impl=self.conv_impl,
                          name=name)(x, mask, train, src=src)
      src, i = key, i + 1
    x = jnp.mean(x, axis=(1, 2))
    return layers.DenseUnit(self.num_classes, name="classifier")(x, src=src)
