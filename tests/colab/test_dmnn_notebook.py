"""colab/dmnn.ipynb runs end to end (nbclient) on a tiny Fashion-MNIST: trains a tiny DMNN
for a few steps, draws the paths per class and per image, and times the skip-compute forward."""
import json
import os

import nbformat
import pytest

from tests import tiny_fashion, xla_flags

nbclient = pytest.importorskip("nbclient")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_dmnn_notebook_trains_and_shows_paths(tmp_path, monkeypatch):
  for key, value in tiny_fashion.env(tmp_path, num_train=64, num_test=32).items():
    monkeypatch.setenv(key, value)
  monkeypatch.setenv("XLA_FLAGS", xla_flags.subprocess_flags())  # none of the caller's others
  nb = nbformat.read(os.path.join(ROOT, "colab", "dmnn.ipynb"), as_version=4)
  params = next(c for c in nb.cells if c.cell_type == "code" and "# Parameters" in c.source)
  workdir = tmp_path / "work"
  params.source += (
      f"\nWORKDIR = {str(workdir)!r}"
      "\nOVERRIDES = {'dmnn.twin': False, 'model.width': 0.25, 'model.conv_impl': 'xla',"
      " 'train.max_steps': 2, 'train.epochs': 1, 'train.batch_size': 32, 'train.eval_batch_size': 32,"
      " 'dmnn.example_classes': 3}"
      "\nTIMED_IMAGES = 4")
  client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                   resources={"metadata": {"path": ROOT}})
  client.execute()
  out = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
  results = json.loads((workdir / "results.json").read_text())
  assert results["steps"] == 2 and results["evaluation"]["test_examples"] == 32
  assert f"test accuracy {results['test_accuracy']:.4f}" in out
  assert "sub-blocks: 18" in out  # 9 blocks x N=2
  assert "max |skip - masked| logit difference" in out and "of all-on" in out
  images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
  assert len(images) == 2  # paths per class, paths per image
  for name in ("flops_histogram.png", "execution_rates.png", "easy_hard.png", "report.md"):
    assert (workdir / name).exists(), name
