"""CAR's greedy loop: order on a hand-built net, stopping rules, resumable state and its fingerprint."""
import json

import jax

import numpy as np
import pytest

from jaxdr import models
from jaxdr.errors import ConfigError
from jaxdr.methods import car
from jaxdr.methods.car import greedy
from tests.methods.car import nets


def test_greedy_order_on_hand_built_net():
  model, variables, x, y = nets.hand_built()
  logs = []
  state = car.greedy_compress(model, variables, x, y, ["conv"], num_classes=2, log=logs.append)
  assert state.order("conv") == [2, 1, 0]
  assert [r["filter"] for r in state.removed] == [2, 1]
  assert [r["accuracy"] for r in state.removed] == pytest.approx([1.0, 0.9])
  assert state.kept("conv") == 1 and state.done
  assert "iteration 2" in logs[-1] and "filters left conv 1/3" in logs[-1] and "accuracy 0.9000" in logs[-1]
  # k filters per iteration.
  two = car.greedy_compress(model, variables, x, y, ["conv"], num_classes=2,
                            options=car.GreedyOptions(per_iteration=2), log=lambda _: None)
  assert two.iteration == 1 and two.order("conv") == [2, 1, 0]
  # Stop point: removing f1 would cost 10% > 5%. By default the loop goes on greedily past it
  # (the curve's reading); past_drop='stop' ends there.
  logs = []
  on = car.greedy_compress(model, variables, x, y, ["conv"], num_classes=2,
                           options=car.GreedyOptions(max_relative_drop=0.05), log=logs.append)
  assert [r["filter"] for r in on.removed] == [2, 1] and on.drop_at == 1 and on.kept_at_drop("conv") == 2
  assert [r["past_drop"] for r in on.removed] == [False, True] and on.greedy_floor("conv") == 1
  assert any("stop point" in line and "continuing greedily" in line for line in logs)
  stop = car.greedy_compress(model, variables, x, y, ["conv"], num_classes=2,
                             options=car.GreedyOptions(max_relative_drop=0.05, past_drop="stop"), log=lambda _: None)
  assert [r["filter"] for r in stop.removed] == [2] and "past_drop='stop'" in stop.stop_reason
  assert stop.greedy_floor("conv") == 2 and stop.order("conv") == [2, 0, 1]
  # Compression ratio: 3 / 2 = 1.5.
  ratio = car.greedy_compress(model, variables, x, y, ["conv"], num_classes=2,
                              options=car.GreedyOptions(target_ratio=1.5), log=lambda _: None)
  assert ratio.kept("conv") == 2


@pytest.mark.parametrize("past", [1, 2])
def test_greedy_to_the_end_removes_the_argmin_car_filters(past):
  """Every iteration (before and past the stop point, ``past`` filters per iteration there)
  removes the filters of least CAR under the mask of that moment, down to min_kept."""
  model, variables = nets.tiny_lenet(seed=3)
  x, _ = nets.images(40, 16, seed=4)
  y = np.asarray(np.argmax(models.apply(model, variables, x), -1), np.int32)  # accuracy 1 unpruned
  opts = car.GreedyOptions(max_relative_drop=0.1, per_iteration_past_drop=past)
  state = car.greedy_compress(model, variables, x, y, ["conv2"], num_classes=4, options=opts, log=lambda _: None)
  assert state.kept("conv2") == 1 and state.greedy_floor("conv2") == 1 and state.drop_at is not None
  mask = np.ones(6, np.float32)
  for it in range(1, state.iteration + 1):
    step = [r for r in state.removed if r["iteration"] == it]
    assert len(step) == (1 if not step[0]["past_drop"] else min(past, int(mask.sum()) - 1))
    s = car.score_layer(model, variables, x, y, {"conv2": mask}, "conv2", num_classes=4)
    cand = sorted((float(c), float(l - s.loss[0]) / len(y), f) for c, l, f in
                  zip(car.car_index(s)[1:], s.loss[1:], range(6)) if mask[f] > 0)
    assert [r["filter"] for r in step] == [f for _, _, f in cand[:len(step)]]
    np.testing.assert_allclose([r["car"] for r in step], [c for c, _, _ in cand[:len(step)]], atol=1e-12)
    mask[[r["filter"] for r in step]] = 0.0


def test_retraining_inside_the_loop(tmp_path):
  model, variables = nets.tiny_lenet()
  x, y = nets.images(24, 16)
  calls = []

  def retrain(v, mask, iteration):
    calls.append((iteration, int(mask["conv1"].sum())))
    v = jax.tree.map(np.array, v)
    v["params"]["fc2"]["dense"]["bias"] = v["params"]["fc2"]["dense"]["bias"] + 1.0  # a visible change
    return v, {"accuracy": 0.5}
  opts = car.GreedyOptions(retrain_every=2, max_iterations=3)
  state = car.greedy_compress(model, variables, x, y, ["conv1"], num_classes=4, options=opts, retrain=retrain,
                              retrain_fingerprint={"steps": 1}, state_dir=tmp_path / "rt", log=lambda _: None)
  assert calls == [(2, 3)] and state.retrained == [{"iteration": 2, "removed": 2, "kept": {"conv1": 3},
                                                    "accuracy": 0.5}]
  # Resumed, the retrained variables are restored from the state's arrays and used.
  seen = []
  resumed = car.greedy_compress(model, variables, x, y, ["conv1"], num_classes=4, options=car.GreedyOptions(retrain_every=2, max_iterations=4),
                                retrain=lambda v, m, i: (seen.append(float(v["params"]["fc2"]["dense"]["bias"][0]))
                                                         or (v, {"accuracy": 0.25})),
                                retrain_fingerprint={"steps": 1}, state_dir=tmp_path / "rt", log=lambda _: None)
  assert len(resumed.retrained) == 2 and seen == [pytest.approx(float(variables["params"]["fc2"]["dense"]["bias"][0]) + 1)]
  with pytest.raises(ConfigError, match="retrain"):
    car.greedy_compress(model, variables, x, y, ["conv1"], num_classes=4, options=opts, retrain=retrain,
                        retrain_fingerprint={"steps": 2}, state_dir=tmp_path / "rt", log=lambda _: None)


def test_branch_gate_goes_to_zero_filters():
  """min_kept=0: a residual branch's inner gate loses its last filter, scored with the branch removed
  (the network without that block); other layers stop at 1."""
  model, variables = nets.tiny_resnet(seed=1)
  x, y = nets.images(30, 8, channels=2, seed=2, classes=3)
  key = "stage1_block1/conv1"
  graph = models.describe(model)
  assert greedy.floors(graph, [key, "stem", "stage2_block0/conv1"], 0) == {key: 0, "stem": 1, "stage2_block0/conv1": 0}
  assert greedy.floors(graph, [key], 2) == {key: 2}
  gone = car.without_branch(model, variables, key)
  masked = car.greedy_compress(model, variables, x, y, [key], num_classes=3,
                               options=car.GreedyOptions(min_kept=0, empty_branch="mask"), log=lambda _: None)
  removed = car.greedy_compress(model, variables, x, y, [key], num_classes=3,
                                options=car.GreedyOptions(min_kept=0), log=lambda _: None)
  assert removed.kept(key) == 0 and removed.greedy_floor(key) == 0 and removed.order(key)[-1] == removed.removed[-1]["filter"]
  assert removed.removed[-1]["accuracy"] == pytest.approx(
      car.accuracy(model, gone, x, y, car.branch_mask(graph, key), num_classes=3))
  assert masked.removed[-1]["accuracy"] == pytest.approx(
      car.accuracy(model, variables, x, y, {key: np.zeros(3, np.float32)}, num_classes=3))
  with pytest.raises(ConfigError, match="min_kept"):
    car.GreedyOptions(min_kept=-1)


def test_greedy_resumes_from_saved_state(tmp_path):
  model, variables = nets.tiny_lenet()
  x, y = nets.images(32, 16)
  opts = dict(num_classes=4, log=lambda _: None)
  whole = car.greedy_compress(model, variables, x, y, ["conv1", "conv2"],
                              options=car.GreedyOptions(max_iterations=4, subset_size=24), **opts)
  path = tmp_path / "state"
  part = car.greedy_compress(model, variables, x, y, ["conv1", "conv2"], state_dir=path,
                             options=car.GreedyOptions(max_iterations=2, subset_size=24), **opts)
  assert part.iteration == 2 and json.loads((path / "greedy.json").read_text())["iteration"] == 2
  logs = []
  # A stopping rule (max_iterations) may change between runs: the path so far stays valid.
  resumed = car.greedy_compress(model, variables, x, y, ["conv1", "conv2"], state_dir=path,
                                options=car.GreedyOptions(max_iterations=4, subset_size=24),
                                num_classes=4, log=logs.append)
  assert "resuming" in logs[0]
  assert resumed.removed == whole.removed and resumed.masks == whole.masks
  assert len(whole.removed) == 4
  # Other layers, or options that shape the path, refuse the saved state.
  with pytest.raises(ConfigError, match="other settings.*keys"):
    car.greedy_compress(model, variables, x, y, ["conv1"], state_dir=path, **opts)
  with pytest.raises(ConfigError, match="other settings.*subset_size"):
    car.greedy_compress(model, variables, x, y, ["conv1", "conv2"], state_dir=path,
                        options=car.GreedyOptions(max_iterations=4, subset_size=16), **opts)


def test_greedy_errors():
  model, variables = nets.tiny_lenet()
  x, y = nets.images(4, 16)
  with pytest.raises(ConfigError, match="unknown gate"):
    car.greedy_compress(model, variables, x, y, ["nope"], num_classes=4)
  with pytest.raises(ConfigError, match="per_iteration"):
    car.GreedyOptions(per_iteration=0)
  assert np.isnan(car.GreedyState(keys=["a"], masks={"a": [1.0]}).reference_accuracy)
