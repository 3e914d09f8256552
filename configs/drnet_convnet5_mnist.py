"""DRNet Fig. 8: the class-similarity heat map of a 5-layer ConvNet trained on MNIST.

Model 'convnet5' (four gated 3x3 convs + one linear layer; the paper gives no layout, see
jaxdr/models/convnet.py), trained without data augmentation ("so that the ConvNet extracts
features directly from the original dataset") by Caffe's LeNet solver (SGD 0.01, momentum
0.9, weight decay 5e-4, lr policy 'inv', 10k iterations of 64). CIVs from 100 training images
per class with CDRP as the paper configs fit it (``on_top1_change='best'``); the important
channels of a class are its non-zero CIV entries (Formula 5: ``similarity_eps=0``), written
to ``civ_similarity.png`` and ``results.json`` (``civ_similarity``). The named sub-tasks are
the pairs the paper circles (2-5, 6-9, 7-9).

    python -m jaxdr.main --config=configs/drnet_convnet5_mnist.py --workdir=DIR \
        [--config.pretrained=TRAINED_WORKDIR_OR_PTH] --config.dataset.data_dir=TFDS_DIR
"""
import ml_collections

from jaxdr.methods.drnet.options import DrnetOptions
from jaxdr.training.options import TrainOptions


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.method = "drnet"
  c.seed = 0
  c.pretrained = ""  # a trained workdir (or .pth); '' = train into WORKDIR/train
  c.model = ml_collections.ConfigDict(dict(name="convnet5", width=1.0, conv_impl="auto"))
  c.dataset = ml_collections.ConfigDict(dict(name="mnist", data_dir="", image_size=28, input_channels=1,
                                             num_classes=10))
  # MNIST has no augmentation in jaxdr's pipeline (augment='none').
  c.train = TrainOptions(batch_size=64, epochs=11, max_steps=10000, learning_rate=0.01, momentum=0.9,
                         weight_decay=5e-4, schedule="inv", gamma=1e-4, power=0.75, eval_batch_size=1000,
                         log_every_steps=100, checkpoint_every_steps=1000).to_config()
  d = c.drnet = DrnetOptions().to_config()
  d.cdrp.on_top1_change = "best"
  d.similarity_eps = 0.0  # Formula 5: a channel is important where the class's CIV is non-zero
  d.superclass_subtasks = False
  d.named_subtasks = (("2", "5"), ("6", "9"), ("7", "9"))
  d.keep_fraction = 0.5
  return c
