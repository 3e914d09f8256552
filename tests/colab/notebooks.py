"""Runs a colab/ notebook with nbclient on a tiny real Fashion-MNIST, its parameters cell
extended by the test (``from tests.colab import notebooks``)."""
import os

import nbformat

from tests import tiny_fashion

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# A few training steps on small batches, for notebooks that train their model first.
TINY_TRAIN = {"train.max_steps": 4, "train.steps_per_epoch": 4, "train.batch_size": 32,
              "train.num_eval_examples": 64, "train.eval_batch_size": 64}


def execute(name, tmp_path, monkeypatch, parameters="", overrides=None, num_train=200, num_test=100):
  """Executes ``colab/NAME.ipynb`` from the repository root, its ``# Parameters`` cell extended
  by ``WORKDIR = tmp_path/work``, ``OVERRIDES = TINY_TRAIN | overrides`` and ``parameters``
  (source lines); returns the text of every code cell's outputs."""
  import nbclient  # pylint: disable=g-import-not-at-top  (callers importorskip it)
  for key, value in tiny_fashion.env(tmp_path, num_train=num_train, num_test=num_test).items():
    monkeypatch.setenv(key, value)
  nb = nbformat.read(os.path.join(ROOT, "colab", f"{name}.ipynb"), as_version=4)
  params = next(c for c in nb.cells if c.cell_type == "code" and "# Parameters" in c.source)
  params.source += (f"\nWORKDIR = {str(tmp_path / 'work')!r}"
                    f"\nOVERRIDES = {dict(TINY_TRAIN, **(overrides or {}))!r}\n{parameters}")
  client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                   resources={"metadata": {"path": ROOT}})
  client.execute()
  return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
