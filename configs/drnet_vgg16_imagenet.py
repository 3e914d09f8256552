"""DRNet paper setting: VGG-16 on ImageNet, > 90% of channels kept (section 4.5; see configs/drnet_paper.py)."""
import os
import runpy


def get_config():
  table = runpy.run_path(os.path.join(os.path.dirname(__file__), "drnet_paper.py"))
  return table["get_config"]("vgg16_imagenet2012")
