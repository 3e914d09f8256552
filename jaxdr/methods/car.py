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

from jaxdr import models, ops, reporting
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
    return ops.conv2d(xc, kc, stride=module.stride, padding=pad, groups=1,
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


def _fixed_batches(images, labels, batch_size):
  """(x [batch_size, ...], y [batch_size]) over the set; the last batch is padded with zero
  images labelled -1 (counted by no class), so every call has one compiled shape."""
  for start in range(0, images.shape[0], batch_size):
    x, y = images[start:start + batch_size], labels[start:start + batch_size]
    if x.shape[0] < batch_size:
      pad = batch_size - x.shape[0]
      x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
      y = np.concatenate([y, -np.ones((pad,), np.int32)])
    yield x, y


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
  for x, y in _fixed_batches(images, labels, batch_size):
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
                   masks_per_call: int = 16, reuse: bool = True,
                   mesh: Optional[jax.sharding.Mesh] = None) -> np.ndarray:
  """Accuracy [M] of M masks (``stacked``: gate key -> [M, C]): ``masks_per_call`` masks at a
  time are `vmap`-ed and sharded over the devices, for each batch of images. Masks of a single
  gate reuse the prefix and the consumers' per-channel contributions (`masked_logits`)."""
  stacked = {k: np.asarray(v, np.float32) for k, v in stacked.items()}
  m = {v.shape[0] for v in stacked.values()}
  if len(m) != 1:
    raise ValueError(f"stacked masks need one leading size, got {sorted(m)}")
  m = m.pop()
  mesh = mesh or candidate_mesh()
  n_dev = mesh.devices.size
  chunk = max(n_dev, -(-min(masks_per_call, m) // n_dev) * n_dev)
  pad = (-m) % chunk
  stacked = {k: np.concatenate([v, np.ones((pad, v.shape[1]), np.float32)]) for k, v in stacked.items()}
  fn = _mask_evaluator(model, num_classes, mesh, next(iter(stacked)) if len(stacked) == 1 else None,
                       reuse)
  images, labels = np.asarray(images, np.float32), np.asarray(labels, np.int32)
  batch_size = min(batch_size, images.shape[0])
  correct = np.zeros((m + pad,), np.float64)
  for x, y in _fixed_batches(images, labels, batch_size):
    for c in range(0, m + pad, chunk):
      part = {k: v[c:c + chunk] for k, v in stacked.items()}
      correct[c:c + chunk] += np.asarray(fn(variables, part, x, y))
  return correct[:m] / images.shape[0]


def accuracy(model: nn.Module, variables: PyTree, images: np.ndarray, labels: np.ndarray,
             mask: Optional[Mapping[str, Any]], **kw) -> float:
  """Accuracy of one (possibly empty) mask, through `evaluate_masks`."""
  mask = dict(mask or {})
  if not mask:
    gate = models.describe(model).gates[0]
    mask = {gate.key: np.ones((gate.channels,), np.float32)}
  return float(evaluate_masks(model, variables, images, labels,
                              {k: np.asarray(v)[None] for k, v in mask.items()}, **kw)[0])


def masked_logits(model: nn.Module, variables: PyTree, images: jnp.ndarray, key: str,
                  gates: jnp.ndarray, reuse: bool = True) -> jnp.ndarray:
  """Logits [M, N, K] under M gate vectors ``gates`` [M, C] of gate ``key`` (others open).

  With ``reuse`` the consumers' pre-activation is linear in the gate: every channel's
  contribution P_c is computed once ([C, ...], one consumer's worth of work in total) and a
  mask costs ``out - sum_c (1 - m_c) P_c`` instead of the consumer's whole conv."""
  graph = models.describe(model)
  channels = graph.gate(key).channels
  if not (reuse and _reusable(graph, key)):
    return jax.vmap(lambda g: models.apply(model, variables, images, {key: g}))(gates)
  conv_paths, dense_paths = _consumer_paths(graph, key)
  store: dict = {}
  with nn.intercept_methods(_capture(conv_paths, dense_paths, store)):
    models.apply(model, variables, images, {key: jnp.ones((channels,), jnp.float32)})
  parts = {path: jax.vmap(lambda c, m=module, a=args: _channel_contribution(m, a, c, variables, channels))(
      jnp.arange(channels)) for path, (module, args, _) in store.items()}

  def one(gate):
    supplied = {path: out - jnp.tensordot(1.0 - gate, parts[path], axes=1)
                for path, (_, _, out) in store.items()}
    with nn.intercept_methods(_replace(supplied)):
      return models.apply(model, variables, images, {key: gate})

  return jax.vmap(one)(gates)


@functools.lru_cache(maxsize=16)
def _mask_evaluator(model, num_classes, mesh, key, reuse):
  def per_device(variables, stacked, images, labels):
    if key is not None:
      logits = masked_logits(model, variables, images, key, stacked[key], reuse)
    else:
      logits = jax.vmap(lambda mask: models.apply(model, variables, images, mask))(stacked)
    return jax.vmap(lambda l: _count(l, labels, num_classes)[0].sum())(logits)
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
    reporting.write_text_atomic(path, json.dumps(dataclasses.asdict(self)))

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


# ----------------------------------------------------------------------------- CARc tables


def carc_table(carc: np.ndarray, car: np.ndarray, class_names: Sequence[str], top: int = 5
               ) -> List[Dict[str, Any]]:
  """Per filter: its CAR and the ``top`` classes with the highest / lowest CARc.

  carc: [C, K] (filters x classes, reference row removed); car: [C]."""
  rows = []
  for f in range(carc.shape[0]):
    order = np.argsort(-carc[f], kind="stable")
    rows.append({"filter": f, "car": float(car[f]),
                 "top": [{"class": class_names[c], "carc": float(carc[f, c])} for c in order[:top]],
                 "bottom": [{"class": class_names[c], "carc": float(carc[f, c])}
                            for c in order[::-1][:top]]})
  return rows


def balanced_indices(labels: np.ndarray, per_class: int, from_end: bool = True) -> np.ndarray:
  """Indices of ``per_class`` examples of every class (the last ones with ``from_end``)."""
  labels = np.asarray(labels)
  out = []
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    if len(idx) < per_class:
      raise ValueError(f"class {c} has {len(idx)} examples, fewer than {per_class}")
    out.append(idx[-per_class:] if from_end else idx[:per_class])
  return np.sort(np.concatenate(out))


# ----------------------------------------------------------------------------- entry point


def _log(msg: str) -> None:
  print(msg, flush=True)


def curve_grid(channels: int, points: int) -> List[int]:
  """Kept-filter counts for the curves: every count when the layer has at most ``points``
  filters, else two thirds of the points up to half the layer (where the methods differ)
  and the rest above it; always 1 and ``channels``."""
  if points <= 0 or channels <= points:
    return list(range(1, channels + 1))
  half = channels // 2
  low = np.linspace(1, half, min(half, max(2, (2 * points) // 3)))
  high = np.linspace(half, channels, max(2, points - len(low) + 1))[1:]
  return sorted({int(round(v)) for v in np.concatenate([low, high])})


def _plot_curves(curves, layers_info, reference, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg", force=False)
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from jaxdr import reporting  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(layers_info), figsize=(5.5 * len(layers_info), 4), squeeze=False)
  style = {"car": ("purple", "CAR"), "car_finetuned": ("blue", "CAR + fine-tuning"),
           "outgoing": ("black", "outgoing weights"), "incoming": ("green", "incoming weights"),
           "random": ("red", "random (10x, mean ± std)")}
  for ax, info in zip(axes[0], layers_info):
    for name, (color, label) in style.items():
      pts = curves[info["name"]].get(name) or []
      if not pts:
        continue
      x = [p["kept"] for p in pts]
      y = [p["accuracy"] for p in pts]
      if name == "random":
        ax.errorbar(x, y, yerr=[p["std"] for p in pts], color=color, label=label, capsize=2)
      else:
        ax.plot(x, y, color=color, label=label, marker="o" if name == "car_finetuned" else None)
    ax.axhline(reference, color="red", linestyle="--", label="uncompressed")
    ax.set_xlabel(f"filters kept in {info['name']} (of {info['filters']})")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=7)
  return reporting.save_figure(fig, path)


def _plot_filters(kernel: np.ndarray, order: Sequence[int], car: np.ndarray, path):
  """First-layer kernels (HWIO) ordered by CAR (most important first), the paper's Fig. 5."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg", force=False)
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from jaxdr import reporting  # pylint: disable=g-import-not-at-top
  n = len(order)
  cols = min(n, 10)
  rows = -(-n // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.4 * rows), squeeze=False)
  for ax in axes.ravel():
    ax.axis("off")
  for i, f in enumerate(order):
    w = kernel[..., f]
    w = (w - w.min()) / max(w.max() - w.min(), 1e-12)
    ax = axes.ravel()[i]
    ax.imshow(w[..., 0] if w.shape[-1] == 1 else w[..., :3], cmap="gray" if w.shape[-1] == 1 else None)
    ax.set_title(f"#{f}\n{car[f]:+.3f}", fontsize=7)
  fig.suptitle("first-layer filters by CAR index (most important first)", fontsize=9)
  return reporting.save_figure(fig, path)


def run(config, workdir: str) -> Dict[str, Any]:
  """Trains (or loads) the model, compresses ``config.car.layers`` with CAR, writes the
  curves against the baselines, CARc tables and the sliced compressed model."""
  from jaxdr import checkpoints, costs, data, reporting, surgery, train  # pylint: disable=g-import-not-at-top
  from jaxdr.methods import car_baselines, finetune  # pylint: disable=g-import-not-at-top
  cfg = config.car
  t0 = time.time()
  os.makedirs(workdir, exist_ok=True)
  model, variables = train.get_or_train(config, workdir)
  graph = models.describe(model)
  keys = list(cfg.layers)
  gate_keys = [g.key for g in graph.gates]
  for key in keys:
    if key not in gate_keys:
      raise ValueError(f"car.layers: unknown gate {key!r}; the model's gate points are {gate_keys[:10]}")
  if cfg.mode not in ("single", "multi"):
    raise ValueError(f"car.mode must be 'single' or 'multi', got {cfg.mode!r}")
  ds = config.dataset
  info = data.info(ds.name)
  k = int(ds.num_classes)
  data_dir = ds.get("data_dir", "") or None
  train_x, train_y = data.as_arrays(ds.name, info.train_split, data_dir, int(ds.image_size),
                                    limit=cfg.get("train_examples", 0) or None)
  test_x, test_y = data.as_arrays(ds.name, "test", data_dir, int(ds.image_size),
                                  limit=cfg.get("eval_examples", 0) or None)
  # The scoring split: a class-balanced set from the end of the train split (never the test
  # split); balance makes CAR the mean of CARc over classes.
  if cfg.get("balanced", True):
    score_idx = balanced_indices(train_y, int(cfg.score_examples) // k)
  else:
    score_idx = np.arange(max(len(train_y) - int(cfg.score_examples), 0), len(train_y))
  score_x, score_y = train_x[score_idx], train_y[score_idx]
  rest = np.setdiff1d(np.arange(len(train_y)), score_idx)
  ft_x, ft_y = train_x[rest], train_y[rest]
  mesh = candidate_mesh()
  _log(f"car: {config.model.name} on {ds.name}: compressing {keys} ({cfg.mode}-layer), scoring on "
       f"{len(score_y)} train images over {mesh.devices.size} device(s), testing on {len(test_y)}")
  reference = accuracy(model, variables, test_x, test_y, None, num_classes=k,
                       batch_size=int(cfg.eval_batch_size), mesh=mesh)
  _log(f"car: uncompressed test accuracy {reference:.4f}")
  options = GreedyOptions(per_iteration=int(cfg.per_iteration), subset_size=int(cfg.subset_size),
                          min_kept=int(cfg.min_kept), target_ratio=float(cfg.target_ratio),
                          max_relative_drop=float(cfg.max_relative_drop),
                          batch_size=int(cfg.score_batch_size), seed=int(config.seed))
  groups = [[k_] for k_ in keys] if cfg.mode == "single" else [keys]
  states: Dict[str, GreedyState] = {}
  for group in groups:
    name = "+".join(group).replace("/", "_")
    state = greedy_compress(model, variables, score_x, score_y, group, num_classes=k, options=options,
                            state_path=os.path.join(workdir, f"car_state_{name}.json"),
                            mesh=mesh, log=_log)
    for key in group:
      states[key] = state

  # CAR / CARc of every filter of the uncompressed network (the first greedy iteration).
  carc_out, car_full = {}, {}
  for key in keys:
    s = score_layer(model, variables, score_x, score_y, {}, key, num_classes=k,
                    batch_size=int(cfg.score_batch_size), mesh=mesh)
    car_full[key] = car_index(s)[1:]
    carc_out[key] = carc_table(carc_index(s)[1:], car_full[key], info.class_names, int(cfg.carc_top))

  curves: Dict[str, Dict[str, list]] = {}
  layers_info = []
  acceptance = {}
  ft_opts = finetune.FinetuneOptions(steps=int(cfg.finetune.steps), batch_size=int(cfg.finetune.batch_size),
                                     default_lr=float(cfg.finetune.lr_other),
                                     momentum=float(cfg.finetune.momentum), seed=int(config.seed))
  for key in keys:
    channels = graph.gate(key).channels
    layers_info.append({"name": key, "filters": channels})
    grid = curve_grid(channels, int(cfg.curve_points))
    orders = {"car": states[key].order(key),
              "incoming": car_baselines.order_by(car_baselines.incoming_importance(model, variables, key)),
              "outgoing": car_baselines.order_by(car_baselines.outgoing_importance(model, variables, key))}
    rand = car_baselines.random_orders(channels, int(cfg.random_repeats), int(config.seed))
    stacked = [car_baselines.masks_along(o, grid) for o in orders.values()]
    stacked += [car_baselines.masks_along(o, grid) for o in rand]
    # With multi-layer mode the CAR order of one layer is read with the other layers intact.
    acc = evaluate_masks(model, variables, test_x, test_y, {key: np.concatenate(stacked)},
                         num_classes=k, batch_size=int(cfg.eval_batch_size),
                         masks_per_call=int(cfg.masks_per_call), mesh=mesh)
    acc = acc.reshape(len(stacked), len(grid))
    curve = {name: [{"kept": n, "accuracy": float(a)} for n, a in zip(grid, acc[i])]
             for i, name in enumerate(orders)}
    r = acc[len(orders):]
    curve["random"] = [{"kept": n, "accuracy": float(m), "std": float(s)}
                       for n, m, s in zip(grid, r.mean(0), r.std(0))]
    curve["car_finetuned"] = []
    if cfg.finetune.enabled:
      ft_grid = curve_grid(channels, int(cfg.finetune.points))
      rates = finetune.car_layer_rates(model, key, float(cfg.finetune.lr_compressed),
                                       float(cfg.finetune.lr_next))
      for n in ft_grid:
        mask = {key: car_baselines.masks_along(orders["car"], [n])[0]}
        tuned = finetune.finetune(model, variables, ft_x, ft_y, mask, rates, ft_opts, log=_log)
        a = float(evaluate_masks(model, tuned, test_x, test_y, {key: mask[key][None]}, num_classes=k,
                                 batch_size=int(cfg.eval_batch_size), mesh=mesh)[0])
        curve["car_finetuned"].append({"kept": n, "accuracy": a})
        _log(f"car: {key} kept {n}: fine-tuned test accuracy {a:.4f}")
    curves[key] = curve
    half = [i for i, n in enumerate(grid) if n <= channels // 2]
    means = {name: float(np.mean([curve[name][i]["accuracy"] for i in half]))
             for name in ("car", "incoming", "outgoing", "random")}
    acceptance[key] = {**{f"mean_accuracy_{n}": v for n, v in means.items()},
                       "kept_counts": [grid[i] for i in half],
                       "car_ge_weight_baselines": means["car"] >= max(means["incoming"], means["outgoing"]),
                       "car_gt_random": means["car"] > means["random"]}
    _log(f"car: {key}: mean test accuracy over kept <= {channels // 2}: " +
         ", ".join(f"{n} {v:.4f}" for n, v in means.items()))

  # The compressed model: each layer cut to the fewest filters whose greedy scoring accuracy
  # stays within car.final_relative_drop of the uncompressed one, then sliced physically.
  final_mask = {}
  for key in keys:
    st = states[key]
    floor = (1.0 - float(cfg.final_relative_drop)) * st.reference_accuracy
    gone = [r for r in st.removed if r["layer"] == key]
    n_ok = 0
    for i, r in enumerate(gone):
      if r["accuracy"] >= floor:
        n_ok = i + 1
      else:
        break
    m = np.ones(graph.gate(key).channels, np.float32)
    m[[r["filter"] for r in gone[:n_ok]]] = 0.0
    final_mask[key] = m
  final_acc = float(evaluate_masks(model, variables, test_x, test_y,
                                   {kk: v[None] for kk, v in final_mask.items()}, num_classes=k,
                                   batch_size=int(cfg.eval_batch_size), mesh=mesh)[0])
  small, small_vars, rest_mask = surgery.slice_model(model, variables, final_mask)
  small_acc = accuracy(small, small_vars, test_x, test_y, rest_mask, num_classes=k,
                       batch_size=int(cfg.eval_batch_size), mesh=mesh)
  checkpoints.save_model(os.path.join(workdir, "compressed"), config.model.name,
                         {**train.model_kwargs(config), "channels": dict(small.channels)}, small_vars)
  before, after = costs.count(model), costs.count(small)
  n_before, n_after = costs.param_count(variables), costs.param_count(small_vars)
  compressed = {"kept": {kk: int(v.sum()) for kk, v in final_mask.items()},
                "test_accuracy_masked": final_acc, "test_accuracy_sliced": small_acc,
                "params": int(after.params), "params_uncompressed": int(before.params),
                "macs": int(after.macs), "macs_uncompressed": int(before.macs),
                "flops": 2 * int(after.macs), "flops_uncompressed": 2 * int(before.macs),
                "storage_bytes": 4 * int(n_after), "storage_bytes_uncompressed": 4 * int(n_before),
                "saved_to": "compressed/"}
  _log(f"car: compressed model {compressed['kept']}: test accuracy {small_acc:.4f}, params "
       f"{before.params} -> {after.params}, MACs {before.macs} -> {after.macs}")

  figures = ["car_curves.png"]
  _plot_curves(curves, layers_info, reference, os.path.join(workdir, "car_curves.png"))
  first = graph.layers[0]
  if first.kind == "conv" and first.dst in car_full:
    kern = np.asarray(car_baselines._kernel(variables, first))  # pylint: disable=protected-access
    order = np.argsort(-car_full[first.dst], kind="stable")
    _plot_filters(kern, order, car_full[first.dst], os.path.join(workdir, "car_filters.png"))
    figures.append("car_filters.png")

  results = {"test_accuracy": reference, "curves": curves, "layers": layers_info,
             "acceptance": acceptance,
             "greedy": {kk: {"order": states[kk].order(kk), "removed": [r for r in states[kk].removed
                                                                      if r["layer"] == kk],
                             "reference_scoring_accuracy": states[kk].reference_accuracy,
                             "stop_reason": states[kk].stop_reason} for kk in keys},
             "car_index": {kk: [float(v) for v in car_full[kk]] for kk in keys},
             "carc": carc_out, "compressed": compressed,
             "scoring_examples": int(len(score_y)), "test_examples": int(len(test_y)),
             "num_devices": int(mesh.devices.size), "time_s": time.time() - t0}
  reporting.write_results(workdir, results, config, method="car")
  sections = []
  rows = []
  for kk in keys:
    for p_car, p_in, p_out, p_rand in zip(*(curves[kk][n] for n in ("car", "incoming", "outgoing", "random"))):
      rows.append({"layer": kk, "kept": p_car["kept"], "CAR": p_car["accuracy"], "incoming": p_in["accuracy"],
                   "outgoing": p_out["accuracy"], "random": f"{p_rand['accuracy']:.4f} ± {p_rand['std']:.4f}"})
  sections.append(("Test accuracy vs filters kept (Fig. 2)", reporting.markdown_table(rows)))
  ft_rows = [{"layer": kk, **p} for kk in keys for p in curves[kk]["car_finetuned"]]
  if ft_rows:
    sections.append(("CAR + fine-tuning", reporting.markdown_table(ft_rows)))
  acc_rows = [{"layer": kk, **{n: v for n, v in a.items() if n != "kept_counts"}} for kk, a in acceptance.items()]
  sections.append(("Mean test accuracy, kept <= half the layer", reporting.markdown_table(acc_rows)))
  for kk in keys:
    carc_rows = [{"filter": r["filter"], "CAR": r["car"],
                  "top-5 classes (CARc)": ", ".join(f"{c['class']} {c['carc']:+.3f}" for c in r["top"]),
                  "bottom-5 classes (CARc)": ", ".join(f"{c['class']} {c['carc']:+.3f}" for c in r["bottom"])}
                 for r in carc_out[kk]]
    sections.append((f"CARc: {kk}", reporting.markdown_table(carc_rows)))
  sections.append(("Compressed model (sliced)", reporting.markdown_table(
      [{"": n, **{kk: v for kk, v in compressed.items() if kk != "kept"}} for n in ["values"]])))
  reporting.write_report(workdir, f"CAR compression of {config.model.name} on {ds.name}",
                         {"test_accuracy": reference, "time_s": results["time_s"]}, config,
                         sections=sections, figures=figures)
  return results
