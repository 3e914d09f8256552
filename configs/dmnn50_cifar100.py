"""DMNN-50 on CIFAR-100, the paper's recipe (Su et al., Table 3).

Bottleneck DMNN-50 (N=2 sub-blocks of 40/80/152/304 channels per stage) with a 3x3 stride-1
stem and no max-pool (32x32 maps in stage 1: 1.26 G MACs all on; the paper's ResNet-50 on
CIFAR reports 0.33 GFLOPs, i.e. 16x16 maps in stage 1, a stem it does not describe). Training:
SGD (momentum 0.9), batch 256, weight decay 1e-4, learning rate 0.1 divided by 10 at epochs
100 and 150, 200 epochs; N = 2, r = 0.5; category loss on CIFAR-100's 20 superclasses.
The plain twin (``--config.dmnn.twin=True``) is ``resnet50_cifar``.

    python -m jaxdr.main --config=configs/dmnn50_cifar100.py --workdir=DIR --config.dataset.data_dir=DIR
"""
import ml_collections

from jaxdr.methods.dmnn.options import DmnnOptions
from jaxdr.training.options import TrainOptions


def get_config():
  c = ml_collections.ConfigDict()
  c.method = "dmnn"
  c.seed = 0
  c.model = ml_collections.ConfigDict(dict(name="dmnn50_cifar", width=1.0, conv_impl="auto"))
  c.dataset = ml_collections.ConfigDict(dict(
      name="cifar100", data_dir="", image_size=32, input_channels=3, num_classes=100))
  c.train = TrainOptions(batch_size=256, epochs=200, learning_rate=0.1, momentum=0.9, nesterov=False,
                         weight_decay=1e-4, schedule="step", milestones=(100, 150), gamma=0.1,
                         log_every_steps=100, checkpoint_every_steps=1000, eval_batch_size=1000).to_config()
  c.dmnn = DmnnOptions(paths=2, target_rate=0.5).to_config()
  return c
