"""Evaluation: exact loss / accuracy sums over padded fixed-shape batches.

    training.evaluate(model, variables, images, labels, mask=m)     # accuracy on arrays in memory
    run_eval = training.split_evaluator(mesh, dataset="fashion_mnist", batch_size=500)
    run_eval(variables)                                             # a dataset's test split

Both run one jitted step per batch shape; padded rows (``batch['mask']`` 0) do not count.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdr import batching, data, models
from jaxdr.training import distributed
from jaxdr.training.metrics import summarise
from jaxdr.training.objective import cross_entropy

PyTree = Any
LogitsFn = Callable[[PyTree, jnp.ndarray], jnp.ndarray]


def sums(logits: jnp.ndarray, batch: Mapping[str, jnp.ndarray]) -> Dict[str, jnp.ndarray]:
  """Summed cross-entropy, correct top-1 and count of a batch, weighted by ``batch['mask']``."""
  labels = batch["label"]
  weight = batch.get("mask", jnp.ones(labels.shape, jnp.float32)).astype(jnp.float32)
  correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
  return {"loss": jnp.sum(cross_entropy(logits, labels) * weight),
          "correct": jnp.sum(correct * weight), "count": jnp.sum(weight)}


@functools.lru_cache(maxsize=32)
def _masked_sums(model):
  return jax.jit(lambda variables, mask, batch: sums(
      models.apply(model, variables, batch["image"], mask), batch))


def evaluate(model, variables: PyTree, images: np.ndarray, labels: np.ndarray, *,
             mask: Optional[Mapping[str, Any]] = None, weights: Optional[np.ndarray] = None,
             batch_size: int = 256) -> float:
  """Top-1 accuracy (a fraction) of ``model`` under channel ``mask`` on in-memory images
  [N, H, W, C] / labels [N]; ``weights`` [N] (0/1) leaves rows out. Local devices only."""
  images, labels = np.asarray(images), np.asarray(labels)
  if images.shape[0] != labels.shape[0]:
    raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
  arrays = {"image": images, "label": labels}
  if weights is not None:
    arrays["mask"] = np.asarray(weights, np.float32)
  step = _masked_sums(model)
  mask = {k: jnp.asarray(v, jnp.float32) for k, v in dict(mask or {}).items()}
  total = batching.batched_apply(lambda b: step(variables, mask, b), arrays, batch_size, reduce="sum")
  if total is None:
    return 0.0
  return float(total["correct"]) / max(float(total["count"]), 1.0)


def test_batches(mesh, *, dataset: str, batch_size: int, data_dir: Optional[str] = None,
                 image_size: Optional[int] = None, limit: int = 0
                 ) -> Iterator[Tuple[Dict[str, jax.Array], Dict[str, np.ndarray]]]:
  """``(global batch, this process's rows)`` of a dataset's test split, padded to ``batch_size``
  (``mask`` 0 on padding and on rows past the first ``limit`` examples when > 0)."""
  local_bs = distributed.local_batch_size(batch_size)
  local_limit = -(-limit // jax.process_count())
  seen = 0  # rows of this process's shard
  for batch in data.iterator(dataset, data.info(dataset).test_split, batch_size, train=False,
                             data_dir=data_dir, image_size=image_size,
                             process_index=jax.process_index(), process_count=jax.process_count()):
    batch = {k: batch[k] for k in ("image", "label", "mask")}
    if limit:
      batch["mask"] = batch["mask"] * (seen + np.arange(local_bs) < local_limit)
    yield distributed.global_batch(mesh, batch), batch
    seen += local_bs
    if limit and seen >= local_limit:
      break


def split_evaluator(mesh, logits_fn: LogitsFn, *, dataset: str, batch_size: int,
                    data_dir: Optional[str] = None, image_size: Optional[int] = None,
                    limit: int = 0) -> Callable[[PyTree], Dict[str, float]]:
  """``evaluate(variables) -> {test_loss, test_accuracy, test_examples}``: exact over a
  dataset's test split (its first ``limit`` examples when > 0), data parallel over ``mesh``;
  ``logits_fn(variables, images)`` is the eval-mode network (plain, masked or gated)."""
  step = jax.jit(lambda v, b: sums(logits_fn(v, b["image"]), b),
                 out_shardings=distributed.replicated(mesh))

  def run(variables) -> Dict[str, float]:
    totals = {"loss": 0.0, "correct": 0.0, "count": 0.0}
    for batch, _ in test_batches(mesh, dataset=dataset, batch_size=batch_size, data_dir=data_dir,
                                 image_size=image_size, limit=limit):
      out = step(variables, batch)
      for k in totals:
        totals[k] += float(out[k])
    return {**summarise(totals, "test"), "test_examples": int(totals["count"])}

  return run
