"""Per-layer learning-rate fine-tuning: rate 0 freezes a layer exactly, others move, the mask
stays applied, and rates reach the right parameters."""
import jax
import numpy as np
import pytest

from jaxdr import models
from jaxdr.methods import finetune


def setup():
  model = models.create("lenet5", num_classes=3, image_size=16, input_channels=1,
                        channels={"conv1": 3, "conv2": 4})
  variables = models.init(model, jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  return model, variables, rng.normal(size=(16, 16, 16, 1)).astype(np.float32), rng.integers(0, 3, 16)


def test_rate_labels_route_by_layer():
  model, variables, _, _ = setup()
  labels, rates = finetune.rate_labels(variables["params"], {"conv1": 0.0, "conv2": 1e-3}, 1e-4)
  assert labels["conv1"]["kernel"] == "lr=0" and labels["conv2"]["bias"] == "lr=0.001"
  assert labels["fc1"]["dense"]["kernel"] == "lr=0.0001"
  assert rates == {"lr=0": 0.0, "lr=0.001": 1e-3, "lr=0.0001": 1e-4}
  assert finetune.car_layer_rates(model, "conv1") == {"conv1": 0.0, "conv2": 1e-3}
  assert finetune.car_layer_rates(model, "conv2") == {"conv2": 0.0, "fc1": 1e-3}


def test_finetune_freezes_rate_zero_and_trains_the_rest():
  model, variables, x, y = setup()
  mask = {"conv1": np.array([1, 0, 1], np.float32)}
  opts = finetune.FinetuneOptions(steps=5, batch_size=8, default_lr=0.0)
  tuned = finetune.finetune(model, variables, x, y, mask, {"conv1": 0.0, "conv2": 0.05}, opts,
                            log=lambda _: None)
  p0, p1 = variables["params"], tuned["params"]
  np.testing.assert_array_equal(p1["conv1"]["kernel"], p0["conv1"]["kernel"])
  np.testing.assert_array_equal(p1["fc1"]["dense"]["kernel"], p0["fc1"]["dense"]["kernel"])
  moved = np.abs(np.asarray(p1["conv2"]["kernel"]) - np.asarray(p0["conv2"]["kernel"]))
  assert moved.max() > 1e-6
  # The pruned conv1 filter 1 feeds nothing during training: its conv2 weights get no gradient.
  assert moved[:, :, 1, :].max() == 0.0


def test_finetune_lowers_the_loss_and_rejects_bad_input():
  model, variables, x, y = setup()
  loss = lambda v: float(np.mean(  # noqa: E731
      -jax.nn.log_softmax(models.apply(model, v, x))[np.arange(16), y]))
  tuned = finetune.finetune(model, variables, x, y, None, {}, finetune.FinetuneOptions(
      steps=30, batch_size=16, default_lr=0.01), log=lambda _: None)
  assert loss(tuned) < loss(variables)
  with pytest.raises(ValueError, match="unknown layers"):
    finetune.finetune(model, variables, x, y, None, {"nope": 1.0}, log=lambda _: None)
  with pytest.raises(ValueError, match="batch_size"):
    finetune.finetune(model, variables, x[:4], y[:4], None, {}, log=lambda _: None)
