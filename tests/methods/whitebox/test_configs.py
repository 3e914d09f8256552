"""The White-Box configs: the paper's targets, lambdas and schedules; on each paper model the masks
sit where the published code puts them and the vote hits the paper's FLOPs target within one
channel's MACs (exact physical counts; shapes only, no compile)."""
import os
import runpy

import numpy as np
import pytest

from jaxdr import costs, models, training
from jaxdr.methods import whitebox

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))), "configs")
PAPER = runpy.run_path(os.path.join(CONFIGS, "whitebox_paper.py"))


def _config(setting):
  return PAPER["get_config"](setting)


@pytest.mark.parametrize("setting,target,sparsity,mask_epochs,ft_epochs,milestones,wd", [
    ("vgg16_cifar10", 0.764, 0.01, 30, 300, (150, 225), 5e-4),
    ("resnet56_cifar10", 0.556, 0.0, 30, 300, (150, 225), 5e-4),
    ("resnet110_cifar10", 0.660, 0.0, 30, 300, (150, 225), 5e-4),
    ("mobilenet_v2_cifar10", 0.292, 0.01, 30, 300, (50, 100), 4e-5),
    ("resnet50_imagenet_45", 0.456, 5e-4, 9, 90, (30, 60, 80), 1e-4),
    ("resnet50_imagenet_63", 0.635, 5e-4, 9, 90, (30, 60, 80), 1e-4)])
def test_paper_settings(setting, target, sparsity, mask_epochs, ft_epochs, milestones, wd):
  c = _config(setting)
  opts = whitebox.WhiteboxOptions.from_config(c.whitebox, "whitebox")
  assert (opts.target, opts.sparsity, opts.masks_from) == (target, sparsity, "scratch")
  m, f = opts.mask_train, opts.finetune
  assert (m.epochs, m.schedule, m.learning_rate, m.batch_size, m.momentum, m.weight_decay) == (
      mask_epochs, "constant", 0.1, 256, 0.9, wd)
  assert (f.epochs, f.schedule, f.milestones, f.gamma, f.learning_rate, f.batch_size, f.weight_decay) == (
      ft_epochs, "step", milestones, 0.1, 0.1, 256, wd)
  wrapper = runpy.run_path(os.path.join(CONFIGS, f"whitebox_{setting}.py"))["get_config"]()
  assert wrapper.to_dict() == c.to_dict()
  graph = models.describe(training.create_model(c))
  keys = whitebox.default_gates(graph)
  whitebox.check_reachable(graph, keys, target, opts.min_keep_fraction, opts.channel_multiple)
  rng = np.random.default_rng(0)
  v = whitebox.vote(graph, {k: rng.random(graph.gate(k).channels) for k in keys}, target,
                    opts.min_keep_fraction, opts.channel_multiple)
  before = int(costs.count(graph).macs)
  after = int(costs.count(graph, v.mask(), mode="physical").macs)  # what surgery cuts
  assert (v.macs_before, v.macs_after) == (before, after)
  assert after <= (1 - target) * before < after + v.last_step_macs  # within the last channel's MACs
  assert all(keep.sum() >= np.ceil(opts.min_keep_fraction * keep.size) for keep in v.keep.values())
  name = c.model.name
  if name == "vgg16":
    assert keys == tuple(f"conv{i}" for i in range(13))
  elif name == "mobilenet_v2_cifar":
    assert len(keys) == 17 and all(k.endswith("/dw") for k in keys)  # the published 17 masks
  else:
    per_block = 2 if name == "resnet50" else 1
    blocks = {"resnet56": 27, "resnet110": 54, "resnet50": 16}[name]
    assert len(keys) == per_block * blocks and all("/conv" in k for k in keys)


def test_the_fashion_mnist_default():
  c = runpy.run_path(os.path.join(CONFIGS, "whitebox_fashion_mnist.py"))["get_config"]()
  opts = whitebox.WhiteboxOptions.from_config(c.whitebox, "whitebox")
  assert c.method == "whitebox" and c.model.name == "vgg16" and opts.target >= 0.5
  assert opts.variants == ("whitebox", "l1", "shared", "hard") and opts.latency_batch_sizes == (1, 128)
  graph = models.describe(training.create_model(c))
  whitebox.check_reachable(graph, whitebox.default_gates(graph), opts.target, opts.min_keep_fraction,
                           opts.channel_multiple)
