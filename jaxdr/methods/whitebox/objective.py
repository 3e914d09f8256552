"""Mask training as a `jaxdr.training.Objective`: cross-entropy under label-selected gates plus
the sparsity term, the class-wise masks an extra trainable pytree beside the weights.

    loss = CE(model(x; gates = s @ M per layer)) + lambda * sum_layers || sum_k M[k, :] ||_2

(the L2 norm of the per-channel class sums, not squared: the published ``train_class``). The
trainer applies its weight decay to the masks too (``Objective.extra_weight_decay`` None:
``train.weight_decay``), as the published SGD over all parameters does. The soft labels are drawn
inside the jitted step from the step's key (``ctx.rng``), so every step, layer and image gets a
fresh draw, and on many devices each device draws its own rows.

    objective = mask_objective(keys, num_classes=10, gating="soft", sparsity=0.01)
    result = training.fit(model, options, source, objective=objective, init_variables=base)
    result.extra["masks"]     # {key: [K, C]}
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import jax
import jax.numpy as jnp

from jaxdr import models, training
from jaxdr.methods.whitebox import class_masks

MASKS = "masks"
_NOISE_STREAM = 0x5B1E  # folded into the step's key for the soft labels (dropout uses fold_in 0)


def sparsity_penalty(masks: Mapping[str, jnp.ndarray], weight: float) -> jnp.ndarray:
  """``weight * sum over layers of ||sum_k M[k, :]||_2`` (scalar)."""
  total = jnp.zeros((), jnp.float32)
  for m in masks.values():
    total = total + jnp.linalg.norm(jnp.sum(m, axis=0))
  return weight * total


def gated_logits(model, variables, masks: Mapping[str, jnp.ndarray], images: jnp.ndarray,
                 gating: str, held=None) -> jnp.ndarray:
  """Eval-mode logits with the class-agnostic folded gates (test images have no labels)."""
  gates = {k: v.astype(jnp.float32) for k, v in fold_gates_traced(masks, gating).items()}
  return models.apply(model, variables, images, {**dict(held or {}), **gates})


def fold_gates_traced(masks: Mapping[str, jnp.ndarray], gating: str):
  """`class_masks.fold_vectors` for traced masks: ``{key: [C]}``."""
  if gating == "soft":
    return {k: jnp.sum(m, axis=0) / 2.0 for k, m in masks.items()}
  return {k: jnp.sum(m, axis=0) / m.shape[0] for k, m in masks.items()}


def mask_objective(keys: Sequence[str], num_classes: int, gating: str = "soft", sparsity: float = 0.0,
                   init_value: float = 1.0, mask_lr: Optional[float] = None) -> training.Objective:
  """The trainer's hooks for White-Box mask training on gate points ``keys``: class-wise masks
  ``extra['masks'] = {key: [K, C]}`` (``[1, C]`` for 'shared') initialised to ``init_value``,
  the loss above (logged: ``sparsity``, the penalty), eval with the folded class-agnostic gates.
  ``mask_lr``: the masks' constant learning rate (None: the training's schedule)."""
  keys = tuple(keys)

  def init_extra(rng, model, variables):
    del rng, variables
    graph = models.describe(model)
    return {MASKS: class_masks.init_masks(graph, keys, num_classes, gating, init_value)}

  def loss(ctx, params, extra, batch):
    masks = extra[MASKS]
    rng = jax.random.fold_in(ctx.rng, _NOISE_STREAM)
    gates = class_masks.batch_gates(masks, batch["label"], rng, gating)
    logits, stats = models.apply(ctx.model, ctx.variables(params), batch["image"],
                                 {**dict(ctx.mask or {}), **gates}, train=True, rngs=ctx.rngs())
    ce = jnp.mean(training.cross_entropy(logits, batch["label"]))
    penalty = sparsity_penalty(masks, sparsity)
    return ce + penalty, training.LossOutput(logits, stats, {"sparsity": penalty})

  def eval_logits(model, variables, extra, images, mask):
    return gated_logits(model, variables, extra[MASKS], images, gating, mask)

  return training.Objective(loss=loss, init_extra=init_extra, eval_logits=eval_logits, extra_lr=mask_lr)
