"""Where training batches come from: a dataset split or arrays in memory.

Either way the batches are a pure function of ``(seed, step)``, so a resumed run reads
exactly the batches an uninterrupted one would, and each process yields only its rows of
every global batch (``{'image': [B/P, H, W, C], 'label': [B/P]}``).
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Dict, Iterator, Optional

import jax
import numpy as np

from jaxdr import data
from jaxdr.errors import ConfigError
from jaxdr.training import distributed

Batch = Dict[str, np.ndarray]


def _epoch_seed(seed: int, epoch: int) -> int:
  return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


@dataclasses.dataclass(frozen=True)
class DatasetSource:
  """The train split of a `jaxdr.data` dataset. Epoch ``e`` reads it shuffled with seed
  ``fold(seed, e)`` (the dataset's augmentation) and keeps its first ``steps_per_epoch`` full
  batches; ``steps_per_epoch`` 0 means every full batch of the split."""
  name: str
  data_dir: Optional[str] = None
  image_size: Optional[int] = None

  def spec(self, batch_size: int) -> Dict[str, jax.ShapeDtypeStruct]:
    """Shapes of a global batch."""
    ds = data.info(self.name)
    size = self.image_size or ds.image_size
    return {"image": jax.ShapeDtypeStruct((batch_size, size, size, ds.channels), np.float32),
            "label": jax.ShapeDtypeStruct((batch_size,), np.int32)}

  def steps_per_epoch(self, batch_size: int) -> int:
    n = data.num_examples(self.name, "train", self.data_dir)
    return max(n // batch_size, 1)

  def batches(self, batch_size: int, seed: int, start_step: int, steps_per_epoch: int) -> Iterator[Batch]:
    distributed.local_batch_size(batch_size)  # checks it splits over the devices
    epoch, offset = divmod(start_step, steps_per_epoch)
    while True:
      it = data.iterator(self.name, data.info(self.name).train_split, batch_size, train=True,
                         seed=_epoch_seed(seed, epoch), data_dir=self.data_dir, image_size=self.image_size,
                         process_index=jax.process_index(), process_count=jax.process_count())
      got = 0
      for batch in itertools.islice(it, offset, steps_per_epoch):
        got += 1
        yield {"image": batch["image"], "label": batch["label"]}
      if got < steps_per_epoch - offset:
        raise ConfigError(f"train split of {self.name!r} gave {offset + got} batches of {batch_size}, "
                          f"need {steps_per_epoch} per epoch")
      epoch, offset = epoch + 1, 0


@dataclasses.dataclass(frozen=True, eq=False)
class ArraySource:
  """In-memory examples: each step draws ``batch_size`` distinct rows at random with
  ``numpy.random.default_rng(seed)`` (the draws of earlier steps are replayed on resume).
  ``arrays`` maps batch keys to [N, ...] arrays and must hold 'image' and 'label'."""
  arrays: Dict[str, np.ndarray]

  def __post_init__(self):
    lengths = {np.shape(v)[0] for v in self.arrays.values()}
    if "image" not in self.arrays or "label" not in self.arrays or len(lengths) != 1:
      raise ConfigError(f"ArraySource needs 'image' and 'label' arrays of one length, got "
                        f"{ {k: np.shape(v) for k, v in self.arrays.items()} }")

  @property
  def size(self) -> int:
    return int(np.shape(self.arrays["label"])[0])

  def spec(self, batch_size: int) -> Dict[str, jax.ShapeDtypeStruct]:
    """Shapes of a global batch."""
    return {k: jax.ShapeDtypeStruct((batch_size,) + np.shape(v)[1:], np.asarray(v).dtype)
            for k, v in self.arrays.items()}

  def steps_per_epoch(self, batch_size: int) -> int:
    return max(self.size // batch_size, 1)

  def batches(self, batch_size: int, seed: int, start_step: int, steps_per_epoch: int) -> Iterator[Batch]:
    del steps_per_epoch
    if self.size < batch_size:
      raise ConfigError(f"need at least batch_size={batch_size} examples, got {self.size}")
    rows = distributed.local_rows(batch_size)
    rng = np.random.default_rng(seed)
    for _ in range(start_step):
      rng.choice(self.size, batch_size, replace=False)
    while True:
      idx = rng.choice(self.size, batch_size, replace=False)[rows]
      yield {k: np.asarray(v)[idx] for k, v in self.arrays.items()}
