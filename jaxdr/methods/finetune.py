"""Fine-tuning a masked (compressed) network with a learning rate per layer, on the trainer.

CAR's recipe (section 3.1): learning rate 0 for the compressed layer, 1e-3 for the layer after
it, 1e-4 for every other layer, 500 iterations. Any method can pass its own
``{layer key: rate}`` (`training.Objective.layer_lrs`; a rate of 0 freezes a layer bit for
bit). The mask is held during training, so pruned filters stay pruned.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional

import numpy as np

from jaxdr import models, options, training
from jaxdr.errors import ConfigError

PyTree = Any


@dataclasses.dataclass(frozen=True)
class FinetuneOptions(options.Options):
  """SGD run: ``steps`` of ``batch_size`` random training examples, ``default_lr`` for layers
  not named in the per-layer rates, momentum, weight decay (L2 on kernels), seed, and
  ``log_every`` steps between progress lines (0: at the end)."""
  steps: int = 500
  batch_size: int = 64
  default_lr: float = 1e-4
  momentum: float = 0.9
  weight_decay: float = 0.0
  seed: int = 0
  log_every: int = 0

  def train_options(self, num_examples: int) -> training.TrainOptions:
    """The trainer's options for this run: a constant rate for ``steps`` steps."""
    spe = max(num_examples // self.batch_size, 1)
    return training.TrainOptions(
        batch_size=self.batch_size, epochs=-(-self.steps // spe), max_steps=self.steps,
        learning_rate=self.default_lr, momentum=self.momentum, nesterov=False,
        weight_decay=self.weight_decay, schedule="constant", log_every_steps=self.log_every or self.steps,
        checkpoint_every_steps=self.steps)


def car_layer_rates(model, key: str, compressed: float = 0.0, following: float = 1e-3
                    ) -> Dict[str, float]:
  """The paper's rates: ``compressed`` for the layer(s) writing gate ``key``, ``following``
  for the layer(s) reading it (everything else gets ``FinetuneOptions.default_lr``)."""
  graph = models.describe(model)
  rates = {l.key: following for l in graph.consumers(key)}
  rates.update({l.key: compressed for l in graph.producers(key)})
  return rates


def finetune(model, variables: PyTree, images: np.ndarray, labels: np.ndarray,
             mask: Optional[Mapping[str, Any]], layer_lrs: Mapping[str, float],
             opts: FinetuneOptions = FinetuneOptions(), workdir=None) -> PyTree:
  """Trains ``variables`` under ``mask`` for ``opts.steps`` SGD steps on random batches of
  (images [N, H, W, C], labels [N]); returns the new variables. With ``workdir`` the run
  checkpoints there and resumes."""
  graph = models.describe(model)
  unknown = sorted(set(layer_lrs) - {l.key for l in graph.layers})
  if unknown:
    raise ConfigError(f"unknown layers in the fine-tuning rates: {unknown}")
  images, labels = np.asarray(images, np.float32), np.asarray(labels, np.int32)
  if images.shape[0] != labels.shape[0] or images.shape[0] < opts.batch_size:
    raise ConfigError(f"fine-tuning needs at least batch_size={opts.batch_size} matching images "
                      f"and labels, got {images.shape[0]} images and {labels.shape[0]} labels")
  result = training.fit(model, opts.train_options(len(labels)),
                        training.ArraySource({"image": images, "label": labels}),
                        objective=training.Objective(layer_lrs=dict(layer_lrs)), seed=opts.seed,
                        workdir=workdir, init_variables=dict(variables), mask=mask, name="finetune")
  return result.variables
