"""The plain twin of configs/dmnn_fashion_mnist.py: ResNet-20 trained exactly as the DMNN job
trains it (same train section, seed and batches; tests/methods/dmnn pins the equality).

`configs/dmnn_fashion_mnist.py` (``dmnn.twin=True``) already trains this network into
WORKDIR/twin and compares; this file trains it alone:

    python -m jaxdr.main --config=configs/dmnn_fashion_mnist_twin.py --workdir=/tmp/dmnn_twin
"""
import ml_collections

from jaxdr.training.options import TrainOptions


def get_config():
  c = ml_collections.ConfigDict()
  c.method = "train"
  c.seed = 0
  c.model = ml_collections.ConfigDict(dict(name="resnet20", width=1.0, conv_impl="auto"))
  c.dataset = ml_collections.ConfigDict(dict(
      name="fashion_mnist", data_dir="", image_size=28, input_channels=1, num_classes=10))
  c.train = TrainOptions(batch_size=128, epochs=2, learning_rate=0.1, momentum=0.9, nesterov=True,
                         weight_decay=5e-4, schedule="cosine", warmup_epochs=0.2, log_every_steps=100,
                         checkpoint_every_steps=500, eval_batch_size=500).to_config()
  return c
