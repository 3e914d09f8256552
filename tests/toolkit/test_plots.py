"""toolkit.plots: every figure is written as a PNG with its axes labelled."""
import matplotlib
import numpy as np
import pytest

from jaxdr import reporting
from jaxdr.toolkit import plots

matplotlib.use("Agg")


@pytest.fixture
def labels(monkeypatch):
  """Records each saved figure's (xlabel, ylabel) per axes (a colour bar is an axes too)."""
  seen = []
  real = reporting.save_figure

  def save(fig, path):
    seen.append([(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes])
    return real(fig, path)
  monkeypatch.setattr(reporting, "save_figure", save)
  return seen


def test_each_figure_is_written_with_labelled_axes(tmp_path, labels):
  plots.bars({"channels": [4, 6], "running": [2, 3]}, ["conv0", "conv1"], tmp_path / "bars.png",
             xlabel="gate point", ylabel="channels (count)")
  plots.heatmap(np.eye(3), tmp_path / "heat.png", row_labels="abc", col_labels="abc", xlabel="class",
                ylabel="class", colorbar_label="IoU (fraction)", vmin=0, vmax=1)
  plots.curves([plots.Panel([plots.Series("CAR", [1, 2], [0.5, 0.9]),
                             plots.Series("random", [1, 2], [0.4, 0.8], yerr=[0.1, 0.05])],
                            xlabel="filters kept (count)", ylabel="test accuracy (fraction)",
                            hlines=((0.95, "uncompressed", "red"),))] * 2, tmp_path / "curves.png")
  plots.histogram(np.linspace(0, 1, 50), tmp_path / "hist.png", xlabel="gate value", ylabel="channels (count)")
  plots.image_grid(np.random.default_rng(0).normal(size=(3, 5, 5, 1)), ["#0", "#1", "#2"], tmp_path / "grid.png")
  for name in ("bars", "heat", "curves", "hist", "grid"):
    assert (tmp_path / f"{name}.png").stat().st_size > 1000, name
  bars, heat, curves, hist, _ = labels
  assert bars == [("gate point", "channels (count)")]
  assert heat[0] == ("class", "class") and heat[1][1] == "IoU (fraction)"  # the colour bar's label
  assert curves == [("filters kept (count)", "test accuracy (fraction)")] * 2
  assert hist == [("gate value", "channels (count)")]
