"""iterator() / as_arrays() on the tiny Fashion-MNIST and the CIFAR / ImageNet stand-ins."""
import itertools
import os

import numpy as np
import pytest

from jaxdr import data

FM = data.info("fashion_mnist")


def _take(it, n):
  return list(itertools.islice(it, n))


# ----------------------------------------------------------------------------- small sets

def test_train_batches_have_the_contract_shapes(fashion):
  batch = next(data.iterator("fashion_mnist", "train", 8, train=True, data_dir=fashion))
  assert set(batch) == {"image", "label"}
  assert batch["image"].shape == (8, 28, 28, 1) and batch["image"].dtype == np.float32
  assert batch["label"].shape == (8,) and batch["label"].dtype == np.int32


def test_train_is_deterministic_and_seeded(fashion, helpers):
  def ids(seed):
    it = data.iterator("fashion_mnist", "train", 8, train=True, seed=seed, data_dir=fashion)
    return np.concatenate([helpers.ids_of(b, FM) for b in _take(it, 10)])
  np.testing.assert_array_equal(ids(3), ids(3))
  assert not np.array_equal(ids(3), ids(4))


def test_train_epoch_sees_each_example_once_and_repeats(fashion, helpers):
  one = list(data.iterator("fashion_mnist", "train", 16, train=True, repeat=False,
                           data_dir=fashion))
  assert len(one) == 40 // 16  # drop remainder
  ids = np.concatenate([helpers.ids_of(b, FM) for b in one])
  assert len(set(ids)) == 32 and set(ids) <= set(range(1, 41))
  forever = data.iterator("fashion_mnist", "train", 16, train=True, data_dir=fashion)
  epochs = [np.concatenate([helpers.ids_of(b, FM) for b in _take(forever, 2)]) for _ in range(2)]
  assert not np.array_equal(epochs[0], epochs[1])  # reshuffled each epoch


def test_labels_follow_their_images(fashion, helpers):
  for batch in _take(data.iterator("fashion_mnist", "train", 8, train=True, data_dir=fashion), 5):
    np.testing.assert_array_equal(batch["label"], (helpers.ids_of(batch, FM) - 1) % 10)


def test_normalisation_uses_the_dataset_mean_and_std(fashion, helpers):
  images, _ = data.as_arrays("fashion_mnist", "train", data_dir=fashion)
  ids = helpers.ids_of({"image": images}, FM)
  np.testing.assert_allclose(images[:, 0, 0, 0], (ids / 255.0 - FM.mean[0]) / FM.std[0],
                             rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("augment", ["none", "pad_crop_flip"])
def test_processes_split_the_single_process_batches_exactly(fashion, helpers, augment):
  def batches(index, count):
    it = data.iterator("fashion_mnist", "train", 8, train=True, seed=5, data_dir=fashion,
                       process_index=index, process_count=count, augment=augment)
    return _take(it, 12)  # crosses an epoch boundary (5 steps per epoch)
  single = batches(0, 1)
  parts = [batches(i, 2) for i in range(2)]
  for step, whole in enumerate(single):
    a, b = parts[0][step], parts[1][step]
    assert a["image"].shape == (4, 28, 28, 1)
    assert not set(helpers.ids_of(a, FM)) & set(helpers.ids_of(b, FM))
    for key in whole:
      np.testing.assert_array_equal(np.concatenate([a[key], b[key]]), whole[key])


def test_pad_crop_moves_pixels_and_none_does_not(fashion):
  def first(augment):
    return next(data.iterator("fashion_mnist", "train", 16, train=True, seed=1, data_dir=fashion,
                              augment=augment))
  plain, cropped = first("none"), first("pad_crop")
  np.testing.assert_array_equal(plain["label"], cropped["label"])
  zero = (0.0 - FM.mean[0]) / FM.std[0]
  assert not np.isclose(plain["image"], zero).any()  # every tiny image is a non-zero constant
  assert np.isclose(cropped["image"], zero).any()   # the zero padding shows at shifted edges
  np.testing.assert_array_equal(plain["image"][:, 14, 14], cropped["image"][:, 14, 14])


def test_eval_pads_the_last_batch_with_a_mask(fashion, helpers):
  batches = list(data.iterator("fashion_mnist", "test", 5, train=False, data_dir=fashion))
  assert len(batches) == 3 and all(b["image"].shape == (5, 28, 28, 1) for b in batches)
  np.testing.assert_array_equal(batches[-1]["mask"], [1, 1, 1, 0, 0])
  assert batches[-1]["mask"].dtype == np.float32
  assert (batches[-1]["image"][3:] == 0).all() and (batches[-1]["label"][3:] == 0).all()
  ids = np.concatenate([helpers.ids_of(b, FM)[b["mask"] > 0] for b in batches])
  np.testing.assert_array_equal(np.sort(ids), np.arange(101, 114))
  # file order, not shuffled: the same on every call
  again = list(data.iterator("fashion_mnist", "test", 5, train=False, data_dir=fashion))
  np.testing.assert_array_equal(batches[0]["image"], again[0]["image"])


@pytest.mark.parametrize("batch_size,count", [(4, 2), (6, 3), (32, 4)])
def test_eval_shards_are_disjoint_complete_and_equally_long(fashion, helpers, batch_size, count):
  seen, lengths = [], []
  for index in range(count):
    batches = list(data.iterator("fashion_mnist", "test", batch_size, train=False,
                                 data_dir=fashion, process_index=index, process_count=count))
    lengths.append(len(batches))
    for b in batches:
      assert b["image"].shape[0] == batch_size // count
      seen.extend(helpers.ids_of(b, FM)[b["mask"] > 0])
  assert len(set(lengths)) == 1
  np.testing.assert_array_equal(np.sort(seen), np.arange(101, 114))


def test_image_size_resizes(fashion):
  batch = next(data.iterator("fashion_mnist", "test", 4, train=False, data_dir=fashion,
                             image_size=32))
  assert batch["image"].shape == (4, 32, 32, 1)
  images, labels = data.as_arrays("fashion_mnist", "test", data_dir=fashion, image_size=32,
                                  limit=3)
  assert images.shape == (3, 32, 32, 1) and labels.shape == (3,)


def test_bad_arguments_raise_one_clear_error(fashion):
  cases = [
      (dict(batch_size=6, process_count=4), "not divisible by process_count 4"),
      (dict(batch_size=8, process_index=2, process_count=2), "process_index < process_count"),
      (dict(batch_size=8, augment="mixup"), "augment must be one of"),
      (dict(batch_size=0), "batch_size must be a positive integer"),
      (dict(batch_size=64), "batch_size 64 exceeds the 40 training examples"),
  ]
  for kwargs, message in cases:
    with pytest.raises(ValueError, match=message):
      next(data.iterator("fashion_mnist", "train", train=True, data_dir=fashion, **kwargs))
  with pytest.raises(ValueError, match="unknown dataset"):
    data.iterator("fashion-mnist", "train", 8, train=True)


# ----------------------------------------------------------------------------- CIFAR stand-ins

@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_reads_tfds_format(standin_data_dir, helpers, name):
  ds = data.info(name)
  batch = next(data.iterator(name, "train", 8, train=True, data_dir=standin_data_dir))
  assert batch["image"].shape == (8, 32, 32, 3) and batch["label"].dtype == np.int32
  if name == "cifar100":
    assert batch["coarse_label"].dtype == np.int32
    table = np.asarray(data.class_to_superclass("cifar100"))
    np.testing.assert_array_equal(batch["coarse_label"], table[batch["label"]])
  else:
    assert set(batch) == {"image", "label"}
  images, labels = data.as_arrays(name, "test", data_dir=standin_data_dir)
  assert images.shape == (helpers.CIFAR_SIZES["test"], 32, 32, 3)
  ids = np.rint((images[:, 0, 0, 0] * ds.std[0] + ds.mean[0]) * 255).astype(int)  # channel 0 = id
  np.testing.assert_array_equal(labels, (ids - 1) % ds.num_classes)
  evals = list(data.iterator(name, "test", 8, train=False, data_dir=standin_data_dir))
  assert [b["mask"].sum() for b in evals] == [8, 5]


def test_cifar_train_is_augmented_by_default(standin_data_dir):
  ds = data.info("cifar10")
  zero = -np.asarray(ds.mean, np.float32) / np.asarray(ds.std, np.float32)
  it = data.iterator("cifar10", "train", 40, train=True, data_dir=standin_data_dir)
  batch = next(it)
  flat = batch["image"].reshape(-1, 3)
  assert np.isclose(flat, zero, atol=1e-5).all(axis=1).any()  # zero-padded pixels appear
  plain = next(data.iterator("cifar10", "train", 40, train=True, data_dir=standin_data_dir,
                             augment="none"))
  assert not np.isclose(plain["image"].reshape(-1, 3), zero, atol=1e-5).all(axis=1).any()


# ----------------------------------------------------------------------------- ImageNet stand-in

def _imagenet(standin_data_dir, split, batch_size, **kwargs):
  return data.iterator("imagenet2012", split, batch_size, data_dir=standin_data_dir,
                       image_size=32, **kwargs)


def test_imagenet_train_crops_and_is_deterministic(standin_data_dir):
  def first(seed):
    return _take(_imagenet(standin_data_dir, "train", 4, train=True, seed=seed), 7)
  a, b, c = first(0), first(0), first(1)
  assert a[0]["image"].shape == (4, 32, 32, 3) and a[0]["image"].dtype == np.float32
  assert a[0]["label"].dtype == np.int32 and set(a[0]) == {"image", "label"}
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["image"], y["image"])
  assert not all(np.array_equal(x["image"], y["image"]) for x, y in zip(a, c))
  assert len(a) == 7  # 24 examples / 4 = 6 per epoch: repeats


def test_imagenet_eval_is_exact_and_sharded(standin_data_dir):
  batches = list(_imagenet(standin_data_dir, "test", 4, train=False))  # 'test' -> validation
  assert [b["mask"].tolist() for b in batches][-1] == [1, 1, 0, 0]
  labels = np.concatenate([b["label"][b["mask"] > 0] for b in batches])
  np.testing.assert_array_equal(np.sort(labels), np.arange(10))
  again = list(_imagenet(standin_data_dir, "validation", 4, train=False))
  np.testing.assert_array_equal(batches[1]["image"], again[1]["image"])
  seen, lengths = [], []
  for index in range(3):
    shard = list(_imagenet(standin_data_dir, "validation", 6, train=False, process_index=index,
                           process_count=3))
    lengths.append(len(shard))
    seen.extend(np.concatenate([b["label"][b["mask"] > 0] for b in shard]))
  assert len(set(lengths)) == 1
  np.testing.assert_array_equal(np.sort(seen), np.arange(10))


def test_imagenet_train_shards_are_disjoint(standin_data_dir):
  labels = []
  for index in range(2):
    it = _imagenet(standin_data_dir, "train", 4, train=True, repeat=False, process_index=index,
                   process_count=2)
    labels.append({int(l) for b in it for l in b["label"]})
  assert labels[0] and labels[1] and not labels[0] & labels[1]


def test_imagenet_as_arrays_needs_a_limit(standin_data_dir):
  images, labels = data.as_arrays("imagenet2012", "validation", data_dir=standin_data_dir,
                                  image_size=32, limit=3)
  assert images.shape == (3, 32, 32, 3) and labels.shape == (3,)
  with pytest.raises(ValueError, match="does not fit in memory"):
    data.as_arrays("imagenet2012", "validation", data_dir=standin_data_dir)


@pytest.mark.parametrize("name", ["imagenet2012", "cifar100", "mnist"])
def test_missing_dataset_is_one_line(empty_data_dir, name):
  with pytest.raises(data.DatasetNotFoundError) as e:
    data.iterator(name, "train", 8, train=True, data_dir=empty_data_dir)
  msg = str(e.value)
  assert "\n" not in msg and f"tfds build {name}" in msg and "--config.dataset.data_dir" in msg


# ----------------------------------------------------------------------------- MNIST stand-ins

@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_official_tfds_mnist_builders_are_read(standin_data_dir, empty_data_dir, helpers, name):
  """mnist, and fashion_mnist when tfds's own copy is prepared (no IDX files needed then)."""
  ds = data.info(name)
  images, labels = data.as_arrays(name, "train", data_dir=standin_data_dir)
  assert images.shape == (helpers.DIGITS_SIZES["train"], 28, 28, 1)
  np.testing.assert_array_equal(labels, (helpers.ids_of({"image": images}, ds) - 1) % 10)
  batches = list(data.iterator(name, "test", 4, train=False, data_dir=standin_data_dir))
  assert [b["mask"].sum() for b in batches] == [4, 3]
  assert not (os.path.exists(os.path.join(standin_data_dir, "jaxdr_fashion_mnist")))


def test_an_older_prepared_version_is_read(standin_data_dir, tmp_path):
  """A data dir holding cifar10/3.0.1 (not tfds's current 3.0.2) is read from its metadata."""
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.copytree(os.path.join(standin_data_dir, "cifar10", "3.0.2"),
                  tmp_path / "cifar10" / "3.0.1")
  images, labels = data.as_arrays("cifar10", "test", data_dir=str(tmp_path))
  want_images, want_labels = data.as_arrays("cifar10", "test", data_dir=standin_data_dir)
  np.testing.assert_array_equal(images, want_images)
  np.testing.assert_array_equal(labels, want_labels)
