"""Fold and cut: the pruned network (no mask) computes the network gated by keep x the folded
vector, for VGG, basic and bottleneck ResNets (projection shortcuts) and MobileNetV2, in eval and
train mode; signs; max-pools; every kept weight carried by surgery."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdr import models
from jaxdr.methods import whitebox
from tests.methods.whitebox import nets


def _apply(model, variables, x, mask=None, train=False):
  if not train:  # the forward prune compiled already
    return np.asarray(whitebox.forward(model)(variables, jnp.asarray(x), mask or {}))
  return np.asarray(jax.jit(lambda v, m: models.apply(model, v, x, m, train=True)[0])(variables, mask or {}))


@pytest.mark.parametrize("name,fold_into",
                         [(n, "bn") for n in nets.BUILDERS] + [("vgg", "inputs"), ("basic", "inputs")])
def test_fold_and_cut_equals_the_gated_network(name, fold_into):
  model, variables = nets.build(name)
  graph = models.describe(model)
  keys = whitebox.default_gates(graph)
  # Expected gates of both signs (VGG: positive, its max-pools do not commute with a sign flip).
  low = 0.2 if name == "vgg" else -1.0
  folds = nets.random_scores(graph, keys, seed=2, low=low, high=2.0)
  x = nets.images(model)
  cut = whitebox.prune(model, variables, nets.random_scores(graph, keys), folds, target=0.2, probe=x,
                       fold_into=fold_into)
  assert cut.folded.inexact == {} and cut.max_rel_diff < 1e-5
  gates = {k: jnp.asarray(g) for k, g in cut.gates.items()}
  for k, g in cut.gates.items():
    np.testing.assert_allclose(g, np.where(cut.vote.keep[k], folds[k], 0.0), rtol=1e-6)
    assert dict(cut.model.channels)[graph.gate(k).space] == cut.vote.kept()[k]
  want = _apply(model, variables, x, gates)
  np.testing.assert_allclose(_apply(cut.model, cut.variables, x), want, rtol=1e-4, atol=1e-4)
  if name != "bottleneck":
    return
  # Train mode too: the consumers see the same pre-activations, so BatchNorm's batch statistics agree.
  np.testing.assert_allclose(_apply(cut.model, cut.variables, x, train=True),
                             _apply(model, variables, x, gates, train=True), rtol=1e-3, atol=1e-3)


def test_bn_fold_scales_relu_producers_bn_and_leaves_kernels():
  """into='bn': a gate >= 0 after BN -> ReLU moves into that BN's scale and shift (consumers'
  kernels keep their scale), a negative one into the consumers; a ReLU6 producer (MobileNetV2's
  depthwise) is not positively homogeneous, so its gate goes into the consumers."""
  model, variables = nets.build("vgg")
  graph = models.describe(model)
  v = np.r_[np.linspace(0.0, 3.0, 5), -0.5].astype(np.float32)  # conv1: 6 channels
  x = nets.images(model)
  folded = whitebox.fold.fold(model, variables, {"conv1": v}, x, into="bn")
  p, q = variables["params"], folded.variables["params"]
  pos = np.r_[v[:5], 1.0]
  for leaf in ("scale", "bias"):
    np.testing.assert_allclose(q["conv1"]["bn"][leaf], np.asarray(p["conv1"]["bn"][leaf]) * pos, rtol=1e-6)
  neg = np.r_[np.ones(5), -0.5].astype(np.float32)
  np.testing.assert_allclose(q["conv2"]["kernel"], np.asarray(p["conv2"]["kernel"]) * neg[None, None, :, None],
                             rtol=1e-6)
  np.testing.assert_array_equal(q["conv1"]["kernel"], p["conv1"]["kernel"])
  assert folded.inexact == {}
  np.testing.assert_allclose(_apply(model, folded.variables, x), _apply(model, variables, x, {"conv1": v}),
                             rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(_apply(model, folded.variables, x, train=True),
                             _apply(model, variables, x, {"conv1": v}, train=True), rtol=1e-3, atol=1e-3)
  mob, mob_vars = nets.build("mobilenet")
  w = np.linspace(0.5, 2.0, 48).astype(np.float32)
  out = whitebox.fold.fold(mob, mob_vars, {"stage2_block0/dw": w}, nets.images(mob), into="bn")
  p, q = mob_vars["params"]["stage2_block0"], out.variables["params"]["stage2_block0"]
  np.testing.assert_array_equal(q["dw"]["bn"]["scale"], p["dw"]["bn"]["scale"])  # ReLU6: not moved
  np.testing.assert_allclose(q["project"]["kernel"], np.asarray(p["project"]["kernel"]) * w[:, None], rtol=1e-6)
  with pytest.raises(ValueError, match="fold into"):
    whitebox.fold.fold(model, variables, {"conv1": v}, into="producer")


def test_a_negative_gate_behind_a_max_pool_is_reported_not_hidden():
  model, variables = nets.build("vgg")
  graph = models.describe(model)
  neg = {"conv0": -np.ones(4, np.float32), "conv1": -np.ones(6, np.float32)}
  folded = whitebox.fold.fold(model, variables, neg, into="inputs")
  # conv0 feeds conv1 through a max-pool: max(-x) = -min(x), no exact fold. conv1 -> conv2 is direct.
  assert set(folded.inexact) == {"conv0"} and folded.inexact_channels == 4
  x = nets.images(model)
  exact = whitebox.fold.fold(model, variables, {"conv1": neg["conv1"]}, into="inputs")
  assert exact.inexact == {}
  np.testing.assert_allclose(_apply(model, exact.variables, x),
                             _apply(model, variables, x, {"conv1": neg["conv1"]}), rtol=1e-4, atol=1e-4)
  del graph


def test_scale_inputs_scales_every_consumer_including_dense_and_depthwise():
  model, variables = nets.build("mobilenet")
  graph = models.describe(model)
  v = np.linspace(-1, 2, 48).astype(np.float32)
  out = whitebox.scale_inputs(graph, variables, {"stage2_block0/expand": v, "stage2_block0/dw": v})
  p, q = variables["params"]["stage2_block0"], out["params"]["stage2_block0"]
  np.testing.assert_allclose(q["dw"]["kernel"], np.asarray(p["dw"]["kernel"]) * v, rtol=1e-6)
  np.testing.assert_allclose(q["project"]["kernel"], np.asarray(p["project"]["kernel"]) * v[:, None],
                             rtol=1e-6)
  np.testing.assert_array_equal(q["expand"]["kernel"], p["expand"]["kernel"])  # producers untouched
  vgg, vgg_vars = nets.build("vgg")
  w = np.arange(1, 9, dtype=np.float32)
  dense = whitebox.scale_inputs(models.describe(vgg), vgg_vars, {"conv3": w})["params"]["classifier"]["dense"]
  original = np.asarray(vgg_vars["params"]["classifier"]["dense"]["kernel"])
  np.testing.assert_allclose(dense["kernel"], original * w[:, None], rtol=1e-6)


def test_surgery_carries_every_kept_weight_of_a_bottleneck_with_projections():
  model, variables = nets.build("bottleneck")
  graph = models.describe(model)
  keys = whitebox.default_gates(graph)
  cut = whitebox.prune(model, variables, nets.random_scores(graph, keys, seed=5), None, target=0.3)
  small = cut.variables
  for block in ("stage1_block0", "stage2_block0"):
    k1, k2 = cut.vote.keep[f"{block}/conv1"], cut.vote.keep[f"{block}/conv2"]
    p, q = variables["params"][block], small["params"][block]
    s, t = variables["batch_stats"][block], small["batch_stats"][block]
    for leaf in ("kernel",):  # the projection shortcut: every weight, BN affine and statistic
      np.testing.assert_array_equal(q["shortcut"][leaf], p["shortcut"][leaf])
    for leaf in ("scale", "bias"):
      np.testing.assert_array_equal(q["shortcut"]["bn"][leaf], p["shortcut"]["bn"][leaf])
      np.testing.assert_array_equal(q["conv1"]["bn"][leaf], np.asarray(p["conv1"]["bn"][leaf])[k1])
      np.testing.assert_array_equal(q["conv3"]["bn"][leaf], p["conv3"]["bn"][leaf])
    for leaf in ("mean", "var"):
      np.testing.assert_array_equal(t["shortcut"]["bn"][leaf], s["shortcut"]["bn"][leaf])
      np.testing.assert_array_equal(t["conv2"]["bn"][leaf], np.asarray(s["conv2"]["bn"][leaf])[k2])
    np.testing.assert_array_equal(q["conv1"]["kernel"], np.asarray(p["conv1"]["kernel"])[..., k1])
    np.testing.assert_array_equal(q["conv2"]["kernel"], np.asarray(p["conv2"]["kernel"])[:, :, k1][..., k2])
    np.testing.assert_array_equal(q["conv3"]["kernel"], np.asarray(p["conv3"]["kernel"])[:, :, k2])
  np.testing.assert_array_equal(small["params"]["stem"]["kernel"], variables["params"]["stem"]["kernel"])
  np.testing.assert_array_equal(small["params"]["classifier"]["dense"]["kernel"],
                                variables["params"]["classifier"]["dense"]["kernel"])
