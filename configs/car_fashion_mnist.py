"""CAR on LeNet-5 / Fashion-MNIST (the paper's Fig. 2 setting, on Fashion-MNIST): compress conv1
and conv2 one at a time, against incoming / outgoing weights and random pruning.

    python -m jaxdr.main --config=configs/car_fashion_mnist.py --workdir=/tmp/car_fmnist
"""
import ml_collections

from jaxdr.methods.car.options import CarOptions


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

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 64  # Caffe's LeNet solver: SGD 0.01, momentum 0.9, decay 5e-4
  config.train.epochs = 4
  config.train.optimizer = "sgd"
  config.train.learning_rate = 0.01
  config.train.momentum = 0.9
  config.train.nesterov = False
  config.train.weight_decay = 5e-4
  config.train.schedule = "cosine"
  config.train.warmup_epochs = 0.0
  config.train.milestones = ()
  config.train.gamma = 0.1
  config.train.log_every_steps = 500
  config.train.checkpoint_every_steps = 2000
  config.train.eval_batch_size = 1000
  config.train.max_steps = 0
  config.train.steps_per_epoch = 0
  config.train.eval_every_epochs = 1
  config.train.num_eval_examples = 0

  config.car = CarOptions().to_config()  # the defaults: conv1 and conv2, one at a time
  return config
