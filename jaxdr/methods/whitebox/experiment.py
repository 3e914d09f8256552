"""The White-Box experiment: prune a CNN to a MACs budget with class-wise masks, against the
L1-norm filter baseline and the paper's two ablations, on one base network and one fine-tuning.

    python -m jaxdr.main --config=configs/whitebox_fashion_mnist.py --workdir=DIR \
        [--config.pretrained=TRAINED]

1. the base model: ``config.pretrained``, or trained into ``DIR/train`` (`toolkit.base`);
2. per variant (``whitebox.variants``): scores -- class-wise masks trained jointly with the weights
   ('whitebox' soft labels, 'hard' one-hot, 'shared' one mask; from the base weights or from
   scratch, ``whitebox.masks_from``) or the base model's filter L1 norms ('l1');
3. the global vote to ``whitebox.target`` of the MACs, the fold of the class-agnostic gate, the
   cut (``whitebox.finetune_from``: the mask-trained weights, or the base's with nothing folded;
   `toolkit.compression`: params / MACs / bytes before and after), fine-tuning
   (``whitebox.finetune``, once per ``whitebox.finetune_seeds``: accuracies are their means) and
   the pruned model saved with orbax in ``DIR/<variant>/pruned`` (`checkpoints.load_model` gives
   an ordinary model);
4. accuracy vs MACs before fine-tuning at ``whitebox.curve_targets``; every pruned model timed
   against the unpruned one in one alternating loop (`compression.time_side_by_side`); the
   figures, ``results.json`` and ``report.md``.
Every training checkpoints under ``DIR/<variant>/`` and a rerun resumes it.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Dict

from absl import logging
from etils import epath
import numpy as np

from jaxdr import checkpoints, costs, data, models, reporting, training
from jaxdr.errors import ConfigError
from jaxdr.methods.whitebox import baselines, class_masks, objective, report, stages, voting
from jaxdr.methods.whitebox.options import GATINGS, WhiteboxOptions
from jaxdr.toolkit import base, compression

PROBE_IMAGES = 64


def _check_labels(config) -> None:
  """The dataset's labels fit the class-wise masks' rows."""
  ds = config.dataset
  info = data.info(ds.name)
  if int(ds.num_classes) != info.num_classes:
    raise ConfigError(f"dataset.num_classes is {ds.num_classes} but {ds.name} has labels "
                      f"0..{info.num_classes - 1}: class-wise masks need one row per label")


def _check_model(config, model) -> None:
  """The base model is the config's: its images, classes and width."""
  ds = config.dataset
  want = dict(num_classes=int(ds.num_classes), image_size=int(ds.image_size),
              input_channels=int(ds.input_channels))
  got = {k: int(getattr(model, k)) for k in want}
  if got != want:
    raise ConfigError(f"the base model takes {got}, the config's dataset gives {want}")
  if float(model.width) != float(config.model.width):  # the pruned model is saved with the config's width
    raise ConfigError(f"the base model has width {model.width}, config.model.width is {config.model.width}")


def _gates(opts, graph):
  """The masked gate keys (ConfigError when one is not prunable or the target is out of reach)."""
  keys = tuple(opts.gates) or voting.default_gates(graph)
  voting.check_prunable(graph, keys)
  voting.check_reachable(graph, keys, opts.target, opts.min_keep_fraction, opts.channel_multiple)
  return keys


def _scores(variant, opts, config, model, variables, keys, source, evaluator, workdir):
  """(scores, fold vectors or None, the variables to prune, masks or None, training metrics)."""
  graph = models.describe(model)
  if variant == "l1":
    return baselines.l1_scores(graph, variables, keys), None, variables, None, {}
  gating = GATINGS[variant]
  k = int(config.dataset.num_classes)
  ev = evaluator(lambda v, x: objective.gated_logits(model, v["variables"], v["masks"], x, gating))
  # With finetune_from='base' the mask-trained network is not used (the masks only vote): its
  # accuracy under the class-agnostic gate may fall to chance (one-hot masks grow class-specific)
  # without harm, so only a non-finite loss stops the run.
  collapse = opts.collapse_factor if opts.finetune_from == "masked" else 0.0
  checked = stages.guard(lambda v, masks: ev({"variables": v, "masks": masks}), f"{variant} mask training",
                         k, collapse)
  result = stages.train_masks(
      model, opts.mask_train, source, keys, num_classes=k, gating=gating, sparsity=opts.sparsity,
      init_value=opts.mask_init, mask_lr=opts.mask_lr or None,
      init_variables=variables if opts.masks_from == "base" else None,
      seed=int(config.seed), workdir=workdir / "masks", evaluate=checked, name=f"{variant} masks")
  masks = {key: np.asarray(m) for key, m in result.extra[objective.MASKS].items()}
  if opts.finetune_from == "base":  # the masks only vote: the base weights are cut, nothing folded
    return class_masks.scores(masks), None, variables, masks, result.metrics
  return (class_masks.scores(masks), class_masks.fold_vectors(masks, gating), result.variables, masks,
          result.metrics)


def _curve(opts, graph, model, variables, scores, folds, test_x, test_y):
  """Accuracy before fine-tuning (the masked network == the folded and cut one) per target."""
  points = []
  for t in opts.curve_targets:
    try:
      v = voting.vote(graph, scores, t, opts.min_keep_fraction, opts.channel_multiple)
    except ConfigError:  # beyond what the per-layer minimum allows
      continue
    acc = training.evaluate(model, variables, test_x, test_y, mask=stages.pruned_gates(v, folds))
    points.append({"target": t, "reduction": v.reduction, "macs": v.macs_after, "accuracy": acc})
  return points


def run(config, workdir) -> Dict[str, Any]:
  """Runs the experiment of the module docstring; returns (and writes) the results."""
  opts = WhiteboxOptions.from_config(config.whitebox, "whitebox")
  workdir = epath.Path(workdir)
  t0 = time.time()
  workdir.mkdir(parents=True, exist_ok=True)
  _check_labels(config)
  if not config.get("pretrained", ""):  # check the gates and the budget before training the base
    _gates(opts, models.describe(training.create_model(config)))
  model, variables = base.load_or_train(config, workdir)
  _check_model(config, model)
  graph = models.describe(model)
  keys = _gates(opts, graph)
  num_classes = int(config.dataset.num_classes)
  mesh = training.data_mesh()
  source = training.dataset_source(config)
  evaluator = lambda logits_fn: training.test_evaluator(config, mesh, logits_fn)  # noqa: E731
  base_metrics = evaluator(lambda v, x: models.apply(model, v, x))(variables)
  base_costs = costs.count(model)
  logging.info("whitebox: base %s, test accuracy %.4f, %d MACs; masking %d gate points %s",
               config.model.name, base_metrics["test_accuracy"], base_costs.macs, len(keys), list(keys)[:4])
  probe_x, _ = base.arrays(config, "test", limit=PROBE_IMAGES)
  test_x = test_y = None
  if opts.curve_targets:
    test_x, test_y = base.arrays(config, "test", limit=opts.curve_examples)

  variants, curves, masks_of, done = {}, {}, {}, {}
  for variant in opts.variants:
    vdir = workdir / variant
    scores, folds, pruned_from, masks, mask_metrics = _scores(variant, opts, config, model, variables, keys,
                                                              source, evaluator, vdir)
    if masks is not None:
      masks_of[variant] = masks
    cut = stages.prune(model, pruned_from, scores, folds, target=opts.target,
                       min_keep_fraction=opts.min_keep_fraction, channel_multiple=opts.channel_multiple,
                       probe=probe_x, fold_into=opts.fold_into)  # timed below, beside the others
    small_eval = evaluator(lambda v, x, m=cut.model: models.apply(m, v, x))
    acc_cut = small_eval(cut.variables)["test_accuracy"]
    runs = []
    for i, seed in enumerate(opts.finetune_seeds or (int(config.seed),)):  # the first is saved
      runs.append(stages.finetune(
          cut.model, cut.variables, opts.finetune, source, seed=int(seed),
          workdir=vdir / ("finetune" if i == 0 else f"finetune_seed{seed}"),
          name=f"{variant} finetune" + (f" (seed {seed})" if opts.finetune_seeds else ""),
          evaluate=stages.guard(small_eval, f"{variant} fine-tuning", num_classes, opts.collapse_factor)))
    tuned = runs[0]
    kwargs = {**training.model_kwargs(config), "channels": dict(cut.model.channels)}
    saved = checkpoints.save_model(vdir / "pruned", config.model.name, kwargs, tuned.variables)
    if test_x is not None:
      curves[variant] = _curve(opts, graph, model, pruned_from, scores, folds, test_x, test_y)
    done[variant] = (cut, acc_cut, [r.metrics for r in runs], mask_metrics,
                     str(saved.relative_to(workdir)) if str(saved).startswith(str(workdir)) else str(saved))

  # Every pruned model and the unpruned one timed in one alternating loop per batch size.
  timings = compression.time_side_by_side(
      model, variables, {v: (cut.model, cut.variables, None) for v, (cut, *_) in done.items()},
      opts.latency_batch_sizes, opts.latency_repeats)
  for variant, (cut, acc_cut, runs, mask_metrics, saved_to) in done.items():
    cut = dataclasses.replace(cut, summary=dataclasses.replace(cut.summary, latency=timings[variant]))
    variants[variant] = report.variant_results(variant, cut, acc_cut, runs, mask_metrics,
                                               base_metrics["test_accuracy"], saved_to=saved_to)
    logging.info("whitebox: %s: %.2f%% MACs removed, test accuracy %.4f cut, %.4f fine-tuned (base %.4f)",
                 variant, 100 * cut.vote.reduction, acc_cut, variants[variant]["test_accuracy"],
                 base_metrics["test_accuracy"])

  results = report.results(config, opts, keys, base_metrics, base_costs, variants, curves,
                           time_s=time.time() - t0)
  figures = report.figures(workdir, graph, opts, keys, variants, curves, masks_of, base_metrics,
                           data.info(config.dataset.name).class_names)
  reporting.write_results(workdir, results, config, method="whitebox")
  reporting.write_report(workdir, f"White-Box pruning of {config.model.name} on {config.dataset.name}",
                         report.headline(results), config, sections=report.sections(results), figures=figures)
  return results
