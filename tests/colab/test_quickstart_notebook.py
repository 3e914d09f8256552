"""colab/quickstart.ipynb runs end to end (nbclient) on a tiny Fashion-MNIST through the real
pipeline, with the model shrunk to LeNet-5 and two short epochs, and draws its curves."""
import json
import os

import nbformat
import pytest

from tests import tiny_fashion

nbclient = pytest.importorskip("nbclient")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_quickstart_notebook_trains_and_plots(tmp_path, monkeypatch):
  for key, value in tiny_fashion.env(tmp_path, num_train=128, num_test=64).items():
    monkeypatch.setenv(key, value)
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  nb = nbformat.read(os.path.join(ROOT, "colab", "quickstart.ipynb"), as_version=4)
  params = next(c for c in nb.cells if c.cell_type == "code" and "# Parameters" in c.source)
  workdir = tmp_path / "work"
  params.source += (
      f"\nWORKDIR = {str(workdir)!r}"
      "\nOVERRIDES = {'model.name': 'lenet5', 'model.width': 0.2, 'train.epochs': 2,"
      " 'train.batch_size': 32, 'train.log_every_steps': 2, 'train.eval_batch_size': 32}")
  client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                   resources={"metadata": {"path": ROOT}})
  client.execute()
  out = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                for o in c.get("outputs", []))
  results = json.loads((workdir / "results.json").read_text())
  assert results["steps"] == 8 and results["test_examples"] == 64  # 128 / 32 x 2 epochs
  assert f"test accuracy {results['test_accuracy']:.4f} after 8 steps" in out
  assert "4 train records, 2 test evaluations" in out
  images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
  assert len(images) == 1  # the curves, shown inline
  assert (workdir / "curves.png").exists()
