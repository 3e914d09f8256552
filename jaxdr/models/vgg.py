"""VGG-16: jaxdr's CIFAR-style network and torchvision's ImageNet layout.

`VGG` (``vgg16``): 13 conv+BN+ReLU, global average pool, one linear classifier (DRNet's
CIFAR models). `TorchvisionVGG` (``vgg16_torchvision``, ``vgg16_bn_torchvision``): torchvision's
``vgg16`` / ``vgg16_bn``, three fully connected layers on a 7x7 adaptive average pool (DRNet's
ImageNet model, the one torchvision's pretrained weights fit). Both gate every conv's
activation: ``conv0`` ... ``conv12``.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from jaxdr import ops
from jaxdr.models import layers
from jaxdr.models.alexnet import adaptive_avg_pool

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


def floor_max_pool_2x2(x: jnp.ndarray) -> jnp.ndarray:
  """torch ``MaxPool2d(2, 2)`` (floor mode: an odd last row / column is dropped). A 1-pixel
  side is passed through (torch fails there), so inputs below 32x32 still run."""
  if min(x.shape[1], x.shape[2]) < 2:
    return x[:, ::2, ::2, :]
  return ops.max_pool(x, 2, 2, "VALID")


class TorchvisionVGG(layers.Backbone):
  """torchvision's VGG-16: 13 3x3 conv (with bias) [+ BN with ``batch_norm``] + ReLU layers,
  floor-mode 2x2 max pools, adaptive average pool to 7x7, then fc1 (7*7*512 -> 4096) - ReLU -
  dropout - fc2 (4096 -> 4096) - ReLU - dropout - fc3 (4096 -> classes).

  At 1000 classes: 138,357,544 params (``vgg16``), 138,365,992 with BN (``vgg16_bn``), at any
  image size (the adaptive pool fixes fc1's input at 7*7*512; fc1 flattens (H, W, C), so its
  ``Layer.in_positions`` is 49 and surgery slices its rows per position). Gate points
  ``conv0`` ... ``conv12`` after each ReLU; the fc layers are not gate points (``width``
  scales their hidden size, as in AlexNet). Dropout acts only when ``train=True`` and a
  'dropout' rng is given.
  """
  cfg: tuple = VGG16
  batch_norm: bool = False
  hidden: int = 4096
  dropout: float = 0.5
  pool_size: int = 7

  @nn.compact
  def __call__(self, x, mask=None, train: bool = False):
    src, i = None, 0
    for v in self.cfg:
      if v == "M":
        x = floor_max_pool_2x2(x)
        continue
      name = f"conv{i}"
      key = layers.child_key(self, name)
      x = layers.ConvUnit(self.width_of(key, v), use_bias=True, use_bn=self.batch_norm,
                          conv_impl=self.conv_impl, name=name)(x, mask, train, src=src)
      src, i = key, i + 1
    x = adaptive_avg_pool(x, self.pool_size)  # [N, 7, 7, C]: fc1 flattens it
    deterministic = not (train and self.has_rng("dropout"))
    hidden = max(1, int(round(self.hidden * self.width)))
    x = layers.DenseUnit(hidden, act="relu", name="fc1")(x, src=src)
    x = nn.Dropout(self.dropout, deterministic=deterministic)(x)
    x = layers.DenseUnit(hidden, act="relu", name="fc2")(x)
    x = nn.Dropout(self.dropout, deterministic=deterministic)(x)
    return layers.DenseUnit(self.num_classes, name="fc3")(x)
