"""The static dataset table: info() fields and the unknown-name error."""
import pytest

from jaxdr import data


@pytest.mark.parametrize("name", data.names())
def test_info_is_consistent(name):
  ds = data.info(name)
  assert ds.name == name
  assert len(ds.class_names) == ds.num_classes
  assert len(ds.mean) == len(ds.std) == ds.channels
  assert ds.num_train > ds.num_test > 0
  assert ds.train_split == "train"


def test_known_sizes():
  assert data.names() == ("cifar10", "cifar100", "fashion_mnist", "imagenet2012", "mnist")
  fm = data.info("fashion_mnist")
  assert (fm.num_classes, fm.image_size, fm.channels, fm.num_train, fm.num_test) == (
      10, 28, 1, 60000, 10000)
  assert data.info("imagenet2012").test_split == "validation"
  assert data.info("imagenet2012").class_names[:2] == ("tench", "goldfish")
  assert data.info("cifar100").extra_labels == ("coarse_label",)


def test_unknown_name_lists_known_names():
  with pytest.raises(ValueError, match="unknown dataset 'svhn'; known datasets: cifar10, cifar100"):
    data.info("svhn")
