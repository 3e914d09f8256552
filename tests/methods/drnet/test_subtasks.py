"""Sub-task inference: sub-task softmax, sliced == masked sub-networks, one compile per width set,
per-sub-task calibration, named sub-tasks from class names."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdr import costs, models
from jaxdr.errors import ConfigError
from jaxdr.methods import drnet


def test_subtask_softmax_zeroes_other_classes():
  logits = jnp.array([[5.0, 1.0, 2.0, 0.0]])
  probs = drnet.subtask_softmax(logits, drnet.logit_mask([1, 3], 4))
  np.testing.assert_array_equal(probs[0, [0, 2]], 0.0)
  np.testing.assert_allclose(probs[0, [1, 3]], jax.nn.softmax(jnp.array([1.0, 0.0])), rtol=1e-6)


@pytest.mark.parametrize("name", ["tiny_vgg_drnet", "tiny_resnet_drnet"])
def test_sliced_subnetwork_equals_masked_subnetwork(name, tiny_drnet, random_civ):
  model, variables = tiny_drnet(name, num_classes=4)
  civ = random_civ(model, 4)
  images = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (6, 8, 8, 1)))
  runner = drnet.SubtaskRunner(model, variables, batch_size=4)
  graph = models.describe(model)
  for classes in ([0, 2], [1, 3]):
    mask = drnet.cciv_mask(civ, classes, keep_fraction=0.5)
    assert 0 < sum(m.sum() for m in mask.values()) < sum(g.channels for g in graph.gates)
    masked = runner.logits(images, mask, classes)
    assert masked.shape == (6, 4)  # 6 images in padded batches of 4: the padding is dropped
    sliced = runner.slice(mask)
    np.testing.assert_allclose(runner.sliced_logits(sliced, images, classes), masked, atol=1e-4)
    # The mask is really applied: the open network gives other logits.
    assert not np.allclose(runner.logits(images, None, classes), masked, atol=1e-3)
    assert np.all(np.isneginf(masked[:, [c for c in range(4) if c not in classes]]))
    physical, masked_cost = costs.count(sliced[0]), costs.count(graph, mask, "masked")
    if name == "tiny_resnet_drnet":  # partially closed stream channels stay (masked)
      assert physical.params >= masked_cost.params
    else:
      assert physical.params == masked_cost.params
  assert runner.masked_forward._cache_size() == 1  # switching sub-tasks reused the compiled function
  # Per-sub-task calibration: the smallest fraction within tolerance (any, with a huge one).
  labels = np.array([0, 2, 0, 2, 0, 2])
  assert drnet.calibrate_fraction(runner, civ, (0, 2), images, labels, (0.9, 0.3, 0.6), 1.0) == 0.3
  assert drnet.calibrate_fraction(runner, civ, (0, 2), images, labels, (0.9, 0.3, 0.6), -1.0) == 1.0


def test_sliced_networks_are_cached_by_shape(tiny_drnet):
  model, variables = tiny_drnet("tiny_vgg_drnet")
  runner = drnet.SubtaskRunner(model, variables, batch_size=2)
  images = np.zeros((2, 8, 8, 1), np.float32)
  m1 = {"conv0": np.array([1, 1, 0, 0], np.float32), "conv1": np.array([1, 0, 1, 0, 1, 0], np.float32)}
  m2 = {"conv0": np.array([0, 1, 0, 1], np.float32), "conv1": np.array([0, 1, 1, 1, 0, 0], np.float32)}
  for m in (m1, m2):
    runner.sliced_logits(runner.slice(m), images, [0, 1])
  assert runner.sliced_compiles == 1


def test_named_subtasks_by_name_or_id_and_unknown_names():
  names = ["T-shirt/top", "Trouser", "Pullover"]
  opts = drnet.DrnetOptions(named_subtasks=(("trouser", "T-shirt/top"), ("2", "1")), superclass_subtasks=False)
  assert drnet.named_subtasks(opts, "fashion_mnist", names) == [("Trouser-T-shirt/top", (1, 0)),
                                                                ("Pullover-Trouser", (2, 1))]
  with pytest.raises(ConfigError, match="unknown class 'Hat'.*Trouser"):
    drnet.named_subtasks(drnet.DrnetOptions(named_subtasks=(("Hat", "Trouser"),)), "fashion_mnist", names)
  assert len(drnet.random_subtasks(range(5), 2, 4, seed=0)) == 4
  assert drnet.random_subtasks(range(3), 2, 10, seed=0) == [(0, 1), (0, 2), (1, 2)]
