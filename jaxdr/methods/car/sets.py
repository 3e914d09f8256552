"""CAR's data: the scoring set filters are ranked on, the held-out set the curves and tables are
measured on, and the fine-tuning data.

The paper computes CAR on half of the ImageNet test set and evaluates the compressed network
on the other half ("to avoid overfitting"), so the default (``car.scoring_set='test_half'``)
splits the test split into two disjoint halves, each class divided evenly between them
(`balanced_halves`). ``'validation'`` scores on a separate split (``car.validation_split``,
for a dataset that has one) and evaluates on the whole test split; ``'train'`` is jaxdr's
earlier reading (``car.score_examples`` from the end of the train split; CAR then ranks
filters by training accuracy). Fine-tuning always uses the train split (less the scoring
images with ``'train'``).

    sets = load(config, opts)       # DataSets: score_x/y, eval_x/y, ft_x/y, description
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Tuple

import numpy as np

from jaxdr.errors import ConfigError
from jaxdr.methods.car import scoring
from jaxdr.methods.car.options import CarOptions
from jaxdr.toolkit import base


def balanced_halves(labels: np.ndarray, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
  """Two disjoint index sets covering ``labels`` [N]: each class's examples shuffled (seeded)
  and split in half, the odd one out going to the second half. Sorted indices."""
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  first, second = [], []
  for c in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == c))
    first.append(idx[:len(idx) // 2])
    second.append(idx[len(idx) // 2:])
  return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


@dataclasses.dataclass
class DataSets:
  """Images [N, H, W, C] float32 and labels [N] int32 of each set, and ``description``: which
  splits they come from and their sizes (written to results.json and report.md)."""
  score_x: np.ndarray
  score_y: np.ndarray
  eval_x: np.ndarray
  eval_y: np.ndarray
  ft_x: np.ndarray
  ft_y: np.ndarray
  description: Dict[str, Any]


def _limit_scoring(idx: np.ndarray, labels: np.ndarray, opts: CarOptions, k: int) -> np.ndarray:
  """``idx`` cut to ``score_examples`` (0: all) and, with ``balanced``, to the same number of
  examples of every class (the largest number every class has)."""
  sub = labels[idx]
  if opts.balanced:
    have = np.bincount(sub, minlength=k)
    per_class = int(have.min()) if opts.score_examples == 0 else int(opts.score_examples) // k
    if per_class < 1:
      raise ConfigError(f"the scoring set has no example of class {int(np.argmin(have))}: "
                        f"car.balanced needs every class (or car.balanced=False)")
    return idx[scoring.balanced_indices(sub, per_class, from_end=False)]
  return idx if opts.score_examples == 0 else idx[:int(opts.score_examples)]


def load(config, opts: CarOptions) -> DataSets:
  """The scoring, evaluation and fine-tuning sets of ``config`` under ``opts.scoring_set``."""
  k = int(config.dataset.num_classes)
  test_x, test_y = base.arrays(config, "test", limit=opts.eval_examples)
  train_x, train_y = base.arrays(config, "train", limit=opts.train_examples)
  kind = opts.scoring_set
  if kind == "test_half":
    a, b = balanced_halves(test_y, int(config.seed))
    a = _limit_scoring(a, test_y, opts, k)
    score_x, score_y, eval_x, eval_y = test_x[a], test_y[a], test_x[b], test_y[b]
    ft_x, ft_y = train_x, train_y
    source, eval_source = "test split, first half (per class)", "test split, second half (per class)"
  elif kind == "validation":
    val_x, val_y = base.arrays(config, opts.validation_split)
    idx = _limit_scoring(np.arange(len(val_y)), val_y, opts, k)
    score_x, score_y, eval_x, eval_y = val_x[idx], val_y[idx], test_x, test_y
    ft_x, ft_y = train_x, train_y
    source, eval_source = f"split {opts.validation_split!r}", "test split"
  else:  # 'train': the earlier reading
    if opts.balanced:
      idx = scoring.balanced_indices(train_y, int(opts.score_examples) // k)
    else:
      idx = np.arange(max(len(train_y) - int(opts.score_examples), 0), len(train_y))
    rest = np.setdiff1d(np.arange(len(train_y)), idx)
    score_x, score_y, eval_x, eval_y = train_x[idx], train_y[idx], test_x, test_y
    ft_x, ft_y = train_x[rest], train_y[rest]
    source, eval_source = "train split, last examples of each class", "test split"
  if len(score_y) == 0 or len(eval_y) == 0:
    raise ConfigError(f"car.scoring_set={kind!r} leaves an empty scoring or evaluation set")
  description = {"scoring_set": kind, "scoring_source": source, "scoring_examples": int(len(score_y)),
                 "scoring_per_class": np.bincount(score_y, minlength=k).tolist(),
                 "evaluation_source": eval_source, "evaluation_examples": int(len(eval_y)),
                 "evaluation_per_class": np.bincount(eval_y, minlength=k).tolist(),
                 "fine_tuning_examples": int(len(ft_y))}
  return DataSets(score_x, score_y, eval_x, eval_y, ft_x, ft_y, description)
