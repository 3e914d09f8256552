"""DRNet (Hu et al., "DRNet: Dissect and Reconstruct the CNN via Interpretable Manners").

Dissect a trained CNN into per-class channel importance (CIVs of CDRP gates), then run
sub-tasks (a few classes) with only the channels their CCIV keeps, masked or physically cut:

  cdrp.py        per-image control gates fitted by self-distillation (`make_fitter`, `fit_gates`)
  dissection.py  CIV = class mean of CDRP gates, resumable, top-1 resets per class (`Dissection`)
  cciv.py        sub-task masks from CIVs (`cciv_mask`: union / XOR / keep fraction), `civ_similarity`
  subtasks.py    `SubtaskRunner` (masked / sliced, sub-task softmax), `evaluate_subtask`, Table 6 stats
  report.py      report.md tables (Tables 1-6, resets per class) and figures (Figs. 5-8)
  options.py     `DrnetOptions`: the ``drnet`` config section (``drnet.cdrp``: `CdrpOptions`)
  experiment.py  `run(config, workdir)`: what ``python -m jaxdr.main`` calls

The names below load their module on first use (`jaxdr.lazy`): a config file that imports
this package's ``options`` does not import JAX.
"""
from typing import TYPE_CHECKING

from jaxdr import lazy

_EXPORTS = {
    "cciv": ("Civ", "check_classes", "cciv_mask", "civ_similarity", "scores",
             "threshold_for_fraction"),
    "cdrp": ("fit_gates", "l1_norm", "make_fitter"),
    "dissection": ("Dissection", "collect_images", "load_civ", "save_civ", "select_images"),
    "experiment": ("run",),
    "options": ("BASELINES", "COMBINES", "CdrpOptions", "DrnetOptions", "RESET_CIVS", "RUN_SLICED",
                "STAGES"),
    "subtasks": ("SubtaskRunner", "accuracy_change_stats", "baseline_accuracies",
                 "calibrate_fraction", "evaluate_subtask", "logit_mask", "named_subtasks",
                 "open_fraction", "random_subtasks", "subtask_logits", "subtask_softmax",
                 "summarise"),
}
__getattr__, __dir__, __all__ = lazy.exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # what linters and IDEs read
  from jaxdr.methods.drnet.cciv import (Civ, check_classes, cciv_mask, civ_similarity, scores,  # noqa: F401
                                        threshold_for_fraction)
  from jaxdr.methods.drnet.cdrp import fit_gates, l1_norm, make_fitter  # noqa: F401
  from jaxdr.methods.drnet.dissection import (Dissection, collect_images, load_civ, save_civ,  # noqa: F401
                                              select_images)
  from jaxdr.methods.drnet.experiment import run  # noqa: F401
  from jaxdr.methods.drnet.options import (BASELINES, COMBINES, CdrpOptions, DrnetOptions, RESET_CIVS,  # noqa: F401
                                           STAGES)
  from jaxdr.methods.drnet.subtasks import (SubtaskRunner, accuracy_change_stats, baseline_accuracies,  # noqa: F401
                                            calibrate_fraction, evaluate_subtask, logit_mask, named_subtasks,
                                            open_fraction, random_subtasks, subtask_logits, subtask_softmax,
                                            summarise)
