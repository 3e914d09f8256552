"""Tiny White-Box test nets of every family the issue names (``from tests.methods.whitebox import nets``):
a VGG with max-pools, a basic-block ResNet and a bottleneck ResNet with projection shortcuts, a
MobileNetV2 with hidden (depthwise) channels and an identity block. Variables are seeded random
values (non-trivial BN statistics), built without compiling an init."""
import numpy as np

from jaxdr import models
from tests.conftest import random_variables

COMMON = dict(num_classes=4, input_channels=1, conv_impl="xla")


def vgg():
  """conv0 (4) -> max-pool -> conv1 (6) -> conv2 (6) -> max-pool -> conv3 (8) -> mean -> dense."""
  return models.create("vgg16", image_size=8, **COMMON).clone(cfg=(4, "M", 6, 6, "M", 8))


def basic():
  """Stem 4; stage 1: 2 identity blocks (inner 4); stage 2: a projection block (inner 8, stride 2)."""
  return models.create("resnet20", image_size=8, **COMMON).clone(stage_sizes=(2, 1), stage_widths=(4, 8),
                                                                  stem_width=4)


def bottleneck():
  """ImageNet stem 4 (7x7/2 + max-pool); two bottleneck blocks (inner 8, out 32), both
  with projection shortcuts."""
  return models.create("resnet50", image_size=16, **COMMON).clone(stage_sizes=(1, 1), stage_widths=(8, 8),
                                                                   stem_width=4)


def mobilenet():
  """Stem 16; a t=1 block (16 -> 8); a t=6 stage of two blocks (hidden 48, the second residual)."""
  return models.create("mobilenet_v2_cifar", image_size=8, **COMMON).clone(
      stages=((1, 8, 1, 1), (6, 8, 2, 2)), stem_width=16, head_width=16)


BUILDERS = {"vgg": vgg, "basic": basic, "bottleneck": bottleneck, "mobilenet": mobilenet}


def build(name, seed=0):
  model = BUILDERS[name]()
  return model, random_variables(model, seed)


def images(model, n=6, seed=1):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n, model.image_size, model.image_size, model.input_channels)).astype(np.float32)


def random_scores(graph, keys, seed=0, low=0.0, high=1.0):
  rng = np.random.default_rng(seed)
  return {k: rng.uniform(low, high, graph.gate(k).channels) for k in keys}
