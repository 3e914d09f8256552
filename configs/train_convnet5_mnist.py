"""Supervised training of convnet5_mnist, DRNet Fig. 8's MNIST ConvNet (the table is configs/train_paper.py)."""
import os
import runpy


def get_config():
  table = runpy.run_path(os.path.join(os.path.dirname(__file__), "train_paper.py"))
  return table["get_config"]("convnet5_mnist")
