"""White-Box paper setting: resnet110_cifar10 (see configs/whitebox_paper.py)."""
import os
import runpy


def get_config():
  table = runpy.run_path(os.path.join(os.path.dirname(__file__), "whitebox_paper.py"))
  return table["get_config"]("resnet110_cifar10")
