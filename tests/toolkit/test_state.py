"""toolkit.state: JSON documents and orbax arrays resume; another fingerprint is refused; only
process 0 writes files."""
import json

import numpy as np
import pytest

from jaxdr import reporting
from jaxdr.errors import ConfigError
from jaxdr.toolkit import state


def test_documents_and_arrays_resume(tmp_path):
  fp = {"model": "lenet5", "options": {"steps": 3, "rates": (0.1, 0.2)}, "images": np.int64(12)}
  like = {"sums": [np.zeros((2, 3), np.float32)], "done": np.zeros((), np.int32)}
  with state.MethodState(tmp_path / "s", fp, what="dissection") as st:
    assert st.read_json("progress") is None
    assert st.restore_arrays("sums", like) == (None, like)
    st.write_json("progress", {"iteration": 2, "accuracy": float("nan"), "kept": np.arange(3)})
    st.save_arrays("sums", 1, {"sums": [np.ones((2, 3), np.float32)], "done": np.asarray(1, np.int32)})
    st.save_arrays("sums", 2, {"sums": [np.full((2, 3), 2.0, np.float32)], "done": np.asarray(2, np.int32)})
  assert json.loads((tmp_path / "s" / "fingerprint.json").read_text())["options"]["rates"] == [0.1, 0.2]
  with state.MethodState(tmp_path / "s", dict(fp), what="dissection") as again:  # same settings: resumes
    doc = again.read_json("progress")
    assert doc["iteration"] == 2 and np.isnan(doc["accuracy"]) and doc["kept"] == [0, 1, 2]
    step, tree = again.restore_arrays("sums", like)
  assert step == 2 and int(tree["done"]) == 2
  np.testing.assert_array_equal(tree["sums"][0], 2.0)
  assert isinstance(tree["sums"][0], np.ndarray) and tree["sums"][0].dtype == np.float32


def test_other_settings_are_refused_by_name(tmp_path):
  state.MethodState(tmp_path, {"keys": ["conv1"], "seed": 0}, what="CAR greedy compression").close()
  with pytest.raises(ConfigError, match=r"holds a CAR greedy compression made with other settings "
                                        r"\(keys: \['conv1'\] -> \['conv2'\]\): use another workdir"):
    state.MethodState(tmp_path, {"keys": ["conv2"], "seed": 0}, what="CAR greedy compression")
  with pytest.raises(ConfigError, match=r"seed: None -> 1|seed: 0 -> 1"):
    state.MethodState(tmp_path, {"keys": ["conv1"], "seed": 1})
  assert state.differences({"a": 1, "b": 2}, {"a": 1, "c": 3}) == {"b": (2, None), "c": (None, 3)}
  assert state.differences({"o": {"steps": 30, "lr": 0.1}}, {"o": {"steps": 3, "lr": 0.1}}) == {"o.steps": (30, 3)}


def test_only_process_zero_writes_files(tmp_path, monkeypatch):
  monkeypatch.setattr(reporting, "is_writer", lambda: False)
  st = state.MethodState(tmp_path / "s", {"a": 1})
  st.write_json("doc", {"x": 1})
  st.close()
  assert not (tmp_path / "s" / "fingerprint.json").exists() and st.read_json("doc") is None
