"""The global vote: MACs removed reach the target within one channel's MACs (exact `costs`
counts of the sliced model), per-layer minimum, one global ranking, rounded widths, bad input."""
import math

import numpy as np
import pytest

from jaxdr import costs, models, surgery
from jaxdr.errors import ConfigError
from jaxdr.methods import whitebox
from tests.methods.whitebox import nets


@pytest.mark.parametrize("name", list(nets.BUILDERS))
@pytest.mark.parametrize("target", [0.2, 0.35])
def test_vote_hits_the_target_within_one_channel(name, target):
  graph = models.describe(nets.BUILDERS[name]())
  keys = whitebox.default_gates(graph)
  v = whitebox.vote(graph, nets.random_scores(graph, keys, seed=3), target)
  before = int(costs.count(graph).macs)
  after = int(costs.count(graph, v.mask(), mode="physical").macs)  # what surgery really cuts
  assert (v.macs_before, v.macs_after) == (before, after)
  assert after <= (1 - target) * before < after + v.last_step_macs
  assert 0 < v.last_step_macs <= max(l.macs for l in costs.count(graph).layers)
  for k, keep in v.keep.items():
    assert keep.sum() >= math.ceil(0.3 * keep.size)


def test_the_ranking_is_global_and_the_minimum_holds():
  graph = models.describe(nets.vgg())
  keys = whitebox.default_gates(graph)
  scores = nets.random_scores(graph, keys, seed=0)
  scores["conv3"] = scores["conv3"] * 0.01  # conv3's channels are the least important of all
  v = whitebox.vote(graph, scores, 0.3)
  assert v.kept()["conv3"] == math.ceil(0.3 * 8)  # it stops at its minimum
  assert v.keep_rates()["conv3"] == pytest.approx(3 / 8)
  free = [k for k in keys if v.kept()[k] > math.ceil(0.3 * graph.gate(k).channels)]
  removed = np.concatenate([scores[k][~v.keep[k]] for k in free])
  kept = np.concatenate([scores[k][v.keep[k]] for k in free])
  assert removed.size and removed.max() <= kept.min()  # above the minimum: lowest scores go first
  np.testing.assert_array_equal(v.keep["conv3"], np.isin(np.arange(8), np.argsort(-scores["conv3"])[:3]))


def test_rounded_widths_reopen_the_best_scored_channels():
  graph = models.describe(nets.mobilenet())
  keys = whitebox.default_gates(graph)
  scores = nets.random_scores(graph, keys, seed=1)
  v = whitebox.vote(graph, scores, 0.3, channel_multiple=8)
  for k, keep in v.keep.items():
    assert keep.sum() % 8 == 0 or keep.sum() == keep.size
    if not keep.all():
      assert scores[k][~keep].max() <= scores[k][keep].min()
  after = int(costs.count(graph, v.mask(), mode="physical").macs)
  assert after == v.macs_after <= 0.7 * v.macs_before
  small, _, rest = surgery.slice_model(nets.mobilenet(), nets.build("mobilenet")[1], v.mask())
  assert rest == {} and int(costs.count(small).macs) == after


def test_default_gates_follow_the_published_code():
  assert whitebox.default_gates(models.describe(nets.vgg())) == ("conv0", "conv1", "conv2", "conv3")
  assert whitebox.default_gates(models.describe(nets.basic())) == (
      "stage1_block0/conv1", "stage1_block1/conv1", "stage2_block0/conv1")
  assert whitebox.default_gates(models.describe(nets.bottleneck())) == (
      "stage1_block0/conv1", "stage1_block0/conv2", "stage2_block0/conv1", "stage2_block0/conv2")
  assert whitebox.default_gates(models.describe(nets.mobilenet())) == (
      "stage1_block0/dw", "stage2_block0/dw", "stage2_block1/dw")


@pytest.mark.parametrize("target", [0.0, 1.0, 1.5, -0.2])
def test_a_target_outside_0_1_is_a_config_error(target):
  graph = models.describe(nets.vgg())
  with pytest.raises(ConfigError, match=r"must be in \(0, 1\)"):
    whitebox.vote(graph, nets.random_scores(graph, ["conv1"]), target)
  with pytest.raises(ConfigError, match=r"whitebox.target .* must be in \(0, 1\)"):
    whitebox.WhiteboxOptions(target=target)


@pytest.mark.parametrize("name,key,match", [
    ("basic", "stage1_block0/out", "residual stream"), ("basic", "stem", "residual stream"),
    ("basic", "stage2_block0/out", "no conv / dense unit of its own"),
    ("mobilenet", "stage2_block1/out", "residual stream"), ("vgg", "conv9", "not a gate point")])
def test_a_gate_that_is_not_prunable_is_a_config_error(name, key, match):
  graph = models.describe(nets.BUILDERS[name]())
  with pytest.raises(ConfigError, match=match):
    whitebox.vote(graph, {key: np.ones(4)}, 0.3)


def test_other_bad_votes():
  graph = models.describe(nets.vgg())
  scores = nets.random_scores(graph, ["conv1", "conv2"])
  with pytest.raises(ConfigError, match="out of reach"):
    whitebox.vote(graph, scores, 0.9)
  with pytest.raises(ConfigError, match="not all finite"):
    whitebox.vote(graph, {"conv1": np.array([1.0, np.nan, 0, 0, 0, 0])}, 0.1)
  with pytest.raises(ConfigError, match="share their channels"):
    whitebox.check_prunable(models.describe(nets.mobilenet()), ["stage2_block0/expand", "stage2_block0/dw"])
