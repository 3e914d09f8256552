"""CAR on AlexNet / ImageNet (the paper's Fig. 3, Table 1, Figs. 5-9): each conv layer compressed on
its own, greedily to the end; the stop point (and Table 1) is the 5% relative drop.

The paper's AlexNet has Caffe's reference widths (96 / 256 / 384 / 384 / 256): model
'alexnet_caffe' (torchvision's widths: ``--config.model.name=alexnet``).
As the paper, CAR is scored on one half of the ImageNet validation split (jaxdr's test split for
imagenet2012: 25 images per class) and everything is measured on the other half. Past the 5% point
the greedy loop removes 5 filters per iteration (the paper's speed-up: "up to five filters in one
iteration without loss in accuracy"). Fine-tuning images are read into memory from the start of
the train split (``car.train_examples``).

Needs a trained AlexNet (``--config.pretrained=DIR``: a jaxdr model, or a torchvision-layout .pth
with these widths) and the prepared ImageNet tfds data; sized for an accelerator host (not run on the
2-core CPU: the two validation halves take ~30 GB as float32).

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
  config.model.name = "alexnet_caffe"  # the paper's (BVLC) widths
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
  car.scoring_set = "test_half"  # the paper: half of the validation set scores, the other half evaluates
  car.eval_examples = 50000  # the whole validation split, halved per class (25 + 25)
  car.max_relative_drop = 0.05  # the stop point: a relative 5% below the original
  car.past_drop = "continue"  # greedy to the end for Fig. 3's curves ...
  car.per_iteration_past_drop = 5  # ... 5 filters per iteration past the stop point
  car.final_relative_drop = 0.05
  car.table_relative_drop = 0.05
  car.train_examples = 20000  # fine-tuning data, read into memory
  car.score_batch_size = 100
  car.eval_batch_size = 250
  car.patch_images = 10000  # Figs. 6-7, 9A: top patches among 5000 images of each half
  car.masks_per_call = 8
  car.curve_points = 16
  car.finetune.batch_size = 128
  car.finetune.points = 4
  return config
