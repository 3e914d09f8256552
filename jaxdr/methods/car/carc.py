"""CARc (section 3.3): the accuracy reduction of removing a filter, per class; which classes
each filter matters for.

    s = scoring.score_layer(model, variables, x, y, {}, "conv2", num_classes=10)
    carc = carc_index(s)[1:]                                   # [C, K]
    rows = carc_table(carc, scoring.car_index(s)[1:], class_names, top=5)
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np

from jaxdr.methods.car.scoring import Scores


def carc_index(scores: Scores) -> np.ndarray:
  """CARc [P, K]: per-class accuracy reduction of each candidate against the reference (-1)."""
  ref = np.flatnonzero(scores.removed == -1)
  if not len(ref):
    raise ValueError("scores have no reference candidate (-1)")
  acc = scores.class_accuracy()
  return acc[ref[0]][None] - acc


def carc_table(carc: np.ndarray, car: np.ndarray, class_names: Sequence[str], top: int = 5
               ) -> List[Dict[str, Any]]:
  """Per filter: its CAR and the ``top`` classes with the highest / lowest CARc.

  carc: [C, K] (filters x classes, reference row removed); car: [C]."""
  rows = []
  for f in range(carc.shape[0]):
    order = np.argsort(-carc[f], kind="stable")
    rows.append({"filter": f, "car": float(car[f]),
                 "top": [{"class": class_names[c], "carc": float(carc[f, c])} for c in order[:top]],
                 "bottom": [{"class": class_names[c], "carc": float(carc[f, c])}
                            for c in order[::-1][:top]]})
  return rows
