"""Accuracy along pruning orders (Figs. 2-4), CAR + fine-tuning, and Table 1's points.

An order lists a layer's filters least important first; keeping ``n`` keeps its last ``n``.
The CAR order is the greedy path's and is only CAR's down to `GreedyState.greedy_floor`: the
CAR curves stop there (with ``past_drop='stop'`` or ``min_kept`` > 1) rather than continue in
index order. Kept count 0 of a residual branch's inner gate is the branch removed
(`branches`), evaluated on variables with the branch zeroed.

    ev = Evaluator(model, variables, key, empty_branch="remove", num_classes=10, ...)
    ev.accuracy(x, y, rows)                   # [M] accuracies of M masks [M, C] of gate key
    tuner = FineTuner(model, variables, key, sets, opts, ev)
    tuner(n, order)                           # {'kept', 'scoring_accuracy', 'accuracy'} (cached)
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Tuple

from absl import logging
import numpy as np

from jaxdr import models
from jaxdr.methods import finetune
from jaxdr.methods.car import baselines, branches, scoring

PyTree = Any


def curve_grid(channels: int, points: int, lowest: int = 1) -> List[int]:
  """Kept-filter counts for the curves: every count from ``lowest`` when the layer has at most
  ``points`` filters, else two thirds of the points up to half the layer (where the methods
  differ) and the rest above it; always ``lowest`` (1, or 0 for a residual branch) and
  ``channels``."""
  start = max(1, lowest)
  if points <= 0 or channels <= points:
    grid = list(range(start, channels + 1))
  else:
    half = channels // 2
    low = np.linspace(start, half, min(half, max(2, (2 * points) // 3)))
    high = np.linspace(half, channels, max(2, points - len(low) + 1))[1:]
    grid = sorted({int(round(v)) for v in np.concatenate([low, high])})
  return ([0] if lowest == 0 else []) + grid


class Evaluator:
  """Accuracy of masks of one gate (others open), all-closed rows of a residual branch's gate
  evaluated with the branch removed when ``empty_branch == 'remove'``."""

  def __init__(self, model, variables: PyTree, key: str, *, empty_branch: str, num_classes: int,
               batch_size: int, masks_per_call: int, mesh):
    self.model, self.variables, self.key = model, variables, key
    graph = models.describe(model)
    self.branch = empty_branch == "remove" and branches.is_branch_gate(graph, key)
    self.kw = dict(num_classes=num_classes, batch_size=batch_size, mesh=mesh)
    self.masks_per_call = masks_per_call
    self._removed = None

  def network(self, row: np.ndarray, variables: PyTree = None) -> Tuple[Dict[str, np.ndarray], PyTree]:
    """(mask, variables) realising ``row`` of gate ``key`` on ``variables`` (default: the
    evaluator's): the branch removed for an all-closed row of a branch gate."""
    variables = self.variables if variables is None else variables
    if self.branch and branches.empty(row):
      return (branches.branch_mask(models.describe(self.model), self.key),
              branches.without_branch(self.model, variables, self.key))
    return {self.key: np.asarray(row, np.float32)}, variables

  def accuracy(self, x: np.ndarray, y: np.ndarray, rows: np.ndarray, variables: PyTree = None) -> np.ndarray:
    """[M] accuracies of the masks ``rows`` [M, C] on (x, y)."""
    rows = np.asarray(rows, np.float32)
    variables = self.variables if variables is None else variables
    out = np.zeros(len(rows))
    empty = np.asarray([self.branch and branches.empty(r) for r in rows], bool)
    if (~empty).any():
      out[~empty] = scoring.evaluate_masks(self.model, variables, x, y, {self.key: rows[~empty]},
                                           masks_per_call=self.masks_per_call, **self.kw)
    if empty.any():
      mask, v = self.network(rows[np.flatnonzero(empty)[0]], variables)
      out[empty] = scoring.accuracy(self.model, v, x, y, mask, **self.kw)
    return out

  def class_accuracy(self, x: np.ndarray, y: np.ndarray, row: np.ndarray, variables: PyTree = None) -> np.ndarray:
    """[K] per-class accuracy of one mask row on (x, y)."""
    mask, v = self.network(row, variables)
    s = scoring.score_removals(self.model, v, x, y, mask, self.key, [-1], **self.kw)
    return s.class_accuracy()[0]


class FineTuner:
  """CAR + fine-tuning (section 3.1) at kept counts of an order: fine-tunes the network under
  the mask with the paper's per-layer rates, evaluates it on the scoring and evaluation sets.
  Results are cached per kept count (Table 1's search reuses the curve's points)."""

  def __init__(self, model, variables: PyTree, key: str, sets, ft_opts, rates: Mapping[str, float],
               evaluator: Evaluator):
    self.model, self.variables, self.key, self.sets = model, variables, key, sets
    self.opts, self.rates, self.ev = ft_opts, dict(rates), evaluator
    self.done: Dict[int, Dict[str, float]] = {}

  def tune(self, row: np.ndarray, variables: PyTree = None) -> PyTree:
    """The variables fine-tuned under the mask ``row`` (the branch removed for an empty branch row)."""
    mask, v = self.ev.network(row, variables)
    rates = dict(self.rates)
    if self.ev.branch and branches.empty(row):  # the removed branch stays removed (frozen at 0)
      graph = models.describe(self.model)
      rates.update({l.key: 0.0 for l in branches.branch_outputs(graph, self.key)})
    return finetune.finetune(self.model, v, self.sets.ft_x, self.sets.ft_y, mask, rates, self.opts)

  def __call__(self, n: int, order) -> Dict[str, float]:
    if n not in self.done:
      row = baselines.masks_along(order, [n])[0]
      tuned = self.tune(row)
      # `tune` already zeroed a removed branch: evaluate the mask alone on the tuned variables.
      mask_row = row[None]
      acc_s = float(self.ev.accuracy(self.sets.score_x, self.sets.score_y, mask_row, tuned)[0])
      acc_t = float(self.ev.accuracy(self.sets.eval_x, self.sets.eval_y, mask_row, tuned)[0])
      self.done[n] = {"kept": int(n), "accuracy": acc_t, "scoring_accuracy": acc_s}
      logging.info("car: %s kept %d: fine-tuned accuracy %.4f (scoring set %.4f)", self.key, n, acc_t, acc_s)
    return self.done[n]

  def points(self) -> List[Dict[str, float]]:
    return [self.done[n] for n in sorted(self.done)]


def order_curves(ev: Evaluator, x: np.ndarray, y: np.ndarray, orders: Mapping[str, np.ndarray],
                 random: np.ndarray, grid: List[int], car_floor: int) -> Dict[str, list]:
  """Accuracy at every kept count of ``grid`` along each order (one evaluation call), the CAR
  order only at counts >= ``car_floor``; random orders as mean and std over the repeats."""
  stacked = [baselines.masks_along(o, grid) for o in orders.values()] + [baselines.masks_along(o, grid)
                                                                        for o in random]
  acc = ev.accuracy(x, y, np.concatenate(stacked)).reshape(len(stacked), len(grid))
  curve = {name: [{"kept": n, "accuracy": float(a)} for n, a in zip(grid, acc[i])
                  if name != "car" or n >= car_floor]
           for i, name in enumerate(orders)}
  r = acc[len(orders):]
  curve["random"] = [{"kept": n, "accuracy": float(m), "std": float(s)}
                     for n, m, s in zip(grid, r.mean(0), r.std(0))]
  return curve
