"""The ``dmnn`` config section: N, r, the controller, the losses, the twin and the evaluation."""
from __future__ import annotations

import dataclasses
from typing import Tuple

from jaxdr import options


@dataclasses.dataclass(frozen=True)
class DmnnOptions(options.Options):
  """DMNN training and evaluation (Su et al.; defaults are the paper's).

  Model: ``paths`` N sub-blocks per block (>= 1), controller ``hidden`` size d, Gumbel-softmax
  ``temperature``, ``previous_state`` (the controller reads ``h_{l-1}``; False: the ablation
  without it), ``gate_bias``: the initial bias of each sub-block's (off, on) gate logits (the
  paper is silent; the default is ConvNet-AIG's (0.1, 2.0), whose Gumbel trick the paper
  follows: ~85% of the gates start open, so every sub-block trains before the resource loss
  closes half of them; (0, 0) starts at even odds).
  Losses (total = L_cls + L_ctg + L_res): the category loss (``category_loss``; False: the
  ablation without it) weighs block l's controller head ``category_weight`` x
  ``category_growth`` ** (its stage - 1) (1e-4 in stage 1, x10 per later stage); L_res =
  ``execution_weight`` x sum_l (e - z_l)^2 + ``flops_weight`` x (f / f_total - r)^2 with
  ``target_rate`` r = e in (0, 1].
  Twin: with ``twin`` the same job also trains the plain network the DMNN was split from
  (`jaxdr.models.dmnn_nets.twin`), with the same train options, seed and batches, into
  WORKDIR/twin, and compares the two.
  Evaluation: ``histogram_bins`` of the per-image FLOPs histogram, ``example_classes``
  classes shown in the easiest / hardest images figure.
  """
  paths: int = 2
  target_rate: float = 0.5
  temperature: float = 1.0
  hidden: int = 32
  previous_state: bool = True
  gate_bias: Tuple[float, float] = (0.1, 2.0)
  category_loss: bool = True
  category_weight: float = 1e-4
  category_growth: float = 10.0
  execution_weight: float = 1.0
  flops_weight: float = 1.0
  twin: bool = False
  histogram_bins: int = 20
  example_classes: int = 8

  def __post_init__(self):
    options.check(self.paths >= 1, f"dmnn.paths (N, sub-blocks per block) must be >= 1, got {self.paths}")
    options.check(0.0 < self.target_rate <= 1.0,
                  f"dmnn.target_rate (r) must be in (0, 1], got {self.target_rate}")
    options.check(self.temperature > 0, f"dmnn.temperature must be > 0, got {self.temperature}")
    options.check(len(self.gate_bias) == 2,
                  f"dmnn.gate_bias must be (off, on) logit biases, got {self.gate_bias}")
    options.check(self.hidden >= 1, f"dmnn.hidden must be >= 1, got {self.hidden}")
    for name in ("category_weight", "category_growth", "execution_weight", "flops_weight"):
      options.check(getattr(self, name) >= 0, f"dmnn.{name} must be >= 0, got {getattr(self, name)}")
    options.check(self.histogram_bins >= 1, f"dmnn.histogram_bins must be >= 1, got {self.histogram_bins}")
    options.check(self.example_classes >= 0,
                  f"dmnn.example_classes must be >= 0, got {self.example_classes}")
