"""CDRP: per-image control gates fitted by self-distillation (DRNet section 3.1, Wang et al.).

Every gate point of a frozen network (eval mode) gets a gate vector ``lambda`` per image,
initialised to 1 and fitted for ``steps`` steps of SGD with momentum on

    KL(f(x) || f(x; lambda)) + gamma * ||lambda||_1,

clipping the gates to ``[clip_min, clip_max]`` after each step. If the gated network's
top-1 prediction no longer equals the original one, the image's gates become all ones
(``on_top1_change='reset'``) or the lowest-loss gates among the steps whose top-1 was
unchanged (``'best'``, as the CDRP authors' code does; the all-ones start always
qualifies, with loss ``gamma * num_channels``).

The whole batch is fitted at once inside one ``jit`` (``loop='scan'`` with ``unroll``, or
``'fori'``; ``loop='python'`` drives a jitted step from Python). Each step evaluates the
per-example losses and their gradients w.r.t. the [B, C] gates in one batched
forward/backward (what ``vmap`` of the per-example gradient computes, with the batch
visible to the model, so its CPU conv algorithms can use it), then applies the
per-example optimiser step (SGD, clip, top-1 bookkeeping) ``vmap``ed over the images.
Examples never interact (eval mode, per-example loss), so each image's gates equal
fitting that image alone.

    fit = cdrp.make_fitter(model, cdrp.CdrpOptions())
    gates, info = fit(variables, images)      # gates: {gate_key: [B, C]}
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, Tuple

import jax
import jax.numpy as jnp
import optax

from jaxdr import models
from jaxdr import options as options_lib

LOOPS = ("scan", "fori", "python")
ON_TOP1_CHANGE = ("reset", "best")


@dataclasses.dataclass(frozen=True)
class CdrpOptions(options_lib.Options):
  """CDRP hyper-parameters (DRNet / CDRP defaults), the ``drnet.cdrp`` config section;
  ``loop``/``unroll`` only change speed (see benchmarks/results/cdrp_speed.md)."""
  steps: int = 30
  learning_rate: float = 0.1
  momentum: float = 0.9
  gamma: float = 0.05  # loss KL + gamma * L1
  clip_min: float = 0.0
  clip_max: float = 10.0
  on_top1_change: str = "reset"  # 'reset' (to all ones) | 'best' (lowest-loss unchanged-top-1 gates)
  loop: str = "scan"  # 'scan' | 'fori' | 'python'
  unroll: int = 1

  def __post_init__(self):
    check = options_lib.check
    check(self.steps >= 0, f"cdrp steps must be >= 0, got {self.steps}")
    check(self.loop in LOOPS, f"cdrp loop must be one of {LOOPS}, got {self.loop!r}")
    check(self.on_top1_change in ON_TOP1_CHANGE,
          f"cdrp on_top1_change must be one of {ON_TOP1_CHANGE}, got {self.on_top1_change!r}")
    check(self.unroll >= 1, f"cdrp unroll must be >= 1, got {self.unroll}")
    check(self.clip_min <= self.clip_max,
          f"cdrp needs clip_min <= clip_max, got [{self.clip_min}, {self.clip_max}]")


@dataclasses.dataclass
class _State:
  """Per-example optimisation state (a pytree; every leaf gets a leading batch axis)."""
  gates: Dict[str, jnp.ndarray]
  opt_state: Any
  best_gates: Dict[str, jnp.ndarray]
  best_loss: jnp.ndarray


jax.tree_util.register_dataclass(_State, data_fields=["gates", "opt_state", "best_gates", "best_loss"],
                                 meta_fields=[])


def _optimizer(options: CdrpOptions) -> optax.GradientTransformation:
  return optax.sgd(options.learning_rate, momentum=options.momentum or None)


def _batch_loss_fn(model, variables, options: CdrpOptions):
  """loss(gates {key: [B, C]}, images [B, H, W, C], target_logp [B, K]) -> (loss [B], logits [B, K]):
  each image's KL + gamma * L1 under its own gates, in one batched forward."""
  def loss(gates, images, target_logp):
    logits = models.apply(model, variables, images, gates)
    logp = jax.nn.log_softmax(logits)
    kl = jnp.sum(jnp.exp(target_logp) * (target_logp - logp), axis=-1)
    l1 = sum(jnp.sum(jnp.abs(g), axis=-1) for g in jax.tree_util.tree_leaves(gates))
    return kl + options.gamma * l1, logits
  return loss


def _loss_and_grads(model, variables, options: CdrpOptions, gates, images, target_logp):
  """Per-example (loss [B], logits [B, K], d loss_b / d gates_b {key: [B, C]}): the gradient
  of the summed loss, since example b's loss depends only on its own gates."""
  loss = _batch_loss_fn(model, variables, options)

  def summed(g):
    values, logits = loss(g, images, target_logp)
    return jnp.sum(values), (values, logits)

  (_, (values, logits)), grads = jax.value_and_grad(summed, has_aux=True)(gates)
  return values, logits, grads


@functools.lru_cache(maxsize=16)
def make_fitter(model, options: CdrpOptions = CdrpOptions()) -> Callable:
  """Returns ``fit(variables, images [B, H, W, C]) -> (gates {key: [B, C]}, info)``.

  ``info``: ``loss`` [B] (loss of the returned gates' last evaluation), ``changed`` [B]
  (the final gates changed top-1, so the fallback was used), ``target`` [B] (original top-1).
  Cached per (model, options), so every caller shares the compiled function.
  """
  graph = models.describe(model)
  tx = _optimizer(options)

  def init_one(target_logp):
    del target_logp
    gates = {g.key: jnp.ones((g.channels,), jnp.float32) for g in graph.gates}
    n = sum(g.channels for g in graph.gates)
    return _State(gates=gates, opt_state=tx.init(gates), best_gates=gates,
                  best_loss=jnp.asarray(options.gamma * n, jnp.float32))

  def update_one(state: _State, value, logits, grads, target_logp):
    """One image's optimiser step, given its loss, logits and gate gradients."""
    unchanged = jnp.argmax(logits) == jnp.argmax(target_logp)
    better = unchanged & (value < state.best_loss)
    best_gates = jax.tree_util.tree_map(lambda g, b: jnp.where(better, g, b), state.gates, state.best_gates)
    best_loss = jnp.where(better, value, state.best_loss)
    updates, opt_state = tx.update(grads, state.opt_state, state.gates)
    gates = optax.apply_updates(state.gates, updates)
    gates = jax.tree_util.tree_map(lambda g: jnp.clip(g, options.clip_min, options.clip_max), gates)
    return _State(gates=gates, opt_state=opt_state, best_gates=best_gates, best_loss=best_loss)

  def choose_one(state: _State, value, logits, target_logp):
    """One image's final gates: the fitted ones, or the fallback if top-1 changed."""
    unchanged = jnp.argmax(logits) == jnp.argmax(target_logp)
    if options.on_top1_change == "best":
      better = unchanged & (value < state.best_loss)
      fallback = state.best_gates
      value = jnp.where(better, value, state.best_loss)
      use = better
    else:
      fallback = jax.tree_util.tree_map(jnp.ones_like, state.gates)
      use = unchanged
      value = jnp.where(unchanged, value, options.gamma * sum(g.channels for g in graph.gates))
    gates = jax.tree_util.tree_map(lambda g, f: jnp.where(use, g, f), state.gates, fallback)
    return gates, dict(loss=value, changed=~unchanged)

  init_b, update_b, choose_b = jax.vmap(init_one), jax.vmap(update_one), jax.vmap(choose_one)

  def step_b(variables, state: _State, images, target_logp):
    values, logits, grads = _loss_and_grads(model, variables, options, state.gates, images, target_logp)
    return update_b(state, values, logits, grads, target_logp)

  def finish_b(variables, state: _State, images, target_logp):
    values, logits = _batch_loss_fn(model, variables, options)(state.gates, images, target_logp)
    return choose_b(state, values, logits, target_logp)

  def targets(variables, images):
    return jax.nn.log_softmax(models.apply(model, variables, images))

  if options.loop == "python":
    start = jax.jit(lambda v, x: (lambda t: (init_b(t), t))(targets(v, x)))
    step = jax.jit(step_b, donate_argnums=(1,))
    finish = jax.jit(finish_b)

    def fit(variables, images):
      state, target_logp = start(variables, images)
      for _ in range(options.steps):
        state = step(variables, state, images, target_logp)
      gates, info = finish(variables, state, images, target_logp)
      info["target"] = jnp.argmax(target_logp, -1)
      return gates, info
    return fit

  @jax.jit
  def fit_jit(variables, images):
    target_logp = targets(variables, images)
    state = init_b(target_logp)
    body = lambda s: step_b(variables, s, images, target_logp)  # noqa: E731
    if options.loop == "scan":
      state, _ = jax.lax.scan(lambda s, _: (body(s), None), state, None, length=options.steps,
                              unroll=min(options.unroll, max(options.steps, 1)))
    else:
      state = jax.lax.fori_loop(0, options.steps, lambda i, s: body(s), state)
    gates, info = finish_b(variables, state, images, target_logp)
    info["target"] = jnp.argmax(target_logp, -1)
    return gates, info

  return fit_jit


def fit_gates(model, variables, images, options: CdrpOptions = CdrpOptions()
              ) -> Tuple[Dict[str, jnp.ndarray], dict]:
  """One-shot convenience: ``make_fitter(model, options)(variables, images)``."""
  return make_fitter(model, options)(variables, images)
