"""Datasets for jaxdr: offline tfds input pipelines and superclass maps.

    ds = data.info("fashion_mnist")                      # DatasetInfo (static, no disk access)
    for batch in data.iterator("fashion_mnist", "train", 128, train=True, seed=0): ...
    images, labels = data.as_arrays("fashion_mnist", "test", limit=1000)
    data.superclasses("cifar100")                        # [(name, [class ids]), ...]

Batches: ``{'image': float32 [B, H, W, C] normalised, 'label': int32 [B]}`` (+ ``'coarse_label'``
for cifar100; + ``'mask'`` float32 [B] on eval batches, 0 on padding). ``batch_size`` is global:
each of ``process_count`` processes gets ``B = batch_size // process_count`` rows. See
``pipelines`` for the contract, ``sources`` for where data comes from (offline only; a missing
dataset raises :class:`DatasetNotFoundError`, a ``ValueError`` with a one-line how-to).
"""
from jaxdr.data.datasets import DatasetInfo, DatasetNotFoundError, info, names  # noqa: F401
from jaxdr.data.pipelines import as_arrays, iterator, num_examples  # noqa: F401
from jaxdr.data.sources import data_dir  # noqa: F401
from jaxdr.data.superclass_maps import class_to_superclass, superclasses  # noqa: F401
