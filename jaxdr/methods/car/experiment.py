"""The CAR experiment: compress layers of a trained CNN greedily by CAR, against baselines.

    python -m jaxdr.main --config=configs/car_fashion_mnist.py --workdir=DIR [--config.pretrained=TRAINED]

Trains (or loads, `toolkit.base.load_or_train`) the model, splits the data (`sets`: by
default CAR scores on one half of the test split and everything is measured on the other),
compresses ``car.layers`` with the greedy loop (state in ``DIR/car_state/<layers>/``,
resumable; with ``car.retrain_every`` a second path retrained inside the loop in
``DIR/car_state/<layers>_retrain<k>/``), then writes to ``DIR``: accuracy vs filters kept for
CAR, CAR + fine-tuning, incoming / outgoing weights and random orders (``car_curves.png``,
Figs. 2-4), Table 1 (kept filters, compression ratio, FLOPs = MACs and storage at the 5%
drop), the first-layer filters by CAR (``car_filters.png``, Fig. 5), top activating patches
of the filters pruned first and kept last (``car_patches_<layer>.png``, Figs. 6-7),
per-class accuracy after vs before (``car_class_accuracy.png``, Fig. 8), the CARc views of
the last layer's top filters (``car_carc_views.png``, Fig. 9), CARc tables, and the
compressed model (`toolkit.compression`: sliced, counted, timed, saved in ``DIR/compressed``),
in ``results.json`` and ``report.md``.
"""
from __future__ import annotations

import os
import time
from typing import Any, Dict

from absl import logging
import numpy as np

from jaxdr import data, models, reporting, training
from jaxdr.errors import ConfigError
from jaxdr.methods import finetune
from jaxdr.methods.car import (baselines, branches, carc, figures, greedy, layer, patches, report, scoring,
                               sets as sets_lib)
from jaxdr.methods.car.options import CarOptions
from jaxdr.toolkit import base, compression


def _compressed_network(model, variables, graph, states, keys, cfg):
  """(mask, variables): each layer cut to the fewest filters whose greedy scoring accuracy stays
  within ``final_relative_drop`` of the uncompressed one; a residual branch cut to 0 removed."""
  mask, out_vars = {}, variables
  for key in keys:
    st = states[key]
    floor = (1.0 - float(cfg.final_relative_drop)) * st.reference_accuracy
    gone = [r for r in st.removed if r["layer"] == key]
    n_ok = 0
    for i, r in enumerate(gone):
      if r["accuracy"] < floor:
        break
      n_ok = i + 1
    m = np.ones(graph.gate(key).channels, np.float32)
    m[[r["filter"] for r in gone[:n_ok]]] = 0.0
    if branches.empty(m) and cfg.empty_branch == "remove":
      mask.update(branches.branch_mask(graph, key))
      out_vars = branches.without_branch(model, out_vars, key)
    else:
      mask[key] = m
  return mask, out_vars


def _retrain_hook(model, keys, sets, cfg, seed, eval_kw):
  """The in-loop retraining: car.finetune's recipe under the current mask (a removed branch
  stays removed), then the accuracy on the scoring and evaluation sets."""
  ft = cfg.finetune
  graph = models.describe(model)
  rates = {}
  for key in keys:
    rates.update(finetune.car_layer_rates(model, key, float(ft.lr_compressed), float(ft.lr_next)))

  def hook(variables, mask, iteration):
    mask, r = dict(mask), dict(rates)
    for key in keys:
      if cfg.empty_branch == "remove" and branches.is_branch_gate(graph, key) and branches.empty(mask[key]):
        mask = branches.branch_mask(graph, key, mask)
        variables = branches.without_branch(model, variables, key)
        r.update({l.key: 0.0 for l in branches.branch_outputs(graph, key)})
    opts = finetune.FinetuneOptions(steps=int(ft.steps), batch_size=int(ft.batch_size), default_lr=float(ft.lr_other),
                                    momentum=float(ft.momentum), seed=seed + iteration)
    tuned = finetune.finetune(model, variables, sets.ft_x, sets.ft_y, mask, r, opts)
    info = {"scoring_accuracy": scoring.accuracy(model, tuned, sets.score_x, sets.score_y, mask, **eval_kw),
            "accuracy": scoring.accuracy(model, tuned, sets.eval_x, sets.eval_y, mask, **eval_kw)}
    logging.info("car: retrained at iteration %d: accuracy %.4f (scoring set %.4f)", iteration,
                 info["accuracy"], info["scoring_accuracy"])
    return tuned, info
  return hook, {"steps": int(ft.steps), "batch_size": int(ft.batch_size), "lr_compressed": float(ft.lr_compressed),
                "lr_next": float(ft.lr_next), "lr_other": float(ft.lr_other), "momentum": float(ft.momentum)}


def _sample(sets, c: int) -> np.ndarray:
  """One image of class ``c``: the scoring set's first, else the evaluation set's (else blank)."""
  for x, y in ((sets.score_x, sets.score_y), (sets.eval_x, sets.eval_y)):
    idx = np.flatnonzero(y == c)
    if len(idx):
      return x[idx[0]]
  return np.zeros_like(sets.score_x[0])


def _figures(model, variables, graph, keys, sets, cfg, info, analysed, states, car_full, scores, workdir):
  """Figs. 5-9 (the curves are drawn by `run`); returns the file names and Fig. 9's rows."""
  names = []
  first = graph.layers[0]
  if first.kind == "conv" and first.dst in car_full:
    figures.first_layer_filters(baselines.layer_kernel(variables, first), car_full[first.dst],
                                os.path.join(workdir, "car_filters.png"))
    names.append("car_filters.png")
  half = int(cfg.patch_images) // 2 if cfg.patch_images else None  # no copy of two whole ImageNet halves
  images = np.concatenate([sets.score_x[:half], sets.eval_x[:half]])
  fields = {}
  for key in keys:
    rows, cols = fields[key] = patches.receptive_field(model, variables, key)
    roles = layer.patch_roles(states[key].order(key), states[key].greedy_floor(key), int(cfg.patch_filters))
    top = patches.top_activations(model, variables, images, key, [f for f, _ in roles], int(cfg.patch_top))
    entries = [{"filter": f, "role": role, "mosaic": patches.mosaic([patches.crop(images, h, rows, cols) for h in top[f]])}
               for f, role in roles]
    h, w = patches.field_size(rows, cols)
    figures.patch_grid(entries, os.path.join(workdir, f"car_patches_{key.replace('/', '_')}.png"),
                       f"{key}: top-{cfg.patch_top} activating patches ({h}x{w} px receptive field) of the filters "
                       f"CAR pruned first and kept last\n(each patch scaled to its own range; white: outside the image)",
                       cols=max(1, len(entries) // 2))
    names.append(f"car_patches_{key.replace('/', '_')}.png")
  figures.class_accuracy([analysed[k]["per_class"] for k in keys], info.class_names,
                         os.path.join(workdir, "car_class_accuracy.png"))
  names.append("car_class_accuracy.png")
  key = keys[-1]  # Fig. 9: the deepest compressed layer's most important filters
  s = scores[key]
  class_acc = s.class_accuracy()
  carc_all = carc.carc_index(s)[1:]
  rows, cols = fields[key]
  chosen = [int(f) for f in np.argsort(-car_full[key], kind="stable")[:int(cfg.carc_filters)]]
  top = patches.top_activations(model, variables, images, key, chosen, int(cfg.patch_top))
  views = []
  for f in chosen:
    order = np.argsort(-carc_all[f], kind="stable")
    top_i, bottom_i = [int(c) for c in order[:cfg.carc_top]], [int(c) for c in order[::-1][:cfg.carc_top]]
    sample = {c: _sample(sets, c) for c in top_i + bottom_i}
    views.append({"layer": key, "filter": f, "car": float(car_full[key][f]), "set": "scoring set",
                  "mosaic": patches.mosaic([patches.crop(images, h, rows, cols) for h in top[f]]),
                  "top": [{"class": info.class_names[c], "carc": float(carc_all[f, c]), "image": sample[c]} for c in top_i],
                  "bottom": [{"class": info.class_names[c], "carc": float(carc_all[f, c]), "image": sample[c]}
                             for c in bottom_i],
                  "top_index": top_i, "bottom_index": bottom_i, "before": class_acc[0], "after": class_acc[f + 1]})
  figures.carc_views(views, info.class_names, os.path.join(workdir, "car_carc_views.png"), int(cfg.carc_top))
  names.append("car_carc_views.png")
  fig9 = [{k: v for k, v in r.items() if k in ("filter", "car", "top_index", "bottom_index")} for r in views]
  return names, fig9


def run(config, workdir: str) -> Dict[str, Any]:
  """Trains (or loads) the model, compresses ``config.car.layers`` with CAR, writes the
  curves against the baselines, Table 1, the figures, CARc tables and the sliced model."""
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
  info = data.info(config.dataset.name)
  k = int(config.dataset.num_classes)
  seed = int(config.seed)
  sets = sets_lib.load(config, cfg)
  mesh = scoring.candidate_mesh()
  d = sets.description
  logging.info("car: %s on %s: compressing %s (%s-layer); scoring on %d images (%s), evaluating on %d (%s), "
               "%d device(s)", config.model.name, config.dataset.name, keys, cfg.mode, d["scoring_examples"],
               d["scoring_source"], d["evaluation_examples"], d["evaluation_source"], mesh.devices.size)
  eval_kw = dict(num_classes=k, batch_size=int(cfg.eval_batch_size), mesh=mesh)
  reference = scoring.accuracy(model, variables, sets.eval_x, sets.eval_y, None, **eval_kw)
  reference_scoring = scoring.accuracy(model, variables, sets.score_x, sets.score_y, None, **eval_kw)
  logging.info("car: uncompressed accuracy %.4f (scoring set %.4f)", reference, reference_scoring)
  groups = [[k_] for k_ in keys] if cfg.mode == "single" else [keys]
  states: Dict[str, greedy.GreedyState] = {}
  retrained: Dict[str, greedy.GreedyState] = {}
  for group in groups:
    name = "+".join(group).replace("/", "_")
    state = greedy.greedy_compress(model, variables, sets.score_x, sets.score_y, group, num_classes=k,
                                   options=cfg.greedy(seed), state_dir=os.path.join(workdir, "car_state", name),
                                   mesh=mesh)
    states.update({key: state for key in group})
    if cfg.retrain_every:
      hook, recipe = _retrain_hook(model, group, sets, cfg, seed, eval_kw)
      state = greedy.greedy_compress(
          model, variables, sets.score_x, sets.score_y, group, num_classes=k,
          options=cfg.greedy(seed, int(cfg.retrain_every)), retrain=hook, retrain_fingerprint=recipe,
          state_dir=os.path.join(workdir, "car_state", f"{name}_retrain{cfg.retrain_every}"), mesh=mesh)
      retrained.update({key: state for key in group})

  # CAR / CARc of every filter of the uncompressed network (the first greedy iteration).
  carc_out, car_full, scores = {}, {}, {}
  for key in keys:
    s = scores[key] = scoring.score_layer(model, variables, sets.score_x, sets.score_y, {}, key, num_classes=k,
                                          batch_size=int(cfg.score_batch_size), mesh=mesh)
    car_full[key] = scoring.car_index(s)[1:]
    carc_out[key] = carc.carc_table(carc.carc_index(s)[1:], car_full[key], info.class_names, int(cfg.carc_top))

  analysed = {key: layer.analyse(model, variables, key, sets, cfg, states[key], retrained.get(key), reference,
                                 reference_scoring, seed, eval_kw) for key in keys}
  layers_info = [{"name": key, "filters": graph.gate(key).channels} for key in keys]
  curves_out = {key: analysed[key]["curve"] for key in keys}

  # The compressed model: sliced physically, counted, timed and saved (toolkit.compression).
  final_mask, final_vars = _compressed_network(model, variables, graph, states, keys, cfg)
  final_acc = scoring.accuracy(model, final_vars, sets.eval_x, sets.eval_y, final_mask, **eval_kw)
  summary, sliced = compression.compress(
      model, final_vars, final_mask, latency_batch_sizes=cfg.latency_batch_sizes,
      save_to=os.path.join(workdir, "compressed"), model_name=config.model.name,
      model_kwargs=training.model_kwargs(config))
  small_acc = scoring.accuracy(sliced.model, sliced.variables, sets.eval_x, sets.eval_y, sliced.mask, **eval_kw)
  compressed = {"kept": {kk: summary.kept[kk] for kk in keys}, "test_accuracy_masked": final_acc,
                "test_accuracy_sliced": small_acc,
                "params": summary.params_after, "params_uncompressed": summary.params_before,
                "macs": summary.macs_after, "macs_uncompressed": summary.macs_before,
                "flops": summary.macs_after, "flops_uncompressed": summary.macs_before,  # FLOPs = MACs (section 2.1)
                "storage_bytes": summary.bytes_after, "storage_bytes_uncompressed": summary.bytes_before,
                "saved_to": "compressed/", "latency": summary.as_dict()["latency"]}
  logging.info("car: compressed model %s: accuracy %.4f, params %d -> %d, MACs %d -> %d", compressed["kept"],
               small_acc, summary.params_before, summary.params_after, summary.macs_before, summary.macs_after)

  names = ["car_curves.png"]
  figures.curves(curves_out, layers_info, reference, os.path.join(workdir, "car_curves.png"),
                 "held-out test half" if cfg.scoring_set == "test_half" else "test split",
                 float(cfg.table_relative_drop))
  more, fig9 = _figures(model, variables, graph, keys, sets, cfg, info, analysed, states, car_full, scores, workdir)
  names += more

  table1 = [r for key in keys for r in analysed[key]["table1"]]
  results = {"test_accuracy": reference, "scoring_accuracy": reference_scoring, "data": d,
             "curves": curves_out, "layers": layers_info,
             "acceptance": {key: analysed[key]["acceptance"] for key in keys},
             "table1": table1, "table1_relative_drop": float(cfg.table_relative_drop),
             "per_class": {key: analysed[key]["per_class"] for key in keys},
             "greedy": {kk: {"order": states[kk].order(kk), "removed": [r for r in states[kk].removed if r["layer"] == kk],
                             "greedy_floor": states[kk].greedy_floor(kk), "kept_at_drop": states[kk].kept_at_drop(kk),
                             "reference_scoring_accuracy": states[kk].reference_accuracy,
                             "stop_reason": states[kk].stop_reason} for kk in keys},
             "retrained": {kk: {"every": int(cfg.retrain_every), "order": retrained[kk].order(kk),
                                "points": retrained[kk].retrained} for kk in retrained},
             "car_index": {kk: [float(v) for v in car_full[kk]] for kk in keys},
             "carc": carc_out, "carc_views": fig9, "compressed": compressed,
             "scoring_examples": d["scoring_examples"], "test_examples": d["evaluation_examples"],
             "num_devices": int(mesh.devices.size), "time_s": time.time() - t0}
  reporting.write_results(workdir, results, config, method="car")
  reporting.write_report(workdir, f"CAR compression of {config.model.name} on {config.dataset.name}",
                         {"test_accuracy": reference, "scoring_accuracy": reference_scoring,
                          "time_s": results["time_s"]}, config,
                         sections=report.sections(keys, results, cfg), figures=names)
  return results
