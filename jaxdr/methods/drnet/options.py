"""DRNet's options (the ``drnet`` config section): every default, defined once.

    opts = DrnetOptions.from_config(config.drnet)        # ConfigError on an unknown key
    c.drnet = DrnetOptions().to_config(); c.drnet.keep_fraction = 0.5   # in a config file

The CDRP gate fitting is the nested section ``drnet.cdrp`` (`CdrpOptions`, used by `cdrp`).
"""
from __future__ import annotations

import dataclasses
from typing import Tuple

from jaxdr import options as options_lib

STAGES = ("all", "dissect")
COMBINES = ("union", "xor")
RUN_SLICED = ("all", "named", "none")
RESET_CIVS = ("ones", "exclude")
BASELINES = ("subtask_softmax", "full_softmax")
LOOPS = ("scan", "fori", "python")
ON_TOP1_CHANGE = ("reset", "best", "last")


@dataclasses.dataclass(frozen=True)
class CdrpOptions(options_lib.Options):
  """CDRP hyper-parameters (DRNet / CDRP defaults), the ``drnet.cdrp`` config section;
  ``loop``/``unroll`` only change speed (see benchmarks/results/cdrp_speed.md)."""
  steps: int = 30
  learning_rate: float = 0.1
  momentum: float = 0.9
  gamma: float = 0.05  # loss KL + gamma * L1
  clip_min: float = 0.0
  clip_max: float = 10.0
  # 'best' (lowest-loss iterate with unchanged top-1: the CDRP authors' code, the default) |
  # 'reset' (to all ones: the paper's text) | 'last' (latest iterate with unchanged top-1).
  on_top1_change: str = "best"
  loop: str = "scan"  # 'scan' | 'fori' | 'python'
  unroll: int = 1

  def __post_init__(self):
    check = options_lib.check
    check(self.steps >= 0, f"cdrp steps must be >= 0, got {self.steps}")
    check(self.loop in LOOPS, f"cdrp loop must be one of {LOOPS}, got {self.loop!r}")
    check(self.on_top1_change in ON_TOP1_CHANGE,
          f"cdrp on_top1_change must be one of {ON_TOP1_CHANGE}, got {self.on_top1_change!r}")
    check(self.unroll >= 1, f"cdrp unroll must be >= 1, got {self.unroll}")
    check(self.clip_min <= self.clip_max,
          f"cdrp needs clip_min <= clip_max, got [{self.clip_min}, {self.clip_max}]")


@dataclasses.dataclass(frozen=True)
class DrnetOptions(options_lib.Options):
  """Stage, CDRP, dissection, CCIV and evaluation settings of a DRNet run."""
  stage: str = "all"  # 'all' (dissect + evaluate) | 'dissect' (CIVs only)
  # CDRP gate fitting (DRNet section 3.1 / CDRP): loss KL + gamma * L1, SGD with momentum.
  cdrp: CdrpOptions = CdrpOptions()
  # Dissection: CIV = mean CDRP of images_per_class training images of each class.
  images_per_class: int = 100
  batch_size: int = 100  # images fitted at once (vmap)
  save_every: int = 1  # batches between orbax saves of the partial sums
  train_limit: int = 0  # 0 = read the whole train split
  class_pool: int = 0  # > 0: a seeded random pool of that many classes (DRNet's ImageNet setting)
  # How images whose top-1 changed and kept all-ones gates (cdrp.on_top1_change) enter the CIV:
  # 'ones' (averaged in: the paper's "set all values to 1") | 'exclude' (left out of the class mean).
  reset_civ: str = "ones"
  # Reconstruction: CCIV.
  combine: str = "union"  # 'union' | 'xor'
  union_thr: float = 0.1
  xor_thr: float = 0.1
  keep_fraction: float = 0.0  # > 0: choose the threshold keeping this fraction of channels instead
  min_channels: int = 0  # keep at least this many channels per gate point
  # > 0: per sub-task, the smallest of calibrate_fractions whose sub-network loses at most this
  # accuracy on the dissection (training) images; DRNet tunes union_thr per hard sub-task too.
  calibrate_tolerance: float = 0.0
  calibrate_fractions: Tuple[float, ...] = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7,
                                            0.8, 0.9)
  similarity_eps: float = 0.0  # important channels: CIV > eps (Formula 5)
  # Evaluation. The Full-Net accuracy a sub-task is compared with: the unmasked network under
  # the sub-task softmax ('subtask_softmax', DRNet Tables 1-5 on CIFAR) or its argmax over all
  # classes ('full_softmax', the 1000-way network DRNet's ImageNet promotion, Table 6, is
  # measured against). The sub-network always uses the sub-task softmax.
  baseline: str = "subtask_softmax"
  named_subtasks: Tuple[Tuple[str, ...], ...] = ()  # tuples of class names (or ids)
  superclass_subtasks: bool = True  # also the dataset's superclasses of >= 2 classes
  random_2class: int = 20
  random_3class: int = 10
  # Gate keys whose running channels get their own column (DRNet Table 3 / Tables 4-5:
  # MobileNetV2's last two layers, 320 and 1280 channels).
  report_layers: Tuple[str, ...] = ()
  # Physically sliced sub-networks (jaxdr.surgery): their costs are always reported; also
  # run them ('all' | 'named' | 'none' sub-tasks; one compile per new set of widths).
  run_sliced: str = "named"
  eval_batch_size: int = 500
  test_limit: int = 0  # in-memory datasets: the first test_limit test images (0 = all)
  test_per_class: int = 50  # other datasets (ImageNet): validation images per pool class

  def __post_init__(self):
    check = options_lib.check
    check(self.stage in STAGES, f"drnet.stage must be one of {STAGES}, got {self.stage!r}")
    check(self.combine in COMBINES, f"drnet.combine must be one of {COMBINES}, got {self.combine!r}")
    check(self.run_sliced in RUN_SLICED,
          f"drnet.run_sliced must be one of {RUN_SLICED}, got {self.run_sliced!r}")
    check(self.reset_civ in RESET_CIVS, f"drnet.reset_civ must be one of {RESET_CIVS}, got {self.reset_civ!r}")
    check(self.baseline in BASELINES, f"drnet.baseline must be one of {BASELINES}, got {self.baseline!r}")
    check(0.0 <= self.keep_fraction <= 1.0, f"drnet.keep_fraction must be in [0, 1], got {self.keep_fraction}")
    for name in ("images_per_class", "batch_size", "save_every", "eval_batch_size"):
      check(getattr(self, name) >= 1, f"drnet.{name} must be >= 1, got {getattr(self, name)}")

  @property
  def threshold(self) -> float:
    """The CCIV threshold of the chosen ``combine`` (``union_thr`` or ``xor_thr``)."""
    return self.union_thr if self.combine == "union" else self.xor_thr
