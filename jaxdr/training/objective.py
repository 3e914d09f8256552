"""What a method trains: the loss hook, extra trainable pytrees, held masks, per-layer rates.

The trainer (`jaxdr.training.fit`) owns the loop, the data, the optimiser, checkpoints and
logging; a method plugs in an `Objective`::

    def loss(ctx, params, extra, batch):            # -> (scalar loss, LossOutput)
      gates = soft_label_gates(extra["masks"], batch["label"], ctx.rng)   # [B, C] per gate key
      logits, stats = models.apply(ctx.model, ctx.variables(params), batch["image"],
                                   {**(ctx.mask or {}), **gates}, train=True, rngs=ctx.rngs())
      ce = training.cross_entropy(logits, batch["label"]).mean()
      return ce + penalty(extra), training.LossOutput(logits, stats, {"penalty": penalty(extra)})

    objective = training.Objective(loss=loss, init_extra=lambda rng, model, variables: {...})

``ctx.rng`` is a fresh key per step (``fold_in(key(seed), step)``); noise drawn from it for the
global batch inside the jitted step is computed shard by shard on the devices (partitionable
threefry), so every device draws different noise for its own rows and the run does not depend
on the device count.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxdr import models

PyTree = Any


def cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
  """Per-example softmax cross-entropy, logits [N, K], integer labels [N] -> [N]."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


@flax.struct.dataclass
class LossContext:
  """What a loss hook sees besides the trainables and the batch.

  ``model`` (static), ``batch_stats`` (the state's BatchNorm statistics), ``mask`` (the mask
  held during training, or None), ``rng`` (this step's key), ``step`` (int32 scalar)."""
  model: nn.Module = flax.struct.field(pytree_node=False)
  batch_stats: PyTree
  mask: Optional[Mapping[str, jnp.ndarray]]
  rng: jax.Array
  step: jnp.ndarray

  def variables(self, params: PyTree) -> Dict[str, PyTree]:
    """Model variables with ``params`` and the state's batch statistics."""
    return {"params": params, "batch_stats": self.batch_stats}

  def rngs(self) -> Dict[str, jax.Array]:
    """Flax rng streams for the model: 'dropout' (acts only in train mode)."""
    return {"dropout": jax.random.fold_in(self.rng, 0)}


@flax.struct.dataclass
class LossOutput:
  """``logits`` [B, K] (train accuracy and cross-entropy are logged from them), the new
  ``batch_stats``, and ``metrics``: extra batch-mean scalars to log (e.g. a penalty)."""
  logits: jnp.ndarray
  batch_stats: PyTree
  metrics: Dict[str, jnp.ndarray] = flax.struct.field(default_factory=dict)


LossFn = Callable[[LossContext, PyTree, PyTree, Mapping[str, jnp.ndarray]], Tuple[jnp.ndarray, LossOutput]]


def cross_entropy_loss(ctx: LossContext, params: PyTree, extra: PyTree,
                       batch: Mapping[str, jnp.ndarray]) -> Tuple[jnp.ndarray, LossOutput]:
  """Mean cross-entropy of the model under the held mask (supervised training)."""
  del extra
  logits, stats = models.apply(ctx.model, ctx.variables(params), batch["image"], ctx.mask,
                               train=True, rngs=ctx.rngs())
  return jnp.mean(cross_entropy(logits, batch["label"])), LossOutput(logits, stats)


def no_extra(rng: jax.Array, model: nn.Module, variables: PyTree) -> PyTree:
  del rng, model, variables
  return {}


def masked_logits(model: nn.Module, variables: PyTree, extra: PyTree, images: jnp.ndarray,
                  mask: Optional[Mapping[str, jnp.ndarray]]) -> jnp.ndarray:
  """Eval-mode logits under the held mask (the default `Objective.eval_logits`)."""
  del extra
  return models.apply(model, variables, images, mask)


@dataclasses.dataclass(frozen=True)
class Objective:
  """A method's hooks into the trainer.

  loss: `LossFn` (default: cross-entropy under the held mask).
  init_extra: ``(rng, model, variables) -> pytree`` of extra trainables (default: none).
  eval_logits: ``(model, variables, extra, images, mask) -> logits`` for evaluation.
  layer_lrs: {layer key: fixed learning rate} (0 freezes the layer); others follow the schedule.
  extra_lr, extra_weight_decay: the extras' rate (None: the schedule) and L2 weight decay
    (None: ``train.weight_decay``).
  """
  loss: LossFn = cross_entropy_loss
  init_extra: Callable[[jax.Array, nn.Module, PyTree], PyTree] = no_extra
  eval_logits: Callable[..., jnp.ndarray] = masked_logits
  layer_lrs: Mapping[str, float] = dataclasses.field(default_factory=dict)
  extra_lr: Optional[float] = None
  extra_weight_decay: Optional[float] = None
