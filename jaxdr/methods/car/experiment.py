"""The CAR experiment: compress layers of a trained CNN greedily by CAR, against baselines.

    python -m jaxdr.main --config=configs/car_fashion_mnist.py --workdir=DIR [--config.pretrained=TRAINED]

Trains (or loads, `toolkit.base.load_or_train`) the model, compresses ``car.layers`` with the
greedy loop (state in ``DIR/car_state/<layers>/``, resumable), then writes to ``DIR``: the test
accuracy vs filters-kept curves of CAR, CAR + fine-tuning, incoming / outgoing weights and
random orders (``car_curves.png``, Fig. 2), the first-layer filters ordered by CAR
(``car_filters.png``, Fig. 5), CARc top/bottom classes of every filter, and the compressed
model (`toolkit.compression`: sliced, counted, timed, saved in ``DIR/compressed``), in
``results.json`` and ``report.md``.
"""
from __future__ import annotations

import os
import time
from typing import Any, Dict, List

from absl import logging
import numpy as np

from jaxdr import data, models, reporting, training
from jaxdr.errors import ConfigError
from jaxdr.methods import finetune
from jaxdr.methods.car import baselines, carc, greedy, scoring
from jaxdr.methods.car.options import CarOptions
from jaxdr.toolkit import base, compression, plots

CURVE_STYLE = {"car": ("purple", "CAR"), "car_finetuned": ("blue", "CAR + fine-tuning"),
               "outgoing": ("black", "outgoing weights"), "incoming": ("green", "incoming weights"),
               "random": ("red", "random (mean ± std)")}


def curve_grid(channels: int, points: int) -> List[int]:
  """Kept-filter counts for the curves: every count when the layer has at most ``points``
  filters, else two thirds of the points up to half the layer (where the methods differ)
  and the rest above it; always 1 and ``channels``."""
  if points <= 0 or channels <= points:
    return list(range(1, channels + 1))
  half = channels // 2
  low = np.linspace(1, half, min(half, max(2, (2 * points) // 3)))
  high = np.linspace(half, channels, max(2, points - len(low) + 1))[1:]
  return sorted({int(round(v)) for v in np.concatenate([low, high])})


def _plot_curves(curves, layers_info, reference, path):
  panels = []
  for info in layers_info:
    series = []
    for name, (color, label) in CURVE_STYLE.items():
      pts = curves[info["name"]].get(name) or []
      if pts:
        series.append(plots.Series(label, [p["kept"] for p in pts], [p["accuracy"] for p in pts],
                                   yerr=[p["std"] for p in pts] if name == "random" else None, color=color,
                                   marker="o" if name == "car_finetuned" else None))
    panels.append(plots.Panel(series, xlabel=f"filters kept in {info['name']} (count, of {info['filters']})",
                              ylabel="test accuracy (fraction)", hlines=((reference, "uncompressed", "red"),)))
  return plots.curves(panels, path)


def _compressed_mask(graph, states, keys, final_relative_drop) -> Dict[str, np.ndarray]:
  """Each layer cut to the fewest filters whose greedy scoring accuracy stays within
  ``final_relative_drop`` of the uncompressed one."""
  final_mask = {}
  for key in keys:
    st = states[key]
    floor = (1.0 - float(final_relative_drop)) * st.reference_accuracy
    gone = [r for r in st.removed if r["layer"] == key]
    n_ok = 0
    for i, r in enumerate(gone):
      if r["accuracy"] >= floor:
        n_ok = i + 1
      else:
        break
    m = np.ones(graph.gate(key).channels, np.float32)
    m[[r["filter"] for r in gone[:n_ok]]] = 0.0
    final_mask[key] = m
  return final_mask


def _report_sections(keys, curves, acceptance, carc_out, compressed) -> list:
  sections, rows = [], []
  for kk in keys:
    for p_car, p_in, p_out, p_rand in zip(*(curves[kk][n] for n in ("car", "incoming", "outgoing", "random"))):
      rows.append({"layer": kk, "kept": p_car["kept"], "CAR": p_car["accuracy"], "incoming": p_in["accuracy"],
                   "outgoing": p_out["accuracy"], "random": f"{p_rand['accuracy']:.4f} ± {p_rand['std']:.4f}"})
  sections.append(("Test accuracy vs filters kept (Fig. 2)", reporting.markdown_table(rows)))
  ft_rows = [{"layer": kk, **p} for kk in keys for p in curves[kk]["car_finetuned"]]
  if ft_rows:
    sections.append(("CAR + fine-tuning", reporting.markdown_table(ft_rows)))
  acc_rows = [{"layer": kk, **{n: v for n, v in a.items() if n != "kept_counts"}}
              for kk, a in acceptance.items()]
  sections.append(("Mean test accuracy, kept <= half the layer", reporting.markdown_table(acc_rows)))
  for kk in keys:
    carc_rows = [{"filter": r["filter"], "CAR": r["car"],
                  "top-5 classes (CARc)": ", ".join(f"{c['class']} {c['carc']:+.3f}" for c in r["top"]),
                  "bottom-5 classes (CARc)": ", ".join(f"{c['class']} {c['carc']:+.3f}" for c in r["bottom"])}
                 for r in carc_out[kk]]
    sections.append((f"CARc: {kk}", reporting.markdown_table(carc_rows)))
  sections.append(("Compressed model (sliced)", reporting.markdown_table(
      [{"": "values", **{kk: v for kk, v in compressed.items() if kk not in ("kept", "latency")}}])))
  if compressed["latency"]:
    sections.append(("Compressed model: forward latency (median, compile excluded)", reporting.markdown_table(
        [{"batch size": t["batch_size"], "uncompressed (ms)": 1e3 * t["unpruned_s"],
          "sliced (ms)": 1e3 * t["sliced_s"], "speed-up": t["speedup"]} for t in compressed["latency"]])))
  return sections


def run(config, workdir: str) -> Dict[str, Any]:
  """Trains (or loads) the model, compresses ``config.car.layers`` with CAR, writes the
  curves against the baselines, CARc tables and the sliced compressed model."""
  cfg = CarOptions.from_config(config.car, "car")
  t0 = time.time()
  os.makedirs(workdir, exist_ok=True)
  model, variables = base.load_or_train(config, workdir)
  graph = models.describe(model)
  keys = list(cfg.layers)
  gate_keys = [g.key for g in graph.gates]
  for key in keys:
    if key not in gate_keys:
      raise ConfigError(f"car.layers: unknown gate {key!r}; the model's gate points are {gate_keys[:10]}")
  ds = config.dataset
  info = data.info(ds.name)
  k = int(ds.num_classes)
  train_x, train_y = base.arrays(config, "train", limit=cfg.train_examples)
  test_x, test_y = base.arrays(config, "test", limit=cfg.eval_examples)
  # The scoring split: a class-balanced set from the end of the train split (never the test
  # split); balance makes CAR the mean of CARc over classes.
  if cfg.balanced:
    score_idx = scoring.balanced_indices(train_y, int(cfg.score_examples) // k)
  else:
    score_idx = np.arange(max(len(train_y) - int(cfg.score_examples), 0), len(train_y))
  score_x, score_y = train_x[score_idx], train_y[score_idx]
  rest = np.setdiff1d(np.arange(len(train_y)), score_idx)
  ft_x, ft_y = train_x[rest], train_y[rest]
  mesh = scoring.candidate_mesh()
  logging.info("car: %s on %s: compressing %s (%s-layer), scoring on %d train images over %d device(s), "
               "testing on %d", config.model.name, ds.name, keys, cfg.mode, len(score_y), mesh.devices.size,
               len(test_y))
  eval_kw = dict(num_classes=k, batch_size=int(cfg.eval_batch_size), mesh=mesh)
  reference = scoring.accuracy(model, variables, test_x, test_y, None, **eval_kw)
  logging.info("car: uncompressed test accuracy %.4f", reference)
  groups = [[k_] for k_ in keys] if cfg.mode == "single" else [keys]
  states: Dict[str, greedy.GreedyState] = {}
  for group in groups:
    name = "+".join(group).replace("/", "_")
    state = greedy.greedy_compress(model, variables, score_x, score_y, group, num_classes=k,
                                   options=cfg.greedy(int(config.seed)),
                                   state_dir=os.path.join(workdir, "car_state", name), mesh=mesh)
    for key in group:
      states[key] = state

  # CAR / CARc of every filter of the uncompressed network (the first greedy iteration).
  carc_out, car_full = {}, {}
  for key in keys:
    s = scoring.score_layer(model, variables, score_x, score_y, {}, key, num_classes=k,
                            batch_size=int(cfg.score_batch_size), mesh=mesh)
    car_full[key] = scoring.car_index(s)[1:]
    carc_out[key] = carc.carc_table(carc.carc_index(s)[1:], car_full[key], info.class_names, int(cfg.carc_top))

  curves: Dict[str, Dict[str, list]] = {}
  layers_info, acceptance = [], {}
  ft = cfg.finetune
  ft_opts = finetune.FinetuneOptions(steps=int(ft.steps), batch_size=int(ft.batch_size),
                                     default_lr=float(ft.lr_other), momentum=float(ft.momentum),
                                     seed=int(config.seed))
  for key in keys:
    channels = graph.gate(key).channels
    layers_info.append({"name": key, "filters": channels})
    grid = curve_grid(channels, int(cfg.curve_points))
    orders = {"car": states[key].order(key),
              "incoming": baselines.order_by(baselines.incoming_importance(model, variables, key)),
              "outgoing": baselines.order_by(baselines.outgoing_importance(model, variables, key))}
    rand = baselines.random_orders(channels, int(cfg.random_repeats), int(config.seed))
    stacked = [baselines.masks_along(o, grid) for o in orders.values()]
    stacked += [baselines.masks_along(o, grid) for o in rand]
    # With multi-layer mode the CAR order of one layer is read with the other layers intact.
    acc = scoring.evaluate_masks(model, variables, test_x, test_y, {key: np.concatenate(stacked)},
                                 masks_per_call=int(cfg.masks_per_call), **eval_kw)
    acc = acc.reshape(len(stacked), len(grid))
    curve = {name: [{"kept": n, "accuracy": float(a)} for n, a in zip(grid, acc[i])]
             for i, name in enumerate(orders)}
    r = acc[len(orders):]
    curve["random"] = [{"kept": n, "accuracy": float(m), "std": float(s)}
                       for n, m, s in zip(grid, r.mean(0), r.std(0))]
    curve["car_finetuned"] = []
    if ft.enabled:
      rates = finetune.car_layer_rates(model, key, float(ft.lr_compressed), float(ft.lr_next))
      for n in curve_grid(channels, int(ft.points)):
        mask = {key: baselines.masks_along(orders["car"], [n])[0]}
        tuned = finetune.finetune(model, variables, ft_x, ft_y, mask, rates, ft_opts)
        a = float(scoring.evaluate_masks(model, tuned, test_x, test_y, {key: mask[key][None]}, **eval_kw)[0])
        curve["car_finetuned"].append({"kept": n, "accuracy": a})
        logging.info("car: %s kept %d: fine-tuned test accuracy %.4f", key, n, a)
    curves[key] = curve
    half = [i for i, n in enumerate(grid) if n <= channels // 2]
    means = {name: float(np.mean([curve[name][i]["accuracy"] for i in half]))
             for name in ("car", "incoming", "outgoing", "random")}
    acceptance[key] = {**{f"mean_accuracy_{n}": v for n, v in means.items()},
                       "kept_counts": [grid[i] for i in half],
                       "car_ge_weight_baselines": means["car"] >= max(means["incoming"], means["outgoing"]),
                       "car_gt_random": means["car"] > means["random"]}
    logging.info("car: %s: mean test accuracy over kept <= %d: %s", key, channels // 2,
                 ", ".join(f"{n} {v:.4f}" for n, v in means.items()))

  # The compressed model: sliced physically, counted, timed and saved (toolkit.compression).
  final_mask = _compressed_mask(graph, states, keys, cfg.final_relative_drop)
  final_acc = float(scoring.evaluate_masks(model, variables, test_x, test_y,
                                           {kk: v[None] for kk, v in final_mask.items()}, **eval_kw)[0])
  summary, sliced = compression.compress(
      model, variables, final_mask, latency_batch_sizes=cfg.latency_batch_sizes,
      save_to=os.path.join(workdir, "compressed"), model_name=config.model.name,
      model_kwargs=training.model_kwargs(config))
  small_acc = scoring.accuracy(sliced.model, sliced.variables, test_x, test_y, sliced.mask, **eval_kw)
  compressed = {"kept": summary.kept, "test_accuracy_masked": final_acc, "test_accuracy_sliced": small_acc,
                "params": summary.params_after, "params_uncompressed": summary.params_before,
                "macs": summary.macs_after, "macs_uncompressed": summary.macs_before,
                "flops": 2 * summary.macs_after, "flops_uncompressed": 2 * summary.macs_before,
                "storage_bytes": summary.bytes_after, "storage_bytes_uncompressed": summary.bytes_before,
                "saved_to": "compressed/", "latency": summary.as_dict()["latency"]}
  logging.info("car: compressed model %s: test accuracy %.4f, params %d -> %d, MACs %d -> %d",
               compressed["kept"], small_acc, summary.params_before, summary.params_after,
               summary.macs_before, summary.macs_after)

  figures = ["car_curves.png"]
  _plot_curves(curves, layers_info, reference, os.path.join(workdir, "car_curves.png"))
  first = graph.layers[0]
  if first.kind == "conv" and first.dst in car_full:
    kern = baselines.layer_kernel(variables, first)  # HWIO
    order = np.argsort(-car_full[first.dst], kind="stable")
    plots.image_grid(np.moveaxis(kern, -1, 0)[order], [f"#{f}\n{car_full[first.dst][f]:+.3f}" for f in order],
                     os.path.join(workdir, "car_filters.png"),
                     title="first-layer filters by CAR index (most important first)")
    figures.append("car_filters.png")

  results = {"test_accuracy": reference, "curves": curves, "layers": layers_info,
             "acceptance": acceptance,
             "greedy": {kk: {"order": states[kk].order(kk), "removed": [r for r in states[kk].removed
                                                                      if r["layer"] == kk],
                             "reference_scoring_accuracy": states[kk].reference_accuracy,
                             "stop_reason": states[kk].stop_reason} for kk in keys},
             "car_index": {kk: [float(v) for v in car_full[kk]] for kk in keys},
             "carc": carc_out, "compressed": compressed,
             "scoring_examples": int(len(score_y)), "test_examples": int(len(test_y)),
             "num_devices": int(mesh.devices.size), "time_s": time.time() - t0}
  reporting.write_results(workdir, results, config, method="car")
  reporting.write_report(workdir, f"CAR compression of {config.model.name} on {ds.name}",
                         {"test_accuracy": reference, "time_s": results["time_s"]}, config,
                         sections=_report_sections(keys, curves, acceptance, carc_out, compressed),
                         figures=figures)
  return results
