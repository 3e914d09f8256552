"""Tiny DRNet fixtures: hand-made CIVs and tiny VGG / ResNet models with non-trivial BN statistics."""
import jax
import numpy as np
import pytest

from jaxdr import models
from jaxdr.models import resnet, vgg

models.register("tiny_vgg_drnet", lambda **kw: vgg.VGG(cfg=(4, "M", 6, "M"), **kw))
models.register("tiny_resnet_drnet", lambda **kw: resnet.ResNet(stage_sizes=(2, 1), stage_widths=(4, 6),
                                                                 stem_width=4, **kw))

# Hand-made CIVs: 3 classes, two gate points of 3 and 2 channels.
CIV = {"a": np.array([[0.0, 0.5, 0.2], [0.3, 0.0, 0.2], [0.9, 0.9, 0.0]], np.float32),
       "b": np.array([[0.1, 0.0], [0.0, 0.0], [0.4, 0.6]], np.float32)}


@pytest.fixture
def hand_civ():
  return {k: v.copy() for k, v in CIV.items()}


def _tiny(name, num_classes=3, seed=0):
  model = models.create(name, num_classes=num_classes, image_size=8, input_channels=1)
  variables = models.init(model, jax.random.PRNGKey(seed))
  # Non-trivial BN statistics, so a wrongly sliced BN would show.
  variables["batch_stats"] = jax.tree_util.tree_map(
      lambda a: a + 0.1 * jax.random.uniform(jax.random.PRNGKey(7), a.shape), variables["batch_stats"])
  return model, variables


@pytest.fixture
def tiny_drnet():
  """``tiny_drnet(name, num_classes=3) -> (model, variables)`` for 'tiny_vgg_drnet' / 'tiny_resnet_drnet'."""
  return _tiny


@pytest.fixture
def random_civ():
  """``random_civ(model, num_classes) -> civ`` of seeded uniform values."""
  def make(model, num_classes, seed=0):
    rng = np.random.default_rng(seed)
    return {g.key: rng.uniform(0, 1, (num_classes, g.channels)).astype(np.float32)
            for g in models.describe(model).gates}
  return make
