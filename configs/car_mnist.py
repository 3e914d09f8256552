"""CAR on LeNet-5 / MNIST: the paper's Fig. 2 setting (conv1: 20 filters, conv2: 50).

    python -m jaxdr.main --config=configs/car_mnist.py --workdir=/tmp/car_mnist
"""
import importlib.util
import os


def _sibling(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(os.path.dirname(__file__), name + ".py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config():
  config = _sibling("car_fashion_mnist").get_config()
  config.dataset.name = "mnist"
  return config
