"""jaxdr.checkpoints: models (incl. surgery-sliced ones) round-trip; bad files give CheckpointError."""
import json

import jax
import numpy as np
import pytest

from jaxdr import checkpoints, models

KWARGS = dict(num_classes=10, image_size=28, input_channels=1, width=1 / 16, conv_impl="auto")


def _assert_same(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_of_a_sliced_model(tiny, tmp_path):
  # channel surgery sets `channels`: conv0 with 3 instead of 4 channels
  model, variables = tiny("vgg16", channels={"conv0": 3})
  assert variables["params"]["conv0"]["kernel"].shape[-1] == 3
  checkpoints.save_model(tmp_path / "m", "vgg16", {**KWARGS, "channels": {"conv0": 3}}, variables)
  spec = json.loads((tmp_path / "m" / "model.json").read_text())
  assert spec == {"name": "vgg16", "kwargs": {**KWARGS, "channels": {"conv0": 3}}}
  loaded_model, loaded = checkpoints.load_model(tmp_path / "m")
  assert loaded_model == model
  _assert_same(variables, loaded)
  x = np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype(np.float32)
  np.testing.assert_allclose(models.apply(loaded_model, loaded, x), models.apply(model, variables, x),
                             rtol=1e-6)


def test_load_finds_the_model_inside_a_workdir(tiny, tmp_path):
  _, variables = tiny("vgg16")
  checkpoints.save_model(tmp_path / "train" / "model", "vgg16", KWARGS, variables)
  _, loaded = checkpoints.load_model(tmp_path)
  _, loaded2 = checkpoints.load_model(tmp_path / "train")
  _assert_same(loaded, loaded2)
  assert checkpoints.has_model(tmp_path) and not checkpoints.has_model(tmp_path / "nothing")


def test_missing_checkpoint_is_a_checkpoint_error(tmp_path):
  with pytest.raises(checkpoints.CheckpointError, match="no saved model"):
    checkpoints.load_model(tmp_path)


def test_corrupt_variables_are_a_checkpoint_error(tiny, tmp_path):
  _, variables = tiny("vgg16")
  checkpoints.save_model(tmp_path, "vgg16", KWARGS, variables)
  for f in (tmp_path / "variables").rglob("*"):
    if f.is_file() and f.stat().st_size > 1000:  # the array data
      f.write_bytes(b"garbage" * 10)
  with pytest.raises(checkpoints.CheckpointError, match="corrupt"):
    checkpoints.load_model(tmp_path)


def test_corrupt_model_json_is_a_checkpoint_error(tiny, tmp_path):
  _, variables = tiny("vgg16")
  checkpoints.save_model(tmp_path, "vgg16", KWARGS, variables)
  (tmp_path / "model.json").write_text("{not json")
  with pytest.raises(checkpoints.CheckpointError, match="corrupt"):
    checkpoints.load_model(tmp_path)


def test_variables_of_another_shape_are_a_checkpoint_error(tiny, tmp_path):
  _, variables = tiny("vgg16")
  checkpoints.save_model(tmp_path, "vgg16", KWARGS, variables)
  spec = json.loads((tmp_path / "model.json").read_text())
  spec["kwargs"]["channels"] = {"conv0": 2}  # no longer matches the stored arrays
  (tmp_path / "model.json").write_text(json.dumps(spec))
  with pytest.raises(checkpoints.CheckpointError):
    checkpoints.load_model(tmp_path)


def test_save_rejects_unknown_names(tiny, tmp_path):
  _, variables = tiny("vgg16")
  with pytest.raises(ValueError, match="unknown model"):
    checkpoints.save_model(tmp_path, "vgg17", KWARGS, variables)
  with pytest.raises(ValueError, match="unknown model arguments"):
    checkpoints.save_model(tmp_path, "vgg16", {**KWARGS, "depth": 3}, variables)
  assert not (tmp_path / "model.json").exists()
