"""DRNet paper setting: mobilenet_v2 on cifar100 (section 4.1 union_thr; see configs/drnet_paper.py)."""
import importlib.util
import os


def get_config():
  path = os.path.join(os.path.dirname(__file__), "drnet_paper.py")
  spec = importlib.util.spec_from_file_location("drnet_paper", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config("mobilenet_v2_cifar100")
