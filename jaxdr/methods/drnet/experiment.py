"""The DRNet experiment: dissect a trained CNN, then evaluate its sub-tasks.

Commands (``config.drnet.stage``: 'all' = dissect + evaluate, 'dissect' = CIV only):

    python -m jaxdr.main --config=configs/drnet_fashion_mnist.py --workdir=DIR \
        [--config.pretrained=TRAINED_WORKDIR] [--config.drnet.stage=dissect]

The model is ``config.pretrained`` or, if empty, trained first into ``DIR/train``
(`toolkit.base.load_or_train`). Dissection (`dissection.Dissection`) keeps its resumable
state in ``DIR/civ`` and writes ``DIR/civ.npz``. Evaluation writes ``DIR/results.json``
(``subtasks``, ``summary`` with Table 6's ``max|mean|min_accuracy_change``, ``dissection``
with the top-1 resets per class, ``civ_similarity``), ``DIR/report.md`` (tables like DRNet's
Tables 1-6, `report`) and the PNGs ``civ_similarity.png`` (Formula 5, Figure 8),
``layer_channels.png`` (Figure 7) and ``subtask_accuracy_{2,3}class.png`` (Figures 5-6).
"""
from __future__ import annotations

import time
from typing import Dict, List

from absl import logging
from etils import epath
import numpy as np

from jaxdr import costs, data, models, reporting
from jaxdr.errors import ConfigError
from jaxdr.methods.drnet import dissection as dissection_lib
from jaxdr.methods.drnet import report as report_lib
from jaxdr.methods.drnet import subtasks as subtasks_lib
from jaxdr.methods.drnet.cciv import civ_similarity
from jaxdr.methods.drnet.options import DrnetOptions
from jaxdr.toolkit import base


def _log_resets(stats: Dict[str, np.ndarray], class_names, opts: DrnetOptions) -> None:
  """One log line per class: images kept at the all-ones start (resets) and top-1 changes."""
  for c in np.flatnonzero(stats["images"] > 0):
    name = class_names[c] if c < len(class_names) else str(c)
    logging.info("drnet: class %-14s %d/%d images reset to all-ones gates (%.1f%%), last iterate changed "
                 "top-1 for %d (on_top1_change=%s, reset_civ=%s)", name, stats["resets"][c], stats["images"][c],
                 100 * stats["resets"][c] / stats["images"][c], stats["changed"][c], opts.cdrp.on_top1_change,
                 opts.reset_civ)
    if opts.reset_civ == "exclude" and stats["resets"][c] == stats["images"][c]:
      logging.warning("drnet: every image of class %s was reset: its CIV stays all ones", name)


def run(config, workdir) -> dict:
  """Dissects the trained model of ``config`` and evaluates its sub-tasks (module docstring)."""
  opts = DrnetOptions.from_config(config.drnet, "drnet")
  workdir = epath.Path(workdir)
  ds_name, num_classes = config.dataset.name, int(config.dataset.num_classes)
  info = data.info(ds_name)
  class_names = list(info.class_names) or [str(i) for i in range(num_classes)]
  model, variables = base.load_or_train(config, workdir)
  gate_keys = [g.key for g in models.describe(model).gates]
  unknown = [k for k in opts.report_layers if k not in gate_keys]
  if unknown:
    raise ConfigError(f"drnet.report_layers names no gate point of {config.model.name}: {unknown}; "
                      f"gate points: {', '.join(gate_keys)}")
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
  dissection = dissection_lib.Dissection(model, num_classes, opts.cdrp, workdir / "civ", opts.reset_civ)
  civ = dissection.run(variables, train_images, train_labels, indices, int(opts.batch_size),
                       int(opts.save_every))
  dissect_s = time.time() - t0
  _log_resets(dissection.stats, class_names, opts)
  calibration = (train_images, train_labels)  # the dissection images (N per class)
  dissection_lib.save_civ(workdir, civ)
  if opts.stage == "dissect":
    stats = {k: v.tolist() for k, v in dissection.stats.items()}
    return {"stage": "dissect", "civ_images": int(indices.size), "dissect_time_s": dissect_s, "class_counts": stats}

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
  full_row = {"name": f"{len(pool)} classes", "classes": pool,
              "full_accuracy": subtasks_lib.baseline_accuracies(full_logits, test_labels, pool)[opts.baseline],
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
  figures = report_lib.draw_figures(workdir, sim, class_names, named, randoms, opts.baseline)
  per_class = report_lib.class_stats(dissection.stats, civ, class_names, opts, randoms)
  evaluate_s = time.time() - t1

  metrics = {"full_test_accuracy": full_row["full_accuracy"], "baseline": opts.baseline,
             "on_top1_change": opts.cdrp.on_top1_change, "reset_civ": opts.reset_civ,
             "reset_rate": per_class["reset_rate"], "changed_rate": per_class["changed_rate"]}
  for size in ("2", "3"):
    s = summary.get(size, {})
    metrics.update({f"mean_accuracy_drop_{size}class": s.get("accuracy_drop"),
                    f"mean_running_channels_{size}class": s.get("running_channels"),
                    f"max_accuracy_change_{size}class": s.get("max_accuracy_change"),
                    f"min_accuracy_change_{size}class": s.get("min_accuracy_change")})
  metrics.update({"civ_images": int(indices.size), "dissect_time_s": dissect_s, "evaluate_time_s": evaluate_s,
                  "sliced_compiles": runner.sliced_compiles})
  results: Dict = dict(metrics, full_task=full_row, subtasks=named + randoms, summary=summary,
                       summary_scope="random sub-tasks, by size", dissection=per_class, civ_similarity=sim,
                       class_names=class_names, class_pool=pool)
  reporting.write_results(workdir, results, config, method="drnet")
  reporting.write_report(workdir, f"DRNet: {config.model.name} on {ds_name}", metrics, config,
                         sections=report_lib.report_sections(full_row, named, randoms, summary, per_class, opts),
                         figures=figures)
  for size, s in summary.items():
    logging.info("drnet: %d random %s-class sub-tasks: full %.4f sub %.4f drop %.2f points (change max %+.2f "
                 "min %+.2f), running channels %.3f params %.3f flops %.3f", s["count"], size, s["full_accuracy"],
                 s["sub_accuracy"], 100 * s["accuracy_drop"], 100 * s["max_accuracy_change"],
                 100 * s["min_accuracy_change"], s["running_channels"], s["running_params"], s["running_flops"])
  logging.info("drnet: results in %s", workdir / reporting.RESULTS_FILE)
  return results
