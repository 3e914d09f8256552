"""The ``train`` config section: optimiser, schedule, loop lengths, logging (defaults once)."""
from __future__ import annotations

import dataclasses

from jaxdr import options

SCHEDULES = ("cosine", "step", "constant", "inv")


@dataclasses.dataclass(frozen=True)
class TrainOptions(options.Options):
  """How a network is trained (`jaxdr.training.fit`).

  Optimiser: SGD (+ momentum / Nesterov) with L2 weight decay on conv / dense kernels added to
  the gradient before momentum (PyTorch's ``SGD(weight_decay=)``, what the papers used).
  Schedule: linear warm-up from 0 over ``warmup_epochs``, then 'cosine' (to 0 at the last
  step), 'step' (x ``gamma`` at each epoch in ``milestones``), 'constant', or 'inv' (Caffe:
  x (1 + gamma * step) ** -power). Knobs at 0 are off / take their default:
  ``log_every_steps`` and ``checkpoint_every_steps`` (0: once per epoch), ``eval_batch_size``
  (0: ``batch_size``), ``max_steps`` (stop early; the schedule spans the run),
  ``steps_per_epoch`` (override the epoch length, e.g. a small subset in tests),
  ``num_eval_examples`` (evaluate on the first N test examples only).
  """
  batch_size: int = 128
  epochs: float = 10
  optimizer: str = "sgd"
  learning_rate: float = 0.1
  momentum: float = 0.9
  nesterov: bool = False
  weight_decay: float = 5e-4
  schedule: str = "cosine"
  warmup_epochs: float = 0.0
  milestones: tuple = ()
  gamma: float = 0.1
  power: float = 1.0
  log_every_steps: int = 0
  checkpoint_every_steps: int = 0
  eval_batch_size: int = 0
  eval_every_epochs: int = 1
  max_steps: int = 0
  steps_per_epoch: int = 0
  num_eval_examples: int = 0

  def __post_init__(self):
    options.check(self.batch_size >= 1, f"train.batch_size must be >= 1, got {self.batch_size}")
    options.check(self.epochs > 0 or self.max_steps > 0,
                  f"train.epochs must be > 0 (or set train.max_steps), got {self.epochs}")
    options.check(self.optimizer == "sgd", f"train.optimizer must be 'sgd', got {self.optimizer!r}")
    options.check(self.schedule in SCHEDULES,
                  f"train.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
    for name in ("max_steps", "steps_per_epoch", "num_eval_examples", "log_every_steps",
                 "checkpoint_every_steps", "eval_batch_size"):
      options.check(getattr(self, name) >= 0, f"train.{name} must be >= 0, got {getattr(self, name)}")
    options.check(self.eval_every_epochs >= 1,
                  f"train.eval_every_epochs must be >= 1, got {self.eval_every_epochs}")

  @property
  def eval_size(self) -> int:
    return self.eval_batch_size or self.batch_size
