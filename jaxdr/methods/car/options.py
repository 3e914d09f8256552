"""CAR's options (the ``car`` config section, with the nested ``car.finetune``): every
default, defined once.

    opts = CarOptions.from_config(config.car, "car")          # ConfigError on an unknown key
    c.car = CarOptions().to_config(); c.car.layers = ("conv1",)   # in a config file

The greedy loop's rules default to `greedy.GreedyOptions`'s.
"""
from __future__ import annotations

import dataclasses
from typing import Tuple

from jaxdr import options as options_lib
from jaxdr.methods.car.greedy import GreedyOptions

MODES = ("single", "multi")


@dataclasses.dataclass(frozen=True)
class CarFinetuneOptions(options_lib.Options):
  """CAR + fine-tuning (section 3.1): SGD with a learning rate per layer, under the mask."""
  enabled: bool = True
  steps: int = 500
  batch_size: int = 64
  points: int = 5  # kept-filter counts fine-tuned per layer
  lr_compressed: float = 0.0  # the compressed layer
  lr_next: float = 1e-3  # the layer(s) reading it
  lr_other: float = 1e-4  # every other layer
  momentum: float = 0.9


@dataclasses.dataclass(frozen=True)
class CarOptions(options_lib.Options):
  """Layers, scoring set, greedy rules, curves and the compressed model of a CAR run."""
  layers: Tuple[str, ...] = ("conv1", "conv2")  # gate keys to compress
  mode: str = "single"  # 'single': one layer at a time (the paper); 'multi': layers compete
  score_examples: int = 2000  # scoring set from the end of the train split (never the test split)
  balanced: bool = True  # the same number per class (then CAR = mean CARc over classes)
  score_batch_size: int = 250  # images per scoring call (all candidates at once)
  per_iteration: int = GreedyOptions.per_iteration  # filters removed per greedy iteration (speed-up 1)
  subset_size: int = GreedyOptions.subset_size  # scoring images drawn per iteration (speed-up 2; 0 = all)
  min_kept: int = GreedyOptions.min_kept  # greedy runs down to this many filters (for the full curve)
  target_ratio: float = GreedyOptions.target_ratio  # stop at this compression ratio (0 = off)
  # Stop before the scoring accuracy drops by this fraction (0 = off).
  max_relative_drop: float = GreedyOptions.max_relative_drop
  final_relative_drop: float = 0.02  # the saved compressed model keeps accuracy within this fraction
  curve_points: int = 20  # kept-filter counts per curve (all counts when the layer is smaller)
  random_repeats: int = 10
  carc_top: int = 5
  train_examples: int = 0  # 0 = the whole train split (scoring set + fine-tuning data)
  eval_examples: int = 0  # 0 = the whole test split
  eval_batch_size: int = 500
  masks_per_call: int = 32  # masks vmap-ed per call when evaluating the curves
  # Forward latency of the unpruned vs the compressed model at these batch sizes (() = none).
  latency_batch_sizes: Tuple[int, ...] = (1, 256)
  finetune: CarFinetuneOptions = CarFinetuneOptions()

  def __post_init__(self):
    check = options_lib.check
    check(self.mode in MODES, f"car.mode must be one of {MODES}, got {self.mode!r}")
    check(len(self.layers) > 0, "car.layers names no layer to compress")
    check(0.0 <= self.final_relative_drop < 1.0,
          f"car.final_relative_drop must be in [0, 1), got {self.final_relative_drop}")
    for name in ("score_examples", "score_batch_size", "eval_batch_size", "masks_per_call"):
      check(getattr(self, name) >= 1, f"car.{name} must be >= 1, got {getattr(self, name)}")

  def greedy(self, seed: int) -> GreedyOptions:
    """The greedy loop's options (its scoring batch is ``score_batch_size``)."""
    return GreedyOptions(per_iteration=int(self.per_iteration), subset_size=int(self.subset_size),
                         min_kept=int(self.min_kept), target_ratio=float(self.target_ratio),
                         max_relative_drop=float(self.max_relative_drop),
                         batch_size=int(self.score_batch_size), seed=int(seed))
