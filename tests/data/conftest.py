"""Tiny stand-in datasets in tfds format, generated into session-scoped tmp dirs.

* ``fashion_idx_dir``: four IDX gz files (40 train / 13 test 28x28 images) for the jaxdr builder.
  Image i of a split is filled with the value ``i + 1`` (train) or ``101 + i`` (test), label
  ``i % 10``: a batch's rows can be traced back to their examples even after pad-crop.
* ``standin_data_dir``: tfds's own ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100`` and
  ``imagenet2012`` builders (their
  real features, names and versions) with the download replaced by generated examples, prepared
  into one data dir, so the pipelines read real tfds tfrecords.
"""
import gzip

import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.datasets.imagenet2012 import imagenet2012_dataset_builder
from tensorflow_datasets.image_classification import cifar
from tensorflow_datasets.image_classification import mnist

from jaxdr.data import superclass_maps

FASHION_SIZES = {"train": 40, "test": 13}
CIFAR_SIZES = {"train": 40, "test": 13}
IMAGENET_SIZES = {"train": 24, "validation": 10}
DIGITS_SIZES = {"train": 20, "test": 7}


def write_idx(path, array):
  """Writes ``array`` (uint8) as a gzipped IDX file."""
  array = np.asarray(array, np.uint8)
  header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.tobytes())


def fashion_arrays(split):
  n = FASHION_SIZES[split]
  first = 1 if split == "train" else 101
  values = first + np.arange(n)
  images = np.broadcast_to(values[:, None, None], (n, 28, 28)).astype(np.uint8)
  return images, (np.arange(n) % 10).astype(np.uint8)


@pytest.fixture(scope="session")
def fashion_idx_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp("fashion_idx")
  for split, prefix in (("train", "train"), ("test", "t10k")):
    images, labels = fashion_arrays(split)
    write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", images)
    write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", labels)
  return str(directory)


@pytest.fixture(scope="session")
def fashion_data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("fashion_data"))


@pytest.fixture
def fashion(monkeypatch, fashion_idx_dir, fashion_data_dir):
  """The data dir where the tiny Fashion-MNIST is (or gets) prepared from ``fashion_idx_dir``."""
  monkeypatch.setenv("JAXDR_FASHION_MNIST_DIR", fashion_idx_dir)
  return fashion_data_dir


def _cifar_examples(split, num_fine):
  rng = np.random.default_rng(0 if split == "train" else 1)
  coarse = superclass_maps.class_to_superclass("cifar100")
  for i in range(CIFAR_SIZES[split]):
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    image[..., 0] = i + 1  # channel 0 identifies the example
    label = i % num_fine
    example = {"id": f"{split}_{i:05d}", "image": image, "label": label}
    if num_fine == 100:
      example["coarse_label"] = coarse[label]
    yield example["id"], example


class StandInCifar10(cifar.Cifar10, skip_registration=True):
  name = "cifar10"
  pkg_dir_path = cifar.Cifar10._get_pkg_dir_path()  # pylint: disable=protected-access

  def _split_generators(self, dl_manager):
    return {split: _cifar_examples(split, 10) for split in CIFAR_SIZES}


class StandInCifar100(cifar.Cifar100, skip_registration=True):
  name = "cifar100"
  pkg_dir_path = cifar.Cifar100._get_pkg_dir_path()  # pylint: disable=protected-access

  def _split_generators(self, dl_manager):
    return {split: _cifar_examples(split, 100) for split in CIFAR_SIZES}


def _digits_examples(split):
  """28x28 grey images filled with ``i + 1``, label ``i % 10`` (like the tiny IDX files)."""
  for i in range(DIGITS_SIZES[split]):
    yield i, {"image": np.full((28, 28, 1), i + 1, np.uint8), "label": i % 10}


class StandInMnist(mnist.MNIST, skip_registration=True):
  name = "mnist"
  pkg_dir_path = mnist.MNIST._get_pkg_dir_path()  # pylint: disable=protected-access

  def _split_generators(self, dl_manager):
    return {split: _digits_examples(split) for split in DIGITS_SIZES}


class StandInFashionMnist(mnist.FashionMNIST, skip_registration=True):
  """tfds's own fashion_mnist, as a user who prepared it online would have it."""
  name = "fashion_mnist"
  pkg_dir_path = mnist.FashionMNIST._get_pkg_dir_path()  # pylint: disable=protected-access

  def _split_generators(self, dl_manager):
    return {split: _digits_examples(split) for split in DIGITS_SIZES}


def _imagenet_examples(split):
  rng = np.random.default_rng(2 if split == "train" else 3)
  for i in range(IMAGENET_SIZES[split]):
    h, w = rng.integers(40, 80, size=2)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    label = i if split == "validation" else (37 * i) % 1000
    name = f"standin_{split}_{i}.JPEG"
    yield name, {"image": image, "label": label, "file_name": name}


class StandInImagenet2012(imagenet2012_dataset_builder.Builder, skip_registration=True):
  name = "imagenet2012"
  pkg_dir_path = imagenet2012_dataset_builder.Builder._get_pkg_dir_path()  # pylint: disable=protected-access

  def _split_generators(self, dl_manager):
    return {split: _imagenet_examples(split) for split in IMAGENET_SIZES}


@pytest.fixture(scope="session")
def standin_data_dir(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("standin_data"))
  for builder_cls in (StandInMnist, StandInFashionMnist, StandInCifar10, StandInCifar100,
                      StandInImagenet2012):
    builder = builder_cls(data_dir=directory)
    assert builder.version == tfds.builder_cls(builder.name).VERSION
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return directory


@pytest.fixture
def empty_data_dir(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXDR_FASHION_MNIST_DIR", str(tmp_path / "no_idx_here"))
  return str(tmp_path / "data")


def ids_of(batch, info):
  """Example ids (the constant pixel value) of each row of a normalised Fashion-MNIST batch."""
  center = batch["image"][:, 14, 14, 0] * info.std[0] + info.mean[0]
  return np.rint(center * 255.0).astype(int)


class Helpers:
  """What the tests need from here (conftest modules are not importable under importlib mode)."""
  FASHION_SIZES = FASHION_SIZES
  CIFAR_SIZES = CIFAR_SIZES
  IMAGENET_SIZES = IMAGENET_SIZES
  DIGITS_SIZES = DIGITS_SIZES
  write_idx = staticmethod(write_idx)
  fashion_arrays = staticmethod(fashion_arrays)
  ids_of = staticmethod(ids_of)


@pytest.fixture
def helpers():
  return Helpers
