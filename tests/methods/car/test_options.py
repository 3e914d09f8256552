"""CarOptions: defaults once (the greedy rules' are GreedyOptions'), nested fine-tune section,
unknown keys refused with the nearest valid name."""
import pytest

from jaxdr.errors import ConfigError
from jaxdr.methods import car


def test_defaults_and_greedy_options():
  opts = car.CarOptions.from_config(car.CarOptions().to_config(), "car")
  assert opts == car.CarOptions()
  g = opts.greedy(seed=3)
  assert g == car.GreedyOptions(batch_size=opts.score_batch_size, seed=3)


def test_unknown_keys_name_the_nearest_valid_ones():
  with pytest.raises(ConfigError, match=r"'car.finetune.lr_nxt'; nearest: lr_next"):
    car.CarOptions.from_config({"finetune": {"lr_nxt": 1e-3}}, "car")
  with pytest.raises(ConfigError, match=r"'car.layer'; nearest: layers"):
    car.CarOptions.from_config({"layer": ("conv1",)}, "car")


def test_bad_values():
  with pytest.raises(ConfigError, match="car.mode"):
    car.CarOptions(mode="both")
  with pytest.raises(ConfigError, match="car.layers"):
    car.CarOptions(layers=())
