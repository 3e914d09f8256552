"""DRNet paper setting: VGG-16 on ImageNet, > 90% of channels kept (section 4.5; see configs/drnet_paper.py)."""
import importlib.util
import os


def get_config():
  path = os.path.join(os.path.dirname(__file__), "drnet_paper.py")
  spec = importlib.util.spec_from_file_location("drnet_paper", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config("vgg16_imagenet2012")
