"""Top activating image patches of a filter (the paper's Figs. 6, 7 and 9A, after Zeiler &
Fergus): the images whose activation at a gate point is highest for that filter, each cut to
the receptive field of its highest-responding position.

The receptive field is read off the network itself rather than from layer arithmetic (pooling
is not in `models.describe`'s graph): in a copy whose kernels are all 1, biases 0 and
BatchNorm the identity, every layer is monotone and positive, so an output position is
non-zero exactly when its field contains an input row (or column) set to 1. One probe per
input row and per column gives every position's field, clipped to the image (zero padding
is outside it).

    rows, cols = receptive_field(model, variables, "conv2")    # [H', 2], [W', 2] (start, stop)
    top = top_activations(model, variables, images, "conv2", filters=[3, 7], k=9)
    patch = crop(images, top[3][0], rows, cols)              # [h, w, C] of the best image (NaN off the image)
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Dict, List, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdr import batching, models

PyTree = Any


def _capture(key: str, store: dict):
  path = tuple(key.split("/"))

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == "__call__" and tuple(context.module.scope.path) == path:
      store["out"] = out
    return out
  return interceptor


def activation(model, variables: PyTree, images: jnp.ndarray, key: str) -> jnp.ndarray:
  """The activation [N, H', W', C] at gate point ``key`` (after its gate), unmasked network."""
  store: dict = {}
  with nn.intercept_methods(_capture(key, store)):
    models.apply(model, variables, images, None)
  if "out" not in store:
    raise ValueError(f"no module at gate point {key!r}")
  return store["out"]


def _positive(variables: PyTree) -> PyTree:
  """Kernels 1, biases 0, BN scale 1 / bias 0 / mean 0 / var 1: a positive monotone network."""
  def leaf(path, x):
    name = str(getattr(path[-1], "key", path[-1]))
    return jnp.ones_like(x) if name in ("kernel", "scale", "var") else jnp.zeros_like(x)
  return jax.tree_util.tree_map_with_path(leaf, dict(variables))


def receptive_field(model, variables: PyTree, key: str, chunk: int = 32) -> Tuple[np.ndarray, np.ndarray]:
  """Input rows and columns seen by each output position of gate ``key``: ``rows`` [H', 2]
  and ``cols`` [W', 2] as (start, stop), clipped to the image."""
  probe_model = model.clone(conv_impl="xla") if hasattr(model, "conv_impl") else model
  probe = _positive(variables)
  size, channels = model.image_size, model.input_channels
  fn = jax.jit(lambda x: activation(probe_model, probe, x, key).max(axis=-1))  # [n, H', W']
  hits = []
  for axis in (1, 2):
    found = []
    for start in range(0, size, chunk):
      lines = np.arange(start, min(start + chunk, size))
      x = np.zeros((len(lines), size, size, channels), np.float32)
      if axis == 1:
        x[np.arange(len(lines)), lines] = 1.0
      else:
        x[np.arange(len(lines)), :, lines] = 1.0
      a = np.asarray(fn(jnp.asarray(x)))
      found.append(a.max(axis=3 - axis) > 0)  # [n, H'] (rows) or [n, W'] (columns)
    hit = np.concatenate(found)  # [input line, output line]
    spans = []
    for o in range(hit.shape[1]):
      on = np.flatnonzero(hit[:, o])
      spans.append((int(on[0]), int(on[-1]) + 1) if len(on) else (0, 0))
    hits.append(np.asarray(spans, np.int64))
  return hits[0], hits[1]


@dataclasses.dataclass(frozen=True)
class Hit:
  """One of a filter's top activations: image ``index``, output position (``row``, ``col``)."""
  value: float
  index: int
  row: int
  col: int


@functools.lru_cache(maxsize=16)
def _peaks(model, key: str):
  def fn(variables, filters, batch):
    a = activation(model, variables, batch["image"], key)[..., filters]  # [n, H', W', F]
    flat = a.reshape(a.shape[0], -1, a.shape[-1])
    return {"value": flat.max(axis=1), "where": jnp.argmax(flat, axis=1)}
  return jax.jit(fn)


def top_activations(model, variables: PyTree, images: np.ndarray, key: str, filters: Sequence[int],
                    k: int = 9, batch_size: int = 250) -> Dict[int, List[Hit]]:
  """Per filter of ``filters``: the ``k`` images with the highest activation anywhere in the
  map (one patch per image), best first."""
  filters = [int(f) for f in filters]
  if not filters:
    return {}
  fn = _peaks(model, key)
  out = batching.batched_apply(lambda b: fn(variables, jnp.asarray(filters), b),
                               {"image": np.asarray(images, np.float32)}, batch_size)
  width = jax.eval_shape(lambda x: activation(model, variables, x, key),
                         jax.ShapeDtypeStruct((1,) + np.shape(images)[1:], jnp.float32)).shape[2]
  result = {}
  for i, f in enumerate(filters):
    values, where = np.asarray(out["value"][:, i]), np.asarray(out["where"][:, i])
    best = np.argsort(-values, kind="stable")[:k]
    result[f] = [Hit(float(values[n]), int(n), int(where[n]) // width, int(where[n]) % width) for n in best]
  return result


def field_size(rows: np.ndarray, cols: np.ndarray) -> Tuple[int, int]:
  """(h, w) of the full (unclipped) receptive field: the widest span."""
  return int((rows[:, 1] - rows[:, 0]).max()), int((cols[:, 1] - cols[:, 0]).max())


def crop(images: np.ndarray, hit: Hit, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
  """The receptive field of ``hit`` in its image, [h, w, C] at the full field size: where the
  field runs past the image border (zero padding) the patch is NaN there."""
  h, w = field_size(rows, cols)
  (r0, r1), (c0, c1) = rows[hit.row], cols[hit.col]
  img = np.asarray(images[hit.index], np.float32)
  out = np.full((h, w, img.shape[-1]), np.nan, np.float32)
  top = h - (r1 - r0) if r0 == 0 else 0  # clipped at the top: the image part sits at the bottom
  left = w - (c1 - c0) if c0 == 0 else 0
  out[top:top + r1 - r0, left:left + c1 - c0] = img[r0:r1, c0:c1]
  return out


def mosaic(patches: Sequence[np.ndarray], cols: int = 3, gap: int = 1) -> np.ndarray:
  """Equal-sized patches [h, w, C] in a ``cols``-wide grid on a white canvas, each min-max
  scaled to [0, 1] (NaN, outside the image, shows white). Returns [H, W, C] in [0, 1]."""
  h, w, channels = np.shape(patches[0])
  rows = -(-len(patches) // cols)
  out = np.ones((rows * (h + gap) - gap, cols * (w + gap) - gap, channels), np.float32)
  for i, p in enumerate(patches):
    p = np.asarray(p, np.float32)
    lo, hi = np.nanmin(p), np.nanmax(p)
    p = np.nan_to_num((p - lo) / max(float(hi - lo), 1e-12), nan=1.0)
    r, c = divmod(i, cols)
    out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = p
  return out
