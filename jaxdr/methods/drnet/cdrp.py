"""CDRP: per-image control gates fitted by self-distillation (DRNet section 3.1, Wang et al.).

Every gate point of a frozen network (eval mode) gets a gate vector ``lambda`` per image,
initialised to 1 and fitted for ``steps`` steps of SGD with momentum on

    KL(f(x) || f(x; lambda)) + gamma * ||lambda||_1,

clipping the gates to ``[clip_min, clip_max]`` after each step. The L1 term's gradient is
``gamma * sign(lambda)`` (DRNet Formula 2): 0 at a gate that sits at 0, where ``jnp.abs``'s
autodiff would give 1 (`l1_norm`).

"Always maintain the top-1 prediction" (section 4.1) has three readings
(``on_top1_change``); iterates 0..steps are the gates before each step and after the last
one (iterate 0 is the all-ones start, whose top-1 is the original one):

  'best'   (default) the CDRP authors' released code (``get_critical_path`` in their
           cdrp-detect repository): the lowest-loss iterate among those whose top-1 is
           unchanged (their loop scores iterates 0..steps-1; here the last one competes too);
  'reset'  the paper's text: the last iterate, or all ones if its top-1 changed;
  'last'   the latest iterate whose top-1 is unchanged.

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
from jaxdr.methods.drnet.options import ON_TOP1_CHANGE, CdrpOptions  # noqa: F401  (re-exported)


@dataclasses.dataclass
class _State:
  """Per-example optimisation state (a pytree; every leaf gets a leading batch axis):
  the current gates (iterate ``step``), their optimiser state, and the iterate kept as the
  fallback by 'best' / 'last' (its gates, loss and iterate index)."""
  gates: Dict[str, jnp.ndarray]
  opt_state: Any
  kept_gates: Dict[str, jnp.ndarray]
  kept_loss: jnp.ndarray
  kept_step: jnp.ndarray
  step: jnp.ndarray


jax.tree_util.register_dataclass(
    _State, data_fields=["gates", "opt_state", "kept_gates", "kept_loss", "kept_step", "step"], meta_fields=[])


def l1_norm(gates: jnp.ndarray) -> jnp.ndarray:
  """``sum(|gates|)`` over the last axis ([..., C] -> [...]) whose gradient is ``sign(gates)``
  (DRNet Formula 2), so 0 at a gate at 0; ``jnp.abs``'s autodiff gives 1 there, which pushes a
  closed gate further down (and into the momentum) at every step."""
  return jnp.sum(gates * jax.lax.stop_gradient(jnp.sign(gates)), axis=-1)


def _optimizer(options: CdrpOptions) -> optax.GradientTransformation:
  return optax.sgd(options.learning_rate, momentum=options.momentum or None)


def _batch_loss_fn(model, variables, options: CdrpOptions):
  """loss(gates {key: [B, C]}, images [B, H, W, C], target_logp [B, K]) -> (loss [B], logits [B, K]):
  each image's KL + gamma * L1 under its own gates, in one batched forward."""
  def loss(gates, images, target_logp):
    logits = models.apply(model, variables, images, gates)
    logp = jax.nn.log_softmax(logits)
    kl = jnp.sum(jnp.exp(target_logp) * (target_logp - logp), axis=-1)
    l1 = sum(l1_norm(g) for g in jax.tree_util.tree_leaves(gates))
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

  ``info`` (each [B]): ``loss`` (of the returned gates), ``changed`` (the last iterate's top-1
  differs from the original one, so ``on_top1_change`` picked the returned gates),
  ``step`` (the iterate returned, 0..steps; 0 is the all-ones start), ``reset`` (the image
  keeps the all-ones start although it was fitted: ``step == 0`` with ``steps > 0``; under
  'reset' exactly ``changed``) and ``target`` (original top-1).
  Cached per (model, options), so every caller shares the compiled function.
  """
  graph = models.describe(model)
  tx = _optimizer(options)
  start_loss = options.gamma * sum(g.channels for g in graph.gates)  # KL 0 at all ones
  mode = options.on_top1_change

  def init_one(target_logp):
    del target_logp
    gates = {g.key: jnp.ones((g.channels,), jnp.float32) for g in graph.gates}
    zero = jnp.zeros((), jnp.int32)
    return _State(gates=gates, opt_state=tx.init(gates), kept_gates=gates,
                  kept_loss=jnp.asarray(start_loss, jnp.float32), kept_step=zero, step=zero)

  def keeps(state: _State, value, unchanged):
    """Whether the evaluated iterate replaces the kept fallback ('best' / 'last')."""
    if mode == "best":
      return unchanged & (value < state.kept_loss)
    if mode == "last":
      return unchanged
    return jnp.zeros((), bool)  # 'reset' falls back to all ones, no bookkeeping

  def update_one(state: _State, value, logits, grads, target_logp):
    """One image's optimiser step, given its loss, logits and gate gradients (of iterate ``step``)."""
    keep = keeps(state, value, jnp.argmax(logits) == jnp.argmax(target_logp))
    pick = lambda new, old: jnp.where(keep, new, old)  # noqa: E731
    updates, opt_state = tx.update(grads, state.opt_state, state.gates)
    gates = optax.apply_updates(state.gates, updates)
    gates = jax.tree_util.tree_map(lambda g: jnp.clip(g, options.clip_min, options.clip_max), gates)
    return _State(gates=gates, opt_state=opt_state,
                  kept_gates=jax.tree_util.tree_map(pick, state.gates, state.kept_gates),
                  kept_loss=pick(value, state.kept_loss), kept_step=pick(state.step, state.kept_step),
                  step=state.step + 1)

  def choose_one(state: _State, value, logits, target_logp):
    """One image's returned gates: the last iterate, or the fallback of ``on_top1_change``."""
    unchanged = jnp.argmax(logits) == jnp.argmax(target_logp)
    if mode == "reset":
      use = unchanged
      fallback = jax.tree_util.tree_map(jnp.ones_like, state.gates)
      fallback_loss, fallback_step = jnp.asarray(start_loss, jnp.float32), jnp.zeros((), jnp.int32)
    else:
      use = keeps(state, value, unchanged)
      fallback, fallback_loss, fallback_step = state.kept_gates, state.kept_loss, state.kept_step
    gates = jax.tree_util.tree_map(lambda g, f: jnp.where(use, g, f), state.gates, fallback)
    step = jnp.where(use, state.step, fallback_step)
    return gates, dict(loss=jnp.where(use, value, fallback_loss), changed=~unchanged, step=step,
                       reset=(step == 0) & (options.steps > 0))

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
