"""DRNet paper setting: mobilenet_v2 on cifar10 (section 4.1 union_thr; see configs/drnet_paper.py)."""
import os
import runpy


def get_config():
  table = runpy.run_path(os.path.join(os.path.dirname(__file__), "drnet_paper.py"))
  return table["get_config"]("mobilenet_v2_cifar10")
