"""CAR's figures (PNG, `reporting.save_figure`): accuracy vs filters kept (Figs. 2-4), the
first layer's filters by CAR (Fig. 5), top activating patches of filters pruned first and
kept last (Figs. 6-7), per-class accuracy after vs before pruning (Fig. 8) and the CARc views
of a filter (Fig. 9). Line plots and image grids go through `toolkit.plots`; the scatter and
Fig. 9's composite rows are drawn here. Every axis is named with its unit.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

from jaxdr import reporting
from jaxdr.toolkit import plots

CURVE_STYLE = {"car": ("purple", "CAR"), "car_finetuned": ("blue", "CAR + fine-tuning"),
               "car_retrained": ("teal", "CAR, retrained in the loop"),
               "outgoing": ("black", "outgoing weights"), "incoming": ("green", "incoming weights"),
               "random": ("red", "random (mean ± std)")}
ACCURACY = "accuracy (fraction)"


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg", force=False)
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def curves(curves_by_layer: Mapping[str, Mapping[str, Any]], layers_info: Sequence[Mapping[str, Any]],
           reference: float, path, evaluated_on: str, drop: float = 0.0):
  """One panel per layer: accuracy vs filters kept for every method; where the CAR curve ends
  before the fewest count an 'X' says why, and the greedy stop point (the relative drop on the
  scoring set) is marked with a triangle; a grey line at ``drop`` below ``reference`` (Table 1)."""
  panels = []
  for info in layers_info:
    c = curves_by_layer[info["name"]]
    series = []
    for name, (color, label) in CURVE_STYLE.items():
      pts = c.get(name) or []
      if pts:
        series.append(plots.Series(label, [p["kept"] for p in pts], [p["accuracy"] for p in pts],
                                   yerr=[p["std"] for p in pts] if name == "random" else None, color=color,
                                   marker="o" if name in ("car_finetuned", "car_retrained") else None))
    end = c.get("car_end")
    if end:
      series.append(plots.Series(f"CAR ends: {end['reason']}", [end["kept"]], [end["accuracy"]],
                                 color="purple", marker="X"))
    stop = c.get("car_stop_point")
    if stop:
      series.append(plots.Series(stop["label"], [stop["kept"]], [stop["accuracy"]], color="orange", marker="v"))
    zero = "; 0 = branch removed" if any(p["kept"] == 0 for p in c.get("random", [])) else ""
    panels.append(plots.Panel(series, xlabel=f"filters kept in {info['name']} (count, of {info['filters']}{zero})",
                              ylabel=f"accuracy, {evaluated_on} (fraction)",
                              title=f"{info['name']}: accuracy vs filters kept",
                              hlines=((reference, f"uncompressed ({reference:.3f})", "saddlebrown"),)
                              + (((1 - drop) * reference, f"Table 1: {drop:.0%} relative drop", "grey"),) * bool(drop)))
  entries = max(len(p.series) + len(p.hlines) for p in panels)
  return plots.curves(panels, path, legend_outside=entries > 7)


def first_layer_filters(kernel: np.ndarray, car: np.ndarray, path):
  """Fig. 5: the first conv's filters (HWIO kernel) ordered by CAR, most important first."""
  order = np.argsort(-car, kind="stable")
  return plots.image_grid(np.moveaxis(kernel, -1, 0)[order], [f"#{f}\nCAR {car[f]:+.3f}" for f in order], path,
                          title="first-layer filters by CAR index (most important first; CAR = accuracy lost "
                                "without the filter, scoring set, fraction)")


def patch_grid(entries: Sequence[Mapping[str, Any]], path, title: str, cols: int):
  """Figs. 6-7: one 3x3 mosaic of top activating patches per filter (``entries``: mosaic
  [H, W, C], filter, role)."""
  return plots.image_grid(np.stack([e["mosaic"] for e in entries]),
                          [f"#{e['filter']} {e['role']}" for e in entries], path, title=title, cols=cols)


def _label_positions(x, y, names: Sequence[str], which: Sequence[int], lo: float, left: bool = False
                     ) -> Dict[int, tuple]:
  """Where to write the names of points ``which`` (data units, just right of each point, or
  left with ``left``) so that no two overlap: from the highest point down, a name that would
  touch one already placed moves down (a line then joins it to its point)."""
  span = 1.01 - lo
  height, char, gap = 0.04 * span, 0.011 * span, (-0.03 if left else 0.015) * span
  placed, out = [], {}
  for i in sorted(which, key=lambda j: -y[j]):
    w = char * len(names[i])
    tx, ty = x[i] + gap, y[i]
    x0 = tx - w if left else tx
    while any(x0 < px + pw and px < x0 + w and abs(ty - py) < height for px, py, pw in placed):
      ty -= height / 2
    placed.append((x0, ty, w))
    out[i] = (tx, ty)
  return out


def _scatter(ax, before, after, names, xlabel, ylabel, marked: Mapping[int, str] = None, band: float = 0.0):
  """Per-class accuracy after vs before, zoomed to the data, with the diagonal (and the line
  ``band`` below it); ``marked`` classes get a coloured point and an arrow with their name."""
  ax.scatter(before, after, s=14, color="grey", zorder=2)
  lo = max(0.0, float(min(np.min(before), np.min(after))) - 0.05)
  ax.plot([lo, 1.0], [lo, 1.0], color="black", linestyle="--", linewidth=0.8, label="y = x (unchanged)")
  if band:
    ax.plot([lo + band, 1.0], [lo, 1.0 - band], color="grey", linestyle=":", linewidth=0.8,
            label=f"{band:.2f} below (the band)")
  marked = marked or {}
  which = list(marked) if marked else (range(len(names)) if len(names) <= 20 else [])
  for i, (tx, ty) in _label_positions(before, after, names, which, lo, left=bool(marked)).items():
    color = marked.get(i, "black")
    line = marked or ty != after[i]
    ax.annotate(names[i], (before[i], after[i]), xytext=(tx, ty), fontsize=6, va="center", color=color,
                ha="right" if marked else "left",
                arrowprops=dict(arrowstyle="-", color=color if marked else "grey", linewidth=0.5) if line else None)
    if i in marked:
      ax.scatter([before[i]], [after[i]], s=24, color=color, zorder=3)
  ax.set_xlim(lo, 1.01)
  ax.set_ylim(lo, 1.01)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=6, loc="lower right")


def class_accuracy(panels: Sequence[Mapping[str, Any]], class_names: Sequence[str], path):
  """Fig. 8: per layer, each class's accuracy with that layer CAR-compressed against the
  uncompressed network's (``panels``: layer, kept, filters, before [K], after [K], within)."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.4), squeeze=False)
  for ax, p in zip(axes[0], panels):
    _scatter(ax, np.asarray(p["before"]), np.asarray(p["after"]), list(class_names),
             f"class accuracy, uncompressed ({p['set']}, fraction)",
             f"class accuracy, {p['layer']} at {p['kept']} of {p['filters']} filters (fraction)", band=0.03)
    k = len(p["before"])
    ax.set_title(f"{p['layer']} CAR-compressed to {p['kept']}/{p['filters']} filters (Table 1's point):\n"
                 f"{round(p['within'] * k)} of {k} classes lose at most 0.03", fontsize=8)
  fig.tight_layout()
  return reporting.save_figure(fig, path)


def carc_views(rows: Sequence[Mapping[str, Any]], class_names: Sequence[str], path, top: int):
  """Fig. 9, one row per filter: (A) its top activating patches, (B, C) the ``top`` classes
  with the highest / lowest CARc, each with a sample image, (D) per-class accuracy without the
  filter against the uncompressed network's, those classes marked (green: highest CARc,
  orange: lowest)."""
  plt = _pyplot()
  cols = 2 + 2 * top
  fig = plt.figure(figsize=(1.25 * cols + 4.0, 2.6 * len(rows)), layout="constrained")
  grid = fig.add_gridspec(len(rows), cols + 1, width_ratios=[2.2] + [1.0] * (2 * top) + [0.3, 3.2])
  for r, row in enumerate(rows):
    ax = fig.add_subplot(grid[r, 0])
    m = row["mosaic"]
    ax.imshow(m[..., 0] if m.shape[-1] == 1 else m[..., :3], cmap="gray" if m.shape[-1] == 1 else None)
    ax.axis("off")
    ax.set_title(f"(A) filter #{row['filter']}\nCAR {row['car']:+.3f}: top patches", fontsize=7)
    for j, (entry, header) in enumerate([(e, "B") for e in row["top"]] + [(e, "C") for e in row["bottom"]]):
      ax = fig.add_subplot(grid[r, 1 + j])
      img = np.asarray(entry["image"], np.float32)
      img = (img - img.min()) / max(float(img.max() - img.min()), 1e-12)
      ax.imshow(img[..., 0] if img.shape[-1] == 1 else img[..., :3], cmap="gray" if img.shape[-1] == 1 else None)
      ax.axis("off")
      ax.set_title(f"({header}) {entry['class']}\nCARc {entry['carc']:+.3f}", fontsize=6,
                   color="green" if header == "B" else "darkorange")
    ax = fig.add_subplot(grid[r, cols])
    marked = {**{i: "darkorange" for i in row["bottom_index"][:3]}, **{i: "green" for i in row["top_index"][:3]}}
    _scatter(ax, np.asarray(row["before"]), np.asarray(row["after"]), list(class_names),
             f"class accuracy, uncompressed\n({row['set']}, fraction)",
             f"class accuracy without\nfilter #{row['filter']} (fraction)", marked=marked)
    ax.set_title("(D) per-class accuracy (green: 3 highest CARc, orange: 3 lowest)", fontsize=7)
  fig.suptitle(f"CARc views of {rows[0]['layer']}'s most important filters by CAR (B: classes with the highest "
               f"CARc, C: the lowest)\nCARc = a class's accuracy lost without the filter ({rows[0]['set']}, fraction)",
               fontsize=9)
  return reporting.save_figure(fig, path)


def table1_markdown(rows: List[Dict[str, Any]]) -> str:
  """Table 1 as markdown: per layer and method, kept filters, ratio, accuracies, FLOPs (MACs)
  and storage of the layer and of the layer(s) reading it."""
  out = []
  for r in rows:
    out.append({"layer": r["layer"], "method": r["method"],
                "kept / filters": f"{r['kept']} / {r['filters']}" + ("" if r["drop_reached"] else " (drop not reached)"),
                "compression ratio": r["compression_ratio"], "scoring acc.": r["scoring_accuracy"],
                "test acc.": r["test_accuracy"],
                "FLOPs = MACs (layer)": f"{r['macs']:,} / {r['macs_uncompressed']:,}",
                "storage bytes (layer)": f"{r['storage_bytes']:,} / {r['storage_bytes_uncompressed']:,}",
                "MACs (next)": f"{r['next_macs']:,} / {r['next_macs_uncompressed']:,}",
                "storage bytes (next)": f"{r['next_storage_bytes']:,} / {r['next_storage_bytes_uncompressed']:,}",
                "MACs ratio (layer + next)": r["layer_and_next_macs_ratio"]})
  return reporting.markdown_table(out)
