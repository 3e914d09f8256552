"""Supervised training of a config's model on its dataset (the 'train' method and base models).

    metrics = training.train_and_evaluate(config, workdir)   # trains, evaluates, saves workdir/model
"""
from __future__ import annotations

from typing import Any, Dict

from etils import epath
import flax.linen as nn
import ml_collections

from jaxdr import checkpoints, models
from jaxdr.training import distributed, inputs
from jaxdr.training.evaluation import split_evaluator
from jaxdr.training.loop import fit
from jaxdr.training.options import TrainOptions


def model_kwargs(config: ml_collections.ConfigDict) -> Dict[str, Any]:
  """Constructor arguments of the model ``config`` trains (``conv_impl`` is a run option)."""
  ds = config.dataset
  return dict(name=config.model.name, num_classes=int(ds.num_classes), image_size=int(ds.image_size),
              input_channels=int(ds.input_channels), width=float(config.model.width),
              conv_impl=config.model.get("conv_impl", "auto"),
              channels=dict(config.model.get("channels", None) or {}))


def create_model(config: ml_collections.ConfigDict) -> nn.Module:
  return models.create(**model_kwargs(config))


def dataset_source(config: ml_collections.ConfigDict) -> inputs.DatasetSource:
  ds = config.dataset
  return inputs.DatasetSource(ds.name, ds.get("data_dir", "") or None, int(ds.image_size))


def test_evaluator(config: ml_collections.ConfigDict, mesh, logits_fn):
  """`split_evaluator` on the config's test split (``train.num_eval_examples``, eval batch size)."""
  options = TrainOptions.from_config(config.train, "train")
  ds = config.dataset
  return split_evaluator(mesh, logits_fn, dataset=ds.name, batch_size=options.eval_size,
                         data_dir=ds.get("data_dir", "") or None, image_size=int(ds.image_size),
                         limit=options.num_eval_examples)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir) -> Dict[str, Any]:
  """Trains ``config``'s model into ``workdir`` (resuming from its checkpoints), evaluates it
  on the test split and saves it to ``workdir/model``. Returns the final metrics
  (``test_accuracy`` a fraction, ``train_time_s``, ...)."""
  workdir = epath.Path(workdir)
  options = TrainOptions.from_config(config.train, "train")
  model = create_model(config)
  evaluator = test_evaluator(config, distributed.data_mesh(),
                             lambda variables, images: models.apply(model, variables, images))
  result = fit(model, options, dataset_source(config), seed=int(config.seed), workdir=workdir,
               evaluate=lambda variables, extra: evaluator(variables))
  checkpoints.save_model(workdir / "model", config.model.name, model_kwargs(config), result.variables)
  return result.metrics
