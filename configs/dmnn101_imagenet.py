"""DMNN-101 (bottleneck, N=2 sub-blocks of 40/80/152/304 channels per stage) on ImageNet, the paper's recipe.

Paper (Su et al., Tables 1-2): 43.12M params, 4.21 GFLOPs (54.9%), 21.95% top-1 error at r=0.5.
Training: Nesterov SGD (momentum 0.9), batch 256, cosine learning rate from 0.1, weight decay
1e-4, 120 epochs from scratch; N = 2, r = 0.5, Gumbel temperature 1, category loss on the 58
WordNet superclasses (weight 1e-4 in stage 1, x10 per later stage). Sized for an accelerator
host; `--config.dmnn.twin=True` also trains the plain network identically.

    python -m jaxdr.main --config=configs/dmnn101_imagenet.py --workdir=DIR [--config.dataset.data_dir=DIR]
"""
import ml_collections

from jaxdr.methods.dmnn.options import DmnnOptions
from jaxdr.training.options import TrainOptions


def get_config():
  c = ml_collections.ConfigDict()
  c.method = "dmnn"
  c.seed = 0
  c.model = ml_collections.ConfigDict(dict(name="dmnn101", width=1.0, conv_impl="auto"))
  c.dataset = ml_collections.ConfigDict(dict(
      name="imagenet2012", data_dir="", image_size=224, input_channels=3, num_classes=1000))
  c.train = TrainOptions(batch_size=256, epochs=120, learning_rate=0.1, momentum=0.9, nesterov=True,
                         weight_decay=1e-4, schedule="cosine", log_every_steps=100,
                         checkpoint_every_steps=2000, eval_batch_size=1000).to_config()
  c.dmnn = DmnnOptions(paths=2, target_rate=0.5).to_config()
  return c
