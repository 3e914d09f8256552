"""Mask training on the trainer: the loss is CE + lambda * sum ||sum_k M[k]||_2 with a fresh draw
per step, the masks learn (per class), weight decay reaches them."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxdr import models, training
from jaxdr.methods import whitebox
from tests.methods.whitebox import nets

K = 4


def test_sparsity_penalty_is_the_l2_norm_of_the_class_sums():
  m = {"a": jnp.asarray([[3.0, 0.0], [0.0, 4.0]]), "b": jnp.asarray([[1.0], [-1.0]])}
  assert float(whitebox.sparsity_penalty(m, 0.5)) == 0.5 * (5.0 + 0.0)


def _loss_terms(model, variables, objective, masks, batch, step):
  ctx = training.LossContext(model=model, batch_stats=variables["batch_stats"], mask=None,
                             rng=jax.random.fold_in(jax.random.PRNGKey(0), step), step=jnp.asarray(step))
  return objective.loss(ctx, variables["params"], {"masks": masks}, batch)


def test_loss_is_cross_entropy_plus_penalty_with_a_fresh_draw_per_step():
  model, variables = nets.build("vgg")
  keys = ("conv1", "conv3")
  objective = whitebox.mask_objective(keys, K, "soft", sparsity=0.01)
  masks = objective.init_extra(jax.random.PRNGKey(0), model, variables)["masks"]
  assert all(np.all(np.asarray(m) == 1.0) for m in masks.values())
  x = jnp.asarray(nets.images(model))
  batch = {"image": x, "label": jnp.asarray([0, 1, 2, 3, 0, 1], jnp.int32)}
  loss, out = _loss_terms(model, variables, objective, masks, batch, step=0)
  penalty = 0.01 * (np.linalg.norm(np.full(6, K)) + np.linalg.norm(np.full(8, K)))
  np.testing.assert_allclose(out.metrics["sparsity"], penalty, rtol=1e-5)
  ce = float(jnp.mean(training.cross_entropy(out.logits, batch["label"])))
  np.testing.assert_allclose(loss, ce + penalty, rtol=1e-5)
  _, out1 = _loss_terms(model, variables, objective, masks, batch, step=1)
  assert not np.allclose(out.logits, out1.logits)  # new soft labels every step


def test_fit_trains_class_wise_masks():
  model, variables = nets.build("vgg")
  rng = np.random.default_rng(0)
  labels = (np.arange(64) % K).astype(np.int32)
  images = (rng.normal(size=(64, 8, 8, 1)) + labels[:, None, None, None]).astype(np.float32)
  opts = training.TrainOptions(batch_size=16, epochs=100, max_steps=6, learning_rate=0.05,
                               schedule="constant", weight_decay=0.0, log_every_steps=3)
  result = whitebox.train_masks(model, opts, training.ArraySource({"image": images, "label": labels}),
                                ("conv1", "conv3"), num_classes=K, gating="soft", sparsity=0.01,
                                init_variables=variables)
  masks = result.extra["masks"]
  assert masks["conv1"].shape == (K, 6)
  assert not np.allclose(masks["conv1"], 1.0)
  assert not np.allclose(masks["conv1"][0], masks["conv1"][1])  # each class's row learns on its own
  assert np.isfinite(result.metrics["train_sparsity"])
  # Weight decay acts on the masks as on the weights (extra_weight_decay None: train.weight_decay).
  decayed = whitebox.train_masks(model, opts.replace(weight_decay=0.5), training.ArraySource(
      {"image": images, "label": labels}), ("conv1", "conv3"), num_classes=K, gating="soft",
      sparsity=0.0, init_variables=variables)
  assert float(np.mean(decayed.extra["masks"]["conv3"])) < float(np.mean(masks["conv3"])) - 0.05
