"""Cost accounting: published counts, hand-computed masked counts, physical mode, soft gates."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdr import costs, models

# (name, create kwargs, params, MACs, MAC tolerance): published full-model counts.
PUBLISHED = [
    ("vgg16", dict(num_classes=10, image_size=32), 14_728_266, 313e6, 0.01),  # DRNet Table 1: 14.73M
    ("resnet56", dict(num_classes=10, image_size=32), 855_770, 125e6, 0.01),  # He et al.: 0.85M, 125M
    ("resnet50", dict(num_classes=1000, image_size=224), 25_557_032, 4.1e9, 0.01),  # torchvision
    ("resnet101", dict(num_classes=1000, image_size=224), 44_549_160, 7.8e9, 0.01),
    ("mobilenet_v2", dict(num_classes=1000, image_size=224), 3_504_872, 300e6, 0.01),  # Sandler et al.
    ("alexnet", dict(num_classes=1000, image_size=224), 61_100_840, 714e6, 0.001),  # torchvision
    ("lenet5", dict(num_classes=10, image_size=28, input_channels=1), 431_080, 2.293e6, 0.001),
]


@pytest.mark.parametrize("name,kwargs,params,macs,tol", PUBLISHED)
def test_published_full_counts(name, kwargs, params, macs, tol):
  c = costs.count(models.create(name, **kwargs))
  assert c.params == params
  assert abs(c.macs - macs) <= tol * macs, c.macs
  assert isinstance(c.params, np.int64) and isinstance(c.macs, np.int64)


@pytest.mark.parametrize("name", models.ZOO)
def test_params_equal_trainable_variables(name):
  model = models.create(name, num_classes=7, image_size=32, width=0.5)
  shapes = jax.eval_shape(lambda: models.init(model, jax.random.PRNGKey(0)))
  assert costs.count(model).params == costs.param_count(shapes)


def _lenet():
  return models.create("lenet5", num_classes=10, image_size=28, input_channels=1)


def test_masked_counts_by_hand_lenet():
  # conv1 5x5 1->15 open (of 20) at 24x24; conv2 5x5 15->40 open (of 50) at 8x8;
  # fc1 (4*4*40 -> 500); fc2 500 -> 10.
  mask = {"conv1": jnp.ones(20).at[:5].set(0), "conv2": jnp.ones(50).at[10:20].set(0)}
  c = costs.count(_lenet(), mask)
  by_layer = {l.path: (l.params, l.macs) for l in c.layers}
  assert by_layer == {"conv1": (25 * 15 + 15, 25 * 15 * 576), "conv2": (25 * 15 * 40 + 40, 25 * 15 * 40 * 64),
                      "fc1": (640 * 500 + 500, 640 * 500), "fc2": (5010, 5000)}
  assert (c.params, c.macs) == (340_940, 1_501_000)
  physical = costs.count(_lenet(), mask, mode="physical")
  assert (physical.params, physical.macs) == (c.params, c.macs)
  row = c.layers[1]
  assert (row.gate, row.in_kept, row.in_total, row.out_kept, row.out_total) == ("conv2", 15, 20, 40, 50)


def test_residual_stream_masked_vs_physical_by_hand():
  model = models.create("resnet20", num_classes=10, image_size=32)
  full = costs.count(model)
  assert (full.params, full.macs) == (272_474, 40_813_184)
  one = {"stage1_block0/out": jnp.ones(16).at[0].set(0)}
  # masked: block0/conv2 loses an output (9*16 + BN 2 params), block1/conv1 an input (9*16).
  c = costs.count(model, one)
  assert (c.params, c.macs) == (full.params - 146 - 144, full.macs - 2 * 9 * 16 * 1024)
  # physical: a stream channel closed at one of its 4 gate points cannot be cut.
  p = costs.count(model, one, mode="physical")
  assert (p.params, p.macs) == (full.params, full.macs)
  stream = {k: one["stage1_block0/out"] for k in
            ("stem", "stage1_block0/out", "stage1_block1/out", "stage1_block2/out")}
  p = costs.count(model, stream, mode="physical")
  # stem 27+2, three conv2 outputs (146), three conv1 inputs (144), stage2 conv1 (9*32) and
  # shortcut (32) inputs; MACs at 32x32 (stem, blocks) and 16x16 (stage 2).
  assert full.params - p.params == 29 + 3 * 146 + 3 * 144 + 288 + 32
  assert full.macs - p.macs == 27 * 1024 + 6 * 144 * 1024 + 288 * 256 + 32 * 256
  assert (p.params, p.macs) == (costs.count(model, stream).params, costs.count(model, stream).macs)


def test_depthwise_channel_needs_both_gates():
  model = models.create("mobilenet_v2_cifar", num_classes=10, image_size=32, width=0.25)
  graph = models.describe(model)
  c = graph.gate("stage2_block0/expand").channels
  mask = {"stage2_block0/expand": jnp.ones(c).at[0].set(0), "stage2_block0/dw": jnp.ones(c).at[1].set(0)}
  full, masked = costs.count(model), costs.count(model, mask)
  rows = {l.path: l for l in masked.layers}
  full_rows = {l.path: l for l in full.layers}
  dw = rows["stage2_block0/dw"]
  assert (dw.in_kept, dw.out_kept) == (c - 2, c - 2)
  h, w = graph.gate("stage2_block0/dw").spatial
  assert full_rows["stage2_block0/dw"].params - dw.params == 2 * (9 + 2)
  assert full_rows["stage2_block0/dw"].macs - dw.macs == 2 * 9 * h * w
  assert rows["stage2_block0/expand"].out_kept == c - 1
  assert rows["stage2_block0/project"].in_kept == c - 1


def test_soft_costs_match_exact_and_are_differentiable():
  model = models.create("mobilenet_v2_cifar", num_classes=10, image_size=32, width=0.25)
  graph = models.describe(model)
  rng = np.random.default_rng(0)
  mask = {p.key: jnp.asarray(rng.random(p.channels) > 0.4, jnp.float32) for p in graph.gates
          if not p.coupled}
  exact = costs.count(model, mask)
  params, macs = jax.jit(lambda m: costs.soft_costs(graph, m))(mask)
  assert abs(float(params) - exact.params) <= 1e-6 * exact.params
  assert abs(float(macs) - exact.macs) <= 1e-6 * exact.macs
  grads = jax.grad(lambda m: costs.expected_macs(graph, m))(mask)
  # d MACs / d gate of a 1x1 expand channel: its expand row, its dw channel and project column.
  assert float(jnp.min(grads["stage2_block0/expand"])) > 0
  per_example = {k: jnp.stack([v, jnp.ones_like(v)]) for k, v in mask.items()}
  batch_macs = costs.expected_macs(graph, per_example)
  assert batch_macs.shape == (2,)
  np.testing.assert_allclose(np.asarray(batch_macs), [exact.macs, costs.count(model).macs], rtol=1e-6)


def test_bad_mode_and_mask():
  with pytest.raises(ValueError, match="mode must be one of"):
    costs.count(_lenet(), None, mode="cheap")
  with pytest.raises(ValueError, match="unknown gate point"):
    costs.count(_lenet(), {"conv9": jnp.ones(3)})
