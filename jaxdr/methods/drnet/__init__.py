"""DRNet (Hu et al., "DRNet: Dissect and Reconstruct the CNN via Interpretable Manners").

Dissect a trained CNN into per-class channel importance (CIVs of CDRP gates), then run
sub-tasks (a few classes) with only the channels their CCIV keeps, masked or physically cut:

  cdrp.py        per-image control gates fitted by self-distillation (`CdrpOptions`, `make_fitter`)
  dissection.py  CIV = class mean of CDRP gates, resumable (`Dissection`, `collect_images`)
  cciv.py        sub-task masks from CIVs (`cciv_mask`: union / XOR / keep fraction), `civ_similarity`
  subtasks.py    `SubtaskRunner` (masked / sliced, sub-task softmax), `evaluate_subtask`
  options.py     `DrnetOptions`: the ``drnet`` config section (``drnet.cdrp``: `CdrpOptions`)
  experiment.py  `run(config, workdir)`: what ``python -m jaxdr.main`` calls
"""
from jaxdr.methods.drnet.cciv import (Civ, check_classes, cciv_mask, civ_similarity, scores,  # noqa: F401
                                      threshold_for_fraction)
from jaxdr.methods.drnet.cdrp import CdrpOptions, fit_gates, make_fitter  # noqa: F401
from jaxdr.methods.drnet.dissection import (Dissection, collect_images, load_civ, save_civ,  # noqa: F401
                                            select_images)
from jaxdr.methods.drnet.experiment import run  # noqa: F401
from jaxdr.methods.drnet.options import COMBINES, DrnetOptions, RUN_SLICED, STAGES  # noqa: F401
from jaxdr.methods.drnet.subtasks import (SubtaskRunner, calibrate_fraction, evaluate_subtask,  # noqa: F401
                                          logit_mask, named_subtasks, open_fraction, random_subtasks,
                                          subtask_logits, subtask_softmax, summarise)
