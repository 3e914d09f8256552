"""Shared matplotlib figures, written as PNG by `reporting.save_figure` (process 0 only).

    plots.bars({"channels": total, "running channels": kept}, gate_keys, path,
               xlabel="gate point", ylabel="channels (count)")
    plots.heatmap(sim, path, row_labels=names, col_labels=names, xlabel="class", ylabel="class",
                  colorbar_label="IoU (fraction)")
    plots.curves([plots.Panel(series=[plots.Series("CAR", x, y), ...], xlabel=..., ylabel=...)], path)
    plots.histogram(values, path, xlabel="gate value (fraction open)")
    plots.image_grid(kernels, titles, path)        # [N, H, W] or [N, H, W, C] images

Every figure names its axes, with units, through the required ``xlabel`` / ``ylabel``.
Figures run headless (the Agg backend unless one was chosen).
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Sequence, Tuple

import numpy as np

from jaxdr import reporting


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg", force=False)
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def bars(series: Mapping[str, Sequence[float]], labels: Sequence[str], path, *, xlabel: str,
         ylabel: str, title: str = "", colors: Optional[Sequence[str]] = None,
         ylim: Optional[Tuple[float, float]] = None, legend_outside: bool = False):
  """Grouped bars: one group per label (x), one bar per series (``{legend name: [len(labels)]}``);
  ``ylim`` (bottom, top) zooms in on close values, ``legend_outside`` puts the legend right of
  the axes (for bars that fill them)."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(labels)), 3.5))
  pos = np.arange(len(labels))
  width = 0.8 / max(len(series), 1)
  for i, (name, values) in enumerate(series.items()):
    ax.bar(pos + (i - (len(series) - 1) / 2) * width, values, width, label=name,
           color=None if colors is None else colors[i])
  many = len(labels) > 8
  ax.set_xticks(pos, labels, rotation=60 if many else 0, ha="right" if many else "center",
                fontsize=7 if many else None)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if ylim is not None:
    ax.set_ylim(*ylim)
  if title:
    ax.set_title(title)
  if len(series) > 1:
    ax.legend(**(dict(loc="upper left", bbox_to_anchor=(1.01, 1.0)) if legend_outside else {}))
  return reporting.save_figure(fig, path)


def heatmap(values: np.ndarray, path, *, row_labels: Sequence[str], col_labels: Sequence[str],
            xlabel: str, ylabel: str, colorbar_label: str, title: str = "",
            vmin: Optional[float] = None, vmax: Optional[float] = None, annotate: bool = True,
            fmt: str = "{:.2f}", cell: Tuple[float, float] = (0.5, 0.45)):
  """``values`` [R, C] as colours with a labelled colour bar (and the values written in the
  cells with ``annotate``); ``cell``: inches per column and per row."""
  plt = _pyplot()
  values = np.asarray(values)
  fig, ax = plt.subplots(figsize=(max(4.0, cell[0] * values.shape[1] + 1.5),
                                  max(3.5, cell[1] * values.shape[0] + 1)))
  im = ax.imshow(values, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")  # cells of ``cell`` inches
  ax.set_xticks(range(len(col_labels)), col_labels, rotation=60 if cell[0] >= 0.4 else 90,
                ha="right" if cell[0] >= 0.4 else "center", fontsize=None if cell[0] >= 0.4 else 6)
  ax.set_yticks(range(len(row_labels)), row_labels)
  if annotate:
    mid = (np.nanmin(values) + np.nanmax(values)) / 2 if vmin is None or vmax is None else (vmin + vmax) / 2
    for i in range(values.shape[0]):
      for j in range(values.shape[1]):
        ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", fontsize=6,
                color="white" if values[i, j] < mid else "black")
  fig.colorbar(im, ax=ax, label=colorbar_label, fraction=0.05, pad=0.02)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title)
  return reporting.save_figure(fig, path)


@dataclasses.dataclass(frozen=True)
class Series:
  """One line: ``y`` against ``x``, with error bars ``yerr`` when given."""
  label: str
  x: Sequence[float]
  y: Sequence[float]
  yerr: Optional[Sequence[float]] = None
  color: Optional[str] = None
  marker: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Panel:
  """One axes of `curves`: its lines and labelled axes; ``hlines``: (y, label, colour)
  horizontal reference lines."""
  series: Sequence[Series]
  xlabel: str
  ylabel: str
  title: str = ""
  hlines: Sequence[Tuple[float, str, str]] = ()


def curves(panels: Sequence[Panel], path, title: str = "", panel_size: Tuple[float, float] = (5.5, 4.0),
           legend_outside: bool = False):
  """Line plots side by side, one axes per panel (integer ticks on an x axis of whole numbers);
  ``legend_outside`` puts each panel's legend to its right (many lines: no curve hidden)."""
  plt = _pyplot()
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top
  width = panel_size[0] + (3.0 if legend_outside else 0.0)
  fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), panel_size[1]), squeeze=False)
  for ax, panel in zip(axes[0], panels):
    for s in panel.series:
      if s.yerr is not None:
        ax.errorbar(s.x, s.y, yerr=s.yerr, color=s.color, label=s.label, marker=s.marker, capsize=2)
      else:
        ax.plot(s.x, s.y, color=s.color, label=s.label, marker=s.marker)
    for y, label, color in panel.hlines:
      ax.axhline(y, color=color, linestyle="--", label=label)
    if all(float(x).is_integer() for s in panel.series for x in s.x):
      ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_xlabel(panel.xlabel)
    ax.set_ylabel(panel.ylabel)
    if panel.title:
      ax.set_title(panel.title)
    ax.grid(alpha=0.3)
    if legend_outside:
      ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    else:
      ax.legend(fontsize=7)
  if title:
    fig.suptitle(title)
  if legend_outside:
    fig.tight_layout()
  return reporting.save_figure(fig, path)


def histogram(values: Sequence[float], path, *, xlabel: str, ylabel: str = "count", bins: int = 30,
              title: str = "", label: Optional[str] = None):
  """Histogram of ``values`` (``ylabel`` names what is counted, e.g. 'channels (count)')."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(5.5, 3.5))
  ax.hist(np.ravel(np.asarray(values, np.float64)), bins=bins, label=label)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title)
  if label:
    ax.legend()
  return reporting.save_figure(fig, path)


def image_grid(images: np.ndarray, titles: Sequence[str], path, title: str = "", cols: int = 10):
  """Small images in a grid (no axes: pixels have no units), each scaled to its own
  [min, max]: ``images`` [N, H, W] (grey) or [N, H, W, C] (first 3 channels as RGB)."""
  plt = _pyplot()
  images = np.asarray(images, np.float64)
  n = len(images)
  cols = max(1, min(n, cols))
  rows = -(-n // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.4 * rows + (0.3 if title else 0)),
                           squeeze=False, layout="constrained")
  for ax in axes.ravel():
    ax.axis("off")
  for ax, img, name in zip(axes.ravel(), images, titles):
    img = (img - img.min()) / max(img.max() - img.min(), 1e-12)
    if img.ndim == 3 and img.shape[-1] == 1:
      img = img[..., 0]
    ax.imshow(img if img.ndim == 2 else img[..., :3], cmap="gray" if img.ndim == 2 else None)
    ax.set_title(name, fontsize=7)
  if title:
    fig.suptitle(title, fontsize=9)
  return reporting.save_figure(fig, path)
