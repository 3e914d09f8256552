"""Measured forward latency of models under masks: median of repeats, compile excluded.

    times = latency.compare({"unpruned": (model, variables, None),
                             "sliced": (small, small_vars, rest)}, batch_size=256)
    # {'unpruned': 0.0041, 'sliced': 0.0019}   seconds per forward of 256 images

Each model's forward is one `jax.jit` of ``models.apply`` on a fixed seeded input batch
[B, H, W, C]; it is compiled and run once before timing. The models then run in turn,
``repeats`` rounds of one call each (alternating, so that a slow spell of a shared machine
hits every model alike), after about a second of untimed rounds, and each model's time is the
median of its rounds.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdr import models

Entry = Tuple[Any, Any, Optional[Mapping[str, Any]]]  # (model, variables, mask or None)
# Untimed alternating rounds before the timed ones: the first rounds after other work (a
# compile, a training run) ran up to ~30% slower than the steady state on a 2-core VM.
WARMUP_S = 1.0


def forward(model, variables, mask: Optional[Mapping[str, Any]], batch_size: int,
            seed: int = 0) -> Callable[[], jax.Array]:
  """A no-argument callable running ``model`` under ``mask`` on a fixed seeded batch of
  ``batch_size`` images (logits [B, K]); jitted, not yet compiled."""
  shape = (int(batch_size), model.image_size, model.image_size, model.input_channels)
  images = jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)
  mask = {k: jnp.asarray(v, jnp.float32) for k, v in dict(mask or {}).items()}
  variables = jax.device_put(variables)  # host (numpy) weights would be copied in every call
  fn = jax.jit(lambda v, x, m: models.apply(model, v, x, m))
  return lambda: fn(variables, images, mask)


def time_calls(calls: Mapping[str, Callable[[], Any]], repeats: int = 20,
               warmup_s: Optional[float] = None) -> Dict[str, float]:
  """Median seconds of each no-argument call over ``repeats`` alternating rounds, after one
  untimed call each (the compile) and untimed alternating rounds for ``warmup_s`` seconds
  (None: `WARMUP_S`)."""
  if repeats < 1:
    raise ValueError(f"repeats must be >= 1, got {repeats}")
  for call in calls.values():
    jax.block_until_ready(call())
  end = time.perf_counter() + (WARMUP_S if warmup_s is None else warmup_s)
  while time.perf_counter() < end:
    for call in calls.values():
      jax.block_until_ready(call())
  times: Dict[str, list] = {name: [] for name in calls}
  for _ in range(repeats):
    for name, call in calls.items():
      start = time.perf_counter()
      jax.block_until_ready(call())
      times[name].append(time.perf_counter() - start)
  return {name: float(np.median(t)) for name, t in times.items()}


def compare(entries: Mapping[str, Entry], batch_size: int, repeats: int = 20) -> Dict[str, float]:
  """Median forward seconds of every ``(model, variables, mask)`` at ``batch_size``."""
  return time_calls({name: forward(m, v, mask, batch_size) for name, (m, v, mask) in entries.items()},
                    repeats)
