"""DMNN figures: the per-image FLOPs histogram (paper Fig. 5), sub-block execution rates per
superclass (Fig. 7) and the easiest / hardest test images (Fig. 6). PNG via
`reporting.save_figure` (process 0 writes)."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from jaxdr import reporting


def _plt():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg", force=False)
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def sub_block_labels(blocks: Sequence[str], paths: int) -> list:
  """'s1b0.0' for sub-block 0 of stage1_block0, ... (L x N labels, block-major)."""
  short = [b.replace("stage", "s").replace("_block", "b") for b in blocks]
  return [f"{b}.{n}" for b in short for n in range(paths)]


def flops_histogram(summary: Mapping, total_macs: float, target: float, path, title: str = ""):
  """Share of test images against executed FLOPs (MMACs below, ratio of all-on above)."""
  plt = _plt()
  edges = np.asarray(summary["histogram"]["ratio_edges"])
  counts = np.asarray(summary["histogram"]["counts"], np.float64)
  share = 100.0 * counts / max(counts.sum(), 1.0)
  fig, ax = plt.subplots(figsize=(7, 4))
  mmacs = edges * total_macs / 1e6
  ax.bar(mmacs[:-1], share, width=np.diff(mmacs), align="edge", color="tab:blue", edgecolor="white")
  mean = summary["flops_ratio"] * total_macs / 1e6
  ax.axvline(mean, color="tab:red", label=f"mean {summary['flops_ratio']:.3f} of all-on")
  ax.axvline(target * total_macs / 1e6, color="black", linestyle="--", label=f"target r = {target:g}")
  ax.set_xlabel("executed MACs per image (millions; controllers excluded)")
  ax.set_ylabel("test images (%)")
  top = ax.secondary_xaxis("top", functions=(lambda m: m * 1e6 / total_macs, lambda r: r * total_macs / 1e6))
  top.set_xlabel("ratio of the all-on network's MACs")
  ax.legend(loc="upper left")
  ax.grid(alpha=0.3)
  if title:
    ax.set_title(title, pad=30)
  return reporting.save_figure(fig, path)


def execution_rates(rates: Mapping[str, Sequence], blocks: Sequence[str], paths: int, path,
                    title: str = ""):
  """Heat map: one row per superclass (or class), one column per sub-block, colour = the
  fraction of its test images that ran the sub-block."""
  plt = _plt()
  names = list(rates)
  grid = np.asarray([np.asarray(rates[n], np.float64).reshape(-1) for n in names])
  labels = sub_block_labels(blocks, paths)
  fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(labels) + 2.5), max(2.5, 0.35 * len(names) + 1.5)))
  im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
  ax.set_xticks(range(len(labels)))
  ax.set_xticklabels(labels, rotation=90, fontsize=7)
  ax.set_yticks(range(len(names)))
  ax.set_yticklabels(names, fontsize=8)
  ax.set_xlabel("sub-block (stage s, block b . sub-block n)")
  ax.set_ylabel("superclass")
  fig.colorbar(im, ax=ax, label="execution rate (fraction of images)")
  if title:
    ax.set_title(title)
  return reporting.save_figure(fig, path)


def easy_hard(extremes: Mapping[int, Mapping[str, tuple]], class_names: Sequence[str],
              total_macs: float, mean: Sequence[float], std: Sequence[float], path,
              classes: Optional[Sequence[int]] = None, title: str = ""):
  """Two rows of test images: per class, the one that ran the fewest MACs (top) and the most
  (bottom), each titled with its executed MACs (ratio of all-on)."""
  plt = _plt()
  classes = list(classes if classes is not None else sorted(extremes))
  fig, axes = plt.subplots(2, max(len(classes), 1), figsize=(1.9 * max(len(classes), 1), 4.6), squeeze=False)
  for j, c in enumerate(classes):
    for i, kind in enumerate(("easy", "hard")):
      ax = axes[i, j]
      ax.set_xticks([])
      ax.set_yticks([])
      if kind not in extremes.get(c, {}):
        continue
      _, macs, image = extremes[c][kind]
      pixels = np.clip(np.asarray(image) * np.asarray(std) + np.asarray(mean), 0.0, 1.0)
      ax.imshow(pixels[..., 0] if pixels.shape[-1] == 1 else pixels, cmap="gray" if pixels.shape[-1] == 1 else None)
      name = class_names[c] if c < len(class_names) else str(c)
      ax.set_title(f"{name}\n{macs / 1e6:.2f}M ({macs / total_macs:.2f})", fontsize=8)
  axes[0, 0].set_ylabel("fewest MACs")
  axes[1, 0].set_ylabel("most MACs")
  fig.suptitle(title or "Easiest (top) and hardest (bottom) test images by executed MACs (ratio of all-on)",
               fontsize=9)
  return reporting.save_figure(fig, path)
