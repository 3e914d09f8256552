"""White-Box's paper settings (Tables I-V; schedules from the authors' zyxxmu/White-Box scripts).

    python -m jaxdr.main --config=configs/whitebox_paper.py:resnet56_cifar10 --workdir=DIR \
        [--config.pretrained=TRAINED_WORKDIR]

| setting | MACs removed | lambda | masks | fine-tuning |
| --- | --- | --- | --- | --- |
| vgg16_cifar10 | 76.4% | 0.01 | 30 epochs | 300 epochs, x0.1 at 150 / 225, wd 5e-4 |
| resnet56_cifar10 | 55.6% | 0 (5e-4 before the authors' last commit) | 30 epochs | same |
| resnet110_cifar10 | 66.0% | 0 (idem) | 30 epochs | same |
| mobilenet_v2_cifar10 | 29.2% | 0.01 | 30 epochs | 300 epochs, x0.1 at 50 / 100, wd 4e-5 |
| resnet50_imagenet_45 / _63 | 45.6% / 63.5% | 5e-4 | 9 epochs | 90 epochs, x0.1 at 30 / 60 / 80, wd 1e-4 |

Masks are trained as published: jointly with freshly initialised weights (``masks_from='scratch'``)
at a constant lr 0.1, SGD momentum 0.9, batch 256, the fine-tuning's weight decay on weights and
masks. The base network (the unpruned reference accuracy and the L1 baseline's starting point) is
``config.pretrained`` or trained first with the papers' base recipe (configs/train_paper.py).
"""
import os
import runpy

import ml_collections

from jaxdr.methods.whitebox.options import WhiteboxOptions
from jaxdr.training.options import TrainOptions

_TRAIN = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_paper.py"))

# setting -> (base setting in train_paper.py, MACs target, lambda, mask epochs, fine-tuning)
_CIFAR_FT = dict(epochs=300, milestones=(150, 225), weight_decay=5e-4)
_MOBILENET_FT = dict(epochs=300, milestones=(50, 100), weight_decay=4e-5)
_IMAGENET_FT = dict(epochs=90, milestones=(30, 60, 80), weight_decay=1e-4)
SETTINGS = {
    "vgg16_cifar10": ("vgg16_cifar10", 0.764, 0.01, 30, _CIFAR_FT),
    "resnet56_cifar10": ("resnet56_cifar10", 0.556, 0.0, 30, _CIFAR_FT),
    "resnet110_cifar10": ("resnet110_cifar10", 0.660, 0.0, 30, _CIFAR_FT),
    "mobilenet_v2_cifar10": ("mobilenet_v2_cifar10", 0.292, 0.01, 30, _MOBILENET_FT),
    "resnet50_imagenet_45": ("resnet50_imagenet", 0.456, 5e-4, 9, _IMAGENET_FT),
    "resnet50_imagenet_63": ("resnet50_imagenet", 0.635, 5e-4, 9, _IMAGENET_FT),
}
CONFIG_ARGS = tuple(SETTINGS)  # the values `file.py:arg` accepts (tests load each)


def get_config(setting="resnet56_cifar10"):
  if setting not in SETTINGS:
    raise ValueError(f"unknown setting {setting!r}; known: {', '.join(SETTINGS)}")
  base, target, sparsity, mask_epochs, ft = SETTINGS[setting]
  c = _TRAIN["get_config"](base)  # model, dataset and the base network's training
  c.method = "whitebox"
  imagenet = c.dataset.name == "imagenet2012"
  common = dict(batch_size=256, learning_rate=0.1, momentum=0.9, nesterov=False,
                weight_decay=ft["weight_decay"], log_every_steps=100, checkpoint_every_steps=1000,
                eval_batch_size=256 if imagenet else 1000)
  w = c.whitebox = WhiteboxOptions().to_config()
  w.target = target
  w.sparsity = sparsity
  w.masks_from = "scratch"
  w.channel_multiple = 1
  w.mask_train = TrainOptions(epochs=mask_epochs, schedule="constant", **common).to_config()
  w.finetune = TrainOptions(epochs=ft["epochs"], schedule="step", milestones=ft["milestones"],
                            gamma=0.1, **common).to_config()
  if imagenet:
    w.curve_examples = 2000  # ImageNet's validation images held in memory for the no-fine-tuning curve
    w.latency_batch_sizes = (1, 64)
  return c
