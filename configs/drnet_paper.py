"""DRNet's paper settings (section 4): one entry per (model, dataset); see the drnet_*.py files.

CIFAR-10 / CIFAR-100: VGG-16, ResNet-18, MobileNetV2 trained with SGD (lr 0.1, momentum 0.9,
weight decay 1e-5, batch 256, 550 epochs, pad-4 crop + flip), union sets with the union_thr
of section 4.1, random 2- and 3-class sub-tasks (200 each on CIFAR-100), Tables 1-5.
ImageNet: VGG-16, 10 random classes, 40 random 2- and 3-class sub-tasks among them, the
threshold chosen to keep more than 90% of the channels (section 4.5).

    python -m jaxdr.main --config=configs/drnet_vgg16_cifar10.py --workdir=DIR \
        --config.pretrained=TRAINED_WORKDIR
"""
import ml_collections

from jaxdr.training.options import TrainOptions

from jaxdr.methods.drnet.options import DrnetOptions


# (model, dataset) -> (model name, union_thr); DRNet section 4.1.
UNION_THR = {
    ("vgg16", "cifar10"): ("vgg16", 6e-3),
    ("resnet18", "cifar10"): ("resnet18", 2e-3),
    ("mobilenet_v2", "cifar10"): ("mobilenet_v2_cifar", 8e-4),
    ("vgg16", "cifar100"): ("vgg16", 1e-2),
    ("resnet18", "cifar100"): ("resnet18", 6e-3),
    ("mobilenet_v2", "cifar100"): ("mobilenet_v2_cifar", 2e-2),
}
# Table 1-2 sub-tasks (CIFAR-10 class names as tfds spells them); Table 3 uses its own.
CIFAR10_NAMED = (("airplane", "truck"), ("automobile", "deer"), ("cat", "dog"),
                 ("airplane", "bird", "cat"), ("automobile", "deer", "frog"), ("dog", "horse", "truck"))
MOBILENET_NAMED = (("airplane", "truck"), ("automobile", "deer"), ("cat", "dog"),
                   ("airplane", "cat", "bird"), ("bird", "cat", "deer"), ("deer", "dog", "frog"))


def _train(c, epochs, batch_size, weight_decay):
  """DRNet section 4: SGD lr 0.1, momentum 0.9 (cosine schedule)."""
  c.train = TrainOptions(batch_size=batch_size, epochs=epochs, learning_rate=0.1, momentum=0.9,
                         weight_decay=weight_decay, schedule="cosine", log_every_steps=100,
                         checkpoint_every_steps=1000, eval_batch_size=500,
                         eval_every_epochs=10).to_config()


def get_config(setting="vgg16_cifar10"):
  """``setting``: '<model>_<dataset>' with model vgg16 | resnet18 | mobilenet_v2 and dataset
  cifar10 | cifar100, or 'vgg16_imagenet2012'."""
  model, _, dataset = setting.rpartition("_")
  c = ml_collections.ConfigDict()
  c.method = "drnet"
  c.seed = 0
  c.pretrained = ""
  d = c.drnet = DrnetOptions().to_config()
  d.superclass_subtasks = False
  if dataset == "imagenet2012":
    if model != "vgg16":
      raise ValueError(f"DRNet's ImageNet setting is VGG-16 only, got {model!r}")
    # jaxdr's VGG-16 (13 conv + BN, global average pool, one linear layer) at 224x224.
    c.model = ml_collections.ConfigDict(dict(name="vgg16", width=1.0, conv_impl="xla"))
    c.dataset = ml_collections.ConfigDict(dict(name="imagenet2012", data_dir="", image_size=224,
                                               input_channels=3, num_classes=1000))
    _train(c, epochs=90, batch_size=256, weight_decay=5e-4)
    d.class_pool = 10  # 10 random classes, 45 two-class / 120 three-class sub-tasks among them
    d.random_2class = 40
    d.random_3class = 40
    d.keep_fraction = 0.905  # "preserve more than 90% channels"
    d.batch_size = 50
    return c
  if (model, dataset) not in UNION_THR:
    raise ValueError(f"unknown DRNet setting {setting!r}; known: "
                     f"{', '.join(m + '_' + s for m, s in UNION_THR)}, vgg16_imagenet2012")
  name, thr = UNION_THR[(model, dataset)]
  c.model = ml_collections.ConfigDict(dict(name=name, width=1.0, conv_impl="auto"))
  num_classes = 10 if dataset == "cifar10" else 100
  c.dataset = ml_collections.ConfigDict(dict(name=dataset, data_dir="", image_size=32, input_channels=3,
                                             num_classes=num_classes))
  _train(c, epochs=550, batch_size=256, weight_decay=1e-5)
  d.union_thr = thr
  if dataset == "cifar10":
    d.named_subtasks = MOBILENET_NAMED if model == "mobilenet_v2" else CIFAR10_NAMED
    d.random_2class = 45  # every 2-class sub-task of CIFAR-10
    d.random_3class = 40
  else:
    d.named_subtasks = ()
    d.random_2class = 200  # Tables 4-5
    d.random_3class = 200
  return c
