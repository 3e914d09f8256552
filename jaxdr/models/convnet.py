"""DRNet Fig. 8's "5-layer ConvNet" for MNIST (the class-similarity heat map of its CIVs).

The paper gives no layout; this is jaxdr's choice, a plain VGG-style net whose five weight
layers are four gated convs and one linear classifier:

    conv1 3x3 32 - conv2 3x3 32 - maxpool 2 - conv3 3x3 64 - conv4 3x3 64 - maxpool 2 - fc 10

Each conv is conv (no bias) + BN + ReLU, then its gate (``conv1`` ... ``conv4``: 192
channels for CDRP to weigh). fc flattens the 7x7x64 map (``Layer.in_positions`` 49).
96,554 params, 18.3M MACs at 28x28x1 and 10 classes.
"""
from __future__ import annotations

import flax.linen as nn

from jaxdr import ops
from jaxdr.models import layers


class ConvNet5(layers.Backbone):
  """Four 3x3 conv+BN+ReLU layers (widths ``conv_widths``, a ceil-mode 2x2 max pool after
  each ``pool_after``) and a linear classifier on the flattened map."""
  conv_widths: tuple = (32, 32, 64, 64)
  pool_after: tuple = (2, 4)  # 1-based conv indices followed by a max pool

  @nn.compact
  def __call__(self, x, mask=None, train: bool = False):
    src = None
    for i, default in enumerate(self.conv_widths, start=1):
      name = f"conv{i}"
      key = layers.child_key(self, name)
      x = layers.ConvUnit(self.width_of(key, default), conv_impl=self.conv_impl, name=name)(
          x, mask, train, src=src)
      if i in self.pool_after:
        x = ops.max_pool(x, 2, 2, "SAME")
      src = key
    return layers.DenseUnit(self.num_classes, name="fc")(x, src=src)
