"""Superclass maps: every class in exactly one group; the ImageNet map is reproducible."""
import importlib.util
import json
import os

import numpy as np
import pytest

from jaxdr import data
from jaxdr.data import datasets, superclass_maps

ROOT = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir)


@pytest.mark.parametrize("name", superclass_maps.available())
def test_every_class_in_exactly_one_superclass(name):
  groups = data.superclasses(name)
  ids = sorted(i for _, members in groups for i in members)
  assert ids == list(range(data.info(name).num_classes))
  assert len({n for n, _ in groups}) == len(groups)
  table = data.class_to_superclass(name)
  for index, (_, members) in enumerate(groups):
    assert all(table[i] == index for i in members)


def test_available_maps():
  assert superclass_maps.available() == ("cifar10", "cifar100", "fashion_mnist", "imagenet2012")
  with pytest.raises(ValueError, match="no superclass map for dataset 'mnist'; maps exist for"):
    data.superclasses("mnist")


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "fashion_mnist"])
def test_class_names_in_the_files_match_the_dataset(name):
  with open(os.path.join(superclass_maps.MAPS_DIR, f"{name}.json")) as f:
    groups = json.load(f)["superclasses"]
  names = data.info(name).class_names
  for group in groups:
    assert group["class_names"] == [names[i] for i in group["classes"]]


def test_cifar100_is_the_standard_coarse_labelling():
  groups = data.superclasses("cifar100")
  assert [n for n, _ in groups] == list(datasets.CIFAR100_COARSE_CLASSES)
  assert all(len(members) == 5 for _, members in groups)
  names = datasets.CIFAR100_CLASSES
  by_name = {n: {names[i] for i in members} for n, members in groups}
  assert by_name["people"] == {"baby", "boy", "girl", "man", "woman"}
  assert by_name["vehicles_2"] == {"lawn_mower", "rocket", "streetcar", "tank", "tractor"}
  assert by_name["trees"] == {"maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"}


def test_fashion_mnist_groups():
  assert dict(data.superclasses("fashion_mnist")) == {
      "tops": [0, 2, 4, 6], "bottoms_and_dresses": [1, 3], "footwear": [5, 7, 9], "bags": [8]}


def test_imagenet_map_has_58_wordnet_categories_in_tfds_label_order():
  groups = data.superclasses("imagenet2012")
  assert len(groups) == 58
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  labels = os.path.join(os.path.dirname(tfds.__file__), "datasets", "imagenet2012", "labels.txt")
  with open(labels) as f:
    assert list(superclass_maps.imagenet_wnids()) == f.read().split()
  by_name = dict(groups)
  assert 207 in by_name["sporting_dog"]  # golden retriever
  assert 0 in by_name["aquatic_vertebrate"]  # tench
  sizes = np.array([len(m) for _, m in groups])
  assert sizes.sum() == 1000 and sizes.max() <= 60


@pytest.mark.skipif(not os.path.isfile("/usr/share/wordnet/data.noun"),
                    reason="WordNet 3.0 (Debian wordnet-base) is not installed")
def test_generating_script_reproduces_the_committed_map(tmp_path):
  path = os.path.join(ROOT, "scripts", "make_imagenet_superclasses.py")
  spec = importlib.util.spec_from_file_location("make_imagenet_superclasses", path)
  script = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(script)
  out = tmp_path / "imagenet2012.json"
  assert script.main([f"--out={out}"]) == 0
  with open(out) as f, open(os.path.join(superclass_maps.MAPS_DIR, "imagenet2012.json")) as g:
    assert json.load(f) == json.load(g)
  assert script.main(["--wordnet_dir=/nonexistent", f"--out={out}"]) == 1
