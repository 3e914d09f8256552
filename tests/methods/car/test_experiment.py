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
  assert [p["kept"] for p in curve["car"]] == [1, 2, 3, 4, 5]  # greedy to the end: no 'car_end'
  assert set(curve) == {"car", "incoming", "outgoing", "random", "car_finetuned"}
  assert set(car.curve_grid(5, 2)) <= {p["kept"] for p in curve["car_finetuned"]}
  # Held out: CAR scores on one half of the test split, everything is measured on the other.
  assert results["scoring_examples"] == 20 and results["test_examples"] == 20
  assert results["data"]["scoring_set"] == "test_half" and results["data"]["scoring_per_class"] == [2] * 10
  rows = [r for r in results["table1"] if r["layer"] == "conv1"]
  assert [r["method"] for r in rows] == ["CAR", "CAR + fine-tuning", "incoming weights", "outgoing weights"]
  for r in rows:  # FLOPs are MACs: 12x12 output, 5x5 kernels, 1 input channel per kept filter
    assert r["macs"] == 12 * 12 * r["kept"] * 25 and r["storage_bytes"] == 4 * 25 * r["kept"]
    assert r["compression_ratio"] == 5 / r["kept"]
  assert sorted(results["greedy"]["conv1"]["order"]) == list(range(5))
  comp = results["compressed"]
  small, small_vars = checkpoints.load_model(tmp_path / "compressed")
  assert comp["params"] == costs.count(small).params and comp["params_uncompressed"] == costs.count(model).params
  assert comp["macs"] == costs.count(small).macs and comp["flops"] == comp["macs"]
  assert comp["storage_bytes"] == 4 * costs.param_count(small_vars)
  assert small.channels and dict(small.channels)["conv1"] == comp["kept"]["conv1"]
  assert [t["batch_size"] for t in comp["latency"]] == [2] and comp["latency"][0]["sliced_s"] > 0
  for name in ("car_curves", "car_filters", "car_patches_conv1", "car_class_accuracy", "car_carc_views"):
    assert (tmp_path / f"{name}.png").exists(), name
  assert (tmp_path / "car_state" / "conv1" / "greedy.json").exists()
  report = (tmp_path / "report.md").read_text()
  assert "CARc: conv1" in report and "forward latency" in report and "Table 1" in report
  assert "**Scoring set** (`car.scoring_set='test_half'`)" in report
  # A rerun resumes the finished greedy state and gives the same curves.
  again = car.run(_config(), str(tmp_path))
  assert again["greedy"] == out["greedy"] and again["curves"]["conv1"]["car"] == out["curves"]["conv1"]["car"]


@pytest.mark.parametrize("overrides,match", [
    (dict(layers=("conv9",)), "unknown gate 'conv9'"), (dict(mode="both"), "car.mode"),
    (dict(score_exampels=10), "nearest: score_examples"),
    (dict(scoring_set="train", score_examples=1000), "fewer than 100")])
def test_config_errors(tmp_path, fake, overrides, match):
  with pytest.raises(ConfigError, match=match):
    car.run(_config(**overrides), str(tmp_path))


def test_curve_grid():
  assert car.curve_grid(20, 20) == list(range(1, 21))
  grid = car.curve_grid(50, 20)
  assert grid[0] == 1 and grid[-1] == 50 and len(grid) <= 21 and grid == sorted(set(grid))
  assert sum(n <= 25 for n in grid) >= 12


def test_run_on_a_residual_branch_down_to_zero_filters_with_retraining(tmp_path, monkeypatch):
  """Fig. 4B's point: a residual branch's inner gate pruned to 0 filters (the branch removed) is on
  every curve; the retrained-in-the-loop path has its own curve and Table 1 row; the CAR curve
  stops visibly with past_drop='stop'."""
  from jaxdr.models import resnet  # pylint: disable=g-import-not-at-top
  # A shallow ResNet, registered for this test only (the compressed model is saved by name).
  monkeypatch.setitem(models._ARCHS, "car_test_resnet",  # pylint: disable=protected-access
                      lambda **kw: resnet.ResNet(stage_sizes=(2, 1, 1), stage_widths=(4, 4, 4), stem_width=4, **kw))
  model = models.create("car_test_resnet", num_classes=10, image_size=8, input_channels=1, conv_impl="xla")
  variables = models.init(model, jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  arrays = {split: (rng.normal(size=(n, 8, 8, 1)).astype(np.float32), np.arange(n, dtype=np.int32) % 10)
            for split, n in (("train", 40), ("test", 40))}
  x = arrays["test"][0]  # labelled by the network itself: any changed prediction lowers the accuracy
  arrays["test"] = (x, np.asarray(np.argmax(models.apply(model, variables, x), -1), np.int32))
  monkeypatch.setattr(base, "load_or_train", lambda config, workdir: (model, variables))
  monkeypatch.setattr(data, "as_arrays", lambda name, split, **kw: arrays[split])
  c = _config(layers=("stage1_block1/conv1",), min_kept=0, retrain_every=2, patch_filters=1, carc_filters=1,
              balanced=False, max_relative_drop=0.01, per_iteration_past_drop=2)
  c.model.update(name="car_test_resnet", width=1.0, channels={})
  c.dataset.update(image_size=8)
  c.car.finetune.update(points=1, table_search=False)
  results = car.run(c, str(tmp_path))
  key = "stage1_block1/conv1"
  curve = results["curves"][key]
  assert [p["kept"] for p in curve["car"]] == [0, 1, 2, 3, 4] and curve["random"][0]["kept"] == 0
  assert len({p["accuracy"] for p in (curve["car"][0], curve["incoming"][0], curve["outgoing"][0])}) == 1
  assert results["greedy"][key]["greedy_floor"] == 0
  # Past the stop point (1% on the scoring set) the loop went on greedily, marked on the curve.
  stop_n = results["greedy"][key]["kept_at_drop"]
  assert stop_n is not None and curve["car_stop_point"]["kept"] == stop_n and "car_end" not in curve
  kept = [p["kept"] for p in curve["car_retrained"]]  # the uncompressed point, then every 2 iterations
  assert kept[0] == 4 and kept[-1] == 0 and kept == sorted(kept, reverse=True) and len(kept) >= 2
  methods = [r["method"] for r in results["table1"]]
  assert methods[:3] == ["CAR", "CAR + fine-tuning", "CAR, retrained every 2 iteration(s)"]
  assert (tmp_path / "car_curves.png").exists()
  assert (tmp_path / "car_state" / "stage1_block1_conv1_retrain2" / "greedy.json").exists()
  # past_drop='stop' (with a drop the first removal already crosses): the CAR curve ends, marked.
  c.car.update(retrain_every=0, max_relative_drop=0.01, past_drop="stop", latency_batch_sizes=())
  c.car.finetune.enabled = False
  stopped = car.run(c, str(tmp_path / "stop"))["curves"][key]
  end = stopped["car_end"]
  assert end["kept"] == min(p["kept"] for p in stopped["car"]) > 0 and "past_drop='stop'" in end["reason"]
