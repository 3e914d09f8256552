"""White-Box's stages on the shared parts: mask training and fine-tuning on `training.fit`,
vote + fold + cut with `toolkit.compression`, and the guard that stops a diverged run.

    result = train_masks(model, opts, source, keys, num_classes=10, gating="soft", sparsity=0.01,
                         init_variables=base_vars, workdir=DIR / "masks", evaluate=...)
    cut = prune(model, result.variables, scores, folds, target=0.5)      # voted, folded, sliced
    tuned = finetune(cut.model, cut.variables, opts, source, workdir=DIR / "finetune", evaluate=...)

The upstream code's users reported runs stuck at chance (loss 2.3026) after pruning; here every
evaluation of a training checks that its loss is finite and its accuracy above
``collapse_factor / classes`` and otherwise stops the run with one `DivergedError` line.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from jaxdr import models, training
from jaxdr.errors import UserError
from jaxdr.methods.whitebox import fold as fold_lib
from jaxdr.methods.whitebox import objective as objective_lib
from jaxdr.methods.whitebox import voting
from jaxdr.methods.whitebox.options import WhiteboxOptions
from jaxdr.toolkit import compression

Evaluator = Callable[[Any], Dict[str, float]]


class DivergedError(UserError, RuntimeError):
  """A training's loss became NaN / infinite or its accuracy collapsed to chance."""


def guard(evaluate: Evaluator, what: str, num_classes: int, collapse_factor: float) -> Evaluator:
  """``evaluate`` that raises `DivergedError` when its ``test_loss`` is not finite or its
  ``test_accuracy`` is below ``collapse_factor / num_classes`` (0: only the finiteness check)."""
  floor = float(collapse_factor) / int(num_classes)

  def checked(*args):
    metrics = evaluate(*args)
    loss, acc = float(metrics.get("test_loss", 0.0)), float(metrics.get("test_accuracy", 1.0))
    if not math.isfinite(loss):
      raise DivergedError(f"{what} diverged: test loss {loss} (lower the learning rate, or check the "
                          "data and the masks for NaN)")
    if acc < floor:
      raise DivergedError(f"{what} collapsed: test accuracy {acc:.4f} < {floor:.4f} ({collapse_factor:g} "
                          f"x chance, loss {loss:.4f}); lower the learning rate or the sparsity, or "
                          "set whitebox.collapse_factor=0 to go on")
    return metrics
  return checked


def train_masks(model, options: training.TrainOptions, source, keys: Sequence[str], *, num_classes: int,
                gating: str, sparsity: float, init_value: float = 1.0, mask_lr: Optional[float] = None,
                init_variables=None, seed: int = 0,
                workdir=None, evaluate: Optional[Callable[[Any, Any], Dict[str, float]]] = None,
                name: str = "masks") -> training.FitResult:
  """Trains class-wise masks on ``keys`` jointly with the weights (`objective.mask_objective`)
  from ``init_variables`` (None: the model's fresh initialisation), the masks at ``mask_lr``
  (None: the schedule). ``evaluate(variables, masks)``. Returns the trainer's result
  (``extra['masks']``: {key: [K, C]})."""
  objective = objective_lib.mask_objective(keys, num_classes, gating, sparsity, init_value, mask_lr)
  wrapped = None if evaluate is None else (lambda v, extra: evaluate(v, extra[objective_lib.MASKS]))
  return training.fit(model, options, source, objective=objective, seed=seed, workdir=workdir,
                      init_variables=init_variables, evaluate=wrapped, name=name)


@dataclasses.dataclass
class Cut:
  """A pruned network before fine-tuning: the vote, the fold, the sliced model (no mask left)
  and its compression summary; ``max_rel_diff``: the largest difference of its logits from the
  unpruned network gated by ``keep x fold vector`` on the probe images, over max(1, the largest
  logit)."""
  vote: voting.Vote
  folded: fold_lib.Folded
  summary: compression.Summary
  model: Any
  variables: Any
  gates: Dict[str, np.ndarray]
  max_rel_diff: float


def pruned_gates(vote: voting.Vote, folds: Optional[Mapping[str, Any]]) -> Dict[str, np.ndarray]:
  """``keep x fold vector`` per voted key (just the 0/1 keep mask without ``folds``)."""
  out = {}
  for k, keep in vote.keep.items():
    v = np.ones(keep.size, np.float32) if folds is None else np.asarray(folds[k], np.float32)
    out[k] = np.where(keep, v, 0.0).astype(np.float32)
  return out


def prune(model, variables, scores: Mapping[str, Any], folds: Optional[Mapping[str, Any]], *,
          target: float, min_keep_fraction: float = 0.3, channel_multiple: int = 1,
          probe: Optional[np.ndarray] = None, latency_batch_sizes: Sequence[int] = (),
          repeats: int = 20, fold_into: str = WhiteboxOptions.fold_into) -> Cut:
  """Votes on ``scores`` to ``target``, folds ``folds`` ({key: [C]}, None: nothing) of the kept
  channels into the weights (``fold_into``: `fold.fold`'s ``into``) and cuts the closed channels out (`toolkit.compression.compress`,
  timed at ``latency_batch_sizes`` against the unpruned ``model``). Checks on ``probe`` images
  that the cut network computes the gated one and that no mask is left."""
  graph = models.describe(model)
  v = voting.vote(graph, scores, target, min_keep_fraction, channel_multiple)
  gates = pruned_gates(v, folds)
  probe = None if probe is None else jnp.asarray(probe, jnp.float32)
  folded = fold_lib.fold(model, variables, gates, probe, into=fold_into)
  summary, sliced = compression.compress(model, folded.variables, v.mask(), strict=True,
                                         latency_batch_sizes=latency_batch_sizes, repeats=repeats)
  if sliced.mask:
    raise AssertionError(f"surgery left gates {sorted(sliced.mask)} masked: the pruned model is not plain")
  diff = 0.0
  if probe is not None:
    gated = {k: jnp.asarray(g) for k, g in gates.items()}
    want = np.asarray(fold_lib.forward(model)(variables, probe, gated))
    got = np.asarray(fold_lib.forward(sliced.model)(sliced.variables, probe, {}))
    scale = max(1.0, float(np.max(np.abs(want))))
    diff = float(np.max(np.abs(want - got))) / scale
    if diff > 1e-3 and not folded.inexact:
      raise AssertionError(f"the cut network's logits differ from the gated one's by {diff:.3g} of "
                           f"{scale:.3g}: surgery or the fold lost weights")
  logging.info("whitebox: voted %.2f%% of MACs away (target %.2f%%), kept %s", 100 * v.reduction,
               100 * target, v.kept())
  return Cut(vote=v, folded=folded, summary=summary, model=sliced.model,
             variables=jax.device_get(sliced.variables), gates=gates, max_rel_diff=diff)


def finetune(model, variables, options: training.TrainOptions, source, *, seed: int = 0, workdir=None,
             evaluate: Optional[Evaluator] = None, name: str = "finetune") -> training.FitResult:
  """Plain supervised training of the pruned ``model`` from ``variables`` (no mask)."""
  wrapped = None if evaluate is None else (lambda v, extra: evaluate(v))
  return training.fit(model, options, source, seed=seed, workdir=workdir,
                      init_variables=dict(variables), evaluate=wrapped, name=name)
