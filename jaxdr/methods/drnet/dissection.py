"""DRNet's dissection: the CIV of class c is the mean CDRP gate vector (`cdrp`) of N training
images of class c, per gate point: ``civ[key]`` is float32 [num_classes, C].

    images, labels = collect_images("fashion_mnist", "train", range(10), 100, seed=0)
    civ = Dissection(model, 10, CdrpOptions(), workdir / "civ").run(variables, images, labels,
                                                                   np.arange(len(labels)), 100)

The per-class partial sums are a `toolkit.state.MethodState` in ``directory``: saved with
orbax every ``save_every`` batches, so an interrupted dissection resumes after the last saved
batch; a rerun with another model, other images, CDRP options or batch size refuses that
directory (`jaxdr.errors.ConfigError`).
"""
from __future__ import annotations

import dataclasses
import itertools
import time
from typing import Sequence, Tuple

from absl import logging
from etils import epath
import jax.numpy as jnp
import numpy as np

from jaxdr import batching, models, reporting
from jaxdr.errors import ConfigError
from jaxdr.methods.drnet import cdrp
from jaxdr.methods.drnet.cciv import Civ
from jaxdr.toolkit import state as state_lib

CIV_FILE = "civ.npz"


def select_images(labels: np.ndarray, classes: Sequence[int], per_class: int, seed: int) -> np.ndarray:
  """Indices of ``per_class`` images of each class (seeded, without replacement), class-major."""
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  picked = []
  for c in classes:
    pool = np.flatnonzero(labels == c)
    if pool.size == 0:
      raise ConfigError(f"no training images of class {c} to dissect")
    picked.append(np.sort(rng.choice(pool, size=min(per_class, pool.size), replace=False)))
  return np.concatenate(picked)


def collect_images(name: str, split: str, classes: Sequence[int], per_class: int, seed: int,
                   data_dir=None, image_size=None, limit: int = 0) -> Tuple[np.ndarray, np.ndarray]:
  """(images, labels) holding ``per_class`` images of each class in ``classes`` and nothing else.

  In-memory datasets: a seeded choice (`select_images`) from the whole split. Others
  (ImageNet): the first ``per_class`` of each class in file order, streamed in eval mode.
  """
  from jaxdr import data  # pylint: disable=g-import-not-at-top
  if data.info(name).in_memory:
    images, labels = data.as_arrays(name, split, data_dir=data_dir, image_size=image_size,
                                    limit=limit or None)
    idx = select_images(labels, classes, per_class, seed)
    return images[idx], labels[idx]
  wanted = {int(c): [] for c in classes}
  seen = 0
  for batch in data.iterator(name, split, 256, train=False, data_dir=data_dir, image_size=image_size):
    for x, y, m in zip(batch["image"], batch["label"], batch["mask"]):
      if m and int(y) in wanted and len(wanted[int(y)]) < per_class:
        wanted[int(y)].append(x)
    seen += len(batch["label"])
    if all(len(v) >= per_class for v in wanted.values()) or (limit and seen >= limit):
      break
  images = np.stack([x for c in wanted for x in wanted[c]])
  labels = np.concatenate([np.full(len(wanted[c]), c, np.int32) for c in wanted])
  return images, labels


def fingerprint(model, indices: np.ndarray, options: cdrp.CdrpOptions, batch_size: int) -> dict:
  """What a saved dissection must match to be resumed: the model's gate points, the images
  (count and an order-sensitive checksum of their indices), CDRP options and batch size."""
  return {"model": repr(models.describe(model).gates), "images": int(indices.size),
          "indices_sum": int(np.sum(indices.astype(np.int64) * np.arange(1, indices.size + 1) % 1000003)),
          "options": dataclasses.asdict(options), "batch_size": int(batch_size)}


class Dissection:
  """Resumable CIV computation: per-class sums of CDRP gates, saved with orbax as it goes.

  State (a pytree in graph order, so orbax needs no '/'-free keys): ``sums`` list of
  float32 [num_classes, C], ``counts`` float32 [num_classes], ``done`` (batches finished).
  """

  def __init__(self, model, num_classes: int, options: cdrp.CdrpOptions, directory=None):
    self.model = model
    self.graph = models.describe(model)
    self.num_classes = num_classes
    self.options = options
    self.directory = None if directory is None else epath.Path(directory)
    self._fit = cdrp.make_fitter(model, options)

  def empty(self) -> dict:
    """The state before the first batch."""
    return {"sums": [np.zeros((self.num_classes, g.channels), np.float32) for g in self.graph.gates],
            "counts": np.zeros((self.num_classes,), np.float32), "done": np.zeros((), np.int32)}

  def run(self, variables, images: np.ndarray, labels: np.ndarray, indices: np.ndarray,
          batch_size: int, save_every: int = 1) -> Civ:
    """CIV of every class over ``images[indices]``; resumes from ``directory`` if saved there."""
    indices = np.asarray(indices)
    state = self.empty()
    if self.directory is None:
      self._loop(variables, images, labels, indices, state, batch_size, None, save_every)
      return self.civ(state)
    with state_lib.MethodState(self.directory, fingerprint(self.model, indices, self.options, batch_size),
                               what="dissection") as saved:
      step, state = saved.restore_arrays("sums", state)
      if step is not None:
        logging.info("dissect: resuming after batch %d of %d (%s)", int(state["done"]),
                     -(-indices.size // batch_size), self.directory)
      # An interrupted run still commits its last save (MethodState.close).
      self._loop(variables, images, labels, indices, state, batch_size, saved, save_every)
    return self.civ(state)

  def _loop(self, variables, images, labels, indices, state, batch_size, saved, save_every):
    """Fits the batches after ``state['done']``, adding each one's gates to the class sums."""
    total = -(-indices.size // batch_size)
    start, t0, seen = int(state["done"]), time.time(), 0
    whole = indices.size == len(images) and np.array_equal(indices, np.arange(len(images)))
    arrays = {"image": images if whole else images[indices], "label": np.asarray(labels)[indices]}
    batches = batching.fixed_batches(arrays, batch_size)  # one compiled shape for every batch
    for b, batch in enumerate(itertools.islice(batches, start, None), start):
      n = int(batch[batching.MASK].sum())
      gates, _ = self._fit(variables, jnp.asarray(batch["image"]))
      onehot = np.eye(self.num_classes, dtype=np.float32)[batch["label"][:n]]  # [n, K]
      for i, g in enumerate(self.graph.gates):
        state["sums"][i] = state["sums"][i] + onehot.T @ np.asarray(gates[g.key])[:n]
      state["counts"] = state["counts"] + onehot.sum(0)
      state["done"] = np.asarray(b + 1, np.int32)
      seen += n
      if saved is not None and ((b + 1) % save_every == 0 or b + 1 == total):
        saved.save_arrays("sums", b + 1, state)
      rate = seen / max(time.time() - t0, 1e-9)
      done_images = min((b + 1) * batch_size, indices.size)
      logging.info("dissect: batch %d/%d, %d/%d images, %.1f img/s, ETA %.0fs", b + 1, total,
                   done_images, indices.size, rate, (indices.size - done_images) / max(rate, 1e-9))

  def civ(self, state) -> Civ:
    """The class means of the summed gates (a class without images gets zeros)."""
    counts = np.maximum(np.asarray(state["counts"]), 1.0)[:, None]
    return {g.key: (np.asarray(s) / counts).astype(np.float32)
            for g, s in zip(self.graph.gates, state["sums"])}


def save_civ(workdir, civ: Civ) -> epath.Path:
  """Writes ``workdir/civ.npz`` (process 0; '/' in gate keys stored as '__')."""
  path = epath.Path(workdir) / CIV_FILE
  if reporting.is_writer():
    np.savez(str(path), **{k.replace("/", "__"): v for k, v in civ.items()})
  return path


def load_civ(workdir) -> Civ:
  """The CIV a finished dissection left in ``workdir/civ.npz``."""
  path = epath.Path(workdir) / CIV_FILE
  if not path.exists():
    raise ConfigError(f"no CIV in {workdir} (run the dissection first)")
  with np.load(str(path)) as f:
    return {k.replace("__", "/"): f[k] for k in f.files}
