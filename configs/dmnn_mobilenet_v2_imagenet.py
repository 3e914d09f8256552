"""DMNN-MobileNetV2 on ImageNet, the paper's recipe: N=2 sub-blocks expanding by t/2 in the
10 identity-shortcut blocks (the 7 others have no shortcut to fall back on and stay static).

Paper (Su et al., Tables 1-2): 3.63M params; at r=0.7 0.22 GFLOPs (73.3%), 28.30% top-1 error.
Training: Nesterov SGD (momentum 0.9), batch 256, cosine learning rate from 0.1, weight decay
4e-5, 120 epochs from scratch; N = 2, r = 0.7 (the paper's lowest for MobileNetV2: the static
blocks, stem, head and classifier are 48% of the MACs), Gumbel temperature 1, category loss on the 58
WordNet superclasses (weight 1e-4 in stage 1, x10 per later stage). Sized for an accelerator
host; `--config.dmnn.twin=True` also trains the plain network identically.

    python -m jaxdr.main --config=configs/dmnn_mobilenet_v2_imagenet.py --workdir=DIR [--config.dataset.data_dir=DIR]
"""
import ml_collections

from jaxdr.methods.dmnn.options import DmnnOptions
from jaxdr.training.options import TrainOptions


def get_config():
  c = ml_collections.ConfigDict()
  c.method = "dmnn"
  c.seed = 0
  c.model = ml_collections.ConfigDict(dict(name="dmnn_mobilenet_v2", width=1.0, conv_impl="auto"))
  c.dataset = ml_collections.ConfigDict(dict(
      name="imagenet2012", data_dir="", image_size=224, input_channels=3, num_classes=1000))
  c.train = TrainOptions(batch_size=256, epochs=120, learning_rate=0.1, momentum=0.9, nesterov=True,
                         weight_decay=4e-5, schedule="cosine", log_every_steps=100,
                         checkpoint_every_steps=2000, eval_batch_size=1000).to_config()
  c.dmnn = DmnnOptions(paths=2, target_rate=0.7).to_config()
  return c
