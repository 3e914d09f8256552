"""DRNet Fig. 8: the class-similarity heat map of a 5-layer ConvNet's CIVs on MNIST.

Trains the ConvNet (`jaxdr.models.convnet`: 4 gated 3x3 convs + fc; configs/train_convnet5_mnist.py,
no data augmentation as the paper) into WORKDIR/train unless ``pretrained`` names one, dissects 100
training images per class with CDRP and writes the heat map of Formula 5's IoU between the
classes' important channels (``civ_similarity`` in results.json, a PNG beside report.md). The
paper reads '1' as unlike every other digit and 2~5, 6~9, 9~7 as similar. A few random
sub-tasks at 50% of the channels are evaluated too.

    python -m jaxdr.main --config=configs/drnet_convnet5_mnist.py --workdir=/tmp/drnet_mnist
"""
import os
import runpy
import types


def _sibling(name):
  """Another config file of this folder, run from its path (configs are not a package)."""
  return types.SimpleNamespace(**runpy.run_path(os.path.join(os.path.dirname(__file__), name + ".py")))


def get_config():
  c = _sibling("train_convnet5_mnist").get_config()
  c.method = "drnet"
  d = c.drnet = _sibling("drnet_fashion_mnist").drnet_defaults()
  d.images_per_class = 100
  d.on_top1_change = "best"  # the CDRP authors' code: a top-1 flip keeps the last unchanged gates
  d.similarity_eps = d.union_thr  # Formula 5's important channels: CIV above the union threshold
  d.keep_fraction = 0.5
  d.superclass_subtasks = False
  d.random_2class = 10
  d.random_3class = 5
  d.named_subtasks = (("2", "5"), ("6", "9"), ("7", "9"), ("1", "7"))  # Fig. 8's pairs, and a contrast
  return c
