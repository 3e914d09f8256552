"""The CAR configs compress gates their models have: the AlexNet config is the paper's Caffe-width
AlexNet (item 11), the ResNet-50 config lets residual branches go to 0 filters (nothing is built
beyond the layer graph)."""
import os
import runpy

import pytest

from jaxdr import models

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "configs")


def _config(name):
  return runpy.run_path(os.path.join(CONFIGS, name + ".py"))["get_config"]()


@pytest.mark.parametrize("name", ["car_fashion_mnist", "car_mnist", "car_alexnet_imagenet", "car_resnet50_imagenet"])
def test_car_layers_are_gates_of_the_model(name):
  c = _config(name)
  graph = models.describe(models.create(c.model.name, num_classes=c.dataset.num_classes,
                                        image_size=c.dataset.image_size, input_channels=c.dataset.input_channels))
  assert set(c.car.layers) <= {g.key for g in graph.gates}
  assert c.car.scoring_set == "test_half"  # held out by default


def test_alexnet_config_is_the_caffe_width_alexnet():
  c = _config("car_alexnet_imagenet")
  assert c.model.name == "alexnet_caffe"
  graph = models.describe(models.create("alexnet_caffe", num_classes=1000, image_size=224, input_channels=3))
  assert [graph.gate(k).channels for k in c.car.layers] == [96, 256, 384, 384, 256]
  assert (c.car.max_relative_drop, c.car.past_drop, c.car.per_iteration_past_drop) == (0.05, "continue", 5)


def test_resnet50_config_prunes_branches_to_zero():
  c = _config("car_resnet50_imagenet")
  assert c.car.min_kept == 0 and c.car.empty_branch == "remove" and c.car.layers[0] == "stem"
