"""Schedules and the optimiser: warm-up, milestones, L2 on kernels only, Nesterov, per-layer
rates (0 freezes bit for bit), extra trainables with their own rate and weight decay."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdr import errors, training
from jaxdr.training import optim


def _opts(**kw):
  base = dict(learning_rate=0.4, momentum=0.9, nesterov=False, weight_decay=0.0, schedule="cosine")
  return training.TrainOptions(**{**base, **kw})


def test_cosine_schedule_with_warmup():
  sched = optim.learning_rate_schedule(_opts(warmup_epochs=1), steps_per_epoch=10, total_steps=50)
  np.testing.assert_allclose([sched(0), sched(5), sched(10)], [0.0, 0.2, 0.4], atol=1e-7)
  # cosine over the remaining 40 steps: half way (step 30) is half the peak, the end is 0
  np.testing.assert_allclose([sched(30), sched(50)], [0.2, 0.0], atol=1e-6)


def test_step_schedule_milestones_in_epochs():
  sched = optim.learning_rate_schedule(
      _opts(schedule="step", milestones=(2, 4), gamma=0.1), steps_per_epoch=10, total_steps=60)
  np.testing.assert_allclose([sched(0), sched(19), sched(20), sched(39), sched(40), sched(59)],
                             [0.4, 0.4, 0.04, 0.04, 0.004, 0.004], rtol=1e-6)


def test_step_schedule_milestones_count_from_start_with_warmup():
  sched = optim.learning_rate_schedule(_opts(schedule="step", milestones=(3,), warmup_epochs=1),
                                       steps_per_epoch=10, total_steps=50)
  np.testing.assert_allclose([sched(5), sched(29), sched(30)], [0.2, 0.4, 0.04], rtol=1e-6)


def test_inv_schedule_is_caffes():
  sched = optim.learning_rate_schedule(_opts(schedule="inv", gamma=1e-4, power=0.75), 10, 100)
  np.testing.assert_allclose(sched(50), 0.4 * (1 + 1e-4 * 50) ** -0.75, rtol=1e-6)


def test_bad_options_are_config_errors():
  with pytest.raises(errors.ConfigError, match="train.schedule"):
    _opts(schedule="linear")
  with pytest.raises(errors.ConfigError, match="train.batch_sizee"):
    training.TrainOptions.from_config({"batch_sizee": 3}, "train")


def _tree():
  return {"params": {"conv0": {"kernel": jnp.full((3,), 2.0), "bias": jnp.full((3,), 2.0),
                               "bn": {"scale": jnp.full((3,), 2.0), "bias": jnp.full((3,), 2.0)}},
                     "conv1": {"kernel": jnp.full((2,), 2.0)}},
          "extra": {}}


def test_weight_decay_is_l2_on_kernels_only():
  params = _tree()
  tx = optim.make_optimizer(_opts(momentum=0.0, weight_decay=0.5), optax.constant_schedule(0.1), params)
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  np.testing.assert_allclose(updates["params"]["conv0"]["kernel"], -0.1 * 0.5 * 2.0)  # -lr * wd * w
  for leaf in jax.tree.leaves(updates["params"]["conv0"]["bn"]) + [updates["params"]["conv0"]["bias"]]:
    np.testing.assert_allclose(leaf, 0.0)


def test_nesterov_differs_from_heavy_ball():
  params = {"params": {"kernel": jnp.ones((2,))}, "extra": {}}
  grads = {"params": {"kernel": jnp.array([1.0, -2.0])}, "extra": {}}
  out = []
  for nesterov in (False, True):
    tx = optim.make_optimizer(_opts(nesterov=nesterov), optax.constant_schedule(0.1), params)
    state = tx.init(params)
    for _ in range(2):
      updates, state = tx.update(grads, state, params)
    out.append(updates["params"]["kernel"])
  # second step: heavy ball -lr*(1+m)g, Nesterov -lr*(1+m+m^2)g
  np.testing.assert_allclose(out[0], -0.1 * 1.9 * grads["params"]["kernel"], rtol=1e-6)
  np.testing.assert_allclose(out[1], -0.1 * (1 + 0.9 + 0.81) * grads["params"]["kernel"], rtol=1e-6)


def test_layer_rates_and_extras_get_their_own_rules():
  params = _tree()
  params["extra"] = {"masks": {"conv0": jnp.full((2, 3), 2.0)}}
  grads = jax.tree.map(jnp.ones_like, params)
  tx = optim.make_optimizer(_opts(momentum=0.0, weight_decay=0.5), optax.constant_schedule(0.1), params,
                            layer_lrs={"conv0": 0.0}, extra_lr=0.01, extra_weight_decay=1.0)
  updates, _ = tx.update(grads, tx.init(params), params)
  for leaf in jax.tree.leaves(updates["params"]["conv0"]):  # frozen: exactly zero
    assert np.all(np.asarray(leaf) == 0.0)
  np.testing.assert_allclose(updates["params"]["conv1"]["kernel"], -0.1 * (1 + 0.5 * 2.0))
  np.testing.assert_allclose(updates["extra"]["masks"]["conv0"], -0.01 * (1 + 1.0 * 2.0))


def test_layer_of_takes_the_longest_prefix():
  keys = {"stage1_block0", "stage1_block0/conv1"}
  assert optim.layer_of(("stage1_block0", "conv1", "kernel"), keys) == "stage1_block0/conv1"
  assert optim.layer_of(("stage1_block0", "conv2", "kernel"), keys) == "stage1_block0"
  assert optim.layer_of(("classifier", "dense", "kernel"), keys) is None
