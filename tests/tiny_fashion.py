"""A tiny real Fashion-MNIST (the first few hundred Debian images) prepared in a tmp data dir.

Runs of the real pipeline (tfds, jaxdr's builder) that cost seconds instead of the full set.
Used by tests/test_train.py, test_main.py, test_distributed.py and the notebook test.
"""
import gzip
import os

import numpy as np

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def _read(path, header, count, item):
  with gzip.open(path, "rb") as f:
    f.read(header)
    return f.read(count * item)


def write_tiny_fashion(directory, num_train=256, num_test=100):
  """Writes the first ``num_train`` / ``num_test`` images as IDX gz files into ``directory``."""
  os.makedirs(directory, exist_ok=True)
  for split, n in (("train", num_train), ("test", num_test)):
    images_file, labels_file = FILES[split]
    pixels = _read(os.path.join(DEBIAN_DIR, images_file), 16, n, 28 * 28)
    labels = _read(os.path.join(DEBIAN_DIR, labels_file), 8, n, 1)
    with gzip.open(os.path.join(directory, images_file), "wb") as f:
      f.write(bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (n, 28, 28)) + pixels)
    with gzip.open(os.path.join(directory, labels_file), "wb") as f:
      f.write(bytes([0, 0, 8, 1]) + n.to_bytes(4, "big") + labels)
  return directory


def env(root, num_train=256, num_test=100):
  """Environment variables pointing jaxdr at a tiny Fashion-MNIST under ``root``."""
  root = str(root)
  idx = write_tiny_fashion(os.path.join(root, "idx"), num_train, num_test)
  return {"JAXDR_FASHION_MNIST_DIR": idx, "JAXDR_DATA_DIR": os.path.join(root, "tfds")}


def labels(split, n):
  return np.frombuffer(_read(os.path.join(DEBIAN_DIR, FILES[split][1]), 8, n, 1), np.uint8)
