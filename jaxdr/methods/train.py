"""The 'train' method: supervised training of the config's model on its dataset.

    python -m jaxdr.main --config=configs/quickstart.py --workdir=DIR

Trains (resuming from DIR's checkpoints), evaluates on the test split, saves DIR/model and
writes ``results.json``, ``report.md`` and ``curves.png`` (loss and accuracy per epoch).
"""
from __future__ import annotations

from etils import epath

from jaxdr import reporting, training

REPORTED = ("test_accuracy", "test_loss", "train_loss", "train_accuracy", "steps", "epochs",
            "train_time_s", "images_per_sec")


def run(config, workdir) -> dict:
  workdir = epath.Path(workdir)
  metrics = training.train_and_evaluate(config, workdir)
  reporting.write_results(workdir, metrics, config, method="train")
  figures = []
  history = training.read_metrics(workdir)
  if history:
    reporting.plot_curves(history, workdir / "curves.png",
                          title=f"{config.model.name} on {config.dataset.name}")
    figures.append("curves.png")
  reporting.write_report(workdir, f"Training {config.model.name} on {config.dataset.name}",
                         {k: metrics[k] for k in REPORTED if k in metrics}, config, figures=figures)
  return metrics
