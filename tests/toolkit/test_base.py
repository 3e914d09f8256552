"""toolkit.base: the base model from config.pretrained, a finished training, or a new one; arrays."""
import jax
import ml_collections
import numpy as np
import pytest

from jaxdr import checkpoints, data, models, training
from jaxdr.toolkit import base


def _config(pretrained=""):
  return ml_collections.ConfigDict(dict(
      method="train", seed=0, pretrained=pretrained, model=dict(name="lenet5", width=0.2),
      dataset=dict(name="fashion_mnist", data_dir="/somewhere", image_size=28, input_channels=1,
                   num_classes=10)))


def _save(directory, seed=0):
  model = models.create("lenet5", num_classes=10, image_size=28, input_channels=1, width=0.2)
  variables = models.init(model, jax.random.PRNGKey(seed))
  checkpoints.save_model(directory, "lenet5", dict(num_classes=10, image_size=28, input_channels=1, width=0.2),
                         variables)
  return variables


def _same(a, b):
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_pretrained_then_trained_once_then_loaded(tmp_path, monkeypatch):
  saved = _save(tmp_path / "pre" / "model")
  calls = []
  monkeypatch.setattr(training, "train_and_evaluate",
                      lambda config, workdir: (calls.append(str(workdir)), _save(workdir / "model", seed=1)))
  _, variables = base.load_or_train(_config(str(tmp_path / "pre")), tmp_path / "w")
  assert _same(variables, saved) and not calls  # pretrained: nothing trained
  _, first = base.load_or_train(_config(), tmp_path / "w")
  assert calls == [str(tmp_path / "w" / "train")]
  _, second = base.load_or_train(_config(), tmp_path / "w")
  assert len(calls) == 1 and _same(first, second)  # a finished training is loaded, not rerun


def test_arrays_reads_the_configs_split(monkeypatch):
  seen = []
  monkeypatch.setattr(data, "as_arrays", lambda name, split, **kw: (seen.append((name, split, kw)),
                                                                    (np.zeros((2, 28, 28, 1)), np.zeros(2)))[1])
  base.arrays(_config(), "train", limit=0)
  base.arrays(_config(), "test", limit=5)
  assert seen == [("fashion_mnist", "train", dict(data_dir="/somewhere", image_size=28, limit=None)),
                  ("fashion_mnist", "test", dict(data_dir="/somewhere", image_size=28, limit=5))]


def test_missing_pretrained_model_is_a_checkpoint_error(tmp_path):
  with pytest.raises(checkpoints.CheckpointError, match="no saved model"):
    base.load_or_train(_config(str(tmp_path / "nothing")), tmp_path / "w")
