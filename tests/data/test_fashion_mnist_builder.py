"""The offline Fashion-MNIST tfds builder: IDX parsing, preparation once, missing-data error."""
import gzip
import os

import numpy as np
import pytest

from jaxdr import data
from jaxdr.data import fashion_mnist_builder


def test_read_idx_round_trip(tmp_path, helpers):
  x = np.random.default_rng(0).integers(0, 256, (3, 4, 5)).astype(np.uint8)
  helpers.write_idx(tmp_path / "x.gz", x)
  np.testing.assert_array_equal(fashion_mnist_builder.read_idx(str(tmp_path / "x.gz")), x)


def test_read_idx_rejects_bad_files(tmp_path):
  with gzip.open(tmp_path / "bad.gz", "wb") as f:
    f.write(b"\x00\x00\x0d\x01\x00\x00\x00\x02ab")  # float IDX
  with pytest.raises(ValueError, match="bad magic number"):
    fashion_mnist_builder.read_idx(str(tmp_path / "bad.gz"))
  with gzip.open(tmp_path / "short.gz", "wb") as f:
    f.write(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")
  with pytest.raises(ValueError, match=r"declares shape \(5,\) but holds 3 bytes"):
    fashion_mnist_builder.read_idx(str(tmp_path / "short.gz"))


def test_prepared_once_from_idx_files(fashion, helpers):
  ds = data.info("fashion_mnist")
  for split in ("train", "test"):
    images, labels = data.as_arrays("fashion_mnist", split, data_dir=fashion)
    assert images.shape == (helpers.FASHION_SIZES[split], 28, 28, 1) and images.dtype == np.float32
    assert labels.dtype == np.int32
    want_images, want_labels = helpers.fashion_arrays(split)
    ids = helpers.ids_of({"image": images}, ds)
    order = ids - ids.min()  # tfds stores examples in its own (fixed) order
    np.testing.assert_array_equal(np.sort(ids), np.sort(want_images[:, 0, 0]))
    np.testing.assert_array_equal(labels, want_labels[order])
  prepared = os.path.join(fashion, "jaxdr_fashion_mnist", "1.0.0")
  assert os.path.isfile(os.path.join(prepared, "dataset_info.json"))
  assert data.num_examples("fashion_mnist", "train", fashion) == helpers.FASHION_SIZES["train"]


def test_missing_files_give_one_line(empty_data_dir):
  with pytest.raises(data.DatasetNotFoundError) as e:
    data.iterator("fashion_mnist", "train", 8, train=True, data_dir=empty_data_dir)
  msg = str(e.value)
  assert "\n" not in msg
  assert "apt-get install -y dataset-fashion-mnist" in msg and "JAXDR_FASHION_MNIST_DIR" in msg
  assert isinstance(e.value, ValueError)


@pytest.mark.skipif(not os.path.isdir(fashion_mnist_builder.DEBIAN_DIR),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_debian_files():
  assert fashion_mnist_builder.missing_files(fashion_mnist_builder.DEBIAN_DIR) == []
  for split, (images_file, labels_file, n) in fashion_mnist_builder.IDX_FILES.items():
    images = fashion_mnist_builder.read_idx(os.path.join(fashion_mnist_builder.DEBIAN_DIR, images_file))
    labels = fashion_mnist_builder.read_idx(os.path.join(fashion_mnist_builder.DEBIAN_DIR, labels_file))
    assert images.shape == (n, 28, 28) and labels.shape == (n,), split
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, n // 10))
