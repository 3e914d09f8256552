"""CAR on LeNet-5 / Fashion-MNIST (the paper's Fig. 2 setting, on Fashion-MNIST): compress conv1
and conv2 one at a time, against incoming / outgoing weights and random pruning.

    python -m jaxdr.main --config=configs/car_fashion_mnist.py --workdir=/tmp/car_fmnist
"""
import ml_collections


def car_section() -> ml_collections.ConfigDict:
  """The CAR knobs shared by every CAR config (each config overrides what differs)."""
  car = ml_collections.ConfigDict()
  car.layers = ("conv1", "conv2")  # gate keys to compress
  car.mode = "single"  # 'single': one layer at a time (the paper); 'multi': layers compete
  car.score_examples = 2000  # scoring set from the end of the train split (never the test split)
  car.balanced = True  # the same number per class (then CAR = mean CARc over classes)
  car.score_batch_size = 250  # images per scoring call (all candidates at once)
  car.per_iteration = 1  # filters removed per greedy iteration (paper's speed-up 1)
  car.subset_size = 0  # scoring images drawn per iteration (speed-up 2; 0 = all)
  car.min_kept = 1  # greedy runs down to this many filters (for the full curve)
  car.target_ratio = 0.0  # stop at this compression ratio (0 = off)
  car.max_relative_drop = 0.0  # stop before the scoring accuracy drops by this fraction (0 = off)
  car.final_relative_drop = 0.02  # the saved compressed model keeps accuracy within this fraction
  car.curve_points = 20  # kept-filter counts per curve (all counts when the layer is smaller)
  car.random_repeats = 10
  car.carc_top = 5
  car.train_examples = 0  # 0 = the whole train split (scoring set + fine-tuning data)
  car.eval_examples = 0  # 0 = the whole test split
  car.eval_batch_size = 500
  car.masks_per_call = 32  # masks vmap-ed per call when evaluating the curves
  car.finetune = ml_collections.ConfigDict()
  car.finetune.enabled = True
  car.finetune.steps = 500
  car.finetune.batch_size = 64
  car.finetune.points = 5  # kept-filter counts fine-tuned per layer
  car.finetune.lr_compressed = 0.0
  car.finetune.lr_next = 1e-3
  car.finetune.lr_other = 1e-4
  car.finetune.momentum = 0.9
  return car


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

  config.car = car_section()
  return config
