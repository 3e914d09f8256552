"""CAR scoring: the accuracy each candidate filter removal leaves, all candidates at once.

Abbasi-Asl & Yu, "Structural Compression of CNNs with Applications in Interpretability":
CAR(i, L) = Acc(N) - Acc(N without filter i of layer L and its outgoing connections), on a
scoring set (`car_index`; per class: `carc.carc_index`).

All candidates of a layer are scored in one call: candidate ``j`` removes filter ``j`` from the
current mask (``-1``: removes nothing, the unpruned reference), the candidates are `vmap`-ed and
sharded over the local devices with `jax.shard_map`. Nothing a candidate cannot change is
recomputed: the network up to the pruned layer's consumers runs once (unbatched under `vmap`),
every consumer's pre-activation is computed once and each candidate subtracts only filter
``j``'s own contribution (a one-input-channel conv / a slice of the dense rows), and then only
the rest of the network runs per candidate (the consumers' pre-activations are handed in with a
Flax method interceptor; under `jit` XLA drops the dead prefix). Images stream through in
fixed-shape padded batches (`jaxdr.batching`); padded rows carry ``mask`` 0 and count for no
class.

    s = score_layer(model, variables, x, y, {}, "conv1", num_classes=10)   # Scores, P = 1 + C
    car = car_index(s)[1:]                                                # [C]
    acc = evaluate_masks(model, variables, x, y, {"conv1": stacked}, num_classes=10)   # [M]
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from jaxdr import batching, models, ops
from jaxdr.errors import ConfigError
from jaxdr.models import layers as layers_lib

PyTree = Any
AXIS = "candidates"


def candidate_mesh(devices: Optional[Sequence[Any]] = None) -> jax.sharding.Mesh:
  """1-D mesh over ``devices`` (default: the local devices) that candidates are sharded on."""
  devices = list(devices) if devices is not None else jax.local_devices()
  return jax.make_mesh((len(devices),), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices)


def reusable(graph: models.Graph, key: str) -> bool:
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


def _count(logits, labels, weights, num_classes):
  """Per-class correct counts [K] and summed cross-entropy of logits [N, K]; rows with
  ``weights`` [N] 0 (batch padding) count for nothing."""
  valid = weights > 0
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

  if not (reuse and reusable(graph, key)):
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
  def per_device(variables, base_mask, removed, images, labels, weights):
    logits = candidate_logits(model, variables, images, base_mask, key, removed, reuse)
    return jax.vmap(lambda l: _count(l, labels, weights, num_classes))(logits)

  sharded = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(), P(AXIS), P(), P(), P()),
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
    raise ConfigError(f"candidates must be filter indices in [-1, {channels}) of {key!r}")
  mesh = mesh or candidate_mesh()
  n_dev = mesh.devices.size
  padded = np.concatenate([removed, -np.ones((-len(removed)) % n_dev, np.int32)])
  fn = _scorer(model, key, num_classes, reuse, mesh)
  base_mask = {k: jnp.asarray(v, jnp.float32) for k, v in dict(base_mask or {}).items()}
  batch_size = min(batch_size, images.shape[0])
  counts, loss = batching.batched_apply(  # float64 sums over batches
      lambda b: fn(variables, base_mask, padded, b["image"], b["label"], b[batching.MASK]),
      {"image": images, "label": labels}, batch_size, reduce="sum")
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
                  jnp.asarray(labels, jnp.int32), jnp.ones(len(labels), jnp.float32), num_classes)
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


def evaluate_masks(model: nn.Module, variables: PyTree, images: np.ndarray, labels: np.ndarray,
                   stacked: Mapping[str, np.ndarray], *, num_classes: int, batch_size: int = 1000,
                   masks_per_call: int = 16, reuse: bool = True,
                   mesh: Optional[jax.sharding.Mesh] = None) -> np.ndarray:
  """Accuracy [M] of M masks (``stacked``: gate key -> [M, C]): ``masks_per_call`` masks at a
  time are `vmap`-ed and sharded over the devices, for each batch of images. Masks of a single
  gate reuse the prefix and the consumers' per-channel contributions (`gate_sweep_logits`)."""
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
  parts = [{k: v[c:c + chunk] for k, v in stacked.items()} for c in range(0, m + pad, chunk)]
  correct = batching.batched_apply(  # per chunk [chunk] correct counts, summed in float64
      lambda b: [fn(variables, part, b["image"], b["label"], b[batching.MASK]) for part in parts],
      {"image": images, "label": labels}, batch_size, reduce="sum")
  return np.concatenate(correct)[:m] / images.shape[0]


def accuracy(model: nn.Module, variables: PyTree, images: np.ndarray, labels: np.ndarray,
             mask: Optional[Mapping[str, Any]], **kw) -> float:
  """Accuracy of one (possibly empty) mask, through `evaluate_masks`."""
  mask = dict(mask or {})
  if not mask:
    gate = models.describe(model).gates[0]
    mask = {gate.key: np.ones((gate.channels,), np.float32)}
  return float(evaluate_masks(model, variables, images, labels,
                              {k: np.asarray(v)[None] for k, v in mask.items()}, **kw)[0])


def gate_sweep_logits(model: nn.Module, variables: PyTree, images: jnp.ndarray, key: str,
                  gates: jnp.ndarray, reuse: bool = True) -> jnp.ndarray:
  """Logits [M, N, K] under M gate vectors ``gates`` [M, C] of gate ``key`` (others open).

  With ``reuse`` the consumers' pre-activation is linear in the gate: every channel's
  contribution P_c is computed once ([C, ...], one consumer's worth of work in total) and a
  mask costs ``out - sum_c (1 - m_c) P_c`` instead of the consumer's whole conv."""
  graph = models.describe(model)
  channels = graph.gate(key).channels
  if not (reuse and reusable(graph, key)):
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
  def per_device(variables, stacked, images, labels, weights):
    if key is not None:
      logits = gate_sweep_logits(model, variables, images, key, stacked[key], reuse)
    else:
      logits = jax.vmap(lambda mask: models.apply(model, variables, images, mask))(stacked)
    return jax.vmap(lambda l: _count(l, labels, weights, num_classes)[0].sum())(logits)
  return jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(AXIS), P(), P(), P()),
                               out_specs=P(AXIS), check_vma=False))




def balanced_indices(labels: np.ndarray, per_class: int, from_end: bool = True) -> np.ndarray:
  """Indices of ``per_class`` examples of every class (the last ones with ``from_end``): a
  class-balanced scoring set, on which CAR is the mean of CARc over the classes."""
  labels = np.asarray(labels)
  out = []
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    if len(idx) < per_class:
      raise ConfigError(f"class {c} has {len(idx)} examples, fewer than {per_class}")
    out.append(idx[-per_class:] if from_end else idx[:per_class])
  return np.sort(np.concatenate(out))
