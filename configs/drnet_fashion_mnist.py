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

import ml_collections


def _sibling(name):
  """Another config file of this folder, run from its path (configs are not a package)."""
  return types.SimpleNamespace(**runpy.run_path(os.path.join(os.path.dirname(__file__), name + ".py")))


def drnet_defaults():
  """The DRNet section: CDRP (paper values), dissection, CCIV and evaluation settings."""
  d = ml_collections.ConfigDict()
  d.stage = "all"  # 'all' | 'dissect'
  # CDRP gate fitting (DRNet section 3.1 / CDRP): loss KL + gamma * L1, SGD with momentum.
  d.steps = 30
  d.learning_rate = 0.1
  d.momentum = 0.9
  d.gamma = 0.05
  d.clip_min = 0.0
  d.clip_max = 10.0
  d.on_top1_change = "reset"  # 'reset' (to all ones) | 'best' (lowest-loss unchanged-top-1 gates)
  d.loop = "scan"  # 'scan' | 'fori' | 'python': see benchmarks/results/cdrp_speed.md
  d.unroll = 1
  # Dissection: CIV = mean CDRP of images_per_class training images of each class.
  d.images_per_class = 100
  d.batch_size = 100  # images fitted at once (vmap)
  d.save_every = 1  # batches between orbax saves of the partial sums
  d.train_limit = 0  # 0 = read the whole train split
  d.class_pool = 0  # > 0: a seeded random pool of that many classes (DRNet's ImageNet setting)
  # Reconstruction: CCIV.
  d.combine = "union"  # 'union' | 'xor'
  d.union_thr = 0.1
  d.xor_thr = 0.1
  d.keep_fraction = 0.0  # > 0: choose the threshold keeping this fraction of channels instead
  d.min_channels = 0  # keep at least this many channels per gate point
  # > 0: per sub-task, the smallest of calibrate_fractions whose sub-network loses at most this
  # accuracy on the dissection (training) images; DRNet tunes union_thr per hard sub-task too.
  d.calibrate_tolerance = 0.0
  d.calibrate_fractions = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8, 0.9)
  d.similarity_eps = 0.0  # important channels: CIV > eps (Formula 5)
  # Evaluation.
  d.named_subtasks = ()  # tuples of class names (or ids)
  d.superclass_subtasks = True  # also the dataset's superclasses of >= 2 classes
  d.random_2class = 20
  d.random_3class = 10
  # Physically sliced sub-networks (jaxdr.surgery): their costs are always reported; also
  # run them ('all' | 'named' | 'none' sub-tasks; one compile per new set of widths).
  d.run_sliced = "named"
  d.eval_batch_size = 500
  d.test_limit = 0  # in-memory datasets: the first test_limit test images (0 = all)
  d.test_per_class = 50  # other datasets (ImageNet): validation images per pool class
  return d


def get_config(variant="lenet5"):
  if variant == "vgg":
    # The 1/8-width quickstart VGG: each sub-task's keep fraction is tuned on its training
    # images to lose at most 0.5 points there (a fixed 50% costs ~20 points, see docstring).
    c = _sibling("quickstart").get_config()
    c.method = "drnet"
    d = c.drnet = drnet_defaults()
    d.calibrate_tolerance = 0.005
  else:
    c = _sibling("car_fashion_mnist").get_config()
    del c["car"]
    c.method = "drnet"
    d = c.drnet = drnet_defaults()
    d.keep_fraction = 0.5
    # Every image whose top-1 flipped had its gates reset to ones, so with eps 0 every CIV
    # entry is non-zero and Formula 5 gives IoU ~1 everywhere; count a channel as important
    # where its CIV reaches the default union threshold instead.
    d.similarity_eps = d.union_thr
  d.named_subtasks = (("T-shirt/top", "Shirt"), ("Trouser", "Bag"), ("Sneaker", "Ankle boot"),
                      ("Pullover", "Coat", "Shirt"), ("Trouser", "Sandal", "Bag"))
  return c
