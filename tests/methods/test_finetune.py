"""Per-layer learning-rate fine-tuning: rate 0 freezes a layer exactly, others move, the mask
stays applied, and rates reach the right parameters."""
import jax
import numpy as np
import pytest

from jaxdr import errors, models
from jaxdr.methods import finetune


def setup():
  model = models.create("lenet5", num_classes=3, image_size=16, input_channels=1,
                        channels={"conv1": 3, "conv2": 4})
  variables = models.init(model, jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  return model, variables, rng.normal(size=(16, 16, 16, 1)).astype(np.float32), rng.integers(0, 3, 16)


def test_car_layer_rates():
  model, _, _, _ = setup()
  assert finetune.car_layer_rates(model, "conv1") == {"conv1": 0.0, "conv2": 1e-3}
  assert finetune.car_layer_rates(model, "conv2") == {"conv2": 0.0, "fc1": 1e-3}


def test_finetune_freezes_rate_zero_and_trains_the_rest():
  model, variables, x, y = setup()
  mask = {"conv1": np.array([1, 0, 1], np.float32)}
  opts = finetune.FinetuneOptions(steps=5, batch_size=8, default_lr=0.0)
  tuned = finetune.finetune(model, variables, x, y, mask, {"conv1": 0.0, "conv2": 0.05}, opts)
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
      steps=30, batch_size=16, default_lr=0.01))
  assert loss(tuned) < loss(variables)
  with pytest.raises(errors.ConfigError, match="unknown layers"):
    finetune.finetune(model, variables, x, y, None, {"nope": 1.0})
  with pytest.raises(errors.ConfigError, match="batch_size"):
    finetune.finetune(model, variables, x[:4], y[:4], None, {})


def test_finetune_equals_the_plain_sgd_loop_it_replaced():
  """The trainer reproduces the former hand-written loop step for step: the same random
  batches (numpy default_rng(seed).choice each step), per-layer SGD + momentum rates."""
  import optax  # pylint: disable=g-import-not-at-top
  model, variables, x, y = setup()
  rates = {"conv1": 0.0, "conv2": 1e-3}
  opts = finetune.FinetuneOptions(steps=6, batch_size=8, default_lr=1e-2)
  tuned = finetune.finetune(model, variables, x, y, None, rates, opts)
  labels = {"conv1": "frozen", "conv2": "fast", "fc1": "slow", "fc2": "slow"}
  tx = optax.multi_transform(
      {"frozen": optax.set_to_zero(), "fast": optax.sgd(1e-3, momentum=0.9),
       "slow": optax.sgd(1e-2, momentum=0.9)},
      {k: jax.tree.map(lambda _, l=l: l, v) for k, l in zip(labels, labels.values())
       for v in [variables["params"][k]]})
  params, state = variables["params"], None
  state = tx.init(params)
  rng = np.random.default_rng(0)
  for _ in range(6):
    idx = rng.choice(16, 8, replace=False)
    grads = jax.grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(
        models.apply(model, {"params": p}, x[idx]), y[idx]).mean())(params)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(tuned["params"])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
