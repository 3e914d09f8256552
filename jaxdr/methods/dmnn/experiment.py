"""The 'dmnn' method: train a DMNN on the shared trainer, evaluate its paths, compare its twin.

    python -m jaxdr.main --config=configs/dmnn_fashion_mnist.py --workdir=DIR

1. Trains the config's DMNN model (``model.name``, a `models.DMNN` name) with the DMNN loss
   (`losses`) through `training.fit` into DIR (orbax checkpoints: a rerun resumes; metrics.jsonl,
   TensorBoard; data parallel over every device of every process) and saves DIR/model.
2. Evaluates it with argmax gates (`evaluate`): top-1, params, mean executed FLOPs and its ratio
   to the all-on network, the per-image FLOPs histogram, sub-block execution rates per
   superclass, the easiest / hardest test images; also the accuracy with every sub-block on.
3. With ``dmnn.twin``, trains the plain network it was split from identically into DIR/twin
   (`training.train_and_evaluate`: same train options, seed and batches) and compares.
Writes DIR/results.json, DIR/report.md and the PNG figures.
"""
from __future__ import annotations

from typing import Any, Dict

from absl import logging
from etils import epath
import ml_collections

from jaxdr import checkpoints, costs, data, masks, models, reporting, training
from jaxdr.errors import ConfigError
from jaxdr.methods.dmnn import evaluate, flops, losses, plots
from jaxdr.methods.dmnn.options import DmnnOptions
from jaxdr.models import dmnn_nets

# The paper's parameter counts (Tables 1, 2) of the ImageNet models at width 1.
PAPER_PARAMS = {("dmnn50", 2): 24.67e6, ("dmnn50", 3): 25.81e6, ("dmnn50", 4): 25.81e6,
                ("dmnn101", 2): 43.12e6, ("dmnn_mobilenet_v2", 2): 3.63e6,
                ("dmnn_mobilenet_v2_1.4", 2): 6.29e6}


def superclass_table(dataset: str, required: bool):
  """``(names, class -> superclass)`` of the dataset's superclass map; without a map, each
  class its own group (a ConfigError when ``required``: the category loss needs one)."""
  try:
    groups = data.superclasses(dataset)
  except ConfigError as e:
    if required:
      raise ConfigError(f"{e} (the DMNN category loss needs one; set dmnn.category_loss=False "
                        "to train without it)") from e
    names = data.info(dataset).class_names or tuple(str(i) for i in range(data.info(dataset).num_classes))
    return list(names), list(range(len(names)))
  return [name for name, _ in groups], data.class_to_superclass(dataset)


def model_kwargs(config: ml_collections.ConfigDict, opts: DmnnOptions, categories: int) -> Dict[str, Any]:
  """Constructor arguments of the DMNN model ``config`` trains (saved with it)."""
  name = config.model.name
  if name not in models.DMNN:
    raise ConfigError(f"model.name must be a DMNN model ({', '.join(models.DMNN)}), got {name!r}")
  kwargs = training.model_kwargs(config)
  kwargs.update(paths=opts.paths, hidden=opts.hidden, categories=categories,
                previous_state=opts.previous_state, temperature=opts.temperature,
                gate_bias=tuple(float(b) for b in opts.gate_bias))
  return kwargs


def _train_twin(config, workdir: epath.Path) -> Dict[str, Any]:
  twin_config = ml_collections.ConfigDict(config.to_dict())
  twin_config.method = "train"
  twin_config.model.name = dmnn_nets.twin(config.model.name)
  metrics = training.train_and_evaluate(twin_config, workdir)
  model = training.create_model(twin_config)
  count = costs.count(model)
  return {"name": twin_config.model.name, "test_accuracy": metrics.get("test_accuracy"),
          "params": int(count.params), "macs": int(count.macs),
          "train_time_s": metrics.get("train_time_s")}


def _report(workdir, config, results: Dict[str, Any], table: flops.CostTable, figures) -> None:
  rows = [{"network": f"DMNN ({config.model.name}, N={results['paths']}, r={results['target_rate']:g})",
           "top-1": results["test_accuracy"], "params": results["params"],
           "MACs (mean executed)": results["mean_executed_macs"], "FLOPs ratio": results["flops_ratio"]},
          {"network": "same DMNN, every sub-block on", "top-1": results["all_on_accuracy"],
           "params": results["params"], "MACs (mean executed)": table.total_macs, "FLOPs ratio": 1.0}]
  if "twin" in results:
    t = results["twin"]
    rows.append({"network": f"plain twin ({t['name']}, trained identically)", "top-1": t["test_accuracy"],
                 "params": t["params"], "MACs (mean executed)": t["macs"],
                 "FLOPs ratio": t["macs"] / table.total_macs})
  cost_rows = [{"part": "inference network, all sub-blocks on", "params": table.backbone_params,
                "MACs": table.total_macs},
               {"part": "always-on part (stem, shortcuts, static blocks, classifier)", "params": "",
                "MACs": table.base_macs},
               {"part": "controllers (W1, W2, W3)", "params": table.controller_params,
                "MACs": table.controller_macs},
               {"part": "category heads (training only)", "params": table.category_params,
                "MACs": table.category_macs}]
  summary = results["evaluation"]
  rate_rows = [{"block": b, **{f"sub{n}": r for n, r in enumerate(rates)}}
               for b, rates in zip(table.blocks, summary["execution_rates"])]
  paths_text = (f"{summary['distinct_paths']} distinct paths over {summary['test_examples']} test images "
                "(one digit per sub-block, block-major: 1 = ran). Most common:\n\n"
                + reporting.markdown_table(summary["top_paths"]))
  flat = {k: v for k, v in results.items() if k in REPORTED}
  reporting.write_report(workdir, f"DMNN: {config.model.name} on {config.dataset.name}", flat, config,
                         sections=[("DMNN vs all-on vs plain twin", reporting.markdown_table(rows)),
                                   ("Costs (MACs per image; FLOPs in the paper)",
                                    reporting.markdown_table(cost_rows)),
                                   ("Sub-block execution rates (test set)", reporting.markdown_table(rate_rows)),
                                   ("Paths", paths_text)],
                         figures=figures)


REPORTED = ("test_accuracy", "flops_ratio", "mean_executed_macs", "total_macs", "params",
            "controller_macs", "category_macs", "all_on_accuracy", "twin_test_accuracy",
            "accuracy_gap_vs_twin", "params_vs_paper", "train_time_s", "steps", "epochs")


def run(config, workdir) -> Dict[str, Any]:
  workdir = epath.Path(workdir)
  opts = DmnnOptions.from_config(config.get("dmnn"), "dmnn")
  train_opts = training.TrainOptions.from_config(config.train, "train")
  ds = config.dataset
  group_names, group_of = superclass_table(ds.name, opts.category_loss)
  kwargs = model_kwargs(config, opts, len(group_names) if opts.category_loss else 0)
  model = models.create(**kwargs)
  table = flops.cost_table(model)
  logging.info("dmnn: %s N=%d r=%g: %d blocks, %.4gM params (+%.4gM category heads), %.4gM MACs all on",
               kwargs["name"], opts.paths, opts.target_rate, len(table.blocks), table.params / 1e6,
               table.category_params / 1e6, table.total_macs / 1e6)

  split = dict(batch_size=train_opts.eval_size, data_dir=ds.get("data_dir", "") or None,
               image_size=int(ds.image_size), limit=train_opts.num_eval_examples)
  last = {}

  def evaluator(variables, extra):
    """Accuracy and FLOPs ratio on the test split (the last evaluation is the final one)."""
    del extra
    last["ev"] = ev = evaluate.run_split(model, variables, table, ds.name, **split)
    m = max(ev.labels.size, 1)
    return {"test_loss": ev.loss_sum / m, "test_accuracy": ev.accuracy,
            "test_flops_ratio": float(ev.macs.mean() / table.total_macs) if ev.macs.size else 0.0}

  result = training.fit(model, train_opts, training.dataset_source(config),
                        objective=losses.objective(table, opts, group_of if opts.category_loss else None),
                        seed=int(config.seed), workdir=workdir, name="dmnn", evaluate=evaluator)
  checkpoints.save_model(workdir / "model", kwargs["name"], {k: v for k, v in kwargs.items() if k != "name"},
                         result.variables)
  ev = last["ev"]
  graph = models.describe(model)
  all_on = masks.ones_mask([graph.gate(k) for k, _ in graph.groups])
  all_on_ev = evaluate.run_split(model, result.variables, table, ds.name, mask=all_on, **split)
  summary = evaluate.summarise(ev, table, group_names, group_of, bins=opts.histogram_bins)
  results: Dict[str, Any] = {
      "test_accuracy": summary["test_accuracy"], "test_loss": summary["test_loss"],
      "flops_ratio": summary["flops_ratio"], "mean_executed_macs": summary["mean_executed_macs"],
      "total_macs": table.total_macs, "params": table.params, "backbone_params": table.backbone_params,
      "controller_params": table.controller_params, "category_params": table.category_params,
      "controller_macs": table.controller_macs, "category_macs": table.category_macs,
      "all_on_accuracy": all_on_ev.accuracy, "paths": opts.paths, "target_rate": opts.target_rate,
      **{k: v for k, v in result.metrics.items() if k.startswith("train_") or k in ("steps", "epochs")},
      "evaluation": summary, "cost_table": table.as_dict(), "model": kwargs}
  paper = PAPER_PARAMS.get((kwargs["name"], opts.paths))
  if paper and kwargs["width"] == 1.0 and int(ds.image_size) == 224 and int(ds.num_classes) == 1000:
    results.update(paper_params=paper, params_vs_paper=table.params / paper - 1.0)
  if opts.twin:
    twin = _train_twin(config, workdir / "twin")
    results.update(twin=twin, twin_test_accuracy=twin["test_accuracy"],
                   accuracy_gap_vs_twin=100.0 * (summary["test_accuracy"] - twin["test_accuracy"]))

  info = data.info(ds.name)
  title = f"{kwargs['name']} N={opts.paths} r={opts.target_rate:g} on {ds.name}"
  figures = []
  history = training.read_metrics(workdir)
  if history:
    reporting.plot_curves(history, workdir / "curves.png", title=title)
    figures.append("curves.png")
  plots.flops_histogram(summary, table.total_macs, opts.target_rate, workdir / "flops_histogram.png", title)
  plots.execution_rates(summary["execution_rates_by_superclass"], table.blocks, opts.paths,
                        workdir / "execution_rates.png", title)
  classes = sorted(ev.extremes)[:opts.example_classes] if opts.example_classes else []
  figures += ["flops_histogram.png", "execution_rates.png"]
  if classes:
    plots.easy_hard(ev.extremes, info.class_names, table.total_macs, info.mean, info.std,
                    workdir / "easy_hard.png", classes)
    figures.append("easy_hard.png")
  reporting.write_results(workdir, results, config, method="dmnn")
  _report(workdir, config, results, table, figures)
  return results


def load(workdir, conv_impl: str = "auto") -> tuple:
  """``(model, variables, CostTable)`` of a DMNN run's saved model (DIR or DIR/model), its convs
  run by ``conv_impl``."""
  model, variables = checkpoints.load_model(workdir, conv_impl=conv_impl)
  return model, variables, flops.cost_table(model)
