"""jaxdr.train: schedules, weight decay, the step, exact evaluation, a tiny end-to-end run."""
import functools
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxdr import checkpoints, models, train
from tests import tiny_fashion


def _train_cfg(**kw):
  base = dict(learning_rate=0.4, momentum=0.9, nesterov=False, weight_decay=0.0, schedule="cosine",
              warmup_epochs=0, milestones=(), gamma=0.1, optimizer="sgd")
  return ml_collections.ConfigDict({**base, **kw})


def test_cosine_schedule_with_warmup():
  sched = train.learning_rate_schedule(_train_cfg(warmup_epochs=1), steps_per_epoch=10, total_steps=50)
  np.testing.assert_allclose([sched(0), sched(5), sched(10)], [0.0, 0.2, 0.4], atol=1e-7)
  # cosine over the remaining 40 steps: half way (step 30) is half the peak, the end is 0
  np.testing.assert_allclose([sched(30), sched(50)], [0.2, 0.0], atol=1e-6)


def test_step_schedule_milestones_in_epochs():
  sched = train.learning_rate_schedule(
      _train_cfg(schedule="step", milestones=(2, 4), gamma=0.1), steps_per_epoch=10, total_steps=60)
  np.testing.assert_allclose([sched(0), sched(19), sched(20), sched(39), sched(40), sched(59)],
                             [0.4, 0.4, 0.04, 0.04, 0.004, 0.004], rtol=1e-6)


def test_step_schedule_milestones_count_from_start_with_warmup():
  sched = train.learning_rate_schedule(
      _train_cfg(schedule="step", milestones=(3,), warmup_epochs=1), steps_per_epoch=10,
      total_steps=50)
  np.testing.assert_allclose([sched(5), sched(29), sched(30)], [0.2, 0.4, 0.04], rtol=1e-6)


def test_unknown_schedule_is_one_clear_error():
  with pytest.raises(ValueError, match="train.schedule"):
    train.learning_rate_schedule(_train_cfg(schedule="linear"), 10, 10)


def test_weight_decay_is_l2_on_kernels_only():
  tx = train.make_optimizer(_train_cfg(momentum=0.0, weight_decay=0.5), optax.constant_schedule(0.1))
  params = {"conv0": {"kernel": jnp.full((3,), 2.0), "bias": jnp.full((3,), 2.0),
                      "bn": {"scale": jnp.full((3,), 2.0), "bias": jnp.full((3,), 2.0)}}}
  grads = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["conv0"]["kernel"], -0.1 * 0.5 * 2.0)  # -lr * wd * w
  for leaf in (updates["conv0"]["bias"], updates["conv0"]["bn"]["scale"], updates["conv0"]["bn"]["bias"]):
    np.testing.assert_allclose(leaf, 0.0)


def test_nesterov_differs_from_heavy_ball():
  params = {"kernel": jnp.ones((2,))}
  grads = {"kernel": jnp.array([1.0, -2.0])}
  out = []
  for nesterov in (False, True):
    tx = train.make_optimizer(_train_cfg(nesterov=nesterov), optax.constant_schedule(0.1))
    state = tx.init(params)
    for _ in range(2):
      updates, state = tx.update(grads, state, params)
    out.append(updates["kernel"])
  # second step: heavy ball -lr*(1+m)g, Nesterov -lr*(1+m+m^2)g
  np.testing.assert_allclose(out[0], -0.1 * 1.9 * grads["kernel"], rtol=1e-6)
  np.testing.assert_allclose(out[1], -0.1 * (1 + 0.9 + 0.81) * grads["kernel"], rtol=1e-6)


def _random_variables(model, seed=0):
  """Seeded He-scaled variables without compiling the initialiser (slow on a busy CPU)."""
  shapes = jax.eval_shape(lambda: models.init(model, jax.random.PRNGKey(0)))
  rng = np.random.default_rng(seed)
  def fill(s):  # kernels He-normal, biases zero
    if len(s.shape) < 2:
      return np.zeros(s.shape, np.float32)
    return (rng.normal(size=s.shape) * np.sqrt(2.0 / np.prod(s.shape[:-1]))).astype(np.float32)
  return jax.tree.map(fill, shapes)


def _tiny_state(model, tx):
  variables = _random_variables(model)
  return train.TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                          batch_stats=variables.get("batch_stats", {}),
                          opt_state=tx.init(variables["params"]))


def test_a_few_steps_reduce_the_loss():
  model = models.create("lenet5", num_classes=4, image_size=28, input_channels=1, width=0.2)
  tx = train.make_optimizer(_train_cfg(learning_rate=0.001, weight_decay=5e-4),
                            optax.constant_schedule(0.001))
  rng = np.random.default_rng(0)
  labels = np.arange(16) % 4
  images = (rng.normal(size=(16, 28, 28, 1)) + labels[:, None, None, None]).astype(np.float32) * 0.3
  batch = {"image": jnp.asarray(images), "label": jnp.asarray(labels)}
  step = jax.jit(functools.partial(train.train_step, model, tx))
  state = _tiny_state(model, tx)
  losses = []
  for _ in range(12):
    state, sums = step(state, batch)
    losses.append(float(sums["loss"] / sums["count"]))
  assert int(state.step) == 12 and float(sums["count"]) == 16
  assert losses[-1] < 0.6 * losses[0], losses


def test_evaluate_counts_only_masked_rows_and_pads_the_last_batch():
  model = models.create("lenet5", num_classes=3, image_size=28, input_channels=1, width=0.2)
  variables = _random_variables(model, seed=1)
  images = np.random.default_rng(0).normal(size=(11, 28, 28, 1)).astype(np.float32)
  logits = jax.jit(lambda v, x: models.apply(model, v, x))(variables, jnp.asarray(images))
  preds = np.argmax(np.asarray(logits), -1)
  labels = preds.copy()
  labels[:4] = (preds[:4] + 1) % 3  # 4 wrong, 7 right
  assert train.evaluate(model, variables, images, labels, batch_size=4) == pytest.approx(7 / 11)
  mask = np.zeros(11)
  mask[:6] = 1  # rows 0-3 wrong, 4-5 right
  assert train.evaluate(model, variables, images, labels, mask, batch_size=4) == pytest.approx(2 / 6)


def tiny_config(data_root, **train_kw):
  c = ml_collections.ConfigDict()
  c.method, c.seed, c.pretrained = "train", 0, ""
  c.model = ml_collections.ConfigDict(dict(name="lenet5", width=0.2, conv_impl="auto"))
  c.dataset = ml_collections.ConfigDict(dict(name="fashion_mnist", data_dir=data_root,
                                             image_size=28, input_channels=1, num_classes=10))
  c.train = _train_cfg(learning_rate=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4,
                       warmup_epochs=0.5)
  c.train.update(dict(batch_size=32, epochs=2, log_every_steps=2, checkpoint_every_steps=4,
                      eval_batch_size=64, eval_every_epochs=1, max_steps=0, steps_per_epoch=0,
                      num_eval_examples=0))
  c.train.update(train_kw)
  return c


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
  env = tiny_fashion.env(tmp_path_factory.mktemp("tiny_fashion"), num_train=96, num_test=70)
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("JAXDR_FASHION_MNIST_DIR", env["JAXDR_FASHION_MNIST_DIR"])
    yield env["JAXDR_DATA_DIR"]


def test_train_and_evaluate_end_to_end(tiny_data, tmp_path):
  config = tiny_config(tiny_data)
  metrics = train.train_and_evaluate(config, tmp_path)
  # 96 train images / batch 32 = 3 steps per epoch, 2 epochs
  assert metrics["steps"] == 6 and metrics["epochs"] == 2
  assert metrics["test_examples"] == 70  # every test image once: 64 + 6 real rows of a padded batch
  assert 0.0 <= metrics["test_accuracy"] <= 1.0 and np.isfinite(metrics["train_loss"])
  history = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in history if "test_accuracy" in r] == [3, 6]
  assert [r["step"] for r in history if "train_loss" in r] == [2, 4, 6]
  assert list((tmp_path / "tensorboard").iterdir())
  # the saved model reproduces the reported accuracy through the public helper
  model, variables = checkpoints.load_model(tmp_path)
  from jaxdr import data  # pylint: disable=g-import-not-at-top
  images, labels = data.as_arrays("fashion_mnist", "test", data_dir=tiny_data)
  assert train.evaluate(model, variables, images, labels, batch_size=64) == pytest.approx(
      metrics["test_accuracy"])
  # a second call resumes at the end: nothing is re-trained, same metrics
  again = train.train_and_evaluate(config, tmp_path)
  assert again["steps"] == 6 and again["test_accuracy"] == metrics["test_accuracy"]


def test_train_input_is_a_function_of_seed_and_step(tiny_data):
  config = tiny_config(tiny_data)
  spe = train.steps_per_epoch(config)
  assert spe == 3
  full = [b["label"] for _, b in zip(range(7), train.train_batches(config, 0, spe))]
  late = [b["label"] for _, b in zip(range(3), train.train_batches(config, 4, spe))]
  for a, b in zip(full[4:], late):
    np.testing.assert_array_equal(a, b)
  assert not all(np.array_equal(a, b) for a, b in zip(full[:3], full[3:6]))  # reshuffled each epoch


def test_get_or_train_trains_once_then_loads(tiny_data, tmp_path):
  config = tiny_config(tiny_data, max_steps=2)
  model, variables = train.get_or_train(config, tmp_path)
  assert (tmp_path / "train" / "model" / "model.json").exists()
  model2, variables2 = train.get_or_train(config, tmp_path)  # loads, does not retrain
  chex_equal = jax.tree.map(np.array_equal, variables, variables2)
  assert all(jax.tree.leaves(chex_equal)) and model2 == model
  config.pretrained = str(tmp_path / "train")
  _, variables3 = train.get_or_train(config, tmp_path / "elsewhere")
  assert all(jax.tree.leaves(jax.tree.map(np.array_equal, variables, variables3)))
  assert not (tmp_path / "elsewhere").exists()
