"""Supervised training: optax SGD, data parallel over every device of every host, orbax resume.

    metrics = train_and_evaluate(config, workdir)       # trains, checkpoints, evaluates
    model, variables = get_or_train(config, workdir)    # what the methods call

One `jax.jit`-ed step runs on a 1-D mesh ``('data',)`` over ``jax.devices()``: the batch is
sharded along it, the train state is replicated, and XLA inserts the gradient all-reduce
(BatchNorm statistics are taken over the global batch, so any device count computes the
same step). Each process reads only its slice of every global batch
(``data.iterator(process_index=, process_count=)``) and the slices are stitched together
with `jax.make_array_from_process_local_data`.

Resume is exact: the train input is a pure function of ``(seed, step)`` (epoch ``e`` is
read with seed ``fold(seed, e)`` and the batches before ``step`` are skipped), and the
checkpoint holds the whole `TrainState` plus the running sums of the logged metrics.

Weight decay is L2 added to the gradient before momentum (PyTorch's ``SGD(weight_decay=)``,
what the papers used) on conv / dense kernels only, not on biases or BatchNorm scales.

Config knobs beyond docs/architecture.md (all optional, 0 = off):
  train.max_steps         stop after this many steps (the schedule spans them)
  train.steps_per_epoch   override the epoch length (a small train subset for tests)
  train.eval_every_epochs evaluate on the test split every this many epochs (default 1)
  train.num_eval_examples evaluate on the first ceil(N / processes) test examples of each
                          process's shard only (one process: the first N)
"""
from __future__ import annotations

import functools
import itertools
import json
import os
import time
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

from absl import logging
from etils import epath
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from jaxdr import checkpoints
from jaxdr import data
from jaxdr import models

PyTree = Any
DATA_AXIS = "data"


@flax.struct.dataclass
class TrainState:
  """Everything a training step reads and writes (all replicated across devices)."""
  step: jnp.ndarray
  params: PyTree
  batch_stats: PyTree
  opt_state: PyTree

  @property
  def variables(self) -> Dict[str, PyTree]:
    if not jax.tree.leaves(self.batch_stats):  # a model without BatchNorm (LeNet-5)
      return {"params": self.params}
    return {"params": self.params, "batch_stats": self.batch_stats}


# ----------------------------------------------------------------------------- distribution


def maybe_initialize_distributed(coordinator_address: str = "", num_processes: int = 0,
                                 process_id: int = -1) -> None:
  """Joins a multi-process run (``jax.distributed.initialize``) when one is asked for.

  Explicit arguments win; otherwise JAX's own auto-detection runs on Cloud TPU / SLURM /
  when ``JAX_COORDINATOR_ADDRESS`` is set. A single local process does nothing.
  """
  if jax.distributed.is_initialized():
    return
  if coordinator_address:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes or None,
                               process_id=None if process_id < 0 else process_id)
  elif os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("TPU_WORKER_HOSTNAMES"):
    jax.distributed.initialize()


def data_mesh() -> jax.sharding.Mesh:
  """1-D mesh over all devices of all processes; Auto axes so plain jit + NamedSharding works."""
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,))


def _replicated(mesh):
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def _batch_sharded(mesh):
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(DATA_AXIS))


def global_batch(mesh, local: Mapping[str, np.ndarray]) -> Dict[str, jax.Array]:
  """This process's slice of a batch -> one global array per key, sharded along 'data'."""
  sharding = _batch_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local.items()}


def local_batch_size(global_batch_size: int) -> int:
  """Per-process share of a global batch; it must split evenly over every device."""
  if global_batch_size % jax.device_count():
    raise ValueError(f"batch size {global_batch_size} is not divisible by the "
                     f"{jax.device_count()} devices")
  return global_batch_size // jax.process_count()


# ----------------------------------------------------------------------------- optimiser


def _steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  total = int(config.train.epochs * steps_per_epoch)
  return min(total, config.train.max_steps) if config.train.get("max_steps", 0) else total


def learning_rate_schedule(train_cfg: ml_collections.ConfigDict, steps_per_epoch: int,
                           total_steps: int) -> optax.Schedule:
  """Linear warm-up from 0, then 'cosine' (to 0 at ``total_steps``), 'step' (x gamma at
  each milestone epoch), 'constant' or 'inv' (Caffe: x (1 + gamma * step) ** -power)."""
  base = float(train_cfg.learning_rate)
  warmup = int(round(train_cfg.get("warmup_epochs", 0) * steps_per_epoch))
  warmup = min(warmup, max(total_steps - 1, 0))
  kind = train_cfg.get("schedule", "cosine")
  if kind == "cosine":
    main = optax.cosine_decay_schedule(base, max(total_steps - warmup, 1))
  elif kind == "step":
    bounds = {int(round(m * steps_per_epoch)) - warmup: float(train_cfg.gamma)
              for m in train_cfg.milestones}
    main = optax.piecewise_constant_schedule(base, bounds)
  elif kind == "constant":
    main = optax.constant_schedule(base)
  elif kind == "inv":  # Caffe's lr_policy "inv": base * (1 + gamma * step) ** -power
    gamma, power = float(train_cfg.gamma), float(train_cfg.power)
    main = lambda step: base * (1.0 + gamma * step) ** (-power)
  else:
    raise ValueError(f"train.schedule must be 'cosine', 'step', 'constant' or 'inv', got {kind!r}")
  if not warmup:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, base, warmup), main], [warmup])


def _kernels_only(params: PyTree) -> PyTree:
  return flax.traverse_util.path_aware_map(lambda path, _: path[-1] == "kernel", params)


def make_optimizer(train_cfg: ml_collections.ConfigDict, schedule: optax.Schedule
                   ) -> optax.GradientTransformation:
  """SGD (+ momentum / Nesterov) with L2 weight decay on kernels added to the gradient."""
  if train_cfg.get("optimizer", "sgd") != "sgd":
    raise ValueError(f"train.optimizer must be 'sgd', got {train_cfg.optimizer!r}")
  return optax.chain(
      optax.add_decayed_weights(float(train_cfg.weight_decay), mask=_kernels_only),
      optax.sgd(schedule, momentum=float(train_cfg.momentum) or None,
                nesterov=bool(train_cfg.get("nesterov", False))))


# ----------------------------------------------------------------------------- steps


def create_model(config: ml_collections.ConfigDict) -> nn.Module:
  return models.create(**model_kwargs(config))


def model_kwargs(config: ml_collections.ConfigDict) -> Dict[str, Any]:
  """Constructor arguments of the model ``config`` trains (what checkpoints store)."""
  ds = config.dataset
  return dict(name=config.model.name, num_classes=int(ds.num_classes), image_size=int(ds.image_size),
              input_channels=int(ds.input_channels), width=float(config.model.width),
              conv_impl=config.model.get("conv_impl", "auto"),
              channels=dict(config.model.get("channels", None) or {}))


def cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
  """Per-example softmax cross-entropy, logits [N, K], integer labels [N] -> [N]."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def train_step(model: nn.Module, tx: optax.GradientTransformation, state: TrainState,
               batch: Mapping[str, jnp.ndarray]) -> Tuple[TrainState, Dict[str, jnp.ndarray]]:
  """One SGD step on a global batch; returns the new state and summed loss / correct / count."""
  images, labels = batch["image"], batch["label"]

  def loss_fn(params):
    logits, new_stats = models.apply(model, {"params": params, "batch_stats": state.batch_stats},
                                     images, None, train=True)
    losses = cross_entropy(logits, labels)
    return jnp.mean(losses), (logits, losses, new_stats)

  grads, (logits, losses, new_stats) = jax.grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  sums = {"loss": jnp.sum(losses),
          "correct": jnp.sum((jnp.argmax(logits, -1) == labels).astype(jnp.float32)),
          "count": jnp.asarray(labels.shape[0], jnp.float32)}
  return state.replace(step=state.step + 1, params=params, batch_stats=new_stats,
                       opt_state=opt_state), sums


def eval_step(model: nn.Module, variables: PyTree, batch: Mapping[str, jnp.ndarray]
              ) -> Dict[str, jnp.ndarray]:
  """Summed loss / correct / count of one eval batch; padded rows (mask 0) do not count."""
  logits = models.apply(model, variables, batch["image"], None, train=False)
  weight = batch.get("mask", jnp.ones(batch["label"].shape, jnp.float32)).astype(jnp.float32)
  correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
  return {"loss": jnp.sum(cross_entropy(logits, batch["label"]) * weight),
          "correct": jnp.sum(correct * weight), "count": jnp.sum(weight)}


def _summarise(sums: Mapping[str, Any], prefix: str) -> Dict[str, float]:
  count = max(float(sums["count"]), 1.0)
  return {f"{prefix}_loss": float(sums["loss"]) / count,
          f"{prefix}_accuracy": float(sums["correct"]) / count}


# ----------------------------------------------------------------------------- evaluation


def evaluate(model: nn.Module, variables: PyTree, images: np.ndarray, labels: np.ndarray,
             mask: Optional[np.ndarray] = None, batch_size: int = 256) -> float:
  """Top-1 accuracy (a fraction) of ``model`` on in-memory images [N, H, W, C] / labels [N].

  ``mask`` [N] (0/1) leaves rows out. Runs on the local devices; the last batch is padded.
  """
  images, labels = np.asarray(images), np.asarray(labels)
  if images.shape[0] != labels.shape[0]:
    raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
  weight = np.ones(labels.shape, np.float32) if mask is None else np.asarray(mask, np.float32)
  step = _jitted_eval_step(model)
  correct = count = 0.0
  for start in range(0, images.shape[0], batch_size):
    sl = slice(start, start + batch_size)
    batch = _pad({"image": images[sl], "label": labels[sl], "mask": weight[sl]}, batch_size)
    sums = step(variables, batch)
    correct += float(sums["correct"])
    count += float(sums["count"])
  return correct / max(count, 1.0)


@functools.lru_cache(maxsize=32)
def _jitted_eval_step(model):
  return jax.jit(functools.partial(eval_step, model))


def _pad(batch: Dict[str, np.ndarray], size: int) -> Dict[str, np.ndarray]:
  n = batch["label"].shape[0]
  if n == size:
    return batch
  return {k: np.concatenate([v, np.zeros((size - n,) + v.shape[1:], v.dtype)])
          for k, v in batch.items()}


def evaluate_split(config: ml_collections.ConfigDict, model: nn.Module, variables: PyTree,
                   mesh) -> Dict[str, float]:
  """Exact ``test_loss`` / ``test_accuracy`` over the test split (or its first
  ``train.num_eval_examples`` examples)."""
  cfg, ds = config.train, config.dataset
  eval_bs = int(cfg.get("eval_batch_size", 0) or cfg.batch_size)
  local_bs = local_batch_size(eval_bs)
  step = _jitted_sharded_eval(model, mesh)
  limit = int(cfg.get("num_eval_examples", 0) or 0)
  local_limit = -(-limit // jax.process_count())
  totals = {"loss": 0.0, "correct": 0.0, "count": 0.0}
  seen = 0  # rows of this process's shard
  for batch in data.iterator(ds.name, data.info(ds.name).test_split, eval_bs, train=False,
                             data_dir=ds.get("data_dir", "") or None, image_size=int(ds.image_size),
                             process_index=jax.process_index(), process_count=jax.process_count()):
    batch = {k: batch[k] for k in ("image", "label", "mask")}
    if limit:
      batch["mask"] = batch["mask"] * (seen + np.arange(local_bs) < local_limit)
    sums = step(variables, global_batch(mesh, batch))
    for k in totals:
      totals[k] += float(sums[k])
    seen += local_bs
    if limit and seen >= local_limit:
      break
  return {**_summarise(totals, "test"), "test_examples": int(totals["count"])}


@functools.lru_cache(maxsize=8)
def _jitted_sharded_eval(model, mesh):
  return jax.jit(functools.partial(eval_step, model), out_shardings=_replicated(mesh))


# ----------------------------------------------------------------------------- input


def _epoch_seed(seed: int, epoch: int) -> int:
  return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def train_batches(config: ml_collections.ConfigDict, start_step: int, steps_per_epoch: int
                  ) -> Iterator[Dict[str, np.ndarray]]:
  """This process's slices of the global train batches from ``start_step`` on.

  A pure function of ``(config.seed, step)``: epoch ``e`` reads the train split shuffled
  with seed ``fold(seed, e)`` and keeps its first ``steps_per_epoch`` full batches.
  """
  ds = config.dataset
  bs = int(config.train.batch_size)
  local_batch_size(bs)  # checks it splits over the devices
  epoch, offset = divmod(start_step, steps_per_epoch)
  while True:
    it = data.iterator(ds.name, data.info(ds.name).train_split, bs, train=True,
                       seed=_epoch_seed(config.seed, epoch), data_dir=ds.get("data_dir", "") or None, image_size=int(ds.image_size),
                       process_index=jax.process_index(), process_count=jax.process_count())
    got = 0
    for batch in itertools.islice(it, offset, steps_per_epoch):
      got += 1
      yield {"image": batch["image"], "label": batch["label"]}
    if got < steps_per_epoch - offset:
      raise ValueError(f"train split of {ds.name!r} gave {offset + got} batches of {bs}, "
                       f"need {steps_per_epoch} per epoch")
    epoch, offset = epoch + 1, 0


def steps_per_epoch(config: ml_collections.ConfigDict) -> int:
  override = int(config.train.get("steps_per_epoch", 0) or 0)
  if override:
    return override
  n = data.num_examples(config.dataset.name, "train", config.dataset.get("data_dir", "") or None)
  return max(n // int(config.train.batch_size), 1)


# ----------------------------------------------------------------------------- training loop


class MetricWriter:
  """Scalars to TensorBoard event files (tensorboardX) and ``metrics.jsonl``; process 0 only.

  ``metrics.jsonl`` is rewritten whole (tmp + rename) on every write: it stays valid if the
  run is killed, and works on object stores (gs://) that cannot append.
  """

  def __init__(self, workdir: epath.Path, resume_step: int):
    self._active = jax.process_index() == 0
    self._path = workdir / "metrics.jsonl"
    self._tb = None
    self._records = [r for r in read_metrics(workdir) if r["step"] <= resume_step]
    if self._active:
      import tensorboardX  # pylint: disable=g-import-not-at-top
      self._tb = tensorboardX.SummaryWriter(str(workdir / "tensorboard"),
                                            purge_step=resume_step + 1)

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self._active:
      return
    for k, v in scalars.items():
      self._tb.add_scalar(k, v, step)
    self._records.append({"step": step, **scalars})
    tmp = self._path.parent / (self._path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in self._records))
    tmp.replace(self._path)

  def close(self):
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir) -> list:
  """Records ``{'step': .., name: value}`` written by a training run (for plots)."""
  path = epath.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def _init_state(config, model, tx, mesh) -> TrainState:
  def init(rng):
    variables = model.init(rng, jnp.zeros((1, model.image_size, model.image_size,
                                           model.input_channels), jnp.float32), train=False)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params))
  return jax.jit(init, out_shardings=_replicated(mesh))(jax.random.PRNGKey(config.seed))


def _checkpoint_manager(workdir: epath.Path) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=2, create=True)
  return ocp.CheckpointManager(workdir / "checkpoints", options=options)


def _restore(manager, state, accum, mesh):
  step = manager.latest_step()
  if step is None:
    return state, accum
  target = {"state": state, "accum": accum}
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), jnp.asarray(x).dtype,
                                                         sharding=_replicated(mesh)), target)
  try:
    restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
  except Exception as e:  # orbax raises many types for unreadable files
    raise checkpoints.CheckpointError(
        f"checkpoint {manager.directory}/{step} is corrupt or unreadable "
        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
  return restored["state"], restored["accum"]


def _fmt_time(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def train_and_evaluate(config: ml_collections.ConfigDict, workdir) -> Dict[str, Any]:
  """Trains ``config``'s model into ``workdir`` (resuming from its checkpoints) and
  evaluates it; saves the final model to ``workdir/model``. Returns the final metrics
  (``test_accuracy`` a fraction, ``train_time_s``, ...)."""
  workdir = epath.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  cfg = config.train
  model = create_model(config)
  mesh = data_mesh()
  spe = steps_per_epoch(config)
  total_steps = _steps(config, spe)
  schedule = learning_rate_schedule(cfg, spe, total_steps)
  tx = make_optimizer(cfg, schedule)

  state = _init_state(config, model, tx, mesh)
  zero = {"loss": np.zeros((), np.float32), "correct": np.zeros((), np.float32),
          "count": np.zeros((), np.float32)}
  manager = _checkpoint_manager(workdir)
  ckpt_every = int(cfg.get("checkpoint_every_steps", 0) or spe)
  state, accum = _restore(manager, state, dict(zero), mesh)
  accum = {k: np.float32(v) for k, v in accum.items()}  # float32 throughout: resume is exact
  start = int(state.step)
  if start:
    logging.info("resuming from step %d of %d (%s)", start, total_steps, manager.directory)
  writer = MetricWriter(workdir, start)
  log_every = int(cfg.get("log_every_steps", 0) or spe)
  eval_every = int(cfg.get("eval_every_epochs", 1) or 1) * spe

  step_fn = jax.jit(functools.partial(train_step, model, tx), donate_argnums=(0,),
                    out_shardings=(_replicated(mesh), _replicated(mesh)))
  batches = train_batches(config, start, spe)
  eval_metrics: Dict[str, float] = {}
  last_train: Dict[str, float] = {}
  t_start = time.time()
  t_window, n_window, timed_images = time.time(), 0, 0
  timed_seconds = 0.0
  first_step = True
  pending = []
  step = start
  for step in range(start + 1, total_steps + 1):
    batch = global_batch(mesh, next(batches))
    state, sums = step_fn(state, batch)
    pending.append(sums)  # fetched at log / checkpoint steps: no host sync every step
    n_window += int(config.train.batch_size)
    if first_step:  # leave compilation out of the throughput
      jax.block_until_ready(sums)
      t_window, n_window, first_step = time.time(), 0, False

    is_log = step % log_every == 0 or step == total_steps
    is_ckpt = step % ckpt_every == 0 or step == total_steps
    if is_log or is_ckpt:
      for sums in jax.device_get(pending):  # in step order: float32 sums as an unbatched loop
        accum = {k: np.float32(accum[k] + np.float32(sums[k])) for k in accum}
      pending = []
    if is_log:
      now = time.time()
      ips = n_window / max(now - t_window, 1e-9) if n_window else float("nan")
      if n_window:
        timed_images += n_window
        timed_seconds += now - t_window
      scalars = {**_summarise(accum, "train"), "learning_rate": float(schedule(step - 1)),
                 "images_per_sec": ips, "epoch": step / spe}
      writer.write(step, scalars)
      last_train = scalars
      eta = (total_steps - step) * int(cfg.batch_size) / ips if n_window else float("nan")
      logging.info("step %d/%d  epoch %.2f  loss %.4f  acc %.4f  lr %.4g  %.0f img/s  ETA %s",
                   step, total_steps, step / spe, scalars["train_loss"], scalars["train_accuracy"],
                   scalars["learning_rate"], ips, _fmt_time(eta) if n_window else "?")
      accum = {k: np.float32(0) for k in accum}
      t_window, n_window = time.time(), 0

    if step % eval_every == 0 or step == total_steps:
      eval_metrics = evaluate_split(config, model, state.variables, mesh)
      writer.write(step, {"test_loss": eval_metrics["test_loss"],
                          "test_accuracy": eval_metrics["test_accuracy"]})
      logging.info("step %d  epoch %.2f  test loss %.4f  test accuracy %.4f", step, step / spe,
                   eval_metrics["test_loss"], eval_metrics["test_accuracy"])
      t_window, n_window = time.time(), 0

    if is_ckpt:
      manager.save(step, args=ocp.args.StandardSave(
          {"state": state, "accum": accum}), force=True)

  manager.wait_until_finished()
  manager.close()
  writer.close()
  if not eval_metrics:  # resumed at the end: nothing was re-run
    eval_metrics = evaluate_split(config, model, state.variables, mesh)
  variables = jax.device_get(state.variables)
  checkpoints.save_model(workdir / "model", config.model.name, model_kwargs(config), variables)
  if not last_train:  # resumed at the end: the last logged values
    last_train = ([r for r in read_metrics(workdir) if "train_loss" in r] or [{}])[-1]
  return {**eval_metrics,
          "train_loss": last_train.get("train_loss", float("nan")),
          "train_accuracy": last_train.get("train_accuracy", float("nan")),
          "steps": int(state.step), "epochs": int(state.step) / spe,
          "train_time_s": time.time() - t_start,
          "images_per_sec": timed_images / timed_seconds if timed_seconds else float("nan"),
          "num_devices": jax.device_count(), "num_processes": jax.process_count()}


def get_or_train(config: ml_collections.ConfigDict, workdir) -> Tuple[nn.Module, PyTree]:
  """The trained model of ``config``: restored from ``config.pretrained`` when set, else
  trained (or resumed, or just loaded if finished) in ``workdir/train``."""
  pretrained = config.get("pretrained", "") or ""
  conv_impl = config.model.get("conv_impl", "auto")  # a run option: model.json does not hold it
  if pretrained:
    return checkpoints.load_model(pretrained, conv_impl=conv_impl)
  train_dir = epath.Path(workdir) / "train"
  if checkpoints.has_model(train_dir / "model"):
    return checkpoints.load_model(train_dir / "model", conv_impl=conv_impl)
  train_and_evaluate(config, train_dir)
  return checkpoints.load_model(train_dir / "model", conv_impl=conv_impl)
