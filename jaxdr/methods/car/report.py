"""The sections of a CAR run's report.md, read off its results (`sections`)."""
from __future__ import annotations

from typing import Any, Dict, List

from jaxdr import reporting
from jaxdr.methods.car import figures


def _readings(results: Dict[str, Any], cfg) -> str:
  d = results["data"]
  per = d["scoring_per_class"]
  lines = [
      f"- **Scoring set** (`car.scoring_set='{d['scoring_set']}'`): {d['scoring_source']}, "
      f"{d['scoring_examples']} images ({min(per) if min(per) == max(per) else f'{min(per)}-{max(per)}'} per class). "
      f"The paper scores on half of the "
      f"test set and evaluates on the other half; `'train'` is jaxdr's earlier reading (training images).",
      f"- **Evaluation set** (every curve and table below): {d['evaluation_source']}, "
      f"{d['evaluation_examples']} images; fine-tuning uses {d['fine_tuning_examples']} training images.",
      f"- **Greedy to the end**: the loop runs to `car.min_kept={cfg.min_kept}`"
      + (f"; its stop point is the {cfg.max_relative_drop:.0%} relative drop on the scoring set, past which it "
         f"{'stops (the CAR curve ends there, marked X)' if cfg.past_drop == 'stop' else 'continues greedily'}"
         if cfg.max_relative_drop else "") + ". A CAR curve never continues in index order.",
      f"- **Fine-tuning**: CAR + fine-tuning fine-tunes after compressing (section 3.1's recipe: rate "
      f"{cfg.finetune.lr_compressed} for the layer, {cfg.finetune.lr_next} for the next, {cfg.finetune.lr_other} "
      f"elsewhere, {cfg.finetune.steps} steps); retraining inside the greedy loop (`car.retrain_every`) is "
      + (f"on, every {cfg.retrain_every} iteration(s) (its own curve)." if cfg.retrain_every else "off (slow)."),
      f"- **FLOPs** are multiply-accumulates (section 2.1: k² n_L f² n_(L-1)); storage is 4 f² n_(L-1) n_L bytes.",
      f"- **Residual branch pruned to 0 filters** (`car.empty_branch='{cfg.empty_branch}'`): "
      + ("the branch is removed (adds 0), as the paper's Fig. 4B." if cfg.empty_branch == "remove"
         else "its gate is closed only (the branch still adds its BatchNorm shift).")]
  return "\n".join(lines) + "\n"


def _curve_rows(keys, curves) -> List[Dict[str, Any]]:
  rows = []
  for kk in keys:
    c = curves[kk]
    car = {p["kept"]: p["accuracy"] for p in c["car"]}
    for p_in, p_out, p_rand in zip(c["incoming"], c["outgoing"], c["random"]):
      n = p_in["kept"]
      rows.append({"layer": kk, "kept": n, "CAR": car.get(n, "—"), "incoming": p_in["accuracy"],
                   "outgoing": p_out["accuracy"], "random": f"{p_rand['accuracy']:.4f} ± {p_rand['std']:.4f}"})
  return rows


def sections(keys, results: Dict[str, Any], cfg) -> list:
  """(heading, markdown) pairs: readings, curves, stop points, fine-tuning, acceptance,
  Table 1, per-class accuracy, CARc and the compressed model."""
  curves = results["curves"]
  out = [("Data and readings", _readings(results, cfg)),
         ("Accuracy vs filters kept (Figs. 2-4, evaluation set)", reporting.markdown_table(_curve_rows(keys, curves)))]
  ends = []
  for kk in keys:
    g = results["greedy"][kk]
    ends.append({"layer": kk, "greedy down to (filters)": g["greedy_floor"],
                 "kept at the stop point": "—" if g["kept_at_drop"] is None else g["kept_at_drop"],
                 "CAR curve ends": curves[kk].get("car_end", {}).get("reason", "no (greedy to the fewest)"),
                 "stop reason": g["stop_reason"]})
  out.append(("Greedy path", reporting.markdown_table(ends)))
  ft_rows = [{"layer": kk, **p} for kk in keys for p in curves[kk].get("car_finetuned", [])]
  if ft_rows:
    out.append(("CAR + fine-tuning", reporting.markdown_table(ft_rows)))
  rt_rows = [{"layer": kk, **p} for kk in keys for p in curves[kk].get("car_retrained", [])]
  if rt_rows:
    out.append((f"CAR retrained inside the loop (every {cfg.retrain_every} iteration(s))",
                reporting.markdown_table(rt_rows)))
  acc_rows = [{"layer": kk, **{n: v for n, v in a.items() if n != "kept_counts"}}
              for kk, a in results["acceptance"].items()]
  out.append(("Mean accuracy, kept <= half the layer (evaluation set)", reporting.markdown_table(acc_rows)))
  out.append((f"Table 1: pruned until a relative {results['table1_relative_drop']:.0%} accuracy drop",
              "Kept counts decided on the scoring set; 'test acc.' on the evaluation set; uncompressed values "
              "after the slash; 'next' = the layer(s) reading the pruned one.\n\n"
              + figures.table1_markdown(results["table1"])))
  pc_rows = [{"layer": kk, "kept": p["kept"], "filters": p["filters"],
              "classes losing at most 0.03 accuracy": f"{p['within']:.0%}"}
             for kk, p in results["per_class"].items()]
  out.append(("Per-class accuracy after CAR compression at Table 1's point (Fig. 8)", reporting.markdown_table(pc_rows)))
  for kk in keys:
    carc_rows = [{"filter": r["filter"], "CAR": r["car"],
                  "top-5 classes (CARc)": ", ".join(f"{c['class']} {c['carc']:+.3f}" for c in r["top"]),
                  "bottom-5 classes (CARc)": ", ".join(f"{c['class']} {c['carc']:+.3f}" for c in r["bottom"])}
                 for r in results["carc"][kk]]
    out.append((f"CARc: {kk} (scoring set)", reporting.markdown_table(carc_rows)))
  compressed = results["compressed"]
  out.append(("Compressed model (sliced; FLOPs = MACs)", reporting.markdown_table(
      [{"": "values", **{kk: v for kk, v in compressed.items() if kk not in ("kept", "latency")},
        **{f"kept {kk}": v for kk, v in compressed["kept"].items()}}])))
  if compressed["latency"]:
    out.append(("Compressed model: forward latency (median, compile excluded)", reporting.markdown_table(
        [{"batch size": t["batch_size"], "uncompressed (ms)": 1e3 * t["unpruned_s"],
          "sliced (ms)": 1e3 * t["sliced_s"], "speed-up": t["speedup"]} for t in compressed["latency"]])))
  return out
