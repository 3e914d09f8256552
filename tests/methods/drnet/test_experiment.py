"""drnet.run end to end on a tiny model and fake data: the documented results schema, figures,
report; config errors before any work."""
import json

import ml_collections
import numpy as np
import pytest

from jaxdr import data
from jaxdr.errors import ConfigError
from jaxdr.methods import drnet
from jaxdr.toolkit import base


def _config(**drnet_overrides):
  c = ml_collections.ConfigDict(dict(method="drnet", seed=0, pretrained="",
                                     model=dict(name="tiny_vgg_drnet", width=1.0),
                                     dataset=dict(name="fashion_mnist", data_dir="", image_size=8,
                                                  input_channels=1, num_classes=10)))
  c.drnet = drnet.DrnetOptions().to_config()  # the real defaults, shrunk
  c.drnet.cdrp.steps = 2
  c.drnet.update(images_per_class=2, batch_size=10, random_2class=3, random_3class=2, eval_batch_size=30,
                 keep_fraction=0.5, superclass_subtasks=False, named_subtasks=(("Trouser", "Bag"),))
  c.drnet.update(drnet_overrides)
  return c


@pytest.fixture
def fake(monkeypatch, tiny_drnet):
  model, variables = tiny_drnet("tiny_vgg_drnet", num_classes=10)
  rng = np.random.default_rng(0)
  arrays = {split: (rng.normal(size=(n, 8, 8, 1)).astype(np.float32), np.arange(n, dtype=np.int32) % 10)
            for split, n in (("train", 40), ("test", 60))}
  monkeypatch.setattr(base, "load_or_train", lambda config, workdir: (model, variables))
  monkeypatch.setattr(data, "as_arrays", lambda name, split, **kw: arrays[split])


def test_run_writes_results_in_the_documented_schema(tmp_path, fake):
  out = drnet.run(_config(), str(tmp_path))
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
  assert (tmp_path / "civ.npz").exists() and (tmp_path / "civ" / "fingerprint.json").exists()
  assert "Tables 4-5" in (tmp_path / "report.md").read_text()
  assert out["summary"]["3"]["count"] == 2
  # A rerun resumes the finished dissection (no CDRP fit) and gives the same numbers.
  again = drnet.run(_config(), str(tmp_path))
  assert again["subtasks"] == out["subtasks"]


@pytest.mark.parametrize("overrides,match", [
    (dict(stage="evaluate"), "drnet.stage"), (dict(combine="and"), "drnet.combine"),
    (dict(run_sliced="some"), "drnet.run_sliced"), (dict(keep_fractoin=0.5), "nearest: keep_fraction"),
    (dict(named_subtasks=(("Trouser", "Hat"),)), "unknown class 'Hat'")])
def test_config_errors(tmp_path, fake, overrides, match):
  c = _config(**overrides)  # an unlocked ConfigDict takes a misspelt key, as an override file might
  with pytest.raises(ConfigError, match=match):
    drnet.run(c, str(tmp_path))
