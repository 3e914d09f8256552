"""Conditional computation over batch rows: run a function only on the rows that need it.

Dynamic networks (DMNN's sub-blocks, any per-example gate) decide per image whether a branch
runs. Multiplying the branch's output by a 0/1 gate computes it for every image anyway;
`on_rows` computes it only for the images whose gate is on, in fixed shapes that `jit` needs:

  * the rows that are on are gathered into the smallest *capacity* of ``capacities`` that
    holds them (a static size; rows beyond the count are padding and are dropped), the
    function runs on that [K, ...] block, and its rows are added back in place to a running
    sum ([B, ...]). Every capacity is one branch of a `lax.switch` (`flax.linen.switch`
    when the function takes a Flax module): only the chosen branch runs;
  * no row on: a branch that returns the running sum it was given (nothing runs);
  * a capacity of the whole batch runs the function on the batch as it is (no gather).

At batch 1 this is a `lax.cond` (run or skip). Capacities trade padding (a count of 17 runs
32 rows when capacities step by 16) for the number of compiled branches.

`on_patterns` is the single-example form for a set of N gated branches that add up (DMNN's
sub-blocks at batch 1): one `lax.switch` over the 2^N on/off patterns, each branch computing
the functions that are on and what follows them (the sum, an activation) in one program. One
conditional per set instead of N chained ones: no copy of the running sum for a skipped
function, no unfused add and activation after the last. Each function is traced into 2^(N-1)
branches, and XLA copies the constants it uses (weights a jitted function closes over) into each:
keep N small and chain sets (DMNN uses pairs; benchmarks/results/dmnn_pattern_switch_ab).

Do not `vmap` over a call of `on_rows`: under `vmap` a switch on a batched index becomes a
select that runs every branch. Gradients flow through the gathered rows, but the rows padded
into a capacity do not depend on what is off, so this is for inference and for losses on the
rows that ran.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

PyTree = Any
# `on_patterns` compiles 2^N branches holding N 2^(N-1) function calls in all (each function's
# constants, e.g. weights a jitted function closes over, copied into 2^(N-1) branches).
MAX_PATTERN_BITS = 8


def capacities(batch: int, buckets: int) -> Tuple[int, ...]:
  """Capacities ``ceil(batch * i / buckets)`` for i = 1..buckets, without repeats and never 0
  (``capacities(128, 8) == (16, 32, ..., 128)``, ``capacities(1, 8) == (1,)``)."""
  if batch < 1 or buckets < 1:
    raise ValueError(f"batch and buckets must be >= 1, got {batch} and {buckets}")
  return tuple(sorted({max(1, math.ceil(batch * i / buckets)) for i in range(1, buckets + 1)}))


def compact(on: jnp.ndarray, size: int) -> Tuple[jnp.ndarray, jnp.ndarray]:
  """``(rows, slots)`` for bool ``on`` [B] and a capacity ``size`` >= its count: ``rows`` [size]
  are the indices of the rows that are on, in order, padded with row 0; ``slots`` [B] is where
  each row sits in ``rows`` (``size``, out of range, for rows that are off)."""
  on = on.astype(bool)
  rows = jnp.nonzero(on, size=size, fill_value=0)[0]
  slots = jnp.where(on, jnp.cumsum(on) - 1, size)
  return rows, slots


def scatter_rows(y: jnp.ndarray, slots: jnp.ndarray) -> jnp.ndarray:
  """[K, ...] results back to [B, ...] rows: row b is ``y[slots[b]]``, 0 where ``slots[b] == K``."""
  return jnp.take(y, slots, axis=0, mode="fill", fill_value=0)


def branch_index(on: jnp.ndarray, sizes: Sequence[int]) -> jnp.ndarray:
  """0 when no row is on, else 1 + the index of the smallest capacity holding the count."""
  count = jnp.sum(on.astype(jnp.int32))
  fits = jnp.searchsorted(jnp.asarray(sizes, jnp.int32), count, side="left")
  return jnp.where(count == 0, 0, fits + 1).astype(jnp.int32)


def on_rows(fn: Callable[..., jnp.ndarray], x: jnp.ndarray, on: jnp.ndarray, sizes: Sequence[int],
            acc: jnp.ndarray, *, scale: Optional[jnp.ndarray] = None, module: Optional[nn.Module] = None,
            per_row: PyTree = None, shared: PyTree = None) -> jnp.ndarray:
  """``acc + scale * fn(x)`` on the rows of ``x`` [B, ...] where ``on`` [B] (bool or 0/1) is
  set, ``acc`` elsewhere; ``fn`` runs on those rows only.

  ``fn(x_rows, per_row_rows, shared)`` (``fn(module, x_rows, ...)`` with a Flax ``module``)
  maps [K, ...] rows to [K, *acc.shape[1:]]; ``per_row`` is a pytree of [B, ...] arrays
  gathered with the rows (e.g. per-example mask entries), ``shared`` is passed as is.
  ``acc`` [B, ...]: what the results are added to (a block's running sum: a skipped branch
  costs no buffer and no add); ``scale`` [B]: per-row factor (default 1).
  ``sizes``: increasing static capacities (`capacities`); the last must be >= B.
  """
  batch = x.shape[0]
  sizes = tuple(int(s) for s in sizes)
  if not sizes or sizes[-1] < batch or list(sizes) != sorted(set(sizes)):
    raise ValueError(f"capacities must increase and reach the batch size {batch}, got {sizes}")
  if acc.shape[0] != batch:
    raise ValueError(f"acc {acc.shape} must have the batch size {batch} first")
  on = on.astype(bool)
  scale = jnp.ones((batch,), acc.dtype) if scale is None else jnp.asarray(scale, acc.dtype)
  rows_shape = (batch,) + (1,) * (acc.ndim - 1)

  def call(mdl, *args):
    return fn(mdl, *args) if module is not None else fn(*args)

  def skip(mdl, acc, x, on, scale, per_row, shared):
    del mdl, x, on, scale, per_row, shared
    return acc

  def full(mdl, acc, x, on, scale, per_row, shared):
    y = call(mdl, x, per_row, shared)
    return acc + jnp.where(on, scale, 0).reshape(rows_shape) * y

  def gathered(size):
    def branch(mdl, acc, x, on, scale, per_row, shared):
      rows, slots = compact(on, size)
      take = lambda a: jnp.take(a, rows, axis=0)  # noqa: E731
      y = call(mdl, take(x), jax.tree.map(take, per_row), shared)
      return acc + scatter_rows(y * take(scale).reshape((size,) + rows_shape[1:]), slots)
    return branch

  branches = [skip] + [full if size >= batch else gathered(size) for size in sizes]
  index = branch_index(on, sizes)
  operands = (acc, x, on, scale, per_row, shared)
  if module is not None:
    return nn.switch(index, branches, module, *operands)
  return jax.lax.switch(index, [lambda *a, b=b: b(None, *a) for b in branches], *operands)


def pattern_index(on: jnp.ndarray) -> jnp.ndarray:
  """bool / 0-1 ``on`` [N] -> the int32 pattern ``sum_n on[n] 2^n`` (`on_patterns`' branch)."""
  on = jnp.asarray(on).astype(bool)
  return jnp.sum(on.astype(jnp.int32) << jnp.arange(on.shape[-1], dtype=jnp.int32))


def on_patterns(fn: Callable[..., Any], on: jnp.ndarray, *operands, module: Optional[nn.Module] = None):
  """``fn(subset, *operands)`` (``fn(module, subset, *operands)`` with a Flax ``module``) for the
  one pattern of ``on`` [N] (bool or 0/1, one example): ``subset`` is the static tuple of the
  n whose ``on[n]`` is set, so only those functions are traced into the branch that runs.

  One `lax.switch` (`flax.linen.switch`) of 2^N branches; 1 <= N <= `MAX_PATTERN_BITS`."""
  if jnp.ndim(on) != 1 or not 1 <= jnp.shape(on)[0] <= MAX_PATTERN_BITS:
    raise ValueError(f"on must be [N] with 1 <= N <= {MAX_PATTERN_BITS}, got shape {jnp.shape(on)}")
  n = int(jnp.shape(on)[0])
  subsets = [tuple(i for i in range(n) if k >> i & 1) for k in range(2 ** n)]
  index = pattern_index(on)
  if module is not None:
    return nn.switch(index, [functools.partial(_with_module, fn, s) for s in subsets], module, *operands)
  return jax.lax.switch(index, [functools.partial(fn, s) for s in subsets], *operands)


def _with_module(fn, subset, mdl, *operands):
  return fn(mdl, subset, *operands)
