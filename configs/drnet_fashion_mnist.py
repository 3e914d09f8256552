"""DRNet on Fashion-MNIST (the default DRNet job): LeNet-5 dissected and reconstructed.

Trains LeNet-5 (Caffe variant, the CAR job's recipe: configs/car_fashion_mnist.py) first into
WORKDIR/train when ``pretrained`` is empty, computes the CIVs from ``images_per_class``
training images per class with CDRP, and evaluates the named sub-tasks plus seeded random
2- and 3-class sub-tasks, each keeping 50% of the conv channels (the CCIV threshold is chosen
per sub-task to keep that fraction).

Why LeNet-5 and not the quickstart's 1/8-width VGG-16: that narrow 13-layer net has little
redundancy; at a fixed 50% of channels it lost ~19 points on 2-class sub-tasks, and needed
~75% of channels to stay within 1 point. Pass ``--config=configs/drnet_fashion_mnist.py:vgg``
for that setting (per-sub-task calibrated keep fraction).

    python -m jaxdr.main --config=configs/drnet_fashion_mnist.py --workdir=/tmp/drnet
"""
import os
import runpy
import types

from jaxdr.methods.drnet.options import DrnetOptions


def _sibling(name):
  """Another config file of this folder, run from its path (configs are not a package)."""
  return types.SimpleNamespace(**runpy.run_path(os.path.join(os.path.dirname(__file__), name + ".py")))


def get_config(variant="lenet5"):
  if variant == "vgg":
    # The 1/8-width quickstart VGG: each sub-task's keep fraction is tuned on its training
    # images to lose at most 0.5 points there (a fixed 50% costs ~20 points, see docstring).
    c = _sibling("quickstart").get_config()
    c.method = "drnet"
    d = c.drnet = DrnetOptions().to_config()
    d.calibrate_tolerance = 0.005
  else:
    c = _sibling("car_fashion_mnist").get_config()
    del c["car"]
    c.method = "drnet"
    d = c.drnet = DrnetOptions().to_config()
    d.keep_fraction = 0.5
    # Every image whose top-1 flipped had its gates reset to ones, so with eps 0 every CIV
    # entry is non-zero and Formula 5 gives IoU ~1 everywhere; count a channel as important
    # where its CIV reaches the default union threshold instead.
    d.similarity_eps = d.union_thr
  d.named_subtasks = (("T-shirt/top", "Shirt"), ("Trouser", "Bag"), ("Sneaker", "Ankle boot"),
                      ("Pullover", "Coat", "Shirt"), ("Trouser", "Sandal", "Bag"))
  return c
