"""CAR's greedy loop: order on a hand-built net, stopping rules, resumable state and its fingerprint."""
import json

import numpy as np
import pytest

from jaxdr.errors import ConfigError
from jaxdr.methods import car
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
  # Accuracy floor: removing f1 would cost 10% > 5%.
  floor = car.greedy_compress(model, variables, x, y, ["conv"], num_classes=2,
                              options=car.GreedyOptions(max_relative_drop=0.05), log=lambda _: None)
  assert [r["filter"] for r in floor.removed] == [2] and "would drop" in floor.stop_reason
  # Compression ratio: 3 / 2 = 1.5.
  ratio = car.greedy_compress(model, variables, x, y, ["conv"], num_classes=2,
                              options=car.GreedyOptions(target_ratio=1.5), log=lambda _: None)
  assert ratio.kept("conv") == 2


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
