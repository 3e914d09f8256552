"""CAR's options (the ``car`` config section, with the nested ``car.finetune``): every
default, defined once.

    opts = CarOptions.from_config(config.car, "car")          # ConfigError on an unknown key
    c.car = CarOptions().to_config(); c.car.layers = ("conv1",)   # in a config file

`GreedyOptions`: the greedy loop's own rules (`greedy.greedy_compress`); ``CarOptions`` takes its
defaults from them.
"""
from __future__ import annotations

import dataclasses
from typing import Tuple

from jaxdr import options as options_lib
from jaxdr.errors import ConfigError

MODES = ("single", "multi")
SCORING_SETS = ("test_half", "validation", "train")
PAST_DROP = ("continue", "stop")
EMPTY_BRANCH = ("remove", "mask")


@dataclasses.dataclass(frozen=True)
class GreedyOptions:
  """Stopping rules and the paper's speed-ups (0 disables a rule).

  per_iteration: filters removed per iteration (the paper's tweak 1; 1 = Algorithm 1).
  subset_size: scoring images drawn afresh each iteration (tweak 2; 0 = all).
  min_kept: never keep fewer filters in a layer; 0 lets a residual branch's inner gate lose
    every filter (other layers stop at 1).
  target_ratio: stop once original / kept filters (all compressed layers) reaches it.
  max_relative_drop: the stop point: the first removal that would leave the scoring accuracy
    below (1 - max_relative_drop) x the uncompressed one (the paper's 5% for AlexNet).
  past_drop: 'continue' (greedy to min_kept, the curves' reading) or 'stop' there.
  per_iteration_past_drop: filters per iteration past the stop point (0: per_iteration).
  max_iterations: stop after this many iterations (0: no limit).
  retrain_every: fine-tune (the ``retrain`` hook) every this many iterations (0: never).
  empty_branch: 'remove' scores a branch's last filter with the branch removed (the paper),
    'mask' with its gate closed only (the branch still adds its BatchNorm shift).
  """
  per_iteration: int = 1
  subset_size: int = 0
  min_kept: int = 1
  target_ratio: float = 0.0
  max_relative_drop: float = 0.0
  past_drop: str = "continue"
  per_iteration_past_drop: int = 0
  max_iterations: int = 0
  retrain_every: int = 0
  empty_branch: str = "remove"
  batch_size: int = 1000
  seed: int = 0

  def __post_init__(self):
    check = options_lib.check
    check(self.per_iteration >= 1 and self.min_kept >= 0 and self.per_iteration_past_drop >= 0,
          f"per_iteration must be >= 1 and min_kept, per_iteration_past_drop >= 0, got "
          f"{self.per_iteration}, {self.min_kept}, {self.per_iteration_past_drop}")
    check(0.0 <= self.max_relative_drop < 1.0, f"max_relative_drop must be in [0, 1), got {self.max_relative_drop}")
    check(self.past_drop in PAST_DROP, f"past_drop must be one of {PAST_DROP}, got {self.past_drop!r}")
    check(self.empty_branch in EMPTY_BRANCH, f"empty_branch must be one of {EMPTY_BRANCH}, got {self.empty_branch!r}")
    check(self.retrain_every >= 0, f"retrain_every must be >= 0, got {self.retrain_every}")

  @property
  def past_per_iteration(self) -> int:
    return self.per_iteration_past_drop or self.per_iteration


@dataclasses.dataclass(frozen=True)
class CarFinetuneOptions(options_lib.Options):
  """CAR + fine-tuning (section 3.1): SGD with a learning rate per layer, under the mask."""
  enabled: bool = True
  steps: int = 500
  batch_size: int = 64
  points: int = 5  # kept-filter counts fine-tuned per layer (the curve)
  # Table 1's CAR + fine-tuning: fine-tune further counts (a bisection, assuming accuracy grows
  # with the filters kept) to find the fewest within the drop; False: CAR's count.
  table_search: bool = True
  lr_compressed: float = 0.0  # the compressed layer
  lr_next: float = 1e-3  # the layer(s) reading it
  lr_other: float = 1e-4  # every other layer
  momentum: float = 0.9


@dataclasses.dataclass(frozen=True)
class CarOptions(options_lib.Options):
  """Layers, scoring set, greedy rules, curves, Table 1, figures and the compressed model of a
  CAR run."""
  layers: Tuple[str, ...] = ("conv1", "conv2")  # gate keys to compress
  mode: str = "single"  # 'single': one layer at a time (the paper); 'multi': layers compete
  # Where filters are scored (`sets`): 'test_half' (the paper: one half of the test split, each
  # class split evenly; the curves and tables use the other half), 'validation' (the split
  # named by validation_split; evaluated on the test split) or 'train' (jaxdr's earlier
  # reading: score_examples from the end of the train split; needs score_examples > 0).
  scoring_set: str = "test_half"
  validation_split: str = ""
  score_examples: int = 0  # cap on the scoring set (0: all of it)
  balanced: bool = True  # the same number per class (then CAR = mean CARc over classes)
  score_batch_size: int = 250  # images per scoring call (all candidates at once)
  per_iteration: int = GreedyOptions.per_iteration  # filters removed per greedy iteration (speed-up 1)
  subset_size: int = GreedyOptions.subset_size  # scoring images drawn per iteration (speed-up 2; 0 = all)
  # Greedy down to this many filters per layer (the whole curve); 0 lets a residual branch's
  # inner gate lose every filter (Fig. 4B), other layers stop at 1.
  min_kept: int = GreedyOptions.min_kept
  target_ratio: float = GreedyOptions.target_ratio  # stop at this compression ratio (0 = off)
  # The greedy stop point: the first removal leaving the scoring accuracy below (1 - this) x
  # the uncompressed one (0 = none). Past it the loop 'continue's (greedy to min_kept,
  # per_iteration_past_drop filters per iteration; 0 = per_iteration) or 'stop's (the CAR
  # curve then ends there, marked).
  max_relative_drop: float = GreedyOptions.max_relative_drop
  past_drop: str = GreedyOptions.past_drop
  per_iteration_past_drop: int = GreedyOptions.per_iteration_past_drop
  # Fine-tune inside the greedy loop every this many iterations (car.finetune's recipe), as a
  # second greedy path with its own curve (0 = off: slow, one fine-tuning per iteration).
  retrain_every: int = GreedyOptions.retrain_every
  # A residual branch pruned to 0 filters: 'remove' (the paper: the branch adds nothing) or
  # 'mask' (its gate closed only: the branch still adds its BatchNorm shift).
  empty_branch: str = GreedyOptions.empty_branch
  final_relative_drop: float = 0.02  # the saved compressed model keeps accuracy within this fraction
  table_relative_drop: float = 0.05  # Table 1: every method pruned until this relative drop
  curve_points: int = 20  # kept-filter counts per curve (all counts when the layer is smaller)
  random_repeats: int = 10
  carc_top: int = 5
  # Figs. 6-7: top activating patches of this many filters pruned first and kept last per
  # layer; Fig. 9: this many of the last layer's most important filters.
  patch_top: int = 9
  patch_filters: int = 4
  patch_images: int = 0  # images searched for patches (half from each set; 0 = both sets whole)
  carc_filters: int = 3
  train_examples: int = 0  # 0 = the whole train split (fine-tuning data)
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
    check(self.scoring_set in SCORING_SETS,
          f"car.scoring_set must be one of {SCORING_SETS}, got {self.scoring_set!r}")
    check(self.scoring_set != "validation" or bool(self.validation_split),
          "car.scoring_set='validation' needs car.validation_split (a split of the dataset)")
    check(self.scoring_set != "train" or self.score_examples > 0,
          "car.scoring_set='train' needs car.score_examples > 0 (jaxdr's earlier default: 2000)")
    for name in ("final_relative_drop", "table_relative_drop"):
      check(0.0 <= getattr(self, name) < 1.0, f"car.{name} must be in [0, 1), got {getattr(self, name)}")
    check(self.score_examples >= 0, f"car.score_examples must be >= 0, got {self.score_examples}")
    for name in ("score_batch_size", "eval_batch_size", "masks_per_call", "patch_top"):
      check(getattr(self, name) >= 1, f"car.{name} must be >= 1, got {getattr(self, name)}")
    self.greedy(0)  # the greedy rules' own checks

  def greedy(self, seed: int, retrain_every: int = 0) -> GreedyOptions:
    """The greedy loop's options (its scoring batch is ``score_batch_size``); the plain CAR
    path has no retraining, the retraining path passes ``retrain_every``."""
    try:
      return GreedyOptions(per_iteration=int(self.per_iteration), subset_size=int(self.subset_size),
                           min_kept=int(self.min_kept), target_ratio=float(self.target_ratio),
                           max_relative_drop=float(self.max_relative_drop), past_drop=str(self.past_drop),
                           per_iteration_past_drop=int(self.per_iteration_past_drop),
                           retrain_every=int(retrain_every), empty_branch=str(self.empty_branch),
                           batch_size=int(self.score_batch_size), seed=int(seed))
    except ConfigError as e:
      raise ConfigError(f"car: {e}") from e
