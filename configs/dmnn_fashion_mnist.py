"""DMNN on Fashion-MNIST (the default DMNN job, CPU-sized), with its plain twin.

A DMNN ResNet-20 (3 stages of 3 basic blocks of 16/32/64 channels, each split into N = 2
gated sub-blocks of half the block's width: 8/16/32) trained from scratch for two epochs with
the DMNN loss at target FLOPs ratio r = 0.5 (controllers start ~85% open, ``dmnn.gate_bias``'s
default); then, in the same job (``dmnn.twin``), the plain ResNet-20 it was split from trained
identically (same options, seed and batches) into WORKDIR/twin. results.json / report.md
compare the two. One epoch each trails the twin by more (see the README's DMNN section).

    python -m jaxdr.main --config=configs/dmnn_fashion_mnist.py --workdir=/tmp/dmnn

N, r, the temperature and the ablations are overrides: ``--config.dmnn.paths=4``,
``--config.dmnn.target_rate=0.7``, ``--config.dmnn.temperature=0.5``,
``--config.dmnn.previous_state=False``, ``--config.dmnn.category_loss=False``,
``--config.dmnn.twin=False`` (DMNN only).
"""
import ml_collections

from jaxdr.methods.dmnn.options import DmnnOptions
from jaxdr.training.options import TrainOptions


def get_config():
  c = ml_collections.ConfigDict()
  c.method = "dmnn"
  c.seed = 0
  c.model = ml_collections.ConfigDict(dict(name="dmnn_resnet20", width=1.0, conv_impl="auto"))
  c.dataset = ml_collections.ConfigDict(dict(
      name="fashion_mnist", data_dir="", image_size=28, input_channels=1, num_classes=10))
  c.train = TrainOptions(batch_size=128, epochs=2, learning_rate=0.1, momentum=0.9, nesterov=True,
                         weight_decay=5e-4, schedule="cosine", warmup_epochs=0.2, log_every_steps=100,
                         checkpoint_every_steps=500, eval_batch_size=500).to_config()
  c.dmnn = DmnnOptions(paths=2, target_rate=0.5, twin=True).to_config()
  return c
