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


def test_table6_statistics_on_hand_records():
  records = [{"classes": [0, 1], "full_accuracy": 0.60, "sub_accuracy": 0.87},   # +27 points
             {"classes": [2, 3], "full_accuracy": 0.70, "sub_accuracy": 0.68},   # -2
             {"classes": [1, 3], "full_accuracy": 0.50, "sub_accuracy": 0.68},   # +18
             {"classes": [0, 1, 2], "full_accuracy": 0.80, "sub_accuracy": 0.80},
             {"classes": [1, 2, 3], "full_accuracy": 0.70, "sub_accuracy": 0.75}]
  stats = drnet.accuracy_change_stats(records)
  assert set(stats) == {"2", "3"}
  assert stats["2"]["count"] == 3
  np.testing.assert_allclose([stats["2"][k] for k in ("max", "mean", "min")], [0.27, 0.43 / 3, -0.02], atol=1e-12)
  np.testing.assert_allclose([stats["3"][k] for k in ("max", "mean", "min")], [0.05, 0.025, 0.0], atol=1e-12)
  for r in records:
    r.update(accuracy_drop=r["full_accuracy"] - r["sub_accuracy"], running_channels=0.5, running_params=0.4,
             running_flops=0.3, layer_channels={"a": [1, 4], "b": [3, 4]})
  summary = drnet.summarise(records)
  assert summary["2"]["max_accuracy_change"] == pytest.approx(0.27)
  assert summary["2"]["min_accuracy_change"] == pytest.approx(-0.02)
  assert summary["2"]["mean_accuracy_change"] == pytest.approx(-summary["2"]["accuracy_drop"])
  assert summary["3"]["layer_running_channels"] == {"a": 0.25, "b": 0.75}


def test_full_softmax_baseline_differs_where_another_class_wins():
  # 4 images of sub-task (0, 1) among 4 classes: image 2's argmax over all classes is class 3, outside
  # the sub-task, so only the sub-task softmax gets it right.
  logits = np.array([[3.0, 1.0, 0.0, 0.0],    # 0: right either way
                     [0.0, 2.0, 1.0, 0.0],    # 1: right either way
                     [1.0, 0.0, 0.0, 5.0],    # 0: sub-task right, full wrong (3 wins)
                     [0.0, 2.0, 0.0, 0.0]])   # 0: wrong either way
  labels = np.array([0, 1, 0, 0])
  acc = drnet.baseline_accuracies(logits, labels, (0, 1))
  assert acc == {"subtask_softmax": 0.75, "full_softmax": 0.5}
  same = drnet.baseline_accuracies(logits[:2], labels[:2], (0, 1))
  assert same["subtask_softmax"] == same["full_softmax"] == 1.0


def test_evaluate_subtask_uses_the_chosen_baseline(tiny_drnet, random_civ):
  model, variables = tiny_drnet("tiny_vgg_drnet", num_classes=4)
  civ = random_civ(model, 4)
  images = np.asarray(jax.random.normal(jax.random.PRNGKey(5), (40, 8, 8, 1)))
  runner = drnet.SubtaskRunner(model, variables, batch_size=16)
  full_logits = runner.logits(images)
  # Labels where the two baselines differ: an image the 4-way argmax puts outside (0, 2) is
  # labelled with its sub-task argmax (right under the sub-task softmax, wrong under the full).
  outside = ~np.isin(np.argmax(full_logits, -1), (0, 2))
  assert outside.any(), "the random net should put some images outside the sub-task"
  sub_pred = np.where(np.arange(4) % 2 == 0, full_logits, -np.inf).argmax(-1)
  labels = np.where(outside, sub_pred, np.arange(40) % 4)
  keep = np.isin(labels, (0, 2))
  want = drnet.baseline_accuracies(full_logits[keep], labels[keep], (0, 2))
  assert want["subtask_softmax"] != want["full_softmax"], "the random net should err outside the sub-task"
  for baseline in drnet.BASELINES:
    opts = drnet.DrnetOptions(keep_fraction=0.5, baseline=baseline)
    rec = drnet.evaluate_subtask(runner, civ, (0, 2), images, labels, full_logits, opts, physical=False)
    assert rec["baseline"] == baseline and rec["full_accuracy"] == want[baseline]
    assert rec["full_accuracy_subtask_softmax"] == want["subtask_softmax"]
    assert rec["full_accuracy_full_softmax"] == want["full_softmax"]
    assert rec["accuracy_change"] == pytest.approx(rec["sub_accuracy"] - want[baseline])
