"""CAR / CARc (Abbasi-Asl & Yu, "Structural Compression of CNNs with Applications in
Interpretability"): filter importance by classification accuracy reduction, greedy structural
compression, and which classes each filter matters for.

  scoring.py     all candidate removals of a layer at once (`score_layer`, `car_index`,
                 `evaluate_masks`, `gate_sweep_logits`, `balanced_indices`)
  greedy.py      Algorithm 1, resumable (`greedy_compress`, `GreedyOptions`, `GreedyState`)
  carc.py        per-class CAR (`carc_index`, `carc_table`)
  baselines.py   weight-based and random pruning orders (`incoming_importance`, `masks_along`, ...)
  options.py     `CarOptions`: the ``car`` config section (``car.finetune``: `CarFinetuneOptions`)
  experiment.py  `run(config, workdir)`: what ``python -m jaxdr.main`` calls
"""
from jaxdr.methods.car.baselines import (incoming_importance, layer_kernel, masks_along, order_by,  # noqa: F401
                                         outgoing_importance, random_orders)
from jaxdr.methods.car.carc import carc_index, carc_table  # noqa: F401
from jaxdr.methods.car.experiment import curve_grid, run  # noqa: F401
from jaxdr.methods.car.greedy import GreedyOptions, GreedyState, greedy_compress  # noqa: F401
from jaxdr.methods.car.options import CarFinetuneOptions, CarOptions, MODES  # noqa: F401
from jaxdr.methods.car.scoring import (Scores, accuracy, balanced_indices, candidate_logits,  # noqa: F401
                                       candidate_mesh, car_index, evaluate_masks, gate_sweep_logits,
                                       reusable, score_layer, score_removals, score_sequential)
