"""The training loop every method shares: `fit`.

    result = training.fit(model, options, inputs.DatasetSource("fashion_mnist"), seed=0,
                          workdir=WORKDIR, objective=training.Objective(loss=my_loss, ...))
    result.variables, result.extra, result.metrics

One jitted step on a 1-D data mesh over every device of every process (`distributed`):
the batch is sharded, the state replicated. The step's key is ``fold_in(key(seed), step)``
(`objective.LossContext`). With a ``workdir`` the run keeps orbax checkpoints (a rerun
resumes exactly: batches are a pure function of (seed, step), the checkpoint holds the
state and the running metric sums), ``metrics.jsonl`` and TensorBoard files, all process 0
but the collective checkpoint; without one it only logs.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, Dict, Mapping, Optional

from absl import logging
from etils import epath
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdr.training import distributed, optim
from jaxdr.training import state as state_lib
from jaxdr.training.evaluation import sums as batch_sums
from jaxdr.training.metrics import MetricWriter, read_metrics, summarise
from jaxdr.training.objective import LossContext, Objective
from jaxdr.training.options import TrainOptions

PyTree = Any
Evaluator = Callable[[PyTree, PyTree], Dict[str, float]]


@dataclasses.dataclass
class FitResult:
  """Host copies of the trained ``variables`` and ``extra``, and the run's ``metrics``
  (last logged train values, last evaluation, steps, epochs, times, throughput)."""
  variables: Dict[str, PyTree]
  extra: PyTree
  metrics: Dict[str, Any]


def total_steps(options: TrainOptions, steps_per_epoch: int) -> int:
  total = int(options.epochs * steps_per_epoch)
  return min(total, options.max_steps) if options.max_steps else total


def _train_step(model: nn.Module, tx: optax.GradientTransformation, objective: Objective,
                state: state_lib.TrainState, batch: Mapping[str, jnp.ndarray], base_rng: jax.Array,
                mask) -> tuple:
  """One optimiser step on a global batch: the new state and the batch's metric sums."""
  ctx = LossContext(model=model, batch_stats=state.batch_stats, mask=mask,
                    rng=jax.random.fold_in(base_rng, state.step), step=state.step)

  def loss_fn(trainable):
    return objective.loss(ctx, trainable["params"], trainable["extra"], batch)

  grads, out = jax.grad(loss_fn, has_aux=True)(state.trainable)
  updates, opt_state = tx.update(grads, state.opt_state, state.trainable)
  trainable = optax.apply_updates(state.trainable, updates)
  logged = batch_sums(out.logits, batch)
  logged.update({k: jnp.asarray(v, jnp.float32) * logged["count"] for k, v in out.metrics.items()})
  return state.replace(step=state.step + 1, params=trainable["params"], extra=trainable["extra"],
                       batch_stats=out.batch_stats, opt_state=opt_state), logged


def _init_state(model, tx_for, objective: Objective, seed: int, init_variables, mesh):
  """The step-0 state (params from ``model.init(key(seed))`` unless ``init_variables``) and
  its optimiser."""
  def init(rng, given):
    if given is None:
      x = jnp.zeros((1, model.image_size, model.image_size, model.input_channels), jnp.float32)
      given = model.init(rng, x, train=False)
    params, stats = given["params"], given.get("batch_stats", {})
    extra = objective.init_extra(jax.random.fold_in(rng, 1), model, given)
    return params, stats, extra

  rng = jax.random.PRNGKey(seed)
  params, stats, extra = jax.eval_shape(init, rng, init_variables)
  tx = tx_for({"params": params, "extra": extra})

  def build(rng, given):
    params, stats, extra = init(rng, given)
    return state_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=stats,
                                extra=extra, opt_state=tx.init({"params": params, "extra": extra}))
  return jax.jit(build, out_shardings=distributed.replicated(mesh))(rng, init_variables), tx


def _fmt_time(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def fit(model: nn.Module, options: TrainOptions, source, *, objective: Objective = Objective(),
        seed: int = 0, workdir=None, init_variables: Optional[PyTree] = None,
        mask: Optional[Mapping[str, Any]] = None, evaluate: Optional[Evaluator] = None,
        name: str = "train") -> FitResult:
  """Trains ``model`` on ``source`` (`inputs.DatasetSource` / `inputs.ArraySource`).

  ``mask`` is held in every step (and handed to ``objective.eval_logits``); ``evaluate(variables,
  extra) -> {name: value}`` runs every ``options.eval_every_epochs`` and at the end; ``name``
  prefixes the progress lines.
  """
  workdir = None if workdir is None else epath.Path(workdir)
  if workdir is not None:
    workdir.mkdir(parents=True, exist_ok=True)
  mesh = distributed.data_mesh()
  spe = options.steps_per_epoch or source.steps_per_epoch(options.batch_size)
  steps = total_steps(options, spe)
  schedule = optim.learning_rate_schedule(options, spe, steps)
  tx_for = functools.partial(optim.make_optimizer, options, schedule,
                             layer_lrs=objective.layer_lrs, extra_lr=objective.extra_lr,
                             extra_weight_decay=objective.extra_weight_decay)
  state, tx = _init_state(model, tx_for, objective, seed, init_variables, mesh)
  mask = None if mask is None else {k: jnp.asarray(v, jnp.float32) for k, v in dict(mask).items()}
  base_rng = jax.random.fold_in(jax.random.PRNGKey(seed), 0x7ea1)

  first = jax.eval_shape(lambda s, b: _train_step(model, tx, objective, s, b, base_rng, mask)[1], state,
                         source.spec(options.batch_size))
  accum = {k: np.float32(0) for k in first}
  manager = state_lib.checkpoint_manager(workdir) if workdir is not None else None
  if manager is not None:
    state, accum = state_lib.restore(manager, state, accum, mesh)
    accum = {k: np.float32(v) for k, v in accum.items()}  # float32 throughout: resume is exact
  start = int(state.step)
  if start:
    logging.info("%s: resuming from step %d of %d (%s)", name, start, steps, manager.directory)
  writer = MetricWriter(workdir, start)
  log_every = options.log_every_steps or spe
  ckpt_every = options.checkpoint_every_steps or spe
  eval_every = options.eval_every_epochs * spe

  step_fn = jax.jit(functools.partial(_train_step, model, tx, objective), donate_argnums=(0,),
                    out_shardings=(distributed.replicated(mesh), distributed.replicated(mesh)))
  batches = source.batches(options.batch_size, seed, start, spe)
  eval_metrics: Dict[str, float] = {}
  last_train: Dict[str, float] = {}
  t_start = time.time()
  t_window, n_window, timed_images, timed_seconds = time.time(), 0, 0, 0.0
  first_step, pending = True, []
  for step in range(start + 1, steps + 1):
    batch = distributed.global_batch(mesh, next(batches))
    state, logged = step_fn(state, batch, base_rng, mask)
    pending.append(logged)  # fetched at log / checkpoint steps: no host sync every step
    n_window += options.batch_size
    if first_step:  # leave compilation out of the throughput
      jax.block_until_ready(logged)
      t_window, n_window, first_step = time.time(), 0, False
    is_log = step % log_every == 0 or step == steps
    is_ckpt = step % ckpt_every == 0 or step == steps
    if is_log or is_ckpt:
      for logged in jax.device_get(pending):  # in step order: float32 sums as an unbatched loop
        accum = {k: np.float32(accum[k] + np.float32(logged[k])) for k in accum}
      pending = []
    if is_log:
      now = time.time()
      scalars = {**summarise(accum, "train"), "learning_rate": float(schedule(step - 1)),
                 "epoch": step / spe}
      speed = "? img/s  ETA ?"  # the first step's window holds only its compile: no rate
      if n_window:
        ips = n_window / max(now - t_window, 1e-9)
        timed_images += n_window
        timed_seconds += now - t_window
        scalars["images_per_sec"] = ips
        speed = f"{ips:.0f} img/s  ETA {_fmt_time((steps - step) * options.batch_size / ips)}"
      writer.write(step, scalars)
      last_train = scalars
      logging.info("%s: step %d/%d  epoch %.2f  loss %.4f  acc %.4f  lr %.4g  %s", name, step, steps,
                   step / spe, scalars["train_loss"], scalars["train_accuracy"],
                   scalars["learning_rate"], speed)
      accum = {k: np.float32(0) for k in accum}
      t_window, n_window = time.time(), 0
    if evaluate is not None and (step % eval_every == 0 or step == steps):
      eval_metrics = evaluate(state.variables, state.extra)
      writer.write(step, {**eval_metrics, "epoch": step / spe})
      logging.info("%s: step %d  epoch %.2f  %s", name, step, step / spe,
                   "  ".join(f"{k} {v:.4f}" for k, v in eval_metrics.items() if isinstance(v, float)))
      t_window, n_window = time.time(), 0
    if manager is not None and is_ckpt:
      state_lib.save(manager, state, accum)

  if manager is not None:
    manager.wait_until_finished()
    manager.close()
  writer.close()
  if evaluate is not None and not eval_metrics:  # resumed at the end: nothing was re-run
    eval_metrics = evaluate(state.variables, state.extra)
  if not last_train and workdir is not None:  # resumed at the end: the last logged values
    last_train = ([r for r in read_metrics(workdir) if "train_loss" in r] or [{}])[-1]
  metrics = {**eval_metrics,
             **{k: v for k, v in last_train.items() if k.startswith("train_")},
             "steps": int(state.step), "epochs": int(state.step) / spe,
             "train_time_s": time.time() - t_start,
             "images_per_sec": timed_images / timed_seconds if timed_seconds else float("nan"),
             "num_devices": jax.device_count(), "num_processes": jax.process_count()}
  metrics.setdefault("train_loss", float("nan"))
  metrics.setdefault("train_accuracy", float("nan"))
  return FitResult(variables=jax.device_get(state.variables), extra=jax.device_get(state.extra),
                   metrics=metrics)
