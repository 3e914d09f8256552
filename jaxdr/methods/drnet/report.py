"""DRNet's report: the paper's tables and figures from the experiment's records.

    dissection = class_stats(stats, civ, class_names, options, randoms)   # per-class resets
    sections = report_sections(full_row, named, randoms, summary, dissection, options)
    figures = draw_figures(workdir, sim, class_names, named, randoms, baseline)

Tables: named sub-tasks (DRNet Tables 1-3, with a running-channels column per
``drnet.report_layers`` gate point: Table 3's 320 / 1280), random sub-task averages
(Tables 4-5), accuracy change over the random sub-tasks (Table 6: max / average / min),
top-1 resets per class, every random sub-task. Figures: the class similarity heat map
(Formula 5, Fig. 8), layer-wise running channels (Fig. 7) and the per-sub-task accuracy of
the full vs the sub-network, one chart per sub-task size (Figs. 5-6).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from etils import epath
import numpy as np

from jaxdr import reporting
from jaxdr.methods.drnet.cciv import Civ
from jaxdr.methods.drnet.options import DrnetOptions
from jaxdr.toolkit import plots

BASELINE_NAMES = {"subtask_softmax": "unmasked network, sub-task softmax",
                  "full_softmax": "unmasked network, argmax over all classes"}


def _pct(x: float) -> str:
  return f"{100 * x:.2f}%"


def _signed_pct(x: float) -> str:
  return f"{100 * x:+.2f}%"


def threshold_based(options: DrnetOptions) -> bool:
  """Whether the CCIV threshold is the configured union_thr / xor_thr (not a keep fraction)."""
  return not options.keep_fraction and options.calibrate_tolerance <= 0


def class_stats(stats: Dict[str, np.ndarray], civ: Civ, class_names: Sequence[str], options: DrnetOptions,
                randoms: Sequence[dict]) -> dict:
  """Per class of the dissection: images, resets (kept the all-ones start gates) and
  ``changed`` (last CDRP iterate changed top-1), their rates; ``own_channels``: the fraction of
  channels whose CIV reaches the union threshold (the single-class CCIV; None when a keep
  fraction sets the threshold); ``subtask_running_channels``: the mean running fraction of the
  random sub-tasks with this class (None without any)."""
  images, resets, changed = (np.asarray(stats[k]) for k in ("images", "resets", "changed"))
  total = sum(v.shape[1] for v in civ.values())
  rows = []
  for c in np.flatnonzero(images > 0):
    own = (sum(int(np.sum(v[c] >= options.union_thr)) for v in civ.values()) / total
           if threshold_based(options) and options.combine == "union" else None)
    with_c = [r["running_channels"] for r in randoms if int(c) in r["classes"]]
    rows.append({"class": int(c), "name": class_names[c] if c < len(class_names) else str(c),
                 "images": int(images[c]), "resets": int(resets[c]), "reset_rate": float(resets[c] / images[c]),
                 "changed": int(changed[c]), "changed_rate": float(changed[c] / images[c]),
                 "own_channels": own, "subtask_running_channels": float(np.mean(with_c)) if with_c else None})
  n = max(int(images.sum()), 1)
  return {"on_top1_change": options.cdrp.on_top1_change, "reset_civ": options.reset_civ,
          "union_thr": options.union_thr, "images": int(images.sum()),
          "reset_rate": float(resets.sum() / n), "changed_rate": float(changed.sum() / n), "classes": rows}


def report_sections(full_row: dict, named: List[dict], randoms: List[dict], summary: dict, dissection: dict,
                    options: DrnetOptions) -> list:
  """``(heading, markdown)`` sections of report.md (module docstring)."""
  channels = {k: v[1] for k, v in (named or randoms or [{"layer_channels": {}}])[0]["layer_channels"].items()}
  layers = [k for k in options.report_layers if k in channels]
  baseline = BASELINE_NAMES[options.baseline]

  def row(r):
    out = {"sub-task": r["name"], "Full-Net Acc.": _pct(r["full_accuracy"]),
           "Sub-Net Acc.": _pct(r["sub_accuracy"]), "Running Channels": _pct(r["running_channels"])}
    for k in layers:
      lc = r.get("layer_channels", {}).get(k)
      out[f"Running Channels ({k}, {channels[k]})"] = _pct(lc[0] / lc[1]) if lc else "100.00%"
    out.update({"Running Param.": f"{r['running_params_count'] / 1e6:.3f}M ({_pct(r['running_params'])})",
                "Running FLOPs": f"{r['running_flops_count'] / 1e6:.2f}M ({_pct(r['running_flops'])})"})
    if "physical_params" in r:
      out["Sliced Param. / FLOPs"] = f"{_pct(r['physical_params'])} / {_pct(r['physical_flops'])}"
    if "sliced_agreement" in r:
      out["Sliced == Masked"] = _pct(r["sliced_agreement"])
    return out

  sections = []
  rows = [row(full_row)] + [row(r) for r in named]
  columns = max((list(r) for r in rows), key=len)
  sections.append((f"Named sub-tasks (cf. DRNet Tables 1-3; Full-Net: {baseline})",
                   reporting.markdown_table(rows, columns)))
  avg = []
  for size, s in summary.items():
    r = {"sub-tasks": f"{s['count']} random {size}-class", "Full-Net Avg Acc.": _pct(s["full_accuracy"]),
         "Sub-Net Avg Acc.": _pct(s["sub_accuracy"]), "Avg Acc. Drop": _pct(s["accuracy_drop"]),
         "Avg Running Channels": _pct(s["running_channels"])}
    for k in layers:
      r[f"Avg Running Channels ({k}, {channels[k]})"] = _pct(s["layer_running_channels"][k])
    r.update({"Avg Running Param.": _pct(s["running_params"]), "Avg Running FLOPs": _pct(s["running_flops"])})
    if "physical_flops" in s:
      r["Avg Sliced Param. / FLOPs"] = f"{_pct(s['physical_params'])} / {_pct(s['physical_flops'])}"
    avg.append(r)
  sections.append(("Random sub-tasks, averages (cf. DRNet Tables 4-5)", reporting.markdown_table(avg)))
  table6 = [{"sub-tasks": f"{s['count']} random {size}-class",
             "Max Acc. Promotion": _signed_pct(s["max_accuracy_change"]),
             "Avg Acc. Promotion": _signed_pct(s["mean_accuracy_change"]),
             "Min Acc. Promotion": _signed_pct(s["min_accuracy_change"])} for size, s in summary.items()]
  sections.append(("Accuracy change over the random sub-tasks (cf. DRNet Table 6)",
                   f"Sub-Net accuracy minus Full-Net accuracy ({baseline}); negative is a drop.\n\n"
                   + reporting.markdown_table(table6)))
  sections.append(("Top-1 resets in the dissection", _resets_section(dissection)))
  if randoms:
    sections.append(("Every random sub-task", reporting.markdown_table([row(r) for r in randoms])))
  return sections


def _resets_section(dissection: dict) -> str:
  rows = []
  for c in dissection["classes"]:
    r = {"class": c["name"], "images": c["images"],
         "reset (all-ones gates)": f"{c['resets']} ({_pct(c['reset_rate'])})",
         "top-1 changed at the last iterate": f"{c['changed']} ({_pct(c['changed_rate'])})"}
    if c["own_channels"] is not None:
      r[f"channels with CIV >= union_thr {dissection['union_thr']:g}"] = _pct(c["own_channels"])
    if c["subtask_running_channels"] is not None:
      r["Avg Running Channels of its random sub-tasks"] = _pct(c["subtask_running_channels"])
    rows.append(r)
  head = (f"`drnet.cdrp.on_top1_change={dissection['on_top1_change']}`, `drnet.reset_civ={dissection['reset_civ']}`: "
          f"{_pct(dissection['reset_rate'])} of the {dissection['images']} dissection images kept the all-ones "
          f"start gates, the last CDRP iterate changed top-1 for {_pct(dissection['changed_rate'])}. Under "
          "'ones' a reset adds 1/N to every channel of its class's CIV; under 'best' / 'last' an image whose "
          "top-1 changed keeps an earlier iterate, which can be an early one with gates near 1 (not counted "
          "as a reset).\n\n")
  return head + reporting.markdown_table(rows, max((list(r) for r in rows), key=len) if rows else None)


def draw_figures(workdir: epath.Path, sim: np.ndarray, class_names, named: Sequence[dict],
                 randoms: Sequence[dict], baseline: str) -> List[str]:
  """Writes the PNGs (module docstring) and returns their file names."""
  plots.heatmap(sim, workdir / "civ_similarity.png", row_labels=class_names, col_labels=class_names,
                xlabel="class", ylabel="class", colorbar_label="IoU of important-channel sets (fraction)",
                title="Class similarity (DRNet Formula 5)", vmin=0.0, vmax=1.0)
  figures = ["civ_similarity.png"]
  fig_rec: Optional[dict] = named[0] if named else (randoms[0] if randoms else None)
  if fig_rec is not None:
    keys = list(fig_rec["layer_channels"])
    plots.bars({"channels": [fig_rec["layer_channels"][k][1] for k in keys],
                "running channels": [fig_rec["layer_channels"][k][0] for k in keys]},
               keys, workdir / "layer_channels.png", xlabel="gate point", ylabel="channels (count)",
               title=f"Layer-wise running channels: {fig_rec['name']} (DRNet Figure 7)",
               colors=("tab:blue", "tab:pink"))
    figures.append("layer_channels.png")
  for size, fig in ((2, 5), (3, 6)):
    group = [r for r in randoms if len(r["classes"]) == size]
    if not group:
      continue
    name = f"subtask_accuracy_{size}class.png"
    full, sub = [100 * r["full_accuracy"] for r in group], [100 * r["sub_accuracy"] for r in group]
    bottom = max(0.0, 5.0 * np.floor(min(full + sub) / 5.0) - 5.0)  # zoom in: the bars differ by points
    plots.bars({f"Full-Net\n({BASELINE_NAMES[baseline]})": full,
                "Sub-Net\n(CCIV-masked network, sub-task softmax)": sub},
               [r["name"] for r in group], workdir / name, xlabel=f"random {size}-class sub-task",
               ylabel="test accuracy (%)", title=f"Accuracy per {size}-class sub-task (cf. DRNet Figure {fig})",
               colors=("tab:blue", "tab:orange"), ylim=(bottom, 100.5), legend_outside=True)
    figures.append(name)
  return figures
