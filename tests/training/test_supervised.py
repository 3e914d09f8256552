"""Supervised training of a config's model: exact evaluation, inputs as a function of (seed,
step), a tiny end-to-end run that saves, reports and resumes."""
import json

import jax
import ml_collections
import numpy as np
import pytest

from jaxdr import checkpoints, data, models, training
from tests import tiny_fashion
from tests.conftest import random_variables


def test_evaluate_counts_only_masked_rows_and_pads_the_last_batch():
  model = models.create("lenet5", num_classes=3, image_size=28, input_channels=1, width=0.2)
  variables = random_variables(model, seed=1)
  images = np.random.default_rng(0).normal(size=(11, 28, 28, 1)).astype(np.float32)
  logits = jax.jit(lambda v, x: models.apply(model, v, x))(variables, images)
  preds = np.argmax(np.asarray(logits), -1)
  labels = preds.copy()
  labels[:4] = (preds[:4] + 1) % 3  # 4 wrong, 7 right
  assert training.evaluate(model, variables, images, labels, batch_size=4) == pytest.approx(7 / 11)
  weights = np.zeros(11)
  weights[:6] = 1  # rows 0-3 wrong, 4-5 right
  assert training.evaluate(model, variables, images, labels, weights=weights,
                           batch_size=4) == pytest.approx(2 / 6)
  # a channel mask is applied: closing every conv2 channel gives the bias-only prediction
  mask = {"conv2": np.zeros(10, np.float32)}
  masked = np.argmax(np.asarray(models.apply(model, variables, images, mask)), -1)
  assert training.evaluate(model, variables, images, masked, mask=mask, batch_size=4) == 1.0
  assert training.evaluate(model, variables, images, masked, batch_size=4) < 1.0


def tiny_config(data_root, **train_kw):
  c = ml_collections.ConfigDict()
  c.method, c.seed, c.pretrained = "train", 0, ""
  c.model = ml_collections.ConfigDict(dict(name="lenet5", width=0.2, conv_impl="auto"))
  c.dataset = ml_collections.ConfigDict(dict(name="fashion_mnist", data_dir=data_root,
                                             image_size=28, input_channels=1, num_classes=10))
  c.train = training.TrainOptions(
      learning_rate=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4, warmup_epochs=0.5,
      batch_size=32, epochs=2, log_every_steps=2, checkpoint_every_steps=4, eval_batch_size=64,
      **train_kw).to_config()
  return c


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
  env = tiny_fashion.env(tmp_path_factory.mktemp("tiny_fashion"), num_train=96, num_test=70)
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("JAXDR_FASHION_MNIST_DIR", env["JAXDR_FASHION_MNIST_DIR"])
    yield env["JAXDR_DATA_DIR"]


def test_train_and_evaluate_end_to_end(tiny_data, tmp_path):
  config = tiny_config(tiny_data)
  metrics = training.train_and_evaluate(config, tmp_path)
  # 96 train images / batch 32 = 3 steps per epoch, 2 epochs
  assert metrics["steps"] == 6 and metrics["epochs"] == 2
  assert metrics["test_examples"] == 70  # every test image once: 64 + 6 real rows of a padded batch
  assert 0.0 <= metrics["test_accuracy"] <= 1.0 and np.isfinite(metrics["train_loss"])
  history = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [(r["step"], r["epoch"]) for r in history if "test_accuracy" in r] == [(3, 1.0), (6, 2.0)]
  assert [r["step"] for r in history if "train_loss" in r] == [2, 4, 6]
  assert list((tmp_path / "tensorboard").iterdir())
  # the saved model reproduces the reported accuracy through the public helper
  model, variables = checkpoints.load_model(tmp_path)
  images, labels = data.as_arrays("fashion_mnist", "test", data_dir=tiny_data)
  assert training.evaluate(model, variables, images, labels, batch_size=64) == pytest.approx(
      metrics["test_accuracy"])
  # a second call resumes at the end: nothing is re-trained, same metrics
  again = training.train_and_evaluate(config, tmp_path)
  assert again["steps"] == 6 and again["test_accuracy"] == metrics["test_accuracy"]


def test_train_input_is_a_function_of_seed_and_step(tiny_data):
  source = training.DatasetSource("fashion_mnist", tiny_data, 28)
  spe = source.steps_per_epoch(32)
  assert spe == 3
  full = [b["label"] for _, b in zip(range(7), source.batches(32, 0, 0, spe))]
  late = [b["label"] for _, b in zip(range(3), source.batches(32, 0, 4, spe))]
  for a, b in zip(full[4:], late):
    np.testing.assert_array_equal(a, b)
  assert not all(np.array_equal(a, b) for a, b in zip(full[:3], full[3:6]))  # reshuffled each epoch
