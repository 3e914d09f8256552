"""car.run end to end on a tiny LeNet-5 and fake data: results schema, compressed model on disk,
resumed greedy state, figures; config errors; the curve grid."""
import json

import jax
import ml_collections
import numpy as np
import pytest

from jaxdr import checkpoints, costs, data, models
from jaxdr.errors import ConfigError
from jaxdr.methods import car
from jaxdr.toolkit import base


def _config(**car_overrides):
  c = ml_collections.ConfigDict(dict(method="car", seed=0, pretrained="",
                                     model=dict(name="lenet5", width=1.0, conv_impl="xla",
                                                channels={"conv1": 5, "conv2": 6}),
                                     dataset=dict(name="fashion_mnist", data_dir="", image_size=16,
                                                  input_channels=1, num_classes=10)))
  c.car = car.CarOptions().to_config()  # the real defaults, shrunk
  c.car.update(layers=("conv1",), score_examples=20, score_batch_size=8, eval_batch_size=16,
               random_repeats=2, masks_per_call=4, latency_batch_sizes=(2,))
  c.car.finetune.update(steps=2, batch_size=4, points=2)
  c.car.update(car_overrides)
  return c


@pytest.fixture
def fake(monkeypatch):
  model = models.create("lenet5", num_classes=10, image_size=16, input_channels=1, conv_impl="xla",
                        channels={"conv1": 5, "conv2": 6})
  variables = models.init(model, jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  arrays = {split: (rng.normal(size=(n, 16, 16, 1)).astype(np.float32), np.arange(n, dtype=np.int32) % 10)
            for split, n in (("train", 60), ("test", 40))}
  monkeypatch.setattr(base, "load_or_train", lambda config, workdir: (model, variables))
  monkeypatch.setattr(data, "as_arrays", lambda name, split, **kw: arrays[split])
  return model, variables


def test_run_writes_curves_compressed_model_and_resumes(tmp_path, fake):
  model, _ = fake
  out = car.run(_config(), str(tmp_path))
  results = json.loads((tmp_path / "results.json").read_text())
  curve = results["curves"]["conv1"]
  assert [p["kept"] for p in curve["car"]] == [1, 2, 3, 4, 5]
  assert set(curve) == {"car", "incoming", "outgoing", "random", "car_finetuned"}
  assert [p["kept"] for p in curve["car_finetuned"]] == car.curve_grid(5, 2) == [1, 2, 5]
  assert results["scoring_examples"] == 20 and results["test_examples"] == 40
  assert sorted(results["greedy"]["conv1"]["order"]) == list(range(5))
  comp = results["compressed"]
  small, small_vars = checkpoints.load_model(tmp_path / "compressed")
  assert comp["params"] == costs.count(small).params and comp["params_uncompressed"] == costs.count(model).params
  assert comp["macs"] == costs.count(small).macs and comp["flops"] == 2 * comp["macs"]
  assert comp["storage_bytes"] == 4 * costs.param_count(small_vars)
  assert small.channels and dict(small.channels)["conv1"] == comp["kept"]["conv1"]
  assert [t["batch_size"] for t in comp["latency"]] == [2] and comp["latency"][0]["sliced_s"] > 0
  assert (tmp_path / "car_curves.png").exists() and (tmp_path / "car_filters.png").exists()
  assert (tmp_path / "car_state" / "conv1" / "greedy.json").exists()
  report = (tmp_path / "report.md").read_text()
  assert "CARc: conv1" in report and "forward latency" in report
  # A rerun resumes the finished greedy state and gives the same curves.
  again = car.run(_config(), str(tmp_path))
  assert again["greedy"] == out["greedy"] and again["curves"]["conv1"]["car"] == out["curves"]["conv1"]["car"]


@pytest.mark.parametrize("overrides,match", [
    (dict(layers=("conv9",)), "unknown gate 'conv9'"), (dict(mode="both"), "car.mode"),
    (dict(score_exampels=10), "nearest: score_examples"), (dict(score_examples=1000), "fewer than 100")])
def test_config_errors(tmp_path, fake, overrides, match):
  with pytest.raises(ConfigError, match=match):
    car.run(_config(**overrides), str(tmp_path))


def test_curve_grid():
  assert car.curve_grid(20, 20) == list(range(1, 21))
  grid = car.curve_grid(50, 20)
  assert grid[0] == 1 and grid[-1] == 50 and len(grid) <= 21 and grid == sorted(set(grid))
  assert sum(n <= 25 for n in grid) >= 12
