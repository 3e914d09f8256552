"""CAR: classification-accuracy-reduction filter importance and greedy structural compression.

Abbasi-Asl & Yu, "Structural Compression of CNNs with Applications in Interpretability":
CAR(i, L) = Acc(N) - Acc(N without filter i of layer L and its outgoing connections), on a
held-out scoring split; the filter with the smallest CAR is pruned, every score is taken again
on the smaller network, and so on (Algorithm 1). CARc(i, L) is the same reduction per class.

All candidates of a layer are scored in one call: candidate ``j`` removes filter ``j`` from the
current mask (``-1``: removes nothing, the unpruned reference), the candidates are `vmap`-ed and
sharded over the local devices with `jax.shard_map`. Nothing a candidate cannot change is
recomputed: the network up to the pruned layer's consumers runs once (unbatched under `vmap`),
every consumer's pre-activation is computed once and each candidate subtracts only filter
``j``'s own contribution (a one-input-channel conv / a slice of the dense rows), and then only
the rest of the network runs per candidate (the consumers' pre-activations are handed in with a
Flax method interceptor; under `jit` XLA drops the dead prefix). The greedy loop, baselines,
CARc tables and the `run` entry point are below.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from jaxdr import models
from jaxdr.models import layers as layers_lib

PyTree = Any
AXIS = "candidates"


# ----------------------------------------------------------------------------- scoring


def candidate_mesh(devices: Optional[Sequence[Any]] = None) -> jax.sharding.Mesh:
  """1-D mesh over ``devices`` (default: the local devices) that candidates are sharded on."""
  devices = list(devices) if devices is not None else jax.local_devices()
  return jax.make_mesh((len(devices),), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices)


def _reusable(graph: models.Graph, key: str) -> bool:
  """True when removing a channel of gate ``key`` changes only its consumers' pre-activations
  by that channel's own contribution: an uncoupled gate feeding only non-depthwise layers."""
  gate = graph.gate(key)
  consumers = graph.consumers(key)
  return (not gate.coupled and bool(consumers)
          and all(not l.depthwise for l in consumers))


def _consumer_paths(graph: models.Graph, key: str):
  """Module paths whose method the interceptor reads / replaces: a ConvUnit's
  ``preactivation`` and a DenseUnit's inner ``dense`` call."""
  conv, dense = set(), set()
  for l in graph.consumers(key):
    if l.kind == "conv":
      conv.add(tuple(l.path))
    else:
      dense.add(tuple(l.path) + ("dense",))
  return conv, dense


def _capture(conv_paths, dense_paths, store: dict):
  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    path = tuple(context.module.scope.path)
    if ((context.method_name == "preactivation" and path in conv_paths)
        or (context.method_name == "__call__" and path in dense_paths)):
      store[path] = (context.module, args, out)
    return out
  return interceptor


def _replace(supplied: Mapping[tuple, jnp.ndarray]):
  def interceptor(next_fun, args, kwargs, context):
    path = tuple(context.module.scope.path)
    if context.method_name in ("preactivation", "__call__") and path in supplied:
      if context.method_name == "preactivation" or isinstance(context.module, nn.Dense):
        return supplied[path]
    return next_fun(*args, **kwargs)
  return interceptor


def _channel_contribution(module, args, channel: jnp.ndarray, variables: PyTree, channels: int):
  """What input channel ``channel`` adds to a consumer's pre-activation (no bias)."""
  if isinstance(module, layers_lib.ConvUnit):
    x, kernel = args[0], args[1]
    xc = jax.lax.dynamic_slice_in_dim(x, channel, 1, axis=x.ndim - 1)
    kc = jax.lax.dynamic_slice_in_dim(kernel, channel, 1, axis=2)
    pad = module.kernel // 2 if module.padding is None else module.padding
    return layers_lib.conv2d(xc, kc, stride=module.stride, padding=pad, groups=1,
                             impl=module.conv_impl)
  x = args[0]  # nn.Dense input, flattened (H, W, C): channel c owns rows c, c + C, ...
  params = variables["params"]
  for name in module.scope.path:
    params = params[name]
  kernel = params["kernel"]
  n, features = x.shape
  positions = features // channels
  xc = jax.lax.dynamic_slice_in_dim(x.reshape(n, positions, channels), channel, 1, axis=2)[..., 0]
  kc = jax.lax.dynamic_slice_in_dim(kernel.reshape(positions, channels, -1), channel, 1, axis=1)[:, 0]
  return xc @ kc


def _count(logits, labels, num_classes):
  """Per-class correct counts [K] and summed cross-entropy; labels < 0 are padding."""
  valid = labels >= 0
  safe = jnp.where(valid, labels, 0)
  correct = (jnp.argmax(logits, -1) == safe) & valid
  counts = jnp.sum(jax.nn.one_hot(safe, num_classes) * correct[:, None], axis=0)
  logp = jax.nn.log_softmax(logits.astype(jnp.float32))
  loss = -jnp.sum(jnp.take_along_axis(logp, safe[:, None], axis=1)[:, 0] * valid)
  return counts, loss


def candidate_logits(model: nn.Module, variables: PyTree, images: jnp.ndarray,
                     base_mask: Mapping[str, jnp.ndarray], key: str, removed: jnp.ndarray,
                     reuse: bool = True) -> jnp.ndarray:
  """Logits [P, N, K] of the candidates ``removed`` [P] (filter of gate ``key`` each removes
  from ``base_mask``; -1 removes none). ``reuse`` computes the prefix and the consumers'
  pre-activations once (exactly equal up to float rounding to ``reuse=False``)."""
  graph = models.describe(model)
  channels = graph.gate(key).channels
  base_mask = dict(base_mask)
  base = jnp.asarray(base_mask.get(key, jnp.ones((channels,), jnp.float32)), jnp.float32)

  def candidate_mask(j):
    drop = jax.nn.one_hot(jnp.maximum(j, 0), channels) * (j >= 0)
    return {**base_mask, key: base * (1.0 - drop)}

  if not (reuse and _reusable(graph, key)):
    return jax.vmap(lambda j: models.apply(model, variables, images, candidate_mask(j)))(removed)

  conv_paths, dense_paths = _consumer_paths(graph, key)
  store: dict = {}
  with nn.intercept_methods(_capture(conv_paths, dense_paths, store)):
    models.apply(model, variables, images, {**base_mask, key: base})

  def one(j):
    keep = (j >= 0).astype(jnp.float32)
    supplied = {path: out - keep * _channel_contribution(module, args, jnp.maximum(j, 0),
                                                          variables, channels)
                for path, (module, args, out) in store.items()}
    with nn.intercept_methods(_replace(supplied)):
      return models.apply(model, variables, images, candidate_mask(j))

  return jax.vmap(one)(removed)


@functools.lru_cache(maxsize=64)
def _scorer(model: nn.Module, key: str, num_classes: int, reuse: bool, mesh):
  def per_device(variables, base_mask, removed, images, labels):
    logits = candidate_logits(model, variables, images, base_mask, key, removed, reuse)
    return jax.vmap(lambda l: _count(l, labels, num_classes))(logits)

  sharded = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(), P(AXIS), P(), P()),
                          out_specs=(P(AXIS), P(AXIS)), check_vma=False)
  return jax.jit(sharded)


@dataclasses.dataclass(frozen=True)
class Scores:
  """Per-candidate results on a scoring set: ``counts`` [P, K] correct per class,
  ``loss`` [P] summed cross-entropy, ``totals`` [K] examples per class."""
  removed: np.ndarray
  counts: np.ndarray
  loss: np.ndarray
  totals: np.ndarray

  @property
  def accuracy(self) -> np.ndarray:
    return self.counts.sum(-1) / max(self.totals.sum(), 1)

  def class_accuracy(self) -> np.ndarray:
    return self.counts / np.maximum(self.totals, 1)


def score_removals(model: nn.Module, variables: PyTree, images: np.ndarray, labels: np.ndarray,
                   base_mask: Mapping[str, Any], key: str, removed: Sequence[int], *,
                   num_classes: int, batch_size: int = 1000, reuse: bool = True,
                   mesh: Optional[jax.sharding.Mesh] = None) -> Scores:
  """Scores the candidates ``removed`` (filter indices of gate ``key``; -1 = none) in
  parallel over ``mesh`` (default: all local devices), streaming the images in batches."""
  images, labels = np.asarray(images, np.float32), np.asarray(labels, np.int32)
  if images.shape[0] != labels.shape[0] or images.shape[0] == 0:
    raise ValueError(f"need matching non-empty images/labels, got {images.shape[0]} and {labels.shape[0]}")
  channels = models.describe(model).gate(key).channels
  removed = np.asarray(removed, np.int32)
  if removed.ndim != 1 or np.any(removed >= channels) or np.any(removed < -1):
    raise ValueError(f"candidates must be filter indices in [-1, {channels}) of {key!r}")
  mesh = mesh or candidate_mesh()
  n_dev = mesh.devices.size
  padded = np.concatenate([removed, -np.ones((-len(removed)) % n_dev, np.int32)])
  fn = _scorer(model, key, num_classes, reuse, mesh)
  base_mask = {k: jnp.asarray(v, jnp.float32) for k, v in dict(base_mask or {}).items()}
  batch_size = min(batch_size, images.shape[0])
  counts = np.zeros((len(padded), num_classes), np.float64)
  loss = np.zeros((len(padded),), np.float64)
  for start in range(0, images.shape[0], batch_size):
    x, y = images[start:start + batch_size], labels[start:start + batch_size]
    if x.shape[0] < batch_size:
      pad = batch_size - x.shape[0]
      x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
      y = np.concatenate([y, -np.ones((pad,), np.int32)])
    c, l = fn(variables, base_mask, padded, x, y)
    counts += np.asarray(c)
    loss += np.asarray(l)
  totals = np.bincount(labels, minlength=num_classes).astype(np.float64)
  n = len(removed)
  return Scores(removed=removed, counts=counts[:n], loss=loss[:n], totals=totals)


def score_layer(model, variables, images, labels, base_mask, key, *, num_classes, **kw) -> Scores:
  """Reference (-1) followed by every filter of gate ``key``: one fixed-shape call."""
  channels = models.describe(model).gate(key).channels
  return score_removals(model, variables, images, labels, base_mask, key,
                        [-1] + list(range(channels)), num_classes=num_classes, **kw)


def score_sequential(model: nn.Module, variables: PyTree, images: np.ndarray, labels: np.ndarray,
                     base_mask: Mapping[str, Any], key: str, removed: Sequence[int], *,
                     num_classes: int) -> Scores:
  """The paper's way: one full forward pass per candidate (reference for tests/benchmarks)."""
  channels = models.describe(model).gate(key).channels
  base = np.asarray(dict(base_mask or {}).get(key, np.ones(channels)), np.float32)
  fwd = jax.jit(lambda v, x, m: models.apply(model, v, x, m))
  counts, losses = [], []
  for j in removed:
    gate = base.copy()
    if j >= 0:
      gate[j] = 0.0
    m = {**{k: jnp.asarray(v) for k, v in dict(base_mask or {}).items()}, key: jnp.asarray(gate)}
    c, l = _count(fwd(variables, jnp.asarray(images, jnp.float32), m),
                  jnp.asarray(labels, jnp.int32), num_classes)
    counts.append(np.asarray(c))
    losses.append(float(l))
  totals = np.bincount(np.asarray(labels), minlength=num_classes).astype(np.float64)
  return Scores(removed=np.asarray(removed), counts=np.stack(counts).astype(np.float64),
                loss=np.asarray(losses), totals=totals)


def car_index(scores: Scores) -> np.ndarray:
  """CAR of each scored candidate: reference accuracy (candidate -1) minus its accuracy."""
  ref = np.flatnonzero(scores.removed == -1)
  if not len(ref):
    raise ValueError("scores have no reference candidate (-1)")
  acc = scores.accuracy
  return acc[ref[0]] - acc


def carc_index(scores: Scores) -> np.ndarray:
  """CARc [P, K]: per-class accuracy reduction of each candidate (section 3.3)."""
  ref = np.flatnonzero(scores.removed == -1)
  if not len(ref):
    raise ValueError("scores have no reference candidate (-1)")
  acc = scores.class_accuracy()
  return acc[ref[0]][None] - acc


def evaluate_masks(model: nn.Module, variables: PyTree, images: np.ndarray, labels: np.ndarray,
                   stacked: Mapping[str, np.ndarray], *, num_classes: int, batch_size: int = 1000,
                   mesh: Optional[jax.sharding.Mesh] = None) -> np.ndarray:
  """Accuracy [M] of M masks (``stacked``: gate key -> [M, C]) in one sharded `vmap` per batch."""
  stacked = {k: np.asarray(v, np.float32) for k, v in stacked.items()}
  m = {v.shape[0] for v in stacked.values()}
  if len(m) != 1:
    raise ValueError(f"stacked masks need one leading size, got {sorted(m)}")
  m = m.pop()
  mesh = mesh or candidate_mesh()
  pad = (-m) % mesh.devices.size
  stacked = {k: np.concatenate([v, np.ones((pad, v.shape[1]), np.float32)]) for k, v in stacked.items()}
  fn = _mask_evaluator(model, num_classes, mesh)
  images, labels = np.asarray(images, np.float32), np.asarray(labels, np.int32)
  batch_size = min(batch_size, images.shape[0])
  correct = np.zeros((m + pad,), np.float64)
  for start in range(0, images.shape[0], batch_size):
    x, y = images[start:start + batch_size], labels[start:start + batch_size]
    if x.shape[0] < batch_size:
      k = batch_size - x.shape[0]
      x = np.concatenate([x, np.zeros((k,) + x.shape[1:], x.dtype)])
      y = np.concatenate([y, -np.ones((k,), np.int32)])
    correct += np.asarray(fn(variables, stacked, x, y))
  return correct[:m] / images.shape[0]


@functools.lru_cache(maxsize=16)
def _mask_evaluator(model, num_classes, mesh):
  def per_device(variables, stacked, images, labels):
    def one(mask):
      counts, _ = _count(models.apply(model, variables, images, mask), labels, num_classes)
      return counts.sum()
    return jax.vmap(one)(stacked)
  return jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(AXIS), P(), P()),
                               out_specs=P(AXIS), check_vma=False))


# ----------------------------------------------------------------------------- greedy compression


@dataclasses.dataclass
class GreedyState:
  """What an interrupted compression needs to continue: the current 0/1 gates of the layers
  being compressed and the removal log (one entry per removed filter, in order)."""
  keys: List[str]
  masks: Dict[str, List[float]]
  removed: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
  iteration: int = 0
  reference_accuracy: float = float("nan")
  done: bool = False
  stop_reason: str = ""

  def kept(self, key: str) -> int:
    return int(np.sum(np.asarray(self.masks[key]) > 0))

  def mask(self) -> Dict[str, np.ndarray]:
    return {k: np.asarray(v, np.float32) for k, v in self.masks.items()}

  def order(self, key: str) -> List[int]:
    """Filters of ``key`` in pruning order: removed ones first, then the kept ones."""
    gone = [r["filter"] for r in self.removed if r["layer"] == key]
    return gone + [i for i in range(len(self.masks[key])) if i not in gone]

  def save(self, path: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
      json.dump(dataclasses.asdict(self), f)
    os.replace(tmp, path)

  @classmethod
  def load(cls, path: str) -> "GreedyState":
    with open(path) as f:
      return cls(**json.load(f))


@dataclasses.dataclass(frozen=True)
class GreedyOptions:
  """Stopping rules and the paper's speed-ups (0 disables a rule).

  per_iteration: filters removed per iteration (the paper's tweak 1; 1 = Algorithm 1).
  subset_size: scoring images drawn afresh each iteration (tweak 2; 0 = all).
  min_kept: never keep fewer filters in a layer (>= 1).
  target_ratio: stop once original / kept filters (all compressed layers) reaches it.
  max_relative_drop: stop before the scoring accuracy would fall below
    (1 - max_relative_drop) x the uncompressed accuracy (the paper's 5% for AlexNet).
  max_iterations: stop after this many iterations (0: no limit).
  """
  per_iteration: int = 1
  subset_size: int = 0
  min_kept: int = 1
  target_ratio: float = 0.0
  max_relative_drop: float = 0.0
  max_iterations: int = 0
  batch_size: int = 1000
  seed: int = 0

  def __post_init__(self):
    if self.per_iteration < 1 or self.min_kept < 1:
      raise ValueError(f"per_iteration and min_kept must be >= 1, got {self.per_iteration}, {self.min_kept}")
    if not 0.0 <= self.max_relative_drop < 1.0:
      raise ValueError(f"max_relative_drop must be in [0, 1), got {self.max_relative_drop}")


def greedy_compress(model: nn.Module, variables: PyTree, images: np.ndarray, labels: np.ndarray,
                    keys: Sequence[str], *, num_classes: int,
                    options: GreedyOptions = GreedyOptions(), state_path: Optional[str] = None,
                    base_mask: Optional[Mapping[str, Any]] = None,
                    mesh: Optional[jax.sharding.Mesh] = None,
                    log: Callable[[str], None] = print) -> GreedyState:
  """Algorithm 1: score every remaining filter of ``keys``, remove the least important, repeat.

  One key is the paper's single-layer mode; several keys let their filters compete for
  removal (multi-layer mode). Ties in CAR are broken by the smaller loss increase. With
  ``state_path`` the state is saved after every iteration and a rerun continues from it.
  """
  graph = models.describe(model)
  keys = list(keys)
  for key in keys:
    if key not in {g.key for g in graph.gates}:
      raise ValueError(f"unknown gate {key!r}; gate points are {[g.key for g in graph.gates][:8]}")
  if state_path and os.path.exists(state_path):
    state = GreedyState.load(state_path)
    if state.keys != keys:
      raise ValueError(f"{state_path} compresses {state.keys}, not {keys}: use another workdir")
    log(f"car: resuming {keys} at iteration {state.iteration} ({len(state.removed)} filters removed)")
  else:
    init = dict(base_mask or {})
    state = GreedyState(keys=keys, masks={
        k: [float(x) for x in np.asarray(init.get(k, np.ones(graph.gate(k).channels)))] for k in keys})
  images, labels = np.asarray(images), np.asarray(labels)
  fixed = {k: np.asarray(v, np.float32) for k, v in dict(base_mask or {}).items() if k not in keys}
  original = sum(graph.gate(k).channels for k in keys)
  opt = options
  while not state.done:
    if opt.max_iterations and state.iteration >= opt.max_iterations:
      break
    idx = np.arange(len(labels))
    if opt.subset_size and opt.subset_size < len(labels):
      rng = np.random.default_rng([opt.seed, state.iteration])
      idx = np.sort(rng.choice(len(labels), opt.subset_size, replace=False))
    x, y = images[idx], labels[idx]
    mask = {**fixed, **state.mask()}
    candidates = []  # (car, loss increase, key, filter, accuracy after)
    reference = None
    for key in keys:
      if state.kept(key) <= opt.min_kept:
        continue
      s = score_layer(model, variables, x, y, mask, key, num_classes=num_classes,
                      batch_size=opt.batch_size, mesh=mesh)
      car, acc = car_index(s), s.accuracy
      reference = acc[0]
      for j in range(1, len(s.removed)):
        f = int(s.removed[j])
        if mask[key][f] > 0:
          candidates.append((float(car[j]), float(s.loss[j] - s.loss[0]) / len(y), key, f, float(acc[j])))
    if reference is None:
      state.done, state.stop_reason = True, f"every layer is at min_kept={opt.min_kept}"
      break
    if state.iteration == 0 and not np.isfinite(state.reference_accuracy):
      state.reference_accuracy = float(reference)
    candidates.sort(key=lambda c: (c[0], c[1]))
    taken, left = [], {k: state.kept(k) for k in keys}
    for c in candidates:
      if len(taken) == opt.per_iteration:
        break
      if left[c[2]] > opt.min_kept:
        taken.append(c)
        left[c[2]] -= 1
    floor = (1.0 - opt.max_relative_drop) * state.reference_accuracy
    if opt.max_relative_drop and taken[0][4] < floor:
      state.done = True
      state.stop_reason = (f"removing {taken[0][2]}/{taken[0][3]} would drop the scoring accuracy to "
                           f"{taken[0][4]:.4f} < {floor:.4f}")
      log(f"car: stop: {state.stop_reason}")
      break
    state.iteration += 1
    for car, dloss, key, f, acc in taken:
      state.masks[key][f] = 0.0
      state.removed.append(dict(iteration=state.iteration, layer=key, filter=f, car=car,
                                loss_increase=dloss, accuracy=acc))
    kept_total = sum(state.kept(k) for k in keys)
    left_txt = ", ".join(f"{k} {state.kept(k)}/{graph.gate(k).channels}" for k in keys)
    removed_txt = ", ".join(f"{k}/{f} (CAR {c:+.4f})" for c, _, k, f, _ in taken)
    log(f"car: iteration {state.iteration}: removed {removed_txt}; filters left {left_txt}; "
        f"accuracy {taken[-1][4]:.4f}")
    if all(state.kept(k) <= opt.min_kept for k in keys):
      state.done, state.stop_reason = True, f"every layer is at min_kept={opt.min_kept}"
    elif opt.target_ratio and original / max(kept_total, 1) >= opt.target_ratio:
      state.done, state.stop_reason = True, f"compression ratio {original / kept_total:.3f} reached"
    if state_path:
      state.save(state_path)
  if state_path:
    state.save(state_path)
  return state
