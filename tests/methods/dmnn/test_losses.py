"""DMNN losses: the FLOPs and execution-rate losses by hand on a tiny net, the category
weights per stage, and the loss hook on the trainer."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdr import costs, models, training
from jaxdr.errors import ConfigError
from jaxdr.methods.dmnn import flops, losses
from jaxdr.methods.dmnn.options import DmnnOptions
from jaxdr.models import dmnn


def tiny_net(**kw):
  """Stem 3x3 3->4 on 4x4; block 1: two sub-blocks 3x3 4->2->4 (4x4); block 2 (stride 2):
  shortcut 1x1 4->8 and two sub-blocks 3x3 4->4->8 (2x2); classifier 8->5."""
  return models.create("dmnn_resnet20", num_classes=5, image_size=4, input_channels=3, width=0.25,
                       conv_impl="xla", **kw).clone(stage_sizes=(1, 1))


def test_cost_table_by_hand():
  table = flops.cost_table(tiny_net(categories=3))
  sub1 = 9 * 4 * 2 * 16 + 9 * 2 * 4 * 16  # conv1 + conv2 at 4x4
  sub2 = 9 * 4 * 4 * 4 + 9 * 4 * 8 * 4  # at 2x2
  base = 9 * 3 * 4 * 16 + 4 * 8 * 4 + 8 * 5  # stem, shortcut, classifier
  np.testing.assert_array_equal(table.sub_macs, [[sub1, sub1], [sub2, sub2]])
  assert (table.base_macs, table.total_macs) == (base, base + 2 * sub1 + 2 * sub2)
  d = 32
  assert table.controller_macs == 4 * d + 2 * 2 * d + (4 * d + d * d + 2 * 2 * d)
  assert table.category_macs == 2 * d * 3
  assert table.params + table.category_params == costs.count(tiny_net(categories=3)).params
  np.testing.assert_array_equal(table.stages, [0, 1])


def test_loss_terms_by_hand():
  table = flops.cost_table(tiny_net())
  sub1, sub2 = table.sub_macs[:, 0]
  gates = jnp.asarray([[[1, 0], [1, 1]], [[0, 0], [0, 1]]], jnp.float32)  # [B=2, L=2, N=2]
  categories = jnp.asarray(np.random.default_rng(0).normal(size=(2, 2, 3)), jnp.float32)
  paths = dmnn.Paths(gates=gates, logits=jnp.zeros((2, 2, 2, 2)), states=jnp.zeros((2, 2, 32)),
                     categories=categories)
  logits, labels, superclass = jnp.asarray([[2.0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0]]), jnp.asarray([0, 3]), \
      jnp.asarray([0, 1, 2, 2, 1])
  opts = DmnnOptions(target_rate=0.5)
  t = losses.terms(logits, paths, labels, table, opts, superclass)
  executed = [table.base_macs + sub1 + 2 * sub2, table.base_macs + sub2]
  ratio = np.mean(executed) / table.total_macs
  assert float(t["flops_ratio"]) == pytest.approx(ratio, rel=1e-6)
  assert float(t["flops_loss"]) == pytest.approx((ratio - 0.5) ** 2, rel=1e-5)
  assert float(t["execution_loss"]) == pytest.approx((0.5 - 0.25) ** 2 + (0.5 - 0.75) ** 2, rel=1e-6)
  log_p = jax.nn.log_softmax(categories, -1)  # superclasses of labels 0, 3: 0, 2
  ctg = 1e-4 * -(log_p[0, 0, 0] + log_p[1, 0, 2]) / 2 + 1e-3 * -(log_p[0, 1, 0] + log_p[1, 1, 2]) / 2
  assert float(t["category_loss"]) == pytest.approx(float(ctg), rel=1e-5)
  ce = -np.mean(np.asarray(jax.nn.log_softmax(logits))[[0, 1], [0, 3]])
  assert float(t["total"]) == pytest.approx(ce + float(ctg) + float(t["execution_loss"]) + float(t["flops_loss"]),
                                            rel=1e-6)
  off = losses.terms(logits, paths, labels, table, DmnnOptions(category_loss=False), None)
  assert float(off["category_loss"]) == 0.0


def test_category_weights_grow_per_stage():
  table = flops.cost_table(models.create("dmnn50", paths=2, num_classes=10, image_size=64, width=1 / 16))
  w = losses.category_weights(table, DmnnOptions())
  np.testing.assert_allclose(w, [1e-4] * 3 + [1e-3] * 4 + [1e-2] * 6 + [1e-1] * 3, rtol=1e-6)
  assert not losses.category_weights(table, DmnnOptions(category_loss=False)).any()


@pytest.mark.parametrize("bad", [dict(paths=0), dict(target_rate=0.0), dict(target_rate=1.5),
                                 dict(temperature=0.0), dict(patsh=2)])
def test_options_reject_bad_values(bad):
  with pytest.raises(ConfigError, match="dmnn"):
    DmnnOptions.from_config(bad, "dmnn")


def test_objective_trains_on_the_trainer():
  """Three steps of training.fit with the DMNN hook: the DMNN terms are logged; the
  controllers' gate layers move (straight-through gradients reach them)."""
  model = tiny_net(categories=3)
  table = flops.cost_table(model)
  rng = np.random.default_rng(0)
  source = training.ArraySource({"image": rng.normal(size=(16, 4, 4, 3)).astype(np.float32),
                                 "label": (np.arange(16) % 5).astype(np.int32)})
  opts = training.TrainOptions(batch_size=8, epochs=2, max_steps=3, learning_rate=0.1)
  init = models.init(model, jax.random.PRNGKey(0))
  result = training.fit(model, opts, source, objective=losses.objective(table, DmnnOptions(), [0, 1, 2, 2, 1]),
                        init_variables=init)
  for k in losses.LOGGED:
    assert np.isfinite(result.metrics[f"train_{k}"]), k
  assert 0.0 <= result.metrics["train_flops_ratio"] <= 1.0
  before = init["params"]["stage1_block0"]["controller"]["gates"]["dense"]["kernel"]
  after = result.variables["params"]["stage1_block0"]["controller"]["gates"]["dense"]["kernel"]
  assert float(jnp.max(jnp.abs(after - before))) > 0
