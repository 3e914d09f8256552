"""A residual branch pruned to 0 filters: which gates may, the network without the branch (logits),
and costs / surgery agreeing on it."""
import jax
import numpy as np
import pytest

from jaxdr import costs, models, surgery
from jaxdr.methods import car
from jaxdr.methods.car import branches
from tests.methods.car import nets


def test_branch_gates():
  model, _ = nets.tiny_resnet()
  graph = models.describe(model)
  inner = [g.key for g in graph.gates if g.key.endswith("/conv1")]
  assert inner and all(car.is_branch_gate(graph, k) for k in inner)
  assert not any(car.is_branch_gate(graph, k) for k in ("stem", "stage1_block0/out", "stage2_block0/out"))
  for make, keys in ((nets.tiny_lenet, ("conv1", "conv2")), (nets.tiny_vgg, ("conv0", "conv1", "conv2"))):
    g = models.describe(make()[0])
    assert not any(car.is_branch_gate(g, k) for k in keys)
  bottleneck, _ = nets.tiny_resnet(bottleneck=True)
  g = models.describe(bottleneck)
  assert branches.branch_gates(g, "stage1_block1/conv1") == ["stage1_block1/conv1", "stage1_block1/conv2"]
  assert [l.key for l in branches.branch_outputs(g, "stage1_block1/conv1")] == ["stage1_block1/conv3"]
  # MobileNetV2: a block with a residual add has branch gates, one without (stride 2) does not.
  mnv2 = models.describe(models.create("mobilenet_v2_cifar", num_classes=3, image_size=8, width=0.25))
  flags = {k.key: car.is_branch_gate(mnv2, k.key) for k in mnv2.gates if not k.coupled}
  assert any(flags.values()) and not all(flags.values())
  with pytest.raises(ValueError, match="not inside a residual branch"):
    car.without_branch(model, {}, "stem")


@pytest.mark.parametrize("bottleneck", [False, True])
def test_pruned_branch_equals_network_without_it(bottleneck):
  model, variables = nets.tiny_resnet(bottleneck=bottleneck, seed=1)
  ref, _ = nets.tiny_resnet(stage_sizes=(1, 1, 1), bottleneck=bottleneck)
  # The reference is the same network with stage 1's second block dropped entirely.
  ref_vars = jax.tree.map(lambda x: x, {c: {k: v for k, v in variables[c].items() if k != "stage1_block1"}
                                       for c in variables})
  graph = models.describe(model)
  key = "stage1_block1/conv1"
  x, _ = nets.images(5, 8, channels=2, seed=3)
  mask = car.branch_mask(graph, key)
  gone = car.without_branch(model, variables, key)
  expect = models.apply(ref, ref_vars, x)
  np.testing.assert_allclose(models.apply(model, gone, x, mask), expect, atol=1e-5, rtol=1e-5)
  # Masking alone leaves the branch's BatchNorm shift (the 'mask' reading): not the same network.
  assert np.abs(np.asarray(models.apply(model, variables, x, mask)) - np.asarray(expect)).max() > 1e-3
  # Costs: none of the branch's MACs; params: the reference's plus the output layer's (zeroed) BN.
  masked = costs.count(model, mask)
  out_layer = branches.branch_outputs(graph, key)[0]
  assert masked.macs == costs.count(ref).macs
  assert masked.params == costs.count(ref).params + 2 * out_layer.out_channels
  # Surgery keeps a one-channel stub per closed space (masked, adding 0); costs agree with it.
  small, small_vars, rest = surgery.slice_model(model, gone, mask)
  np.testing.assert_allclose(models.apply(small, small_vars, x, rest), expect, atol=1e-5, rtol=1e-5)
  physical = costs.count(model, mask, mode="physical")
  assert physical.macs == costs.count(small).macs and physical.params == costs.count(small).params
  stub = sum(l.macs for l in costs.count(small).layers if l.path.startswith("stage1_block1/"))
  assert stub == sum(l.macs for l in costs.count(model, {k: np.eye(1, graph.gate(k).channels)[0] for k in mask}).layers
                     if l.path.startswith("stage1_block1/"))
