"""Fine-tuning a masked (compressed) network with a learning rate per layer.

CAR's recipe (section 3.1): learning rate 0 for the compressed layer, 1e-3 for the layer after
it, 1e-4 for every other layer, 500 iterations. Any method can pass its own
``{layer key: rate}``; rates are routed to the parameters with `optax.multi_transform`
(a rate of 0 is `optax.set_to_zero`, so those weights stay bit-identical). The mask stays
applied during training, so pruned filters stay pruned.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdr import models

PyTree = Any


@dataclasses.dataclass(frozen=True)
class FinetuneOptions:
  """steps / batch size / momentum / weight decay of the SGD run; ``default_lr`` for layers
  not named in ``layer_lrs``."""
  steps: int = 500
  batch_size: int = 64
  default_lr: float = 1e-4
  momentum: float = 0.9
  weight_decay: float = 0.0
  seed: int = 0
  log_every: int = 0


def layer_of(path: Tuple[str, ...], layer_keys) -> Optional[str]:
  """The longest layer key that is a prefix of a parameter path (None: no layer)."""
  best = None
  for n in range(1, len(path) + 1):
    k = "/".join(path[:n])
    if k in layer_keys:
      best = k
  return best


def rate_labels(params: PyTree, layer_lrs: Mapping[str, float], default_lr: float
                ) -> Tuple[PyTree, Dict[str, float]]:
  """Label tree for `optax.multi_transform` and the rate of each label."""
  keys = set(layer_lrs)
  rates: Dict[str, float] = {}

  def label(path, _):
    layer = layer_of(tuple(path), keys)
    rate = float(layer_lrs[layer]) if layer is not None else float(default_lr)
    name = f"lr={rate:g}"
    rates[name] = rate
    return name

  return flax.traverse_util.path_aware_map(label, params), rates


def per_layer_optimizer(params: PyTree, layer_lrs: Mapping[str, float], options: FinetuneOptions
                        ) -> optax.GradientTransformation:
  """SGD + momentum with the rate of each parameter's layer (0 -> frozen)."""
  labels, rates = rate_labels(params, layer_lrs, options.default_lr)

  def sgd(rate):
    if rate == 0.0:
      return optax.set_to_zero()
    return optax.chain(optax.add_decayed_weights(options.weight_decay),
                       optax.sgd(rate, momentum=options.momentum or None))

  return optax.multi_transform({name: sgd(rate) for name, rate in rates.items()}, labels)


def car_layer_rates(model, key: str, compressed: float = 0.0, following: float = 1e-3
                    ) -> Dict[str, float]:
  """The paper's rates: ``compressed`` for the layer(s) writing gate ``key``, ``following``
  for the layer(s) reading it (everything else gets ``FinetuneOptions.default_lr``)."""
  graph = models.describe(model)
  rates = {l.key: following for l in graph.consumers(key)}
  rates.update({l.key: compressed for l in graph.producers(key)})
  return rates


def _step_fn(model, tx):
  def step(variables, opt_state, mask, images, labels):
    def loss_fn(params):
      logits, stats = models.apply(model, {**variables, "params": params}, images, mask, train=True)
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      return loss, stats
    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
    updates, opt_state = tx.update(grads, opt_state, variables["params"])
    params = optax.apply_updates(variables["params"], updates)
    new = {**variables, "params": params}
    if stats:
      new["batch_stats"] = stats
    return new, opt_state, loss
  return jax.jit(step)


def finetune(model, variables: PyTree, images: np.ndarray, labels: np.ndarray,
             mask: Optional[Mapping[str, Any]], layer_lrs: Mapping[str, float],
             options: FinetuneOptions = FinetuneOptions(),
             log: Callable[[str], None] = print) -> PyTree:
  """Trains ``variables`` under ``mask`` for ``options.steps`` SGD steps on random batches of
  (images [N, H, W, C], labels [N]); returns the new variables."""
  graph = models.describe(model)
  unknown = sorted(set(layer_lrs) - {l.key for l in graph.layers})
  if unknown:
    raise ValueError(f"unknown layers in layer_lrs: {unknown}")
  images, labels = np.asarray(images, np.float32), np.asarray(labels, np.int32)
  if images.shape[0] != labels.shape[0] or images.shape[0] < options.batch_size:
    raise ValueError(f"need at least batch_size={options.batch_size} matching images and labels, "
                     f"got {images.shape[0]} images and {labels.shape[0]} labels")
  variables = dict(variables)
  tx = per_layer_optimizer(variables["params"], layer_lrs, options)
  opt_state = tx.init(variables["params"])
  mask = {k: jnp.asarray(v, jnp.float32) for k, v in dict(mask or {}).items()}
  step = _step_fn(model, tx)
  rng = np.random.default_rng(options.seed)
  for i in range(options.steps):
    idx = rng.choice(images.shape[0], options.batch_size, replace=False)
    variables, opt_state, loss = step(variables, opt_state, mask, images[idx], labels[idx])
    if options.log_every and (i + 1) % options.log_every == 0:
      log(f"finetune: step {i + 1}/{options.steps} loss {float(loss):.4f}")
  return variables
