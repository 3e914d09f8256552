"""Supervised training of resnet110_cifar10 as in the papers (the table is configs/train_paper.py)."""
import importlib.util
import os


def get_config():
  path = os.path.join(os.path.dirname(__file__), "train_paper.py")
  spec = importlib.util.spec_from_file_location("train_paper", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config("resnet110_cifar10")
