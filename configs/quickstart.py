"""Quickstart (the README's main job): VGG-16 at 1/8 width on Fashion-MNIST, CPU-sized.

Offline: Fashion-MNIST comes from the Debian package's files. Target: >= 92% test accuracy
in <= 10 minutes on a 2-core CPU (timings per CPU model: README "Quickstart").

    python -m jaxdr.main --config=configs/quickstart.py --workdir=/tmp/quickstart
"""
import ml_collections

from jaxdr.training.options import TrainOptions


def get_config():
  c = ml_collections.ConfigDict()
  c.method = "train"
  c.seed = 0
  c.pretrained = ""

  # 'native': jaxdr's AVX-512 kernel for the narrow 3x3 convs where the CPU has it (else 'auto',
  # said once in the log); ~1.2x the training speed of 'auto' on an AVX-512 CPU.
  c.model = ml_collections.ConfigDict(dict(name="vgg16", width=0.125, conv_impl="native"))
  c.dataset = ml_collections.ConfigDict(dict(
      name="fashion_mnist", data_dir="", image_size=28, input_channels=1, num_classes=10))
  c.train = TrainOptions(batch_size=128, epochs=6, learning_rate=0.1, momentum=0.9, nesterov=True,
                         weight_decay=5e-4, schedule="cosine", warmup_epochs=0.2, log_every_steps=50,
                         checkpoint_every_steps=200, eval_batch_size=500).to_config()
  return c
