"""The DRNet experiment: dissect a trained CNN, then evaluate its sub-tasks.

Commands (``config.drnet.stage``: 'all' = dissect + evaluate, 'dissect' = CIV only):

    python -m jaxdr.main --config=configs/drnet_fashion_mnist.py --workdir=DIR \
        [--config.pretrained=TRAINED_WORKDIR] [--config.drnet.stage=dissect]

The model is ``config.pretrained`` or, if empty, trained first into ``DIR/train``
(`toolkit.base.load_or_train`). Dissection (`dissection.Dissection`) keeps its resumable
state in ``DIR/civ`` and writes ``DIR/civ.npz``. Evaluation writes ``DIR/results.json``
(``subtasks``, ``summary``, ``civ_similarity``), ``DIR/report.md`` (tables like DRNet's
Tables 1-5) and the PNGs ``civ_similarity.png`` (Formula 5) and ``layer_channels.png``
(Figure 7).
"""
from __future__ import annotations

import time
from typing import Dict, List

from absl import logging
from etils import epath
import numpy as np

from jaxdr import costs, data, models, reporting
from jaxdr.methods.drnet import dissection as dissection_lib
from jaxdr.methods.drnet import subtasks as subtasks_lib
from jaxdr.methods.drnet.cciv import civ_similarity
from jaxdr.methods.drnet.options import DrnetOptions
from jaxdr.toolkit import base, plots


def _pct(x: float) -> str:
  return f"{100 * x:.2f}%"


def _report_sections(full_row: dict, named: List[dict], randoms: List[dict], summary: dict) -> list:
  def row(r):
    out = {"sub-task": r["name"], "Full-Net Acc.": _pct(r["full_accuracy"]),
           "Sub-Net Acc.": _pct(r["sub_accuracy"]), "Running Channels": _pct(r["running_channels"]),
           "Running Param.": f"{r['running_params_count'] / 1e6:.3f}M ({_pct(r['running_params'])})",
           "Running FLOPs": f"{r['running_flops_count'] / 1e6:.2f}M ({_pct(r['running_flops'])})"}
    if "physical_params" in r:
      out["Sliced Param. / FLOPs"] = f"{_pct(r['physical_params'])} / {_pct(r['physical_flops'])}"
    if "sliced_agreement" in r:
      out["Sliced == Masked"] = _pct(r["sliced_agreement"])
    return out
  sections = []
  rows = [row(full_row)] + [row(r) for r in named]
  columns = max((list(r) for r in rows), key=len)
  sections.append(("Named sub-tasks (cf. DRNet Tables 1-3)", reporting.markdown_table(rows, columns)))
  avg = []
  for size, s in summary.items():
    r = {"sub-tasks": f"{s['count']} random {size}-class", "Full-Net Avg Acc.": _pct(s["full_accuracy"]),
         "Sub-Net Avg Acc.": _pct(s["sub_accuracy"]), "Avg Acc. Drop": _pct(s["accuracy_drop"]),
         "Avg Running Channels": _pct(s["running_channels"]), "Avg Running Param.": _pct(s["running_params"]),
         "Avg Running FLOPs": _pct(s["running_flops"])}
    if "physical_flops" in s:
      r["Avg Sliced Param. / FLOPs"] = f"{_pct(s['physical_params'])} / {_pct(s['physical_flops'])}"
    avg.append(r)
  sections.append(("Random sub-tasks, averages (cf. DRNet Tables 4-5)", reporting.markdown_table(avg)))
  if randoms:
    sections.append(("Every random sub-task", reporting.markdown_table([row(r) for r in randoms])))
  return sections


def _figures(workdir: epath.Path, sim: np.ndarray, class_names, fig_rec) -> List[str]:
  plots.heatmap(sim, workdir / "civ_similarity.png", row_labels=class_names, col_labels=class_names,
                xlabel="class", ylabel="class", colorbar_label="IoU of important-channel sets (fraction)",
                title="Class similarity (DRNet Formula 5)", vmin=0.0, vmax=1.0)
  figures = ["civ_similarity.png"]
  if fig_rec is not None:
    keys = list(fig_rec["layer_channels"])
    plots.bars({"channels": [fig_rec["layer_channels"][k][1] for k in keys],
                "running channels": [fig_rec["layer_channels"][k][0] for k in keys]},
               keys, workdir / "layer_channels.png", xlabel="gate point", ylabel="channels (count)",
               title=f"Layer-wise running channels: {fig_rec['name']} (DRNet Figure 7)",
               colors=("tab:blue", "tab:pink"))
    figures.append("layer_channels.png")
  return figures


def run(config, workdir) -> dict:
  """Dissects the trained model of ``config`` and evaluates its sub-tasks (module docstring)."""
  opts = DrnetOptions.from_config(config.drnet, "drnet")
  workdir = epath.Path(workdir)
  ds_name, num_classes = config.dataset.name, int(config.dataset.num_classes)
  info = data.info(ds_name)
  class_names = list(info.class_names) or [str(i) for i in range(num_classes)]
  model, variables = base.load_or_train(config, workdir)
  data_dir = config.dataset.get("data_dir", "") or None
  image_size = int(config.dataset.image_size)
  seed = int(config.seed)

  # Which classes take part (ImageNet: a seeded pool, as DRNet section 4.5).
  pool = list(range(num_classes))
  if opts.class_pool:
    pool = sorted(np.random.default_rng(seed).choice(num_classes, int(opts.class_pool), replace=False))

  t0 = time.time()
  train_images, train_labels = dissection_lib.collect_images(
      ds_name, "train", pool, int(opts.images_per_class), seed, data_dir, image_size, int(opts.train_limit))
  indices = np.arange(len(train_labels))
  dissection = dissection_lib.Dissection(model, num_classes, opts.cdrp, workdir / "civ")
  civ = dissection.run(variables, train_images, train_labels, indices, int(opts.batch_size),
                       int(opts.save_every))
  dissect_s = time.time() - t0
  calibration = (train_images, train_labels)  # the dissection images (N per class)
  dissection_lib.save_civ(workdir, civ)
  if opts.stage == "dissect":
    return {"stage": "dissect", "civ_images": int(indices.size), "dissect_time_s": dissect_s}

  t1 = time.time()
  if info.in_memory:
    test_images, test_labels = base.arrays(config, "test", limit=int(opts.test_limit))
  else:  # ImageNet: the validation images of the class pool only
    test_images, test_labels = dissection_lib.collect_images(ds_name, "test", pool, int(opts.test_per_class),
                                                             seed, data_dir, image_size)
  keep = np.isin(test_labels, pool)
  test_images, test_labels = test_images[keep], test_labels[keep]
  runner = subtasks_lib.SubtaskRunner(model, variables, int(opts.eval_batch_size))
  full_logits = runner.logits(test_images)
  full_costs = costs.count(models.describe(model))
  in_pool = subtasks_lib.logit_mask(pool, num_classes)
  full_row = {"name": f"{len(pool)} classes", "classes": pool,
              "full_accuracy": float(np.mean(np.argmax(np.where(in_pool, full_logits, -np.inf), -1)
                                             == test_labels)),
              "running_channels": 1.0, "running_params": 1.0, "running_flops": 1.0,
              "running_params_count": int(full_costs.params), "running_flops_count": int(full_costs.macs)}
  full_row["sub_accuracy"] = full_row["full_accuracy"]

  def evaluate(classes, kind, name):
    physical = opts.run_sliced == "all" or (opts.run_sliced == "named" and kind == "named")
    rec = subtasks_lib.evaluate_subtask(runner, civ, classes, test_images, test_labels, full_logits, opts,
                                        physical, calibration)
    rec.update(kind=kind, name=name)
    logging.info("drnet: %-28s full %.4f sub %.4f channels %.3f params %.3f flops %.3f", name,
                 rec["full_accuracy"], rec["sub_accuracy"], rec["running_channels"],
                 rec["running_params"], rec["running_flops"])
    return rec

  named = [evaluate(ids, "named", name) for name, ids in subtasks_lib.named_subtasks(opts, ds_name, class_names)
           if set(ids) <= set(pool)]
  randoms = []
  for size, count in ((2, int(opts.random_2class)), (3, int(opts.random_3class))):
    for ids in subtasks_lib.random_subtasks(pool, size, count, seed + size):
      randoms.append(evaluate(ids, "random", "-".join(class_names[i] for i in ids)))
  summary = subtasks_lib.summarise(randoms)
  sim = civ_similarity(civ, float(opts.similarity_eps))
  figures = _figures(workdir, sim, class_names, named[0] if named else (randoms[0] if randoms else None))
  evaluate_s = time.time() - t1

  two = summary.get("2", {})
  metrics = {
      "full_test_accuracy": full_row["full_accuracy"],
      "mean_accuracy_drop_2class": two.get("accuracy_drop"),
      "mean_running_channels_2class": two.get("running_channels"),
      "mean_accuracy_drop_3class": summary.get("3", {}).get("accuracy_drop"),
      "mean_running_channels_3class": summary.get("3", {}).get("running_channels"),
      "civ_images": int(indices.size), "dissect_time_s": dissect_s, "evaluate_time_s": evaluate_s,
      "sliced_compiles": runner.sliced_compiles,
  }
  results: Dict = dict(metrics, full_task=full_row, subtasks=named + randoms, summary=summary,
                       summary_scope="random sub-tasks, by size", civ_similarity=sim,
                       class_names=class_names, class_pool=pool)
  reporting.write_results(workdir, results, config, method="drnet")
  reporting.write_report(workdir, f"DRNet: {config.model.name} on {ds_name}", metrics, config,
                         sections=_report_sections(full_row, named, randoms, summary), figures=figures)
  for size, s in summary.items():
    logging.info("drnet: %d random %s-class sub-tasks: full %.4f sub %.4f drop %.2f points, running "
                 "channels %.3f params %.3f flops %.3f", s["count"], size, s["full_accuracy"],
                 s["sub_accuracy"], 100 * s["accuracy_drop"], s["running_channels"], s["running_params"],
                 s["running_flops"])
  logging.info("drnet: results in %s", workdir / reporting.RESULTS_FILE)
  return results
