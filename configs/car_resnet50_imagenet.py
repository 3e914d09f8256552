"""CAR on ResNet-50 / ImageNet (the paper's Fig. 4): the first conv (``stem``) and the first conv
of every residual branch (``stageS_blockB/conv1``: "Conv a - Branch 2"), each on its own, greedily
down to 0 filters for the branches: the curves' kept-0 point is the branch removed (Fig. 4B's "fully
prune the filters in this layer, i.e. remove branch 2"); the stem stops at 1.

Needs a trained ResNet-50 (``--config.pretrained=DIR``) and ImageNet; sized for an accelerator
host (not run on the 2-core CPU).

    python -m jaxdr.main --config=configs/car_resnet50_imagenet.py --config.pretrained=DIR --workdir=DIR2
"""
import os
import runpy
import types

STAGES = (3, 4, 6, 3)


def _sibling(name):
  """Another config file of this folder, run from its path (configs are not a package)."""
  return types.SimpleNamespace(**runpy.run_path(os.path.join(os.path.dirname(__file__), name + ".py")))


def get_config():
  config = _sibling("car_alexnet_imagenet").get_config()
  config.model.name = "resnet50"
  config.train.learning_rate = 0.1
  config.train.weight_decay = 1e-4
  config.train.milestones = (30, 60, 80)
  car = config.car
  car.layers = ("stem",) + tuple(f"stage{s + 1}_block{b}/conv1"
                                 for s, blocks in enumerate(STAGES) for b in range(blocks))
  car.max_relative_drop = 0.0  # the paper draws the whole curve for these layers
  car.past_drop = "continue"
  car.min_kept = 0  # a residual branch down to 0 filters (removed); the stem stops at 1
  car.empty_branch = "remove"
  return config
