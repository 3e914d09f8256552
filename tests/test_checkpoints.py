"""jaxdr.checkpoints: models (incl. surgery-sliced ones) round-trip; bad files give CheckpointError."""
import json

import jax
import numpy as np
import pytest

from jaxdr import checkpoints, models, reporting

KWARGS = dict(num_classes=10, image_size=28, input_channels=1, width=0.2)


def _model(**kw):
  """LeNet-5 with seeded random variables (no init compile)."""
  model = models.create("lenet5", **{**KWARGS, **kw})
  shapes = jax.eval_shape(lambda: models.init(model, jax.random.PRNGKey(0)))
  rng = np.random.default_rng(0)
  return model, jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes)


def _assert_same(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_of_a_sliced_model(tmp_path):
  # channel surgery sets `channels`: conv1 with 3 instead of 4 channels
  model, variables = _model(channels={"conv1": 3})
  assert variables["params"]["conv1"]["kernel"].shape[-1] == 3
  checkpoints.save_model(tmp_path / "m", "lenet5", {**KWARGS, "conv_impl": "auto", "channels": {"conv1": 3}},
                         variables)
  spec = json.loads((tmp_path / "m" / "model.json").read_text())
  assert spec == {"name": "lenet5", "kwargs": {**KWARGS, "channels": {"conv1": 3}}}  # no conv_impl
  loaded_model, loaded = checkpoints.load_model(tmp_path / "m")
  assert loaded_model == model
  _assert_same(variables, loaded)
  x = np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype(np.float32)
  apply = jax.jit(lambda v, x: models.apply(loaded_model, v, x))
  np.testing.assert_array_equal(apply(loaded, x), apply(variables, x))


def test_relative_paths_save_and_load(tmp_path, monkeypatch):
  # orbax refuses relative paths; a user typing `--model_dir=runs/x` must not see that
  _, variables = _model()
  monkeypatch.chdir(tmp_path)
  checkpoints.save_model("runs/m", "lenet5", KWARGS, variables)
  _, loaded = checkpoints.load_model("runs/m")
  _assert_same(variables, loaded)


def test_load_finds_the_model_inside_a_workdir(tmp_path):
  _, variables = _model()
  checkpoints.save_model(tmp_path / "train" / "model", "lenet5", KWARGS, variables)
  _, loaded = checkpoints.load_model(tmp_path)
  _, loaded2 = checkpoints.load_model(tmp_path / "train")
  _assert_same(loaded, loaded2)
  assert checkpoints.has_model(tmp_path) and not checkpoints.has_model(tmp_path / "nothing")


def test_only_the_writer_process_writes_model_json(tmp_path, monkeypatch):
  # In a multi-process run every process calls save_model on the shared workdir; two renames
  # of the same model.json.tmp race, so processes other than 0 must leave model.json alone.
  _, variables = _model()
  monkeypatch.setattr(reporting, "is_writer", lambda: False)
  checkpoints.save_model(tmp_path / "other", "lenet5", KWARGS, variables)
  assert not (tmp_path / "other" / "model.json").exists()
  monkeypatch.setattr(reporting, "is_writer", lambda: True)
  checkpoints.save_model(tmp_path / "writer", "lenet5", KWARGS, variables)
  assert (tmp_path / "writer" / "model.json").exists()


def test_missing_checkpoint_is_a_checkpoint_error(tmp_path):
  with pytest.raises(checkpoints.CheckpointError, match="no saved model"):
    checkpoints.load_model(tmp_path)


def test_corrupt_variables_are_a_checkpoint_error(tmp_path):
  _, variables = _model()
  checkpoints.save_model(tmp_path, "lenet5", KWARGS, variables)
  for f in (tmp_path / "variables").rglob("*"):
    if f.is_file() and f.stat().st_size > 200:  # the array data
      f.write_bytes(b"garbage" * 10)
  with pytest.raises(checkpoints.CheckpointError, match="corrupt"):
    checkpoints.load_model(tmp_path)


def test_corrupt_model_json_is_a_checkpoint_error(tmp_path):
  _, variables = _model()
  checkpoints.save_model(tmp_path, "lenet5", KWARGS, variables)
  (tmp_path / "model.json").write_text("{not json")
  with pytest.raises(checkpoints.CheckpointError, match="corrupt"):
    checkpoints.load_model(tmp_path)


def test_variables_of_another_shape_are_a_checkpoint_error(tmp_path):
  _, variables = _model()
  checkpoints.save_model(tmp_path, "lenet5", KWARGS, variables)
  spec = json.loads((tmp_path / "model.json").read_text())
  spec["kwargs"]["channels"] = {"conv1": 2}  # no longer matches the stored arrays
  (tmp_path / "model.json").write_text(json.dumps(spec))
  with pytest.raises(checkpoints.CheckpointError):
    checkpoints.load_model(tmp_path)


def test_save_rejects_unknown_names(tmp_path):
  _, variables = _model()
  with pytest.raises(ValueError, match="unknown model"):
    checkpoints.save_model(tmp_path, "lenet6", KWARGS, variables)
  with pytest.raises(ValueError, match="unknown model arguments"):
    checkpoints.save_model(tmp_path, "lenet5", {**KWARGS, "depth": 3}, variables)
  assert not (tmp_path / "model.json").exists()


def test_conv_impl_is_a_run_option_not_stored(tmp_path):
  """A model saved from a conv_impl='xla' model loads with any conv_impl, same logits."""
  model, variables = _model(conv_impl="xla")
  checkpoints.save_model(tmp_path, "lenet5", {**KWARGS, "conv_impl": model.conv_impl}, variables)
  assert "conv_impl" not in json.loads((tmp_path / "model.json").read_text())["kwargs"]
  x = np.random.default_rng(1).normal(size=(2, 28, 28, 1)).astype(np.float32)
  want = jax.jit(lambda x: models.apply(model, variables, x))(x)
  for impl in ("auto", "im2col"):
    loaded_model, loaded = checkpoints.load_model(tmp_path, conv_impl=impl)
    assert loaded_model.conv_impl == impl and loaded_model == model.clone(conv_impl=impl)
    got = jax.jit(lambda x: models.apply(loaded_model, loaded, x))(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(want))))
  assert checkpoints.load_model(tmp_path)[0].conv_impl == "auto"


def test_old_model_json_with_conv_impl_loads(tmp_path):
  """model.json written before conv_impl became a run option: the stored value is ignored."""
  _, variables = _model()
  checkpoints.save_model(tmp_path, "lenet5", KWARGS, variables)
  spec = json.loads((tmp_path / "model.json").read_text())
  spec["kwargs"]["conv_impl"] = "xla"
  (tmp_path / "model.json").write_text(json.dumps(spec))
  model, loaded = checkpoints.load_model(tmp_path, conv_impl="im2col")
  assert model.conv_impl == "im2col"
  _assert_same(variables, loaded)
