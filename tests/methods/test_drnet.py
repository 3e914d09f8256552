"""DRNet: CCIV (union / XOR / keep fraction), CIV dissection and resume, sub-task inference."""
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxdr import costs, models
from jaxdr.methods import cdrp, drnet
from jaxdr.models import resnet, vgg

models.register("tiny_vgg_drnet", lambda **kw: vgg.VGG(cfg=(4, "M", 6, "M"), **kw))
models.register("tiny_resnet_drnet", lambda **kw: resnet.ResNet(stage_sizes=(2, 1), stage_widths=(4, 6),
                                                                 stem_width=4, **kw))

# Hand-made CIVs: 3 classes, two gate points of 3 and 2 channels.
CIV = {"a": np.array([[0.0, 0.5, 0.2], [0.3, 0.0, 0.2], [0.9, 0.9, 0.0]], np.float32),
       "b": np.array([[0.1, 0.0], [0.0, 0.0], [0.4, 0.6]], np.float32)}


def test_union_is_max_over_classes_then_threshold():
  mask = drnet.cciv(CIV, [1, 0], "union", threshold=0.2)
  np.testing.assert_array_equal(mask["a"], [1, 1, 1])  # max = [0.3, 0.5, 0.2] >= 0.2
  np.testing.assert_array_equal(mask["b"], [0, 0])     # max = [0.1, 0.0]
  mask = drnet.cciv(CIV, [0, 1], "union", threshold=0.25)
  np.testing.assert_array_equal(mask["a"], [1, 1, 0])
  mask = drnet.cciv(CIV, [0, 2], "union", threshold=0.5)
  np.testing.assert_array_equal(mask["a"], [1, 1, 0])
  np.testing.assert_array_equal(mask["b"], [0, 1])


def test_xor_keeps_channels_whose_importance_differs():
  mask = drnet.cciv(CIV, [0, 2], "xor", threshold=0.35)
  np.testing.assert_array_equal(mask["a"], [1, 1, 0])  # |diff| = [0.9, 0.4, 0.2]
  np.testing.assert_array_equal(mask["b"], [0, 1])     # |diff| = [0.3, 0.6]
  np.testing.assert_array_equal(drnet.cciv(CIV, [0, 1], "xor", threshold=0.3)["a"], [1, 1, 0])


def test_keep_fraction_threshold_and_min_channels():
  score = drnet.scores(CIV, [0, 2])  # a: [0.9, 0.9, 0.2], b: [0.4, 0.6]
  assert drnet.threshold_for_fraction(score, 0.6) == pytest.approx(0.6)  # 3 of 5
  mask = drnet.cciv(CIV, [0, 2], keep_fraction=0.6)
  assert sum(m.sum() for m in mask.values()) == 3
  mask = drnet.cciv(CIV, [0, 2], keep_fraction=0.2)  # 1 of 5 wanted; the tie at 0.9 keeps 2
  np.testing.assert_array_equal(mask["a"], [1, 1, 0])
  np.testing.assert_array_equal(mask["b"], [0, 0])
  mask = drnet.cciv(CIV, [0, 2], keep_fraction=0.2, min_channels=1)
  np.testing.assert_array_equal(mask["b"], [0, 1])
  assert sum(m.sum() for m in drnet.cciv(CIV, [1], keep_fraction=1.0).values()) == 5


@pytest.mark.parametrize("classes,combine,match", [
    ([], "union", "empty"), ([0, 3], "union", "out of range"), ([-1], "union", "out of range"),
    ([1, 1], "union", "repeats"), ([0, 1, 2], "xor", "exactly 2"), ([0], "xor", "exactly 2"),
    ([0, 1], "and", "combine"), (["cat"], "union", "integers")])
def test_bad_subtasks_raise_clear_errors(classes, combine, match):
  with pytest.raises(ValueError, match=match):
    drnet.cciv(CIV, classes, combine, threshold=0.1)


def test_bad_thresholds_raise():
  with pytest.raises(ValueError, match="keep fraction"):
    drnet.cciv(CIV, [0, 1], keep_fraction=1.5)
  with pytest.raises(ValueError, match="threshold"):
    drnet.cciv(CIV, [0, 1])


def test_civ_similarity_is_iou_of_nonzero_sets():
  sim = drnet.civ_similarity(CIV)
  # class sets over (a0, a1, a2, b0, b1): c0 {a1, a2, b0}, c1 {a0, a2}, c2 {a0, a1, b0, b1}
  np.testing.assert_allclose(sim, [[1, 1 / 4, 2 / 5], [1 / 4, 1, 1 / 5], [2 / 5, 1 / 5, 1]])


def test_masked_softmax_zeroes_other_classes():
  logits = jnp.array([[5.0, 1.0, 2.0, 0.0]])
  probs = drnet.masked_softmax(logits, drnet.class_mask([1, 3], 4))
  np.testing.assert_array_equal(probs[0, [0, 2]], 0.0)
  np.testing.assert_allclose(probs[0, [1, 3]], jax.nn.softmax(jnp.array([1.0, 0.0])), rtol=1e-6)


def _tiny(name, num_classes=3, seed=0):
  model = models.create(name, num_classes=num_classes, image_size=8, input_channels=1)
  variables = models.init(model, jax.random.PRNGKey(seed))
  # Non-trivial BN statistics, so a wrongly sliced BN would show.
  variables["batch_stats"] = jax.tree_util.tree_map(
      lambda a: a + 0.1 * jax.random.uniform(jax.random.PRNGKey(7), a.shape), variables["batch_stats"])
  return model, variables


def _random_civ(model, num_classes, seed=0):
  rng = np.random.default_rng(seed)
  return {g.key: rng.uniform(0, 1, (num_classes, g.channels)).astype(np.float32)
          for g in models.describe(model).gates}


@pytest.mark.parametrize("name", ["tiny_vgg_drnet", "tiny_resnet_drnet"])
def test_sliced_subnetwork_equals_masked_subnetwork(name):
  model, variables = _tiny(name, num_classes=4)
  civ = _random_civ(model, 4)
  images = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (6, 8, 8, 1)))
  runner = drnet.SubtaskRunner(model, variables, batch_size=4)
  graph = models.describe(model)
  for classes in ([0, 2], [1, 3]):
    mask = drnet.cciv(civ, classes, keep_fraction=0.5)
    assert 0 < sum(m.sum() for m in mask.values()) < sum(g.channels for g in graph.gates)
    masked = runner.logits(images, mask, classes)
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
  assert runner._masked._cache_size() == 1  # switching sub-tasks reused the compiled function
  # Per-sub-task calibration: the smallest fraction within tolerance (any, with a huge one).
  labels = np.array([0, 2, 0, 2, 0, 2])
  assert drnet.calibrate_fraction(runner, civ, (0, 2), images, labels, (0.9, 0.3, 0.6), 1.0) == 0.3
  assert drnet.calibrate_fraction(runner, civ, (0, 2), images, labels, (0.9, 0.3, 0.6), -1.0) == 1.0


def test_sliced_networks_are_cached_by_shape():
  model, variables = _tiny("tiny_vgg_drnet")
  runner = drnet.SubtaskRunner(model, variables, batch_size=2)
  images = np.zeros((2, 8, 8, 1), np.float32)
  m1 = {"conv0": np.array([1, 1, 0, 0], np.float32), "conv1": np.array([1, 0, 1, 0, 1, 0], np.float32)}
  m2 = {"conv0": np.array([0, 1, 0, 1], np.float32), "conv1": np.array([0, 1, 1, 1, 0, 0], np.float32)}
  for m in (m1, m2):
    runner.sliced_logits(runner.slice(m), images, [0, 1])
  assert runner.sliced_compiles == 1


def test_dissection_is_the_class_mean_of_cdrp_and_resumes(tmp_path):
  model, variables = _tiny("tiny_vgg_drnet")
  images = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (12, 8, 8, 1)))
  labels = np.array([0, 1, 2] * 4)
  opts = cdrp.Options(steps=2, learning_rate=0.5)
  indices = drnet.select_images(labels, [0, 1, 2], 3, seed=0)
  assert len(indices) == 9 and all(np.sum(labels[indices] == c) == 3 for c in range(3))
  ref = drnet.Dissection(model, 3, opts).run(variables, images, labels, indices, batch_size=4)
  gates, _ = cdrp.fit_gates(model, variables, jnp.asarray(images[indices]), opts)
  for key, g in gates.items():
    for c in range(3):
      np.testing.assert_allclose(ref[key][c], np.mean(np.asarray(g)[labels[indices] == c], 0), atol=1e-5)

  class Interrupt(Exception):
    pass
  first = drnet.Dissection(model, 3, opts, tmp_path / "civ")
  fit, calls = first._fit, []

  def flaky(*args):
    calls.append(1)
    if len(calls) == 2:
      raise Interrupt()
    return fit(*args)
  first._fit = flaky
  with pytest.raises(Interrupt):
    first.run(variables, images, labels, indices, batch_size=4)
  second = drnet.Dissection(model, 3, opts, tmp_path / "civ")
  resumed, seen = second._fit, []
  second._fit = lambda *a: (seen.append(1), resumed(*a))[1]
  civ = second.run(variables, images, labels, indices, batch_size=4)
  assert len(seen) == 2  # batches 2 and 3 of 3: batch 1 came from the checkpoint
  for key in ref:
    np.testing.assert_allclose(civ[key], ref[key], atol=1e-6)
  with pytest.raises(ValueError, match="other settings"):
    drnet.Dissection(model, 3, cdrp.Options(steps=3), tmp_path / "civ").run(
        variables, images, labels, indices, batch_size=4)


def test_run_writes_results_in_the_documented_schema(tmp_path, monkeypatch):
  from jaxdr import data, train
  model, variables = _tiny("tiny_vgg_drnet", num_classes=10)
  rng = np.random.default_rng(0)
  fake = {split: (rng.normal(size=(n, 8, 8, 1)).astype(np.float32), np.arange(n, dtype=np.int32) % 10)
          for split, n in (("train", 40), ("test", 60))}
  monkeypatch.setattr(train, "get_or_train", lambda config, workdir: (model, variables))
  monkeypatch.setattr(data, "as_arrays", lambda name, split, **kw: fake[split])
  c = ml_collections.ConfigDict(dict(method="drnet", seed=0, pretrained="",
                                     model=dict(name="tiny_vgg_drnet", width=1.0),
                                     dataset=dict(name="fashion_mnist", data_dir="", image_size=8,
                                                  input_channels=1, num_classes=10)))
  from configs import drnet_fashion_mnist  # noqa: E402  (the real defaults, shrunk)
  c.drnet = drnet_fashion_mnist.drnet_defaults()
  c.drnet.update(steps=2, images_per_class=2, batch_size=10, random_2class=3, random_3class=2,
                 eval_batch_size=30, keep_fraction=0.5, superclass_subtasks=False,
                 named_subtasks=(("Trouser", "Bag"),))
  out = drnet.run(c, str(tmp_path))
  results = json.loads((tmp_path / "results.json").read_text())
  assert [s["classes"] for s in results["subtasks"]][0] == [1, 8]
  assert len(results["subtasks"]) == 1 + 3 + 2
  for s in results["subtasks"]:
    for f in ("full_accuracy", "sub_accuracy", "running_channels", "running_params", "running_flops"):
      assert 0.0 <= s[f] <= 1.0, f
    assert s["running_channels"] == pytest.approx(0.5, abs=0.1)
    assert s["physical_params"] >= s["running_params"] - 1e-9
    if s["kind"] == "named":  # run_sliced='named': those also ran cut out
      assert s["sliced_agreement"] == 1.0
  assert set(results["summary"]) == {"2", "3"} and results["summary"]["2"]["count"] == 3
  assert np.array(results["civ_similarity"]).shape == (10, 10)
  assert (tmp_path / "civ_similarity.png").exists() and (tmp_path / "layer_channels.png").exists()
  assert "Tables 4-5" in (tmp_path / "report.md").read_text()
  assert out["summary"]["3"]["count"] == 2
