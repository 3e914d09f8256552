"""CAR on LeNet-5 / Fashion-MNIST (the paper's Fig. 2 setting, on Fashion-MNIST): compress conv1
and conv2 one at a time, greedily down to 1 filter, against incoming / outgoing weights and random
pruning. As the paper, filters are scored on one half of the test split (500 images per class) and
every curve and table is measured on the other half; Table 1 at a relative 5% drop.

    python -m jaxdr.main --config=configs/car_fashion_mnist.py --workdir=/tmp/car_fmnist
"""
import ml_collections

from jaxdr.methods.car.options import CarOptions
from jaxdr.training.options import TrainOptions


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.method = "car"
  config.seed = 0
  config.pretrained = ""  # a workdir with a trained LeNet-5; '' = train into WORKDIR/train

  config.model = ml_collections.ConfigDict()
  config.model.name = "lenet5"
  config.model.width = 1.0
  config.model.conv_impl = "auto"

  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = "fashion_mnist"
  config.dataset.data_dir = ""
  config.dataset.image_size = 28
  config.dataset.input_channels = 1
  config.dataset.num_classes = 10

  # Caffe's LeNet solver: SGD 0.01, momentum 0.9, weight decay 5e-4 (cosine over 4 epochs here).
  config.train = TrainOptions(batch_size=64, epochs=4, learning_rate=0.01, momentum=0.9,
                              weight_decay=5e-4, schedule="cosine", log_every_steps=500,
                              checkpoint_every_steps=2000, eval_batch_size=1000).to_config()

  config.car = CarOptions().to_config()  # the defaults: conv1 and conv2, one at a time, held-out halves
  return config
