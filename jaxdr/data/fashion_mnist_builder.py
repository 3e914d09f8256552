"""A tfds builder for Fashion-MNIST that reads local IDX gz files (offline, no checksums).

tfds's own ``fashion_mnist`` builder checks the sha256 of the downloaded .gz files; Debian's
``dataset-fashion-mnist`` package re-gzipped them (same decompressed bytes, different .gz bytes), so
that check fails. This builder reads the four IDX files from a local directory instead, through the
public tfds API (``GeneratorBasedBuilder`` with a manual dir), and writes an ordinary tfds dataset
``jaxdr_fashion_mnist`` (same features as tfds's ``fashion_mnist``) that later runs read directly.
"""
from __future__ import annotations

import gzip
import os
from typing import Dict, Iterator, Tuple

import numpy as np
import tensorflow_datasets as tfds

from jaxdr.errors import DataError

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
IDX_DIR_ENV = "JAXDR_FASHION_MNIST_DIR"
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
               "Bag", "Ankle boot")
# split -> (images file, labels file, number of examples)
IDX_FILES: Dict[str, Tuple[str, str, int]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000),
}


def idx_dir() -> str:
  """The directory holding the IDX gz files: $JAXDR_FASHION_MNIST_DIR or Debian's."""
  return os.environ.get(IDX_DIR_ENV) or DEBIAN_DIR


def missing_files(directory: str):
  """The IDX file names absent from ``directory`` (empty when all four are there)."""
  names = [n for images, labels, _ in IDX_FILES.values() for n in (images, labels)]
  return [n for n in names if not os.path.isfile(os.path.join(directory, n))]


def read_idx(path: str) -> np.ndarray:
  """Reads one (optionally gzipped) IDX file: uint8 array of the shape its header declares."""
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    data = f.read()
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
    raise DataError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
  ndim = data[3]
  header = 4 + 4 * ndim
  shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
  if len(data) != header + int(np.prod(shape)):
    raise DataError(f"{path}: IDX header declares shape {shape} but holds "
                     f"{len(data) - header} bytes of data")
  return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


class JaxdrFashionMnist(tfds.core.GeneratorBasedBuilder):
  """Fashion-MNIST (28x28 grey, 10 classes) from local IDX gz files."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Fashion-MNIST read from local IDX gz files."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "manual_dir must hold train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
      "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (Debian: "
      "`apt-get install -y dataset-fashion-mnist` puts them in /usr/share/datasets/fashion-mnist).")

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description="Fashion-MNIST: 70,000 28x28 grey images of 10 clothing classes (Zalando).",
        features=tfds.features.FeaturesDict({
            # Raw uint8 rather than PNG: reading 60k small images back is ~10x faster.
            "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
            "label": tfds.features.ClassLabel(names=CLASS_NAMES),
        }),
        supervised_keys=("image", "label"),
        homepage="https://github.com/zalandoresearch/fashion-mnist",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    directory = os.fspath(dl_manager.manual_dir)
    return {split: self._generate_examples(os.path.join(directory, images),
                                           os.path.join(directory, labels))
            for split, (images, labels, _) in IDX_FILES.items()}

  def _generate_examples(self, images_path: str, labels_path: str) -> Iterator:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
      raise DataError(f"{images_path}, {labels_path}: expected images [N, 28, 28] and labels [N], "
                       f"got {images.shape} and {labels.shape}")
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {"image": image[..., None], "label": int(label)}
