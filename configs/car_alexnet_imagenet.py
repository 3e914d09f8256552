"""CAR on AlexNet / ImageNet (the paper's Fig. 3 and 5-7): each conv layer compressed on its own,
stopping before the scoring accuracy falls 5% (relative) below the uncompressed network's.

Needs a trained AlexNet (``--config.pretrained=DIR``) and the prepared ImageNet tfds data; sized
for an accelerator host (not run on the 2-core CPU). Scoring and fine-tuning images are read
into memory from the start of the train split (``car.train_examples``).

    python -m jaxdr.main --config=configs/car_alexnet_imagenet.py --config.pretrained=DIR --workdir=DIR2
"""
import os
import runpy
import types

from jaxdr.methods.car.options import CarOptions


def _sibling(name):
  """Another config file of this folder, run from its path (configs are not a package)."""
  return types.SimpleNamespace(**runpy.run_path(os.path.join(os.path.dirname(__file__), name + ".py")))


def get_config():
  config = _sibling("car_fashion_mnist").get_config()
  config.model.name = "alexnet"
  config.dataset.name = "imagenet2012"
  config.dataset.image_size = 224
  config.dataset.input_channels = 3
  config.dataset.num_classes = 1000
  config.train.batch_size = 256  # only if pretrained is empty (torchvision recipe: SGD 0.01, 90 epochs)
  config.train.epochs = 90
  config.train.learning_rate = 0.01
  config.train.weight_decay = 5e-4
  config.train.schedule = "step"
  config.train.milestones = (30, 60)
  config.train.eval_batch_size = 250
  car = config.car = CarOptions().to_config()
  car.layers = ("conv1", "conv2", "conv3", "conv4", "conv5")
  car.max_relative_drop = 0.05  # the paper: iterate while within a relative 5% of the original
  car.final_relative_drop = 0.05
  car.train_examples = 20000  # read into memory: scoring set + fine-tuning data
  car.score_examples = 10000  # from the end of those (10 per class)
  car.balanced = False  # ImageNet's first 20000 train images need not hold 10 of every class
  car.score_batch_size = 100
  car.eval_examples = 25000  # half the validation set, as the paper evaluates on a hold-out half
  car.eval_batch_size = 250
  car.masks_per_call = 8
  car.curve_points = 16
  car.finetune.batch_size = 128
  car.finetune.points = 4
  return config
