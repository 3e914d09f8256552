"""CAR scoring: parallel == sequential scores (1 and 4 devices), reuse == full recomputation,
CAR on a hand-built net, padded batches count no padding, bad input."""
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

from jaxdr import models
from jaxdr.errors import ConfigError
from jaxdr.methods import car
from tests.methods.car import nets

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.mark.parametrize("key", ["conv1"])  # conv2 (dense consumer): the 4-device test
def test_parallel_equals_sequential(key):
  model, variables = nets.tiny_lenet()
  x, y = nets.images(24, 16)
  base = {"conv1": np.array([1, 1, 0, 1, 1], np.float32)}
  channels = models.describe(model).gate(key).channels
  removed = [-1] + list(range(channels))
  par = car.score_removals(model, variables, x, y, base, key, removed, num_classes=4, batch_size=10)
  seq = car.score_sequential(model, variables, x, y, base, key, removed, num_classes=4)
  np.testing.assert_array_equal(par.counts, seq.counts)  # 24 images in padded batches of 10
  np.testing.assert_allclose(par.loss, seq.loss, rtol=1e-5)
  # Not vacuous: removing filters changes the loss, and an already closed filter does not.
  assert np.ptp(par.loss) > 1e-3
  if key == "conv1":
    assert par.loss[3] == pytest.approx(par.loss[0], rel=1e-6)


def test_parallel_equals_sequential_on_four_devices():
  script = textwrap.dedent("""
      import os
      os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=4"  # after the suite's opt level
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


@pytest.mark.parametrize("make,key", [(nets.tiny_lenet, "conv1"), (nets.tiny_lenet, "conv2"),
                                      (nets.tiny_vgg, "conv1")])
def test_reuse_equals_full_recomputation(make, key):
  model, variables = make()
  graph = models.describe(model)
  assert car.reusable(graph, key)
  size, channels = model.image_size, model.input_channels
  x, _ = nets.images(6, size, channels)
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
  np.testing.assert_allclose(car.gate_sweep_logits(model, variables, x, key, gates, reuse=True),
                             car.gate_sweep_logits(model, variables, x, key, gates, reuse=False),
                             atol=2e-5, rtol=1e-5)


def test_car_index_on_hand_built_net():
  model, variables, x, y = nets.hand_built()
  s = car.score_layer(model, variables, x, y, {}, "conv", num_classes=2)
  assert s.accuracy[0] == 1.0
  np.testing.assert_allclose(car.car_index(s)[1:], [0.3, 0.1, 0.0])
  # Padded batches (20 images in batches of 8): padding counts for no class (class 0 is the pad label).
  padded = car.score_layer(model, variables, x, y, {}, "conv", num_classes=2, batch_size=8)
  np.testing.assert_array_equal(padded.counts, s.counts)
  np.testing.assert_array_equal(padded.totals, [10, 10])
  acc = car.evaluate_masks(model, variables, x, y, {"conv": np.array([[1, 1, 0], [0, 1, 1]], np.float32)},
                           num_classes=2, batch_size=8)
  np.testing.assert_allclose(acc, [1.0, 0.7])  # without f2 nothing changes; without f0 30% flip


def test_helpers_and_bad_input():
  idx = car.balanced_indices(np.array([0, 1, 0, 1, 0, 1, 2, 2]), 2)
  np.testing.assert_array_equal(idx, [2, 3, 4, 5, 6, 7])
  with pytest.raises(ConfigError, match="fewer than 3"):
    car.balanced_indices(np.array([0, 1, 0, 1, 0, 1, 2, 2]), 3)
  model, variables = nets.tiny_lenet()
  x, y = nets.images(4, 16)
  with pytest.raises(ConfigError, match=r"filter indices in \[-1, 5\)"):
    car.score_removals(model, variables, x, y, {}, "conv1", [7], num_classes=4)
