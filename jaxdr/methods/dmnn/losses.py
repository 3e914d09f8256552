"""DMNN's training loss as a hook of the shared trainer (`jaxdr.training.fit`).

Total (Eq. 16, alphas 1): ``L_cls + L_ctg + L_res``.
  * L_cls: cross-entropy of the network's logits.
  * L_ctg (Eqs. 9-10): sum over gated blocks l of ``alpha_l`` x cross-entropy of controller
    l's category head against the superclass of the label (``alpha_l = category_weight x
    category_growth ** stage_l``: 1e-4 in the first stage, x10 per later stage).
  * L_res = L_exec + L_flops (Eqs. 11-15): ``sum_l (e - z_l)^2`` with ``z_l`` the batch's
    executed fraction of block l's sub-blocks, and ``(f / f_total - r)^2`` with ``f`` the
    batch's mean executed MACs from the exact per-sub-block counts (`flops.CostTable`:
    the always-on part included, so ``f / f_total`` is the executed-FLOPs ratio evaluation
    reports) and ``e = r``.
Gates are hard Gumbel-softmax samples with a straight-through gradient, drawn in the jitted
step from the step's key (`training.LossContext.rng`: fresh per step; partitionable threefry
draws each device's rows of the global batch, so the run does not depend on the device count).
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdr import training
from jaxdr.methods.dmnn.flops import CostTable
from jaxdr.methods.dmnn.options import DmnnOptions
from jaxdr.models import dmnn

# Tag folded into the step's key for the Gumbel noise (the trainer's 'dropout' stream uses 0).
GUMBEL_STREAM = 1


def category_weights(table: CostTable, opts: DmnnOptions) -> np.ndarray:
  """``alpha_l`` [L] of the category loss (0 when ``opts.category_loss`` is off)."""
  if not opts.category_loss:
    return np.zeros(len(table.blocks), np.float32)
  return (opts.category_weight * opts.category_growth ** table.stages.astype(np.float64)).astype(np.float32)


def terms(logits: jnp.ndarray, paths: dmnn.Paths, labels: jnp.ndarray, table: CostTable,
          opts: DmnnOptions, superclass: Optional[jnp.ndarray] = None) -> Dict[str, jnp.ndarray]:
  """Every loss term and what is logged with them, batch means (scalars).

  ``logits`` [B, K], ``paths`` from `dmnn.forward`, integer ``labels`` [B], ``superclass``
  [num_classes] (class -> superclass; needed for the category loss)."""
  r = jnp.float32(opts.target_rate)
  ce = jnp.mean(training.cross_entropy(logits, labels))
  rates = jnp.mean(paths.gates, axis=(0, 2))  # z_l [L]
  execution = jnp.sum((r - rates) ** 2)
  ratio = jnp.mean(table.executed(paths.gates)) / jnp.float32(table.total_macs)
  flops = (ratio - r) ** 2
  category = jnp.float32(0.0)
  if opts.category_loss:
    if paths.categories is None or superclass is None:
      raise ValueError("the category loss needs a model with category heads and a superclass table")
    targets = jnp.asarray(superclass)[labels]
    per_block = jax.vmap(lambda c: jnp.mean(training.cross_entropy(c, targets)), in_axes=1)(paths.categories)
    category = jnp.sum(jnp.asarray(category_weights(table, opts)) * per_block)
  total = ce + category + opts.execution_weight * execution + opts.flops_weight * flops
  return {"total": total, "ce": ce, "category_loss": category, "execution_loss": execution,
          "flops_loss": flops, "flops_ratio": ratio, "execution_rate": jnp.mean(rates)}


LOGGED = ("ce", "category_loss", "execution_loss", "flops_loss", "flops_ratio", "execution_rate")


def objective(table: CostTable, opts: DmnnOptions, superclass: Optional[Sequence[int]] = None
              ) -> training.Objective:
  """The trainer hooks: this loss (Gumbel gates, batch statistics) and argmax-gated eval logits."""
  table_super = None if superclass is None else jnp.asarray(np.asarray(superclass, np.int32))

  def loss(ctx: training.LossContext, params, extra, batch: Mapping[str, jnp.ndarray]):
    del extra
    rngs = {**ctx.rngs(), dmnn.RNG: jax.random.fold_in(ctx.rng, GUMBEL_STREAM)}
    logits, paths, stats = dmnn.forward(ctx.model, ctx.variables(params), batch["image"], ctx.mask,
                                        train=True, rngs=rngs)
    parts = terms(logits, paths, batch["label"], table, opts, table_super)
    return parts["total"], training.LossOutput(logits, stats, {k: parts[k] for k in LOGGED})

  return training.Objective(loss=loss)
