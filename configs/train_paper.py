"""Supervised training settings of the papers' base models (``configs/train_<setting>.py`` pick one).

    python -m jaxdr.main --config=configs/train_paper.py:resnet56_cifar10 --workdir=DIR

CIFAR: SGD momentum 0.9, batch 128, pad-4 crop + flip (the data pipeline's recipe).
  VGG-16: lr 0.1, wd 5e-4, 160 epochs, x0.1 at epochs 80 / 120 (50% / 75%).
  ResNet-18: lr 0.1, wd 5e-4, 200 epochs, cosine.
  ResNet-56 / 110 (He et al. 2016): lr 0.1, wd 1e-4, 164 epochs, x0.1 at 82 / 123; ResNet-110
  warms up (He et al. use lr 0.01 for the first ~400 iterations; here 1 linear warm-up epoch).
  MobileNetV2 (CIFAR stem): lr 0.1, wd 4e-5, 200 epochs, cosine.
ImageNet: batch 1024, lr 0.1 x batch / 256, 5 linear warm-up epochs (Goyal et al. 2017).
  ResNet-50 / 101: wd 1e-4, 90 epochs, x0.1 at epochs 30 / 60 / 80.
  MobileNetV2: wd 4e-5, 150 epochs, cosine, lr 0.05 x batch / 256.
MNIST LeNet-5 (Caffe's lenet_solver): batch 64, lr 0.01, momentum 0.9, wd 5e-4, lr policy
  "inv" (gamma 1e-4, power 0.75), 10k iterations.
MNIST ConvNet-5 (DRNet Fig. 8; the paper gives no recipe, only "no data augmentation", which is
  jaxdr's MNIST pipeline): batch 128, lr 0.05, momentum 0.9, wd 5e-4, 15 epochs, cosine.

Weight decay is L2 on conv / dense kernels added to the gradient (see jaxdr/training/optim.py).
"""
import ml_collections

from jaxdr.training.options import TrainOptions

# name -> (classes, image size, channels): what jaxdr.data yields for it.
DATASETS = {"mnist": (10, 28, 1), "fashion_mnist": (10, 28, 1), "cifar10": (10, 32, 3),
            "cifar100": (100, 32, 3), "imagenet2012": (1000, 224, 3)}

_CIFAR = dict(batch_size=128, learning_rate=0.1, momentum=0.9, nesterov=False, warmup_epochs=0.0,
              eval_batch_size=1000, log_every_steps=100, checkpoint_every_steps=1000)
_VGG = dict(_CIFAR, epochs=160, weight_decay=5e-4, schedule="step", milestones=(80, 120))
_RESNET18 = dict(_CIFAR, epochs=200, weight_decay=5e-4, schedule="cosine")
_RESNET_HE = dict(_CIFAR, epochs=164, weight_decay=1e-4, schedule="step", milestones=(82, 123))
_MOBILENET = dict(_CIFAR, epochs=200, weight_decay=4e-5, schedule="cosine")
_IMAGENET = dict(batch_size=1024, learning_rate=0.1 * 1024 / 256, momentum=0.9, nesterov=False,
                 warmup_epochs=5.0, eval_batch_size=1024, log_every_steps=100,
                 checkpoint_every_steps=2000)
_RESNET_IMAGENET = dict(_IMAGENET, epochs=90, weight_decay=1e-4, schedule="step",
                        milestones=(30, 60, 80))
_MOBILENET_IMAGENET = dict(_IMAGENET, epochs=150, weight_decay=4e-5, schedule="cosine",
                           learning_rate=0.05 * 1024 / 256)
_CONVNET5 = dict(batch_size=128, epochs=15, learning_rate=0.05, momentum=0.9, nesterov=False,
                 weight_decay=5e-4, schedule="cosine", warmup_epochs=0.0, eval_batch_size=1000,
                 log_every_steps=100, checkpoint_every_steps=1000)
_LENET = dict(batch_size=64, epochs=11, max_steps=10000, learning_rate=0.01, momentum=0.9,
              nesterov=False, weight_decay=5e-4, schedule="inv", gamma=1e-4, power=0.75,
              warmup_epochs=0.0, eval_batch_size=1000, log_every_steps=100,
              checkpoint_every_steps=1000)

# setting -> (model, dataset, train settings)
SETTINGS = {
    "vgg16_cifar10": ("vgg16", "cifar10", _VGG),
    "vgg16_cifar100": ("vgg16", "cifar100", _VGG),
    "resnet18_cifar10": ("resnet18", "cifar10", _RESNET18),
    "resnet18_cifar100": ("resnet18", "cifar100", _RESNET18),
    "resnet56_cifar10": ("resnet56", "cifar10", _RESNET_HE),
    "resnet56_cifar100": ("resnet56", "cifar100", _RESNET_HE),
    "resnet110_cifar10": ("resnet110", "cifar10", dict(_RESNET_HE, warmup_epochs=1.0)),
    "resnet110_cifar100": ("resnet110", "cifar100", dict(_RESNET_HE, warmup_epochs=1.0)),
    "mobilenet_v2_cifar10": ("mobilenet_v2_cifar", "cifar10", _MOBILENET),
    "mobilenet_v2_cifar100": ("mobilenet_v2_cifar", "cifar100", _MOBILENET),
    "resnet50_imagenet": ("resnet50", "imagenet2012", _RESNET_IMAGENET),
    "resnet101_imagenet": ("resnet101", "imagenet2012", _RESNET_IMAGENET),
    "mobilenet_v2_imagenet": ("mobilenet_v2", "imagenet2012", _MOBILENET_IMAGENET),
    "lenet5_mnist": ("lenet5", "mnist", _LENET),
    "convnet5_mnist": ("convnet5", "mnist", _CONVNET5),
}
CONFIG_ARGS = tuple(SETTINGS)  # the values `file.py:arg` accepts (tests load each)


def get_config(setting="resnet56_cifar10"):
  if setting not in SETTINGS:
    raise ValueError(f"unknown setting {setting!r}; known: {', '.join(SETTINGS)}")
  model, dataset, train = SETTINGS[setting]
  classes, size, channels = DATASETS[dataset]
  c = ml_collections.ConfigDict()
  c.method = "train"
  c.seed = 0
  c.pretrained = ""
  c.model = ml_collections.ConfigDict(dict(name=model, width=1.0, conv_impl="auto"))
  c.dataset = ml_collections.ConfigDict(dict(name=dataset, data_dir="", image_size=size,
                                             input_channels=channels, num_classes=classes))
  c.train = TrainOptions(**train).to_config()
  return c
