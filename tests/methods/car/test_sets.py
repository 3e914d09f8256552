"""CAR's data: held-out halves of the test split (disjoint, each class split evenly), the
validation and train readings, and their errors."""
import ml_collections
import numpy as np
import pytest

from jaxdr import data
from jaxdr.errors import ConfigError
from jaxdr.methods import car
from jaxdr.methods.car import sets


def test_balanced_halves_are_disjoint_and_balanced():
  labels = np.array([0] * 7 + [1] * 4 + [2] * 5)
  a, b = car.balanced_halves(labels, seed=3)
  assert not set(a) & set(b) and sorted(np.concatenate([a, b])) == list(range(16))
  np.testing.assert_array_equal(np.bincount(labels[a]), [3, 2, 2])  # each class halved, odd one to b
  np.testing.assert_array_equal(np.bincount(labels[b]), [4, 2, 3])
  a2, _ = car.balanced_halves(labels, seed=3)
  a3, _ = car.balanced_halves(labels, seed=4)
  np.testing.assert_array_equal(a, a2)
  assert not np.array_equal(a, a3)  # seeded shuffle within each class


@pytest.fixture
def splits(monkeypatch):
  rng = np.random.default_rng(0)
  out = {}
  for split, n, k in (("train", 60, 3), ("test", 41, 3), ("extra", 30, 3)):
    x = rng.normal(size=(n, 4, 4, 1)).astype(np.float32)
    x[:, 0, 0, 0] = np.arange(n)  # identifies the image
    out[split] = (x, (np.arange(n) % k).astype(np.int32))
  monkeypatch.setattr(data, "as_arrays", lambda name, split, **kw: out[split])
  return out


def _config():
  return ml_collections.ConfigDict(dict(seed=0, dataset=dict(name="fashion_mnist", data_dir="", image_size=4,
                                                             input_channels=1, num_classes=3)))


def test_scoring_sets(splits):
  s = sets.load(_config(), car.CarOptions())  # the paper's: halves of the test split
  ids = lambda x: set(x[:, 0, 0, 0].astype(int).tolist())
  # Classes of 14, 14, 13 images: halves of 7 / 7, 7 / 7, 6 / 7; the balanced scoring set keeps 6
  # of each class (2 scoring-half images go unused: never in the evaluation set).
  assert not ids(s.score_x) & ids(s.eval_x) and len(ids(s.score_x) | ids(s.eval_x)) == 39
  assert s.description["scoring_set"] == "test_half" and s.description["scoring_examples"] == 18
  assert s.description["scoring_per_class"] == [6, 6, 6] and s.description["evaluation_per_class"] == [7, 7, 7]
  assert len(s.ft_y) == 60
  capped = sets.load(_config(), car.CarOptions(score_examples=9))
  assert capped.description["scoring_per_class"] == [3, 3, 3]
  unbalanced = sets.load(_config(), car.CarOptions(balanced=False))
  assert unbalanced.description["scoring_examples"] == 20
  val = sets.load(_config(), car.CarOptions(scoring_set="validation", validation_split="extra"))
  assert val.description["scoring_examples"] == 30 and val.description["evaluation_examples"] == 41
  old = sets.load(_config(), car.CarOptions(scoring_set="train", score_examples=12))
  assert old.description["scoring_per_class"] == [4, 4, 4] and len(old.ft_y) == 48
  assert ids(old.score_x) <= set(range(48, 60)) and not ids(old.score_x) & ids(old.ft_x)


def test_scoring_set_errors():
  with pytest.raises(ConfigError, match="scoring_set must be one of"):
    car.CarOptions(scoring_set="test")
  with pytest.raises(ConfigError, match="validation_split"):
    car.CarOptions(scoring_set="validation")
  with pytest.raises(ConfigError, match="score_examples > 0"):
    car.CarOptions(scoring_set="train")
