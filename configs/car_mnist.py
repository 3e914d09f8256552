"""CAR on LeNet-5 / MNIST: the paper's Fig. 2 setting (conv1: 20 filters, conv2: 50).

    python -m jaxdr.main --config=configs/car_mnist.py --workdir=/tmp/car_mnist
"""
import os
import runpy
import types

from jaxdr.methods.car.options import CarOptions


def _sibling(name):
  """Another config file of this folder, run from its path (configs are not a package)."""
  return types.SimpleNamespace(**runpy.run_path(os.path.join(os.path.dirname(__file__), name + ".py")))


def get_config():
  config = _sibling("car_fashion_mnist").get_config()
  config.dataset.name = "mnist"
  config.car = CarOptions().to_config()
  return config
