"""Fixed-shape batches: the one loop that pads, batches and applies over in-memory arrays.

A jitted function compiles once per input shape, so every caller feeds it batches of one
size: the last batch is zero-padded, and a float32 ``'mask'`` [B] (1 real row, 0 padding)
travels with it so sums can leave the padding out::

    for batch in batching.fixed_batches({"image": x, "label": y}, 256): ...   # + batch["mask"]
    logits = batching.batched_apply(fwd, {"image": x}, 256)                  # [N, ...], padding dropped
    sums = batching.batched_apply(count, {"image": x, "label": y}, 256, reduce="sum")
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, Mapping

import jax
import numpy as np

Batch = Dict[str, np.ndarray]
MASK = "mask"


def pad_batch(batch: Mapping[str, np.ndarray], size: int) -> Batch:
  """Every array zero-padded to ``size`` rows, with ``'mask'`` [size] (an existing mask is
  padded with zeros too)."""
  rows = {np.shape(v)[0] for v in batch.values()}
  if len(rows) != 1:
    raise ValueError(f"batch arrays have different lengths: {sorted(rows)}")
  n = rows.pop()
  if n > size:
    raise ValueError(f"batch of {n} rows does not fit size {size}")
  out = dict(batch)
  if MASK not in out:
    out[MASK] = np.ones((n,), np.float32)
  if n < size:
    out = {k: np.concatenate([np.asarray(v), np.zeros((size - n,) + np.shape(v)[1:], np.asarray(v).dtype)])
           for k, v in out.items()}
  return out


def fixed_batches(arrays: Mapping[str, np.ndarray], batch_size: int) -> Iterator[Batch]:
  """Consecutive ``batch_size``-row batches of ``arrays`` (same length N), the last one padded
  (`pad_batch`); an empty set gives no batch."""
  if int(batch_size) < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  lengths = {np.shape(v)[0] for v in arrays.values()}
  if len(lengths) != 1:
    raise ValueError(f"arrays have different lengths: {sorted(lengths)}")
  n = lengths.pop()
  for start in range(0, n, batch_size):
    yield pad_batch({k: np.asarray(v)[start:start + batch_size] for k, v in arrays.items()}, batch_size)


def _widen(x: np.ndarray) -> np.ndarray:
  return x.astype(np.float64) if np.issubdtype(x.dtype, np.floating) else x


def batched_apply(fn: Callable[[Batch], Any], arrays: Mapping[str, np.ndarray], batch_size: int,
                  reduce: str = "concat") -> Any:
  """``fn`` over `fixed_batches` of ``arrays``. ``fn(batch)`` returns a pytree of arrays:
  with ``reduce='concat'`` each leaf has a leading row axis and the result keeps the real rows
  ([N, ...]); with ``'sum'`` the leaves are summed over batches (``fn`` must weight rows by
  ``batch['mask']`` itself; float sums accumulate in float64). Results are fetched to numpy
  once per batch."""
  if reduce not in ("concat", "sum"):
    raise ValueError(f"reduce must be 'concat' or 'sum', got {reduce!r}")
  parts, total = [], None
  for batch in fixed_batches(arrays, batch_size):
    out = jax.tree.map(np.asarray, fn(batch))
    if reduce == "sum":
      out = jax.tree.map(_widen, out)
      total = out if total is None else jax.tree.map(np.add, total, out)
    else:
      real = int(batch[MASK].sum())
      parts.append(jax.tree.map(lambda x, r=real: x[:r], out))
  if reduce == "sum":
    return total
  if not parts:
    return None
  return jax.tree.map(lambda *xs: np.concatenate(xs), *parts)
