"""Quickstart (the README's main job): VGG-16 at 1/8 width on Fashion-MNIST, CPU-sized.

Offline: Fashion-MNIST comes from the Debian package's files. Target: >= 92% test accuracy
in <= 10 minutes on a 2-core CPU. Measured (2026-11-22, 2 shared cores, load ~1, tcmalloc,
the entry point's default when installed): 92.64% test accuracy, 2 min 3 s wall for the whole
command (dataset already prepared), ~3750 img/s (before the Winograd / dense tiny-map convs:
92.83%, 2 min 9 s; with glibc malloc 2 min 57 s).

    python -m jaxdr.main --config=configs/quickstart.py --workdir=/tmp/quickstart
"""
import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.method = "train"
  c.seed = 0
  c.pretrained = ""

  c.model = ml_collections.ConfigDict(dict(name="vgg16", width=0.125, conv_impl="auto"))
  c.dataset = ml_collections.ConfigDict(dict(
      name="fashion_mnist", data_dir="", image_size=28, input_channels=1, num_classes=10))

  t = c.train = ml_collections.ConfigDict()
  t.batch_size = 128
  t.epochs = 6
  t.optimizer = "sgd"
  t.learning_rate = 0.1
  t.momentum = 0.9
  t.nesterov = True
  t.weight_decay = 5e-4
  t.schedule = "cosine"
  t.warmup_epochs = 0.2
  t.milestones = ()
  t.gamma = 0.1
  t.log_every_steps = 50
  t.checkpoint_every_steps = 200
  t.eval_batch_size = 500
  t.eval_every_epochs = 1
  # Knobs to shrink a run (tests, smoke runs); 0 = off.
  t.max_steps = 0
  t.steps_per_epoch = 0
  t.num_eval_examples = 0
  return c
