"""Tiny CAR test nets: a narrow LeNet-5 and VGG, seeded images, and a hand-built net whose CAR is
known (``from tests.methods.car import nets``)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdr import models
from jaxdr.models import layers


def tiny_lenet(seed=0):
  model = models.create("lenet5", num_classes=4, image_size=16, input_channels=1,
                        channels={"conv1": 5, "conv2": 6})
  return model, models.init(model, jax.random.PRNGKey(seed))


def tiny_vgg(seed=0):
  model = models.create("vgg16", num_classes=3, image_size=8)
  model = model.clone(cfg=(4, "M", 5, "M", 3))
  return model, models.init(model, jax.random.PRNGKey(seed))


def images(n, size, channels=1, seed=0, classes=4):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(n, size, size, channels)).astype(np.float32),
          rng.integers(0, classes, n).astype(np.int32))


class HandBuilt(layers.Backbone):
  """1x1 'conv' over three input features, then a linear classifier: filter c passes feature c."""

  @nn.compact
  def __call__(self, x, mask=None, train=False):
    key = layers.child_key(self, "conv")
    x = layers.ConvUnit(3, kernel=1, use_bias=False, use_bn=False, act=None, name="conv")(x, mask, train)
    return layers.DenseUnit(2, name="fc")(x, src=key)


def hand_built():
  """Logit(class 1) - logit(class 0) = 2 f0 + f1 + 0 f2. Data: 60% of examples need neither
  feature alone, 30% need f0 (removing it flips them), 10% need f1. So CAR = (0.3, 0.1, 0) and
  the greedy order is f2, then f1; f0 is the last one kept."""
  model = HandBuilt(num_classes=2, image_size=1, input_channels=3)
  fc = np.zeros((3, 2), np.float32)
  fc[:, 1] = [2.0, 1.0, 0.0]
  variables = {"params": {"conv": {"kernel": jnp.eye(3).reshape(1, 1, 3, 3)},
                          "fc": {"dense": {"kernel": jnp.asarray(fc), "bias": jnp.zeros(2)}}}}
  rows = []
  for i in range(20):
    s = 1.0 if i % 2 else -1.0
    kind = "A" * 12 + "B" * 6 + "D" * 2
    f0, f1 = {"A": (s, s), "B": (s, -0.5 * s), "D": (-0.25 * s, s)}[kind[i]]
    rows.append(((f0, f1, 5.0 * s), int(s > 0)))
  x = np.asarray([r[0] for r in rows], np.float32).reshape(20, 1, 1, 3)
  y = np.asarray([r[1] for r in rows], np.int32)
  return model, variables, x, y
