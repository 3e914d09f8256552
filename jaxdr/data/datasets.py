"""What jaxdr knows about each dataset: sizes, splits, classes, normalisation, augmentation.

A static table, so ``info(name)`` answers without touching the disk. The numbers of examples are
those of the full official datasets; a prepared copy may hold fewer (``pipelines.num_examples``
reads the actual counts).
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Tuple

from jaxdr.data import fashion_mnist_builder, superclass_maps
from jaxdr.errors import ConfigError, DataError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup",
    "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house",
    "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man",
    "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid",
    "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy",
    "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal",
    "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar",
    "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm")
CIFAR100_COARSE_CLASSES = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates", "people",
    "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2")


class DatasetNotFoundError(DataError):
  """A dataset is neither prepared in the data dir nor preparable offline; the message says how."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """One dataset as the models and methods see it (after jaxdr's pipeline).

  ``image_size`` and ``channels`` are the native [H=W, C] the pipeline yields by default;
  ``mean``/``std`` (per channel, on [0, 1] pixels) normalise images; ``augment`` names the train
  augmentation (``'pad_crop_flip'``, ``'none'`` or ``'inception_crop_flip'``); ``in_memory`` says
  whether the pipeline reads the whole split into numpy once (small sets) or streams it (tf.data).
  """
  name: str
  num_classes: int
  image_size: int
  channels: int
  train_split: str
  test_split: str
  num_train: int
  num_test: int
  class_names: Tuple[str, ...]
  tfds_name: str
  mean: Tuple[float, ...]
  std: Tuple[float, ...]
  augment: str
  in_memory: bool
  extra_labels: Tuple[str, ...] = ()  # further int label features kept, e.g. 'coarse_label'


_DATASETS: Dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        name="mnist", num_classes=10, image_size=28, channels=1, train_split="train",
        test_split="test", num_train=60000, num_test=10000,
        class_names=tuple(str(i) for i in range(10)), tfds_name="mnist", mean=(0.1307,),
        std=(0.3081,), augment="none", in_memory=True),
    "fashion_mnist": DatasetInfo(
        name="fashion_mnist", num_classes=10, image_size=28, channels=1, train_split="train",
        test_split="test", num_train=60000, num_test=10000,
        class_names=fashion_mnist_builder.CLASS_NAMES, tfds_name="fashion_mnist", mean=(0.2860,),
        std=(0.3530,), augment="none", in_memory=True),
    "cifar10": DatasetInfo(
        name="cifar10", num_classes=10, image_size=32, channels=3, train_split="train",
        test_split="test", num_train=50000, num_test=10000, class_names=CIFAR10_CLASSES,
        tfds_name="cifar10", mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
        augment="pad_crop_flip", in_memory=True),
    "cifar100": DatasetInfo(
        name="cifar100", num_classes=100, image_size=32, channels=3, train_split="train",
        test_split="test", num_train=50000, num_test=10000, class_names=CIFAR100_CLASSES,
        tfds_name="cifar100", mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
        augment="pad_crop_flip", in_memory=True, extra_labels=("coarse_label",)),
    "imagenet2012": DatasetInfo(
        name="imagenet2012", num_classes=1000, image_size=224, channels=3, train_split="train",
        test_split="validation", num_train=1281167, num_test=50000, class_names=(),
        tfds_name="imagenet2012", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
        augment="inception_crop_flip", in_memory=False),
}


def names() -> Tuple[str, ...]:
  return tuple(sorted(_DATASETS))


def info(name: str) -> DatasetInfo:
  """The :class:`DatasetInfo` of ``name``; ValueError listing the known names otherwise."""
  if name not in _DATASETS:
    raise ConfigError(f"unknown dataset {name!r}; known datasets: {', '.join(names())}")
  result = _DATASETS[name]
  if name == "imagenet2012":  # 1000 names, kept in the superclass map's data file
    result = dataclasses.replace(result, class_names=superclass_maps.imagenet_class_names())
  return result
