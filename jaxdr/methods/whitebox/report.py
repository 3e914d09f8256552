"""What the White-Box experiment writes: the results of each variant, the report's tables and
the figures (per-layer kept channels, a class-wise mask heat map (paper Fig. 4), accuracy vs
MACs of the methods).
"""
from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Sequence

import numpy as np

from jaxdr import cpu_runtime, reporting
from jaxdr.toolkit import plots

LABELS = {"whitebox": "White-Box", "l1": "L1-norm (Li et al.)", "shared": "w/o class-wise mask",
          "hard": "w/o soft mask"}
COLORS = {"whitebox": "tab:blue", "l1": "tab:red", "shared": "tab:green", "hard": "tab:orange"}
MAX_DROP_POINTS = 0.5  # the acceptance: White-Box loses at most this much accuracy
MIN_SPEEDUP_RATIO = 0.8  # measured speedup >= this x the FLOPs reduction factor


def variant_results(variant: str, cut, acc_cut: float, ft_runs: Sequence[Mapping[str, Any]],
                    mask_metrics: Mapping[str, Any], base_accuracy: float, saved_to: str) -> Dict[str, Any]:
  """One variant's numbers: the vote, costs before / after, accuracies (the mean over the
  fine-tuning runs ``ft_runs``, first = the saved one), latency, checks."""
  s = cut.summary
  factor = s.macs_before / max(s.macs_after, 1)
  latency = s.as_dict()["latency"]
  for t in latency:
    t["speedup_over_flops_factor"] = t["speedup"] / factor
  ft_metrics = ft_runs[0]
  accs = [float(m["test_accuracy"]) for m in ft_runs]
  acc = float(np.mean(accs))
  keep = ("test_accuracy", "test_loss", "train_loss", "train_accuracy", "train_sparsity", "steps", "epochs",
          "train_time_s", "images_per_sec")
  return {
      "scorer": LABELS[variant], "vote": cut.vote.as_dict(),
      "params_before": s.params_before, "params_after": s.params_after,
      "macs_before": s.macs_before, "macs_after": s.macs_after,
      "flops_before": 2 * s.macs_before, "flops_after": 2 * s.macs_after,
      "bytes_before": s.bytes_before, "bytes_after": s.bytes_after,
      "macs_reduction": 1.0 - s.macs_after / s.macs_before, "flops_factor": factor,
      "params_reduction": 1.0 - s.params_after / s.params_before,
      "test_accuracy_cut": float(acc_cut), "test_accuracy": acc,
      "test_accuracy_runs": accs, "test_accuracy_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
      "accuracy_drop_points": 100.0 * (base_accuracy - acc),
      "finetune": {k: ft_metrics[k] for k in keep if k in ft_metrics},
      "mask_train": {k: mask_metrics[k] for k in keep if k in mask_metrics},
      "latency": latency, "fold_inexact_channels": cut.folded.inexact_channels,
      "cut_max_rel_diff": cut.max_rel_diff, "saved_to": saved_to,
  }


def _latency_at(v: Mapping[str, Any], batch_size: int):
  return next((t for t in v["latency"] if t["batch_size"] == batch_size), None)


def results(config, opts, keys: Sequence[str], base_metrics, base_costs, variants, curves, time_s: float):
  """The whole ``results.json`` body (config and environment are added by `reporting`)."""
  checks = {}
  wb = variants.get("whitebox")
  if wb is not None:
    checks["whitebox_drop_le_0.5_points"] = wb["accuracy_drop_points"] <= MAX_DROP_POINTS
    if "l1" in variants:
      checks["whitebox_ge_l1"] = wb["test_accuracy"] >= variants["l1"]["test_accuracy"]
    big = max(opts.latency_batch_sizes, default=None)
    t = _latency_at(wb, big) if big else None
    if t is not None:
      checks[f"whitebox_speedup_ge_0.8_flops_factor_at_batch_{big}"] = \
          t["speedup_over_flops_factor"] >= MIN_SPEEDUP_RATIO
  first = variants[opts.variants[0]]
  return {
      "test_accuracy": first["test_accuracy"], "base_test_accuracy": base_metrics["test_accuracy"],
      "target": opts.target, "masks_from": opts.masks_from if any(v != "l1" for v in variants) else "n/a",
      "base_from": config.get("pretrained", "") or "trained into WORKDIR/train",
      "fold_into": opts.fold_into if opts.finetune_from == "masked" else "nothing folded",
      "finetune_from": opts.finetune_from, "conv_impl": config.model.get("conv_impl", "auto"),
      "gates": list(keys),
      "base": {"test_accuracy": base_metrics["test_accuracy"], "params": int(base_costs.params),
               "macs": int(base_costs.macs), "flops": 2 * int(base_costs.macs)},
      "variants": variants, "curves": curves, "checks": checks, "cpu_model": cpu_runtime.cpu_model(),
      "time_s": time_s,
  }


def headline(results: Mapping[str, Any]) -> Dict[str, Any]:
  out = {"base test accuracy": results["base_test_accuracy"], "MACs reduction target": results["target"],
         "masks trained from": results["masks_from"], "gate folded into": results["fold_into"],
         "masked variants cut and fine-tune": results["finetune_from"], "conv_impl": results["conv_impl"],
         "CPU": results["cpu_model"], "time (s)": results["time_s"]}
  out.update({f"check: {k}": v for k, v in results["checks"].items()})
  return out


def sections(results: Mapping[str, Any]) -> list:
  """The report's tables: methods, per-layer kept channels, latency, curves."""
  variants = results["variants"]
  base = results["base"]
  rows = [{"method": "unpruned", "MACs": base["macs"], "MACs removed": 0.0, "params": base["params"],
           "acc. cut": "", "acc. fine-tuned": base["test_accuracy"], "runs (std)": "", "drop (points)": 0.0}]
  for name, v in variants.items():
    rows.append({"method": LABELS[name], "MACs": v["macs_after"], "MACs removed": v["macs_reduction"],
                 "params": v["params_after"], "acc. cut": v["test_accuracy_cut"],
                 "acc. fine-tuned": v["test_accuracy"],
                 "runs (std)": f"{len(v['test_accuracy_runs'])} ({v['test_accuracy_std']:.4f})",
                 "drop (points)": v["accuracy_drop_points"]})
  out = [("Methods (same base, budget and fine-tuning; acc. cut = folded and cut, before fine-tuning; "
          "acc. fine-tuned = the mean over the fine-tuning runs (seeds))",
          reporting.markdown_table(rows))]
  first = next(iter(variants.values()))
  layer_rows = []
  for key, total in first["vote"]["channels"].items():
    layer_rows.append({"gate": key, "channels": total,
                       **{LABELS[n]: v["vote"]["kept"][key] for n, v in variants.items()}})
  out.append(("Kept channels per layer (the vote's per-layer rates)", reporting.markdown_table(layer_rows)))
  lat_rows = []
  for name, v in variants.items():
    for t in v["latency"]:
      lat_rows.append({"method": LABELS[name], "batch": t["batch_size"],
                       "unpruned (ms)": 1e3 * t["unpruned_s"], "pruned (ms)": 1e3 * t["sliced_s"],
                       "speedup": t["speedup"], "FLOPs factor": v["flops_factor"],
                       "speedup / FLOPs factor": t["speedup_over_flops_factor"]})
  if lat_rows:
    out.append((f"Forward latency, median (CPU: {results['cpu_model']})", reporting.markdown_table(lat_rows)))
  curve_rows = [{"method": LABELS[n], "target": p["target"], "MACs removed": p["reduction"],
                 "accuracy (no fine-tuning)": p["accuracy"]}
                for n, pts in results["curves"].items() for p in pts]
  if curve_rows:
    out.append(("Accuracy vs MACs removed before fine-tuning", reporting.markdown_table(curve_rows)))
  return out


def _heatmap_gate(opts, keys):
  if opts.heatmap_gate:
    return opts.heatmap_gate
  return keys[len(keys) // 2]


def figures(workdir, graph, opts, keys, variants, curves, masks_of, base_metrics, class_names) -> list:
  """Writes the PNGs; returns their names."""
  out = []
  gates = list(next(iter(variants.values()))["vote"]["channels"])
  series = {"unpruned": [graph.gate(k).channels for k in gates]}
  series.update({LABELS[n]: [v["vote"]["kept"][k] for k in gates] for n, v in variants.items()})
  plots.bars(series, gates, os.path.join(workdir, "kept_channels.png"), xlabel="masked gate point (layer)",
             ylabel="channels kept (count)", colors=["gray"] + [COLORS[n] for n in variants],
             title=f"Channels kept per layer, target {100 * opts.target:.0f}% of FLOPs removed")
  out.append("kept_channels.png")
  name = next((n for n in ("whitebox", "hard", "shared") if n in masks_of), None)
  if name is not None:
    key = _heatmap_gate(opts, keys)
    m = np.asarray(masks_of[name][key])
    order = np.argsort(-np.abs(m.sum(axis=0)), kind="stable")
    rows = list(class_names) if m.shape[0] == len(class_names) else [f"mask {i}" for i in range(m.shape[0])]
    plots.heatmap(m[:, order], os.path.join(workdir, "class_mask_heatmap.png"), row_labels=rows,
                  col_labels=[str(c) for c in order],
                  xlabel="channel index, sorted by the vote score |sum over classes| (largest first)",
                  ylabel="class", colorbar_label="mask value M[class, channel]", annotate=False,
                  title=f"{LABELS[name]} class-wise mask of {key}", cell=(0.22, 0.4))
    out.append("class_mask_heatmap.png")
  panel_series = []  # FLOPs = 2 x MACs: the fraction removed is the same
  for n, v in variants.items():
    pts = curves.get(n) or []
    if pts:
      panel_series.append(plots.Series(f"{LABELS[n]}, no fine-tuning", [100 * p["reduction"] for p in pts],
                                       [100 * p["accuracy"] for p in pts], color=COLORS[n], marker="."))
    panel_series.append(plots.Series(f"{LABELS[n]}, fine-tuned", [100 * v["macs_reduction"]],
                                     [100 * v["test_accuracy"]], color=COLORS[n], marker="*"))
  plots.curves([plots.Panel(panel_series, xlabel="FLOPs removed (% of the unpruned model's)",
                            ylabel="test accuracy (%)",
                            title="Test accuracy vs FLOPs removed (dots: before fine-tuning)",
                            hlines=((100 * base_metrics["test_accuracy"], "unpruned", "gray"),))],
               os.path.join(workdir, "accuracy_vs_flops.png"), panel_size=(7.0, 4.5))
  out.append("accuracy_vs_flops.png")
  return out
