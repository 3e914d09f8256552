"""colab/drnet.ipynb runs end to end (nbclient) on a tiny Fashion-MNIST and a few training steps."""
import os
import sys

import nbformat
import pytest

nbclient = pytest.importorskip("nbclient")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import tiny_fashion  # noqa: E402


@pytest.mark.slow
def test_drnet_notebook_runs(tmp_path, monkeypatch):
  for key, value in tiny_fashion.env(tmp_path, num_train=200, num_test=100).items():
    monkeypatch.setenv(key, value)
  nb = nbformat.read(os.path.join(ROOT, "colab", "drnet.ipynb"), as_version=4)
  params = next(c for c in nb.cells if c.cell_type == "code" and "# Parameters" in c.source)
  params.source += (
      f"\nWORKDIR = {str(tmp_path / 'work')!r}"
      "\nOVERRIDES = {'model.width': 0.0625, 'train.max_steps': 4, 'train.steps_per_epoch': 4,"
      " 'train.batch_size': 32, 'train.num_eval_examples': 64, 'train.eval_batch_size': 64}"
      "\nIMAGES_PER_CLASS = 2\nSTEPS = 2\nSUBTASK = ('Trouser', 'Bag')")
  client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                   resources={"metadata": {"path": ROOT}})
  client.execute()
  out = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
  assert "sub-network    accuracy" in out and "sliced network accuracy" in out
  assert "max |logit diff| vs masked" in out
