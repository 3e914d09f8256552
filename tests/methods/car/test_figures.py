"""CAR's figures: names on the per-class scatter plots never overlap (Figs. 8, 9D); every figure
writes a PNG with named axes."""
import numpy as np

from jaxdr.methods.car import figures


def _boxes(pos, names, lo, left):
  span = 1.01 - lo
  out = []
  for i, (tx, ty) in pos.items():
    w = 0.011 * span * len(names[i])
    out.append((tx - w if left else tx, ty, w))
  return out, 0.04 * span


def test_scatter_names_do_not_overlap():
  names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
  before = np.array([0.85, 0.97, 0.85, 0.91, 0.87, 0.97, 0.71, 0.96, 0.98, 0.96])
  after = np.array([0.88, 0.96, 0.85, 0.88, 0.63, 0.97, 0.57, 0.92, 0.99, 0.95])
  for which, left in ((range(10), False), ([0, 2, 9, 7], True)):
    pos = figures._label_positions(before, after, names, list(which), 0.5, left=left)  # pylint: disable=protected-access
    assert sorted(pos) == sorted(which)
    boxes, height = _boxes(pos, names, 0.5, left)
    for a in range(len(boxes)):
      for b in range(a + 1, len(boxes)):
        (xa, ya, wa), (xb, yb, wb) = boxes[a], boxes[b]
        assert not (xa < xb + wb and xb < xa + wa and abs(ya - yb) < height)
    for i, (tx, ty) in pos.items():  # a name is never above its point, and moves only down
      assert ty <= after[i]


def test_class_accuracy_figure(tmp_path):
  panel = {"layer": "conv1", "kept": 3, "filters": 5, "set": "evaluation set", "before": [0.9, 0.8, 0.7],
           "after": [0.85, 0.8, 0.6], "within": 2 / 3}
  figures.class_accuracy([panel], ["a", "b", "c"], tmp_path / "fig8.png")
  assert (tmp_path / "fig8.png").stat().st_size > 0


def test_curves_with_many_lines_put_the_legend_outside(tmp_path, monkeypatch):
  from jaxdr.toolkit import plots  # pylint: disable=g-import-not-at-top
  seen = {}
  real = plots.curves

  def spy(panels, path, **kw):
    seen.update(kw)
    return real(panels, path, **kw)
  monkeypatch.setattr(plots, "curves", spy)
  pts = [{"kept": n, "accuracy": 0.5 + 0.1 * n, "std": 0.01} for n in (1, 2, 3)]
  curve = {name: pts for name in ("car", "car_finetuned", "car_retrained", "incoming", "outgoing", "random")}
  curve["car_stop_point"] = {"kept": 2, "accuracy": 0.7, "label": "stop"}
  figures.curves({"conv1": curve}, [{"name": "conv1", "filters": 3}], 0.8, tmp_path / "c.png", "held-out test half", 0.05)
  assert seen["legend_outside"] and (tmp_path / "c.png").stat().st_size > 0
  del curve["car_retrained"], curve["car_stop_point"]
  figures.curves({"conv1": curve}, [{"name": "conv1", "filters": 3}], 0.8, tmp_path / "d.png", "held-out test half", 0.05)
  assert not seen["legend_outside"]
