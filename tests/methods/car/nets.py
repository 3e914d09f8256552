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


def randomise_bn(variables, seed=0):
  """BatchNorm scale / bias / running statistics drawn at random, so a closed branch's BN shift
  is not 0 (freshly initialised BN maps 0 to 0)."""
  rng = np.random.default_rng(seed)

  def leaf(path, x):
    name = str(getattr(path[-1], "key", path[-1]))
    shape = np.shape(x)
    if name == "var":
      return jnp.asarray(rng.uniform(0.5, 2.0, shape), jnp.float32)
    if name in ("mean", "bias") and len(path) > 2 and "bn" in str(path[-2]):
      return jnp.asarray(rng.normal(0, 0.5, shape), jnp.float32)
    if name == "scale":
      return jnp.asarray(rng.uniform(0.5, 1.5, shape), jnp.float32)
    return x
  return jax.tree_util.tree_map_with_path(leaf, dict(variables))


def tiny_resnet(stage_sizes=(2, 1, 1), bottleneck=False, seed=0):
  """A CIFAR-style ResNet with 2 blocks in stage 1 (block 1 has an identity shortcut), tiny widths,
  random BN; ``stage_sizes=(1, 1, 1)`` is the same network without stage 1's block 1."""
  from jaxdr.models import resnet  # pylint: disable=g-import-not-at-top
  model = resnet.ResNet(stage_sizes=stage_sizes, stage_widths=(3, 4, 5) if not bottleneck else (2, 3, 3),
                        stem_width=4, bottleneck=bottleneck, num_classes=3, image_size=8, input_channels=2,
                        conv_impl="xla")
  return model, randomise_bn(models.init(model, jax.random.PRNGKey(seed)), seed)
