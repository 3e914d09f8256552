"""White-Box (Zhang et al., "Carrying out CNN Channel Pruning in a White Box"): class-wise masks
trained with soft labels, a global vote to a MACs budget, the expected gate folded into the
weights, the closed channels cut out, fine-tuning.

  class_masks.py  masks [K, C] per gate point, soft / hard / shared gates of a batch, scores, fold vectors
  objective.py    mask training as a `training.Objective` (CE + lambda * sum ||sum_k M[k]||_2)
  voting.py       default / prunable gate points, the global vote (exact MACs, per-layer minimum)
  fold.py         per-channel gates into the producers' BatchNorm (gate >= 0 after ReLU, published)
                  or the consumers' input weights (signs, max-pool check)
  baselines.py    L1-norm filter scores (Li et al.) for the same vote
  stages.py       mask training, prune (vote + fold + cut), fine-tuning, the divergence guard
  report.py       results, report tables and figures
  options.py      `WhiteboxOptions`: the ``whitebox`` config section
  experiment.py   `run(config, workdir)`: what ``python -m jaxdr.main`` calls

The names below load their module on first use (`jaxdr.lazy`): a config file that imports
this package's ``options`` does not import JAX.
"""
from typing import TYPE_CHECKING

from jaxdr import lazy

_EXPORTS = {
    "baselines": ("filter_l1", "l1_scores"),
    "class_masks": ("GATING_MODES", "batch_gates", "check_labels", "fold_vectors", "init_masks",
                    "scores", "soft_labels"),
    "experiment": ("run",),
    "fold": ("Folded", "forward", "scale_bn", "scale_inputs"),
    "objective": ("gated_logits", "mask_objective", "sparsity_penalty"),
    "options": ("GATINGS", "VARIANTS", "WhiteboxOptions"),
    "stages": ("Cut", "DivergedError", "finetune", "guard", "prune", "pruned_gates", "train_masks"),
    "voting": ("Vote", "check_prunable", "check_reachable", "default_gates", "prunable_problem",
               "vote"),
}
__getattr__, __dir__, __all__ = lazy.exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # what linters and IDEs read
  from jaxdr.methods.whitebox.baselines import filter_l1, l1_scores  # noqa: F401
  from jaxdr.methods.whitebox.class_masks import (  # noqa: F401
      GATING_MODES, batch_gates, check_labels, fold_vectors, init_masks, scores, soft_labels)
  from jaxdr.methods.whitebox.experiment import run  # noqa: F401
  from jaxdr.methods.whitebox.fold import Folded, forward, scale_bn, scale_inputs  # noqa: F401  (the function: fold.fold)
  from jaxdr.methods.whitebox.objective import (gated_logits, mask_objective, sparsity_penalty)  # noqa: F401
  from jaxdr.methods.whitebox.options import GATINGS, VARIANTS, WhiteboxOptions  # noqa: F401
  from jaxdr.methods.whitebox.stages import (  # noqa: F401
      Cut, DivergedError, finetune, guard, prune, pruned_gates, train_masks)
  from jaxdr.methods.whitebox.voting import (Vote, check_prunable, check_reachable, default_gates,  # noqa: F401
                                             prunable_problem, vote)
