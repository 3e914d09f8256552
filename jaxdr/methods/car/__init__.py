"""CAR / CARc (Abbasi-Asl & Yu, "Structural Compression of CNNs with Applications in
Interpretability"): filter importance by classification accuracy reduction, greedy structural
compression, and which classes each filter matters for.

  scoring.py     all candidate removals of a layer at once (`score_layer`, `car_index`,
                 `evaluate_masks`, `gate_sweep_logits`, `balanced_indices`)
  sets.py        scoring / evaluation / fine-tuning data (`load`, `balanced_halves`): held-out by default
  greedy.py      Algorithm 1 to the end, resumable, optional retraining (`greedy_compress`, ...)
  branches.py    residual branches pruned to 0 filters (`is_branch_gate`, `without_branch`, ...)
  curves.py      accuracy along pruning orders, CAR + fine-tuning (`curve_grid`, `Evaluator`, ...)
  table.py       Table 1: kept filters, ratio, FLOPs (= MACs), storage at a relative drop
  layer.py       everything measured for one compressed layer (`analyse`)
  patches.py     receptive fields and top activating patches (Figs. 6, 7, 9A)
  figures.py     the figures (Figs. 2-9); report.py: report.md's sections
  carc.py        per-class CAR (`carc_index`, `carc_table`)
  baselines.py   weight-based and random pruning orders (`incoming_importance`, `masks_along`, ...)
  options.py     `CarOptions`: the ``car`` config section (``car.finetune``: `CarFinetuneOptions`),
                 `GreedyOptions`: the greedy loop's rules
  experiment.py  `run(config, workdir)`: what ``python -m jaxdr.main`` calls

The names below load their module on first use (`jaxdr.lazy`): a config file that imports
this package's ``options`` does not import JAX.
"""
from typing import TYPE_CHECKING

from jaxdr import lazy

_EXPORTS = {
    "baselines": ("incoming_importance", "layer_kernel", "masks_along", "order_by",
                  "outgoing_importance", "random_orders"),
    "carc": ("carc_index", "carc_table"),
    "branches": ("branch_mask", "is_branch_gate", "without_branch"),
    "curves": ("curve_grid",),
    "experiment": ("run",),
    "greedy": ("GreedyState", "greedy_compress"),
    "options": ("CarFinetuneOptions", "CarOptions", "GreedyOptions", "MODES", "SCORING_SETS"),
    "patches": ("receptive_field", "top_activations"),
    "sets": ("balanced_halves",),
    "scoring": ("Scores", "accuracy", "balanced_indices", "candidate_logits", "candidate_mesh",
                "car_index", "evaluate_masks", "gate_sweep_logits", "reusable", "score_layer",
                "score_removals", "score_sequential"),
}
__getattr__, __dir__, __all__ = lazy.exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # what linters and IDEs read
  from jaxdr.methods.car.baselines import (incoming_importance, layer_kernel, masks_along, order_by,  # noqa: F401
                                           outgoing_importance, random_orders)
  from jaxdr.methods.car.carc import carc_index, carc_table  # noqa: F401
  from jaxdr.methods.car.branches import branch_mask, is_branch_gate, without_branch  # noqa: F401
  from jaxdr.methods.car.curves import curve_grid  # noqa: F401
  from jaxdr.methods.car.experiment import run  # noqa: F401
  from jaxdr.methods.car.greedy import GreedyState, greedy_compress  # noqa: F401
  from jaxdr.methods.car.options import (CarFinetuneOptions, CarOptions, GreedyOptions, MODES,  # noqa: F401
                                         SCORING_SETS)
  from jaxdr.methods.car.patches import receptive_field, top_activations  # noqa: F401
  from jaxdr.methods.car.sets import balanced_halves  # noqa: F401
  from jaxdr.methods.car.scoring import (Scores, accuracy, balanced_indices, candidate_logits,  # noqa: F401
                                         candidate_mesh, car_index, evaluate_masks, gate_sweep_logits,
                                         reusable, score_layer, score_removals, score_sequential)
