"""CAR: parallel == sequential scores (1 and 4 devices), reuse == full recomputation, greedy
order on a hand-built net, resumability, stopping rules, CAR == mean CARc, baselines."""
import json
import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdr import models
from jaxdr.methods import car, car_baselines
from jaxdr.models import layers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny_lenet(seed=0):
  model = models.create("lenet5", num_classes=4, image_size=16, input_channels=1,
                        channels={"conv1": 5, "conv2": 6})
  return model, models.init(model, jax.random.PRNGKey(seed))


def tiny_vgg(seed=0):
  model = models.create("vgg16", num_classes=3, image_size=8)
  model = model.clone(cfg=(4, "M", 5, "M", 3))
  return model, models.init(model, jax.random.PRNGKey(seed))


def images(n, size, channels=1, seed=0, classes=4):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(n, size, size, channels)).astype(np.float32),
          rng.integers(0, classes, n).astype(np.int32))


@pytest.mark.parametrize("key", ["conv1"])  # conv2 (dense consumer): the 4-device test
def test_parallel_equals_sequential(key):
  model, variables = tiny_lenet()
  x, y = images(24, 16)
  base = {"conv1": np.array([1, 1, 0, 1, 1], np.float32)}
  channels = models.describe(model).gate(key).channels
  removed = [-1] + list(range(channels))
  par = car.score_removals(model, variables, x, y, base, key, removed, num_classes=4, batch_size=10)
  seq = car.score_sequential(model, variables, x, y, base, key, removed, num_classes=4)
  np.testing.assert_array_equal(par.counts, seq.counts)
  np.testing.assert_allclose(par.loss, seq.loss, rtol=1e-5)
  # Not vacuous: removing filters changes the loss, and an already closed filter does not.
  assert np.ptp(par.loss) > 1e-3
  if key == "conv1":
    assert par.loss[3] == pytest.approx(par.loss[0], rel=1e-6)


def test_parallel_equals_sequential_on_four_devices():
  script = textwrap.dedent("""
      import os
      os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
      import jax, numpy as np
      from jaxdr import models
      from jaxdr.methods import car
      assert len(jax.local_devices()) == 4, jax.local_devices()
      model = models.create("lenet5", num_classes=4, image_size=16, input_channels=1,
                            channels={"conv1": 5, "conv2": 6})
      v = models.init(model, jax.random.PRNGKey(0))
      rng = np.random.default_rng(0)
      x = rng.normal(size=(24, 16, 16, 1)).astype(np.float32)
      y = rng.integers(0, 4, 24).astype(np.int32)
      mesh = car.candidate_mesh()
      assert mesh.devices.size == 4
      removed = [-1] + list(range(5))  # 6 candidates: padded to 8 over 4 devices
      par = car.score_removals(model, v, x, y, {}, "conv1", removed, num_classes=4, batch_size=10, mesh=mesh)
      seq = car.score_sequential(model, v, x, y, {}, "conv1", removed, num_classes=4)
      np.testing.assert_array_equal(par.counts, seq.counts)
      np.testing.assert_allclose(par.loss, seq.loss, rtol=1e-5)
      gates = np.eye(6, dtype=np.float32)[:3] + 0.5  # 3 masks of conv2: padded to 4
      acc = car.evaluate_masks(model, v, x, y, {"conv2": gates}, num_classes=4, masks_per_call=4, mesh=mesh)
      ref = [np.mean(np.argmax(models.apply(model, v, x, {"conv2": g}), -1) == y) for g in gates]
      np.testing.assert_allclose(acc, ref)
      print("OK4")
  """)
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "OK4" in out.stdout


@pytest.mark.parametrize("make,key", [(tiny_lenet, "conv1"), (tiny_lenet, "conv2"), (tiny_vgg, "conv1")])
def test_reuse_equals_full_recomputation(make, key):
  model, variables = make()
  graph = models.describe(model)
  assert car._reusable(graph, key)  # pylint: disable=protected-access
  size, channels = model.image_size, model.input_channels
  x, _ = images(6, size, channels)
  c = graph.gate(key).channels
  base = {key: np.ones(c, np.float32)}
  base[key][1] = 0.0
  removed = jnp.asarray([-1] + list(range(c)))
  fast = car.candidate_logits(model, variables, x, base, key, removed, reuse=True)
  full = car.candidate_logits(model, variables, x, base, key, removed, reuse=False)
  np.testing.assert_allclose(fast, full, atol=2e-5, rtol=1e-5)
  # Each candidate really is the network without that filter.
  for j in (0, 2):
    m = dict(base)
    m[key] = base[key].copy()
    m[key][j] = 0.0
    np.testing.assert_allclose(fast[j + 1], models.apply(model, variables, x, m), atol=2e-5, rtol=1e-5)
  assert float(jnp.abs(fast[1] - fast[0]).max()) > 1e-4
  # Arbitrary (even continuous) gate vectors: per-channel contributions computed once.
  gates = np.random.default_rng(1).uniform(size=(3, c)).astype(np.float32)
  gates[0] = (gates[0] > 0.5)
  np.testing.assert_allclose(car.masked_logits(model, variables, x, key, gates, reuse=True),
                             car.masked_logits(model, variables, x, key, gates, reuse=False),
                             atol=2e-5, rtol=1e-5)


class HandBuilt(layers.Backbone):
  """1x1 'conv' over three input features, then a linear classifier: filter c passes feature c."""

  @nn.compact
  def __call__(self, x, mask=None, train=False):
    key = layers.child_key(self, "conv")
    x = layers.ConvUnit(3, kernel=1, use_bias=False, use_bn=False, act=None, name="conv")(x, mask, train)
    return layers.DenseUnit(2, name="fc")(x, src=key)


def hand_built():
  """Logit(class 1) - logit(class 0) = 2 f0 + f1 + 0 f2. Data: 60% of examples need neither
  feature alone, 30% need f0 (removing it flips them), 10% need f1. So CAR = (0.3, 0.1, 0) and
  the greedy order is f2, then f1; f0 is the last one kept."""
  model = HandBuilt(num_classes=2, image_size=1, input_channels=3)
  variables = models.init(model, jax.random.PRNGKey(0))
  fc = np.zeros((3, 2), np.float32)
  fc[:, 1] = [2.0, 1.0, 0.0]
  variables = {"params": {"conv": {"kernel": jnp.eye(3).reshape(1, 1, 3, 3)},
                          "fc": {"dense": {"kernel": jnp.asarray(fc), "bias": jnp.zeros(2)}}}}
  rows = []
  for i in range(20):
    s = 1.0 if i % 2 else -1.0
    kind = "A" * 12 + "B" * 6 + "D" * 2
    f0, f1 = {"A": (s, s), "B": (s, -0.5 * s), "D": (-0.25 * s, s)}[kind[i]]
    rows.append(((f0, f1, 5.0 * s), int(s > 0)))
  x = np.asarray([r[0] for r in rows], np.float32).reshape(20, 1, 1, 3)
  y = np.asarray([r[1] for r in rows], np.int32)
  return model, variables, x, y


def test_car_index_on_hand_built_net():
  model, variables, x, y = hand_built()
  s = car.score_layer(model, variables, x, y, {}, "conv", num_classes=2)
  assert s.accuracy[0] == 1.0
  np.testing.assert_allclose(car.car_index(s)[1:], [0.3, 0.1, 0.0])


def test_greedy_order_on_hand_built_net(tmp_path):
  model, variables, x, y = hand_built()
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
  model, variables = tiny_lenet()
  x, y = images(32, 16)
  opts = dict(num_classes=4, log=lambda _: None)
  whole = car.greedy_compress(model, variables, x, y, ["conv1", "conv2"],
                              options=car.GreedyOptions(max_iterations=4, subset_size=24), **opts)
  path = str(tmp_path / "state.json")
  part = car.greedy_compress(model, variables, x, y, ["conv1", "conv2"], state_path=path,
                             options=car.GreedyOptions(max_iterations=2, subset_size=24), **opts)
  assert part.iteration == 2 and json.load(open(path))["iteration"] == 2
  logs = []
  resumed = car.greedy_compress(model, variables, x, y, ["conv1", "conv2"], state_path=path,
                                options=car.GreedyOptions(max_iterations=4, subset_size=24),
                                num_classes=4, log=logs.append)
  assert "resuming" in logs[0]
  assert resumed.removed == whole.removed and resumed.masks == whole.masks
  assert len(whole.removed) == 4
  with pytest.raises(ValueError, match="compresses"):
    car.greedy_compress(model, variables, x, y, ["conv1"], state_path=path, **opts)


def test_car_is_mean_of_carc_on_balanced_set():
  model, variables = tiny_lenet(seed=3)
  x, _ = images(40, 16, seed=5)
  y = np.repeat(np.arange(4), 10).astype(np.int32)
  s = car.score_layer(model, variables, x, y, {}, "conv2", num_classes=4, batch_size=16)
  carc = car.carc_index(s)
  np.testing.assert_allclose(car.car_index(s), carc.mean(axis=1), atol=1e-12)
  assert np.abs(carc).max() > 0  # some filter changes some class
  table = car.carc_table(carc[1:], car.car_index(s)[1:], ["a", "b", "c", "d"], top=2)
  row = table[int(np.argmax(np.abs(carc[1:]).max(1)))]
  assert len(row["top"]) == 2 and row["top"][0]["carc"] >= row["top"][1]["carc"] >= row["bottom"][0]["carc"]


def test_weight_baselines_on_set_weights():
  model, variables = tiny_lenet()
  variables = jax.tree.map(np.array, variables)
  conv2 = variables["params"]["conv2"]["kernel"]  # HWIO [5, 5, 5, 6]
  conv2[:] = 1.0
  conv2[..., 4] = 0.1  # filter 4 of conv2 has the smallest incoming weights
  conv2[:, :, 2, :] = 0.01  # input channel 2 (conv1 filter 2) the smallest outgoing weights
  fc1 = variables["params"]["fc1"]["dense"]["kernel"]  # rows (position, channel)-major, 6 channels
  fc1[:] = 1.0
  fc1[3::6] = -0.2  # conv2 channel 3: smallest |outgoing|
  assert car_baselines.order_by(car_baselines.incoming_importance(model, variables, "conv2"))[0] == 4
  assert car_baselines.order_by(car_baselines.outgoing_importance(model, variables, "conv1"))[0] == 2
  assert car_baselines.order_by(car_baselines.outgoing_importance(model, variables, "conv2"))[0] == 3
  masks = car_baselines.masks_along([3, 0, 1, 2], [4, 2, 0])
  np.testing.assert_array_equal(masks, [[1, 1, 1, 1], [0, 1, 1, 0], [0, 0, 0, 0]])
  r = car_baselines.random_orders(6, 10, seed=1)
  assert r.shape == (10, 6) and all(sorted(o) == list(range(6)) for o in r)
  assert len({tuple(o) for o in r}) > 1


def test_helpers_and_bad_input():
  assert car.curve_grid(20, 20) == list(range(1, 21))
  grid = car.curve_grid(50, 20)
  assert grid[0] == 1 and grid[-1] == 50 and len(grid) <= 21 and grid == sorted(set(grid))
  assert sum(n <= 25 for n in grid) >= 12
  idx = car.balanced_indices(np.array([0, 1, 0, 1, 0, 1, 2, 2]), 2)
  np.testing.assert_array_equal(idx, [2, 3, 4, 5, 6, 7])
  model, variables = tiny_lenet()
  x, y = images(4, 16)
  with pytest.raises(ValueError, match=r"filter indices in \[-1, 5\)"):
    car.score_removals(model, variables, x, y, {}, "conv1", [7], num_classes=4)
  with pytest.raises(ValueError, match="unknown gate"):
    car.greedy_compress(model, variables, x, y, ["nope"], num_classes=4)
  with pytest.raises(ValueError, match="per_iteration"):
    car.GreedyOptions(per_iteration=0)
