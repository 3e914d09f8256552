"""whitebox.run end to end on a tiny real Fashion-MNIST and a narrow LeNet-5: every variant voted
to the budget, folded, cut, fine-tuned, saved as an ordinary model; results, report, figures;
a rerun resumes; bad input is one ConfigError before any training."""
import json
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from jaxdr import checkpoints, costs, models, training
from jaxdr.errors import ConfigError, UserError
from jaxdr.methods import whitebox
from jaxdr.methods.whitebox import stages
from jaxdr.toolkit import base
from tests import tiny_fashion, xla_flags

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TINY_TRAIN = dict(batch_size=32, epochs=1, max_steps=3, steps_per_epoch=3, learning_rate=0.01,
                  schedule="constant", log_every_steps=3, eval_batch_size=50)


def _config(**overrides):
  c = ml_collections.ConfigDict(dict(
      method="whitebox", seed=0, pretrained="",
      model=dict(name="lenet5", width=0.4, conv_impl="xla"),
      dataset=dict(name="fashion_mnist", data_dir="", image_size=28, input_channels=1, num_classes=10)))
  c.train = training.TrainOptions(**TINY_TRAIN).to_config()
  c.whitebox = whitebox.WhiteboxOptions().to_config()
  c.whitebox.update(target=0.4, curve_targets=(0.2, 0.4), curve_examples=40, latency_batch_sizes=(2,),
                    latency_repeats=1, collapse_factor=0.0, masks_from="base")
  c.whitebox.mask_train = training.TrainOptions(**TINY_TRAIN).to_config()
  c.whitebox.finetune = training.TrainOptions(**TINY_TRAIN).to_config()
  c.whitebox.update(overrides)
  return c


@pytest.fixture
def tiny_data(tmp_path, monkeypatch):
  for key, value in tiny_fashion.env(tmp_path / "data", num_train=128, num_test=60).items():
    monkeypatch.setenv(key, value)


@pytest.fixture
def base_model(monkeypatch):
  model = models.create("lenet5", num_classes=10, image_size=28, input_channels=1, width=0.4, conv_impl="xla")
  variables = models.init(model, jax.random.PRNGKey(0))
  monkeypatch.setattr(base, "load_or_train", lambda config, workdir: (model, variables))
  return model, variables


def test_run_prunes_every_variant_to_the_budget(tmp_path, tiny_data, base_model):
  model, _ = base_model
  out = whitebox.run(_config(), str(tmp_path))
  results = json.loads((tmp_path / "results.json").read_text())
  assert set(results["variants"]) == {"whitebox", "l1", "shared", "hard"}
  assert results["gates"] == ["conv1", "conv2"] and results["masks_from"] == "base"
  before = int(costs.count(model).macs)
  for name, v in results["variants"].items():
    assert v["macs_before"] == before and v["macs_reduction"] >= 0.4
    assert v["vote"]["reduction"] == pytest.approx(v["macs_reduction"])
    small, small_vars = checkpoints.load_model(tmp_path / v["saved_to"])  # an ordinary model
    assert int(costs.count(small).macs) == v["macs_after"]
    assert {k: dict(small.channels)[k] for k in ("conv1", "conv2")} == v["vote"]["kept"]
    assert 0.0 <= v["test_accuracy"] <= 1.0 and v["cut_max_rel_diff"] < 1e-4
    assert v["latency"][0]["batch_size"] == 2 and v["latency"][0]["sliced_s"] > 0
    assert [p["target"] for p in results["curves"][name]] == [0.2, 0.4]
    assert (name == "l1") == (v["mask_train"] == {})
  assert results["variants"]["whitebox"]["mask_train"]["steps"] == 3
  assert set(results["checks"]) == {"whitebox_drop_le_0.5_points", "whitebox_ge_l1",
                                    "whitebox_speedup_ge_0.8_flops_factor_at_batch_2"}
  for png in ("kept_channels.png", "class_mask_heatmap.png", "accuracy_vs_flops.png"):
    assert (tmp_path / png).exists()
  report = (tmp_path / "report.md").read_text()
  assert "White-Box" in report and "L1-norm" in report and "Kept channels per layer" in report
  # A rerun resumes the finished trainings (masks, fine-tuning) and gives the same numbers.
  again = whitebox.run(_config(variants=("whitebox",), curve_targets=()), str(tmp_path))
  again = again["variants"]["whitebox"]
  assert again["test_accuracy"] == out["variants"]["whitebox"]["test_accuracy"]
  assert again["vote"]["kept"] == out["variants"]["whitebox"]["vote"]["kept"]


@pytest.mark.parametrize("finetune_from", ["masked", "base"])
def test_finetune_from_picks_the_weights_that_are_cut(tmp_path, tiny_data, base_model, monkeypatch,
                                                      finetune_from):
  _, variables = base_model
  seen = []
  prune = stages.prune
  monkeypatch.setattr(stages, "prune", lambda m, v, scores, folds, **kw: seen.append((v, folds)) or prune(
      m, v, scores, folds, **kw))
  out = whitebox.run(_config(variants=("whitebox",), curve_targets=(), finetune_from=finetune_from),
                     str(tmp_path))
  (cut_from, folds), = seen
  same = jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), cut_from["params"], variables["params"])
  if finetune_from == "base":  # the base's own weights, nothing folded
    assert all(jax.tree.leaves(same)) and folds is None
    assert out["fold_into"] == "nothing folded"
  else:  # the mask-trained weights (they moved) with the gate's fold vectors
    assert not all(jax.tree.leaves(same)) and set(folds) == {"conv1", "conv2"}
    assert out["fold_into"] == "bn"
  assert out["finetune_from"] == finetune_from


def test_finetune_seeds_average_the_fine_tuned_accuracy(tmp_path, tiny_data, base_model, monkeypatch):
  seeds = []
  finetune = stages.finetune
  monkeypatch.setattr(stages, "finetune", lambda *a, **kw: seeds.append((kw["seed"], str(kw["workdir"])))
                      or finetune(*a, **kw))
  out = whitebox.run(_config(variants=("l1",), curve_targets=(), finetune_seeds=(4, 7)), str(tmp_path))
  v = out["variants"]["l1"]
  assert seeds == [(4, str(tmp_path / "l1" / "finetune")), (7, str(tmp_path / "l1" / "finetune_seed7"))]
  assert len(v["test_accuracy_runs"]) == 2
  assert v["test_accuracy"] == pytest.approx(np.mean(v["test_accuracy_runs"]))
  assert v["finetune"]["test_accuracy"] == v["test_accuracy_runs"][0]  # the saved model's run


@pytest.mark.parametrize("finetune_from", ["masked", "base"])
def test_mask_training_collapse_stops_the_run_only_when_its_weights_are_cut(
    tmp_path, tiny_data, base_model, monkeypatch, finetune_from):
  factors = {}
  guard = stages.guard
  # record the factor each guard gets; run with 0 (this tiny model collapses either way)
  monkeypatch.setattr(stages, "guard", lambda ev, what, k, factor: factors.setdefault(what, factor) is None
                      or guard(ev, what, k, 0.0))
  whitebox.run(_config(variants=("whitebox",), curve_targets=(), collapse_factor=1.5,
                       finetune_from=finetune_from), str(tmp_path))
  assert factors["whitebox mask training"] == (1.5 if finetune_from == "masked" else 0.0)
  assert factors["whitebox fine-tuning"] == 1.5  # a collapsed fine-tuning always stops the run


def test_finetune_from_base_needs_masks_from_base(tmp_path, base_model):
  with pytest.raises(ConfigError, match="needs whitebox.masks_from='base'"):
    whitebox.run(_config(finetune_from="base", masks_from="scratch"), str(tmp_path))


@pytest.mark.parametrize("overrides,match", [
    (dict(gates=("conv3",)), "not a gate point"), (dict(target=1.2), r"must be in \(0, 1\)"),
    (dict(variants=("l2",)), "unknown variant"), (dict(target=0.95), "out of reach")])
def test_bad_input_is_a_config_error(tmp_path, base_model, overrides, match):
  with pytest.raises(ConfigError, match=match):
    whitebox.run(_config(**{"variants": ("l1",), **overrides}), str(tmp_path))


def test_labels_outside_the_mask_rows_are_a_config_error(tmp_path, base_model):
  c = _config()
  c.dataset.num_classes = 5
  with pytest.raises(ConfigError, match="class-wise masks need one row per label"):
    whitebox.run(c, str(tmp_path))
  assert not (tmp_path / "train").exists()  # nothing was trained


def test_main_reports_bad_input_in_one_line(tmp_path):
  env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
  env["XLA_FLAGS"] = xla_flags.subprocess_flags()  # none of the caller's others
  proc = subprocess.run([sys.executable, "-m", "jaxdr.main", "--config=configs/whitebox_fashion_mnist.py",
                         f"--workdir={tmp_path}", "--config.whitebox.target=1.5", "--allocator=system"],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  errors = [l for l in proc.stderr.splitlines() if l.startswith("jaxdr: error:")]
  assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(errors) == 1, proc.stderr
  assert "whitebox.target" in errors[0] and "(0, 1)" in errors[0]


def test_a_nan_run_stops_with_one_line_before_anything_is_cut(tmp_path, tiny_data, monkeypatch):
  model = models.create("lenet5", num_classes=10, image_size=28, input_channels=1, width=0.4, conv_impl="xla")
  variables = models.init(model, jax.random.PRNGKey(0))
  variables = jax.tree_util.tree_map(lambda a: a * float("nan"), variables)  # a diverged base
  monkeypatch.setattr(base, "load_or_train", lambda config, workdir: (model, variables))
  with pytest.raises(whitebox.DivergedError, match="whitebox mask training diverged: test loss nan") as e:
    whitebox.run(_config(variants=("whitebox", "l1"), collapse_factor=1.5), str(tmp_path))
  assert isinstance(e.value, UserError) and "\n" not in str(e.value)  # main: one 'jaxdr: error:' line
  assert not (tmp_path / "whitebox" / "pruned").exists() and not (tmp_path / "results.json").exists()
