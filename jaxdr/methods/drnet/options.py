"""DRNet's options (the ``drnet`` config section): every default, defined once.

    opts = DrnetOptions.from_config(config.drnet)        # ConfigError on an unknown key
    c.drnet = DrnetOptions().to_config(); c.drnet.keep_fraction = 0.5   # in a config file

The CDRP gate fitting is the nested section ``drnet.cdrp`` (`cdrp.CdrpOptions`).
"""
from __future__ import annotations

import dataclasses
from typing import Tuple

from jaxdr import options as options_lib
from jaxdr.methods.drnet.cdrp import CdrpOptions

STAGES = ("all", "dissect")
COMBINES = ("union", "xor")
RUN_SLICED = ("all", "named", "none")


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
  # Evaluation.
  named_subtasks: Tuple[Tuple[str, ...], ...] = ()  # tuples of class names (or ids)
  superclass_subtasks: bool = True  # also the dataset's superclasses of >= 2 classes
  random_2class: int = 20
  random_3class: int = 10
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
    check(0.0 <= self.keep_fraction <= 1.0, f"drnet.keep_fraction must be in [0, 1], got {self.keep_fraction}")
    for name in ("images_per_class", "batch_size", "save_every", "eval_batch_size"):
      check(getattr(self, name) >= 1, f"drnet.{name} must be >= 1, got {getattr(self, name)}")

  @property
  def threshold(self) -> float:
    """The CCIV threshold of the chosen ``combine`` (``union_thr`` or ``xor_thr``)."""
    return self.union_thr if self.combine == "union" else self.xor_thr
