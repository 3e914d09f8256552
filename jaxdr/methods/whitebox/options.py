"""White-Box's options (the ``whitebox`` config section, with the nested ``whitebox.mask_train``
and ``whitebox.finetune`` training runs): every default, defined once.

    opts = WhiteboxOptions.from_config(config.whitebox, "whitebox")   # ConfigError on an unknown key
    c.whitebox = WhiteboxOptions().to_config(); c.whitebox.target = 0.764   # in a config file

Defaults are the published CIFAR settings (zyxxmu/White-Box ``scripts/*.sh``): masks trained
jointly with the weights for 30 epochs at a constant lr 0.1 (SGD, momentum 0.9, batch 256, weight
decay 5e-4 on weights and masks), then 300 fine-tuning epochs (lr 0.1, x0.1 at 150 and 225).
"""
from __future__ import annotations

import dataclasses
from typing import Tuple

from jaxdr import options as options_lib
from jaxdr.training.options import TrainOptions

# A pruning run: how channels are scored. 'whitebox': class-wise masks with soft labels (the
# paper); 'shared': one [C] mask for all classes ("w/o class-wise mask"); 'hard': class-wise masks
# with one-hot labels ("w/o soft mask"); 'l1': filter L1 norms of the base model (Li et al. 2017).
GATINGS = {"whitebox": "soft", "shared": "shared", "hard": "hard"}
VARIANTS = ("whitebox", "l1", "shared", "hard")
MASKS_FROM = ("base", "scratch")
FOLD_INTO = ("bn", "inputs")
# Which weights a masked variant cuts and fine-tunes: 'masked' the mask-trained network with its
# class-agnostic gate folded in (the published code); 'base' the base model's own weights (the
# masks only vote; needs masks_from='base').
FINETUNE_FROM = ("masked", "base")

MASK_TRAIN = TrainOptions(batch_size=256, epochs=30, learning_rate=0.1, momentum=0.9,
                          weight_decay=5e-4, schedule="constant", log_every_steps=100,
                          checkpoint_every_steps=1000, eval_batch_size=1000)
FINETUNE = TrainOptions(batch_size=256, epochs=300, learning_rate=0.1, momentum=0.9,
                        weight_decay=5e-4, schedule="step", milestones=(150, 225),
                        log_every_steps=100, checkpoint_every_steps=1000, eval_batch_size=1000)


@dataclasses.dataclass(frozen=True)
class WhiteboxOptions(options_lib.Options):
  """One White-Box experiment: which prunings run, where masks sit, the budget, the schedules.

  ``target``: fraction of the base model's MACs to remove (the paper's FLOPs pruning rate).
  ``gates``: gate keys that get a class-wise mask (() = the architecture's default: VGG every conv,
  ResNet block-internal convs, MobileNetV2 each block's hidden channels).
  ``masks_from``: 'base' trains the masks jointly with the trained base model's weights;
  'scratch' with freshly initialised weights (the published code).
  ``finetune_from``: 'masked' cuts and fine-tunes the mask-trained weights with the expected
  gate folded in (published); 'base' the base model's weights (masks only vote, nothing folded).
  ``channel_multiple``: kept widths are multiples of this (or the full width), the extra channels
  chosen by score (CPU convolutions are faster at multiples of 8).
  ``collapse_factor``: a training whose test accuracy falls below ``collapse_factor / classes``
  at an evaluation, or whose loss is not finite, stops with an error (0 turns the check off).
  """
  variants: Tuple[str, ...] = VARIANTS
  gates: Tuple[str, ...] = ()
  target: float = 0.5
  min_keep_fraction: float = 0.3
  channel_multiple: int = 1
  sparsity: float = 0.01  # lambda of the L2 sparsity term, per masked layer
  mask_init: float = 1.0
  mask_lr: float = 0.0  # the masks' own constant learning rate (0: mask_train's schedule, as published)
  # Where the class-agnostic gate goes (`fold.fold`): 'bn' the producers' BatchNorm scale and shift
  # where exact (gate >= 0 after a ReLU; the published code), else the consumers' input weights;
  # 'inputs' always the consumers' input weights (rescales their kernels).
  fold_into: str = "bn"
  finetune_from: str = "masked"
  masks_from: str = "scratch"
  mask_train: TrainOptions = MASK_TRAIN
  finetune: TrainOptions = FINETUNE
  # Fine-tuning seeds per pruned network (data order, augmentation); () = config.seed alone. The
  # accuracies compared are the means (a single fine-tuning's test accuracy moves by ~0.2-0.3
  # points with the seed); the saved pruned model is the first seed's.
  finetune_seeds: Tuple[int, ...] = ()
  # Accuracy vs FLOPs before fine-tuning (voted, folded, no training) at these targets (() = off),
  # on the first ``curve_examples`` test images (0 = all).
  curve_targets: Tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
  curve_examples: int = 2000
  latency_batch_sizes: Tuple[int, ...] = (1, 128)
  latency_repeats: int = 20
  collapse_factor: float = 1.5
  heatmap_gate: str = ""  # the layer of the class-wise mask heat map ('' = the middle masked layer)

  def __post_init__(self):
    check = options_lib.check
    check(0.0 < self.target < 1.0, f"whitebox.target (fraction of MACs removed) must be in (0, 1), "
          f"got {self.target}")
    check(0.0 < self.min_keep_fraction <= 1.0,
          f"whitebox.min_keep_fraction must be in (0, 1], got {self.min_keep_fraction}")
    check(len(self.variants) > 0, "whitebox.variants names no pruning to run")
    for v in self.variants:
      check(v in VARIANTS, f"whitebox.variants: unknown variant {v!r}; known: {', '.join(VARIANTS)}")
    check(len(set(self.variants)) == len(self.variants), f"whitebox.variants repeats a name: {self.variants}")
    check(self.masks_from in MASKS_FROM,
          f"whitebox.masks_from must be one of {MASKS_FROM}, got {self.masks_from!r}")
    check(self.fold_into in FOLD_INTO, f"whitebox.fold_into must be one of {FOLD_INTO}, got {self.fold_into!r}")
    check(self.finetune_from in FINETUNE_FROM,
          f"whitebox.finetune_from must be one of {FINETUNE_FROM}, got {self.finetune_from!r}")
    check(self.finetune_from == "masked" or self.masks_from == "base",
          "whitebox.finetune_from='base' cuts the base model's weights: it needs whitebox.masks_from='base'")
    check(self.channel_multiple >= 1, f"whitebox.channel_multiple must be >= 1, got {self.channel_multiple}")
    check(self.mask_lr >= 0.0, f"whitebox.mask_lr must be >= 0, got {self.mask_lr}")
    check(self.sparsity >= 0.0, f"whitebox.sparsity must be >= 0, got {self.sparsity}")
    check(self.collapse_factor >= 0.0, f"whitebox.collapse_factor must be >= 0, got {self.collapse_factor}")
    check(len(set(self.finetune_seeds)) == len(self.finetune_seeds),
          f"whitebox.finetune_seeds repeats a seed: {self.finetune_seeds}")
    check(self.latency_repeats >= 1, f"whitebox.latency_repeats must be >= 1, got {self.latency_repeats}")
    check(self.curve_examples >= 0, f"whitebox.curve_examples must be >= 0, got {self.curve_examples}")
    for t in self.curve_targets:
      check(0.0 < t < 1.0, f"whitebox.curve_targets must lie in (0, 1), got {t}")
    for b in self.latency_batch_sizes:
      check(b >= 1, f"whitebox.latency_batch_sizes must be >= 1, got {b}")
