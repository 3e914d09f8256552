"""LeNet-5, Caffe variant (the model the CAR paper compresses on MNIST-like data)."""
from __future__ import annotations

import flax.linen as nn

from jaxdr import ops
from jaxdr.models import layers


class LeNet5(layers.Backbone):
  """conv 5x5 20 -> maxpool 2 -> conv 5x5 50 -> maxpool 2 -> dense 500 ReLU -> dense classes.

  Faithful to Caffe's lenet_train_test.prototxt: unpadded convs with bias, no BN and no
  activation after the convs (only after fc1). 431,080 params for 28x28x1 and 10 classes.
  Gate points: ``conv1``, ``conv2`` (the layers CAR prunes). Pools round up, like Caffe's.
  ``width`` scales fc1 too.
  """
  conv_widths: tuple = (20, 50)
  hidden: int = 500

  @nn.compact
  def __call__(self, x, mask=None, train: bool = False):
    src = None
    for i, default in enumerate(self.conv_widths):
      name = f"conv{i + 1}"
      key = layers.child_key(self, name)
      x = layers.ConvUnit(self.width_of(key, default), kernel=5, padding=0, use_bias=True,
                          use_bn=False, act=None, conv_impl=self.conv_impl, name=name)(
                              x, mask, train, src=src)
      x = ops.max_pool(x, 2, 2, "SAME")
      src = key
    hidden = max(1, int(round(self.hidden * self.width)))  # not a gate point: width only
    x = layers.DenseUnit(hidden, act="relu", name="fc1")(x, src=src)
    return layers.DenseUnit(self.num_classes, name="fc2")(x)
