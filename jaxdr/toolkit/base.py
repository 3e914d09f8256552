"""The base model and the data every method starts from.

    model, variables = base.load_or_train(config, workdir)
    images, labels = base.arrays(config, "train", limit=5000)   # float32 [N, H, W, C], int32 [N]

``load_or_train`` restores ``config.pretrained`` (a saved model, or a training workdir
holding one) when it is set; otherwise it trains ``config``'s model into ``WORKDIR/train``
with the config's ``train`` section, resuming an interrupted training there, or just loads
the model a finished training left.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

from etils import epath
import flax.linen as nn
import ml_collections
import numpy as np

from jaxdr import checkpoints, data

TRAIN_DIR = "train"


def load_or_train(config: ml_collections.ConfigDict, workdir) -> Tuple[nn.Module, Any]:
  """``(model, variables)``: ``config.pretrained``'s model when set, else the model trained
  (or resumed, or loaded if finished) in ``workdir/train``."""
  pretrained = config.get("pretrained", "") or ""
  conv_impl = config.model.get("conv_impl", "auto")  # a run option: model.json does not hold it
  if pretrained:  # a jaxdr saved model, or a torchvision-layout PyTorch state_dict (.pth)
    from jaxdr import training  # pylint: disable=g-import-not-at-top  (the trainer imports much)
    return checkpoints.load_pretrained(pretrained, training.model_kwargs(config), conv_impl)
  train_dir = epath.Path(workdir) / TRAIN_DIR
  if not checkpoints.has_model(train_dir / "model"):
    from jaxdr import training  # pylint: disable=g-import-not-at-top  (the trainer imports much)
    training.train_and_evaluate(config, train_dir)
  return checkpoints.load_model(train_dir / "model", conv_impl=conv_impl)


def arrays(config: ml_collections.ConfigDict, split: str, limit: Optional[int] = None
           ) -> Tuple[np.ndarray, np.ndarray]:
  """The first ``limit`` (None or 0: all) examples of ``split`` ('train', 'test' or a tfds
  split name) of ``config.dataset``, in file order with eval preprocessing: images float32
  [N, H, W, C] normalised, labels int32 [N]. ImageNet needs a ``limit``."""
  ds = config.dataset
  if split == "train":
    split = data.info(ds.name).train_split
  return data.as_arrays(ds.name, split, data_dir=ds.get("data_dir", "") or None,
                        image_size=int(ds.image_size), limit=limit or None)
