"""The known upstream failures cannot happen: a NaN or collapsed training stops with one clear
`DivergedError` line (a UserError: `jaxdr.main` prints it as one ``jaxdr: error:`` line); the L1
baseline's scores; the options section."""
import numpy as np
import pytest

from jaxdr import models, training
from jaxdr.errors import ConfigError, UserError
from jaxdr.methods import whitebox
from tests.methods.whitebox import nets


def test_guard_stops_nan_and_collapsed_runs_with_one_line():
  ok = whitebox.guard(lambda v: {"test_loss": 0.3, "test_accuracy": 0.9}, "x", 10, 1.5)
  assert ok(None)["test_accuracy"] == 0.9
  nan = whitebox.guard(lambda v: {"test_loss": float("nan"), "test_accuracy": 0.1}, "l1 fine-tuning", 10, 1.5)
  with pytest.raises(whitebox.DivergedError, match="l1 fine-tuning diverged: test loss nan") as e:
    nan(None)
  assert isinstance(e.value, UserError) and "\n" not in str(e.value)
  stuck = whitebox.guard(lambda v: {"test_loss": 2.3026, "test_accuracy": 0.1}, "whitebox fine-tuning",
                         10, 1.5)
  with pytest.raises(whitebox.DivergedError, match=r"collapsed: test accuracy 0.1000 < 0.1500 .* 2.3026"):
    stuck(None)
  assert whitebox.guard(lambda v: {"test_loss": 2.3, "test_accuracy": 0.1}, "x", 10, 0.0)(None)  # 0: off


def test_finetuning_a_nan_network_stops_at_its_first_evaluation():
  model, variables = nets.build("vgg")
  variables["params"]["conv1"]["kernel"] = variables["params"]["conv1"]["kernel"] * np.nan
  rng = np.random.default_rng(0)
  source = training.ArraySource({"image": rng.normal(size=(32, 8, 8, 1)).astype(np.float32),
                                 "label": (np.arange(32) % 4).astype(np.int32)})
  x, y = source.arrays["image"], source.arrays["label"]

  def evaluate(v):
    logits = np.asarray(models.apply(model, v, x))
    return {"test_loss": float(np.mean(training.cross_entropy(logits, y))),
            "test_accuracy": float(np.mean(logits.argmax(-1) == y))}

  opts = training.TrainOptions(batch_size=8, epochs=2, learning_rate=0.01, schedule="constant",
                               weight_decay=0.0)
  with pytest.raises(whitebox.DivergedError, match="diverged"):
    whitebox.finetune(model, variables, opts, source, evaluate=whitebox.guard(evaluate, "finetune", 4, 1.5))


def test_l1_scores_are_filter_norms_over_the_layer_mean():
  model, variables = nets.build("basic")
  graph = models.describe(model)
  key = "stage2_block0/conv1"
  kernel = np.asarray(variables["params"]["stage2_block0"]["conv1"]["kernel"], np.float64)
  norms = np.abs(kernel).sum(axis=(0, 1, 2))
  np.testing.assert_allclose(whitebox.filter_l1(graph, variables, key), norms)
  np.testing.assert_allclose(whitebox.l1_scores(graph, variables, [key])[key], norms / norms.mean())


def test_options():
  opts = whitebox.WhiteboxOptions.from_config(whitebox.WhiteboxOptions().to_config(), "whitebox")
  assert opts.variants == ("whitebox", "l1", "shared", "hard") and opts.mask_train.epochs == 30
  assert (opts.finetune.epochs, opts.finetune.milestones) == (300, (150, 225))
  for bad, match in [(dict(variants=("whitebox", "slim")), "unknown variant 'slim'"),
                     (dict(masks_from="imagenet"), "masks_from"), (dict(target=1.0), r"\(0, 1\)"),
                     (dict(targte=0.5), "nearest: target"),
                     (dict(mask_train=dict(epoch=3)), "mask_train.epoch")]:
    c = whitebox.WhiteboxOptions().to_config()
    with pytest.raises(ConfigError, match=match):
      whitebox.WhiteboxOptions.from_config({**c, **bad}, "whitebox")
