"""Channel surgery: the sliced model computes what the masked model computes, and is smaller."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdr import costs, masks, models, surgery

# Tiny configurations of every zoo model: name -> (create kwargs, field overrides).
TINY = {
    "alexnet": (dict(image_size=32, width=0.125), dict(hidden=48)),
    "lenet5": (dict(image_size=28, input_channels=1, width=0.25), dict(hidden=40)),
    "vgg16": (dict(image_size=32, width=0.125), {}),
    "resnet18": (dict(image_size=16, width=0.125), {}),
    "resnet20": (dict(image_size=16, width=0.5), {}),
    "resnet56": (dict(image_size=8, width=0.25), {}),
    "resnet110": (dict(image_size=8, width=0.25), {}),
    "resnet50": (dict(image_size=32, width=0.125), {}),
    "resnet101": (dict(image_size=32, width=0.0625), {}),
    "mobilenet_v2": (dict(image_size=32, width=0.125), dict(head_width=64)),
    "mobilenet_v2_1.4": (dict(image_size=32, width=0.1), dict(head_width=64)),
    "mobilenet_v2_cifar": (dict(image_size=16, width=0.125), dict(head_width=64)),
    "vgg16_torchvision": (dict(image_size=32, width=0.125), dict(hidden=48)),
    "vgg16_bn_torchvision": (dict(image_size=32, width=0.125), dict(hidden=48)),
    "resnet18_torchvision": (dict(image_size=32, width=0.125), {}),
    "alexnet_caffe": (dict(image_size=32, width=0.125), dict(hidden=48)),
    "convnet5": (dict(image_size=28, input_channels=1, width=0.25), {}),
}
# MobileNetV2 cut to 5 blocks (t=1 block, stride-2 and residual blocks): the depthwise
# cases at a fraction of the compile time.
SHORT_MOBILENET = (dict(image_size=16, width=0.125),
                   dict(head_width=64, stages=((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2))))
# Same code paths as a cheaper model above (more blocks / other widths and strides only):
# resnet18 ~ resnet20, resnet56/110 ~ resnet20, resnet101 ~ resnet50, mobilenet_v2(_1.4) ~
# mobilenet_v2_cifar, vgg16_bn_torchvision ~ vgg16_torchvision (+ BN as vgg16),
# resnet18_torchvision ~ resnet50 (ImageNet stem) + resnet20 (basic blocks), alexnet_caffe ~
# alexnet. Their twins pin masked == sliced; for them the tests check what surgery builds
# (widths, variables, costs) without compiling a forward.
TWINS = {"resnet18", "resnet56", "resnet110", "resnet101", "mobilenet_v2", "mobilenet_v2_1.4",
         "vgg16_bn_torchvision", "resnet18_torchvision", "alexnet_caffe"}


def tiny(name):
  """The tiny configuration of ``name``: XLA convs (deep nets with 'auto' tiny-map matmuls
  compile several times slower) except VGG-16, which keeps 'auto' so the im2col and dense
  tiny-map paths are sliced too."""
  if name == "mobilenet_short":
    name, (kwargs, fields) = "mobilenet_v2_cifar", SHORT_MOBILENET
  else:
    kwargs, fields = TINY.get(name, (dict(image_size=32, width=0.125), {}))
  impl = "auto" if name == "vgg16" else "xla"
  return models.create(name, num_classes=5, conv_impl=impl, **kwargs).clone(**fields)


@functools.partial(jax.jit, static_argnums=(0, 4))
def apply(model, variables, x, mask=None, train=False):
  """models.apply, compiled once per model and mask structure (op by op, a sliced model's
  new widths compile every op again)."""
  return models.apply(model, variables, x, mask, train)


def random_variables(model, seed):
  """He-normal kernels and non-trivial biases / BN scales, offsets and running statistics
  (so BN shifts and depthwise folds are really exercised); numpy, nothing to compile."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda: models.init(model, jax.random.PRNGKey(0)))

  def draw(path, s):
    name, parent = str(path[-1].key), str(path[-2].key)
    if name == "kernel":
      x = rng.normal(0, np.sqrt(2.0 / np.prod(s.shape[:-1])), s.shape)
    elif name in ("var", "scale"):
      x = rng.uniform(0.5, 1.5, s.shape)
    elif name == "mean" or parent == "bn":
      x = rng.normal(0, 0.3, s.shape)
    else:  # conv / dense bias
      x = rng.normal(0, 0.1, s.shape)
    return np.asarray(x, np.float32)
  return jax.device_put(jax.tree_util.tree_map_with_path(draw, shapes))  # one transfer, no compile


@functools.lru_cache(maxsize=None)
def setup(name):
  model = tiny(name)
  variables = random_variables(model, 1)
  x = jax.device_put(np.random.default_rng(2).standard_normal(
      (3, model.image_size, model.image_size, model.input_channels), np.float32))
  return model, variables, x


def random_mask(graph, seed, closed_frac=(0.3, 0.6), soft=False, tie_depthwise=False):
  """0/1 gates with ~30-60% closed per gate point; a coupled space is closed consistently
  (same channels at all its gate points). ``soft`` puts some continuous values in;
  ``tie_depthwise`` closes a depthwise layer's input gate where its own gate is closed."""
  rng = np.random.default_rng(seed)
  mask = {}
  for space, points in masks.spaces(graph.gates).items():
    c = points[0].channels
    frac = rng.uniform(*closed_frac)
    shared = (rng.random(c) >= frac).astype(np.float32)
    for p in points:
      gate = shared.copy() if p.coupled else (rng.random(c) >= frac).astype(np.float32)
      if soft:
        gate = np.where((gate == 1) & (rng.random(c) < 0.3), rng.uniform(0.2, 0.9, c), gate)
      mask[p.key] = gate
  if tie_depthwise:
    for layer in graph.layers:
      if layer.depthwise and not graph.gate(layer.src).coupled:
        mask[layer.src] = mask[layer.dst].copy()
  return jax.device_put({k: np.asarray(v, np.float32) for k, v in mask.items()})


def assert_close(actual, expected):
  scale = float(jnp.max(jnp.abs(expected))) + 1e-6
  np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=1e-4, atol=2e-5 * scale)


def _check_sliced_equals_masked(name, seeds, soft, forward=True):
  """slice_model under random masks: smaller, its costs what physical mode promised, its
  variables the sliced model's own, the remaining mask only what could not be cut; with
  ``forward``, the sliced model computes what the masked one does."""
  model, variables, x = setup(name)
  graph = models.describe(model)
  if forward:
    full = apply(model, variables, x, masks.ones_mask(graph.gates))  # the masks' compiled function
  for seed in seeds:
    mask = random_mask(graph, seed, soft=soft)
    small, small_vars, rest = surgery.slice_model(model, variables, mask)
    if not forward:  # (with a forward, applying the small model checks its variables' shapes)
      want = jax.eval_shape(lambda: models.init(small, jax.random.PRNGKey(0)))
      assert jax.tree.map(jnp.shape, small_vars) == jax.tree.map(jnp.shape, want)
    assert costs.param_count(small_vars) < costs.param_count(variables)
    assert costs.param_count(small_vars) == costs.count(small).params
    reported = costs.count(model, mask, mode="physical")  # what physical mode promised
    for small_mask in (None, rest):
      realised = costs.count(small, small_mask, mode="physical")
      assert (realised.params, realised.macs) == (reported.params, reported.macs)
    assert reported.macs < costs.count(model).macs
    if forward:
      masked = apply(model, variables, x, mask)
      assert float(jnp.max(jnp.abs(masked - full))) > 1e-4, "mask had no effect: test is vacuous"
      assert_close(apply(small, small_vars, x, rest), masked)
    for key, gate in rest.items():  # what remains: continuous gates or unremovable channels
      g = np.asarray(gate)
      assert soft or not np.any((g != 0) & (g != 1)), key


@pytest.mark.parametrize("name", models.ZOO)
def test_sliced_equals_masked_every_model(name):
  """One random mask per model (seed from its name), with some continuous gate values."""
  _check_sliced_equals_masked(name, [models.ZOO.index(name)], soft=True, forward=name not in TWINS)


@pytest.mark.parametrize("name", ["lenet5", "resnet20"])
def test_sliced_equals_masked_several_seeds(name):
  _check_sliced_equals_masked(name, [20, 21, 22], soft=False)


@pytest.mark.parametrize("name", ["lenet5", "resnet20", "mobilenet_short"])
def test_sliced_equals_masked_train_mode(name):
  """Batch statistics too. Depthwise inputs are closed with their gates: folded constants are
  cancelled by the consumer's batch mean only up to float error of BN's fast variance."""
  model, variables, x = setup(name)
  mask = random_mask(models.describe(model), 5, tie_depthwise=True)
  small, small_vars, rest = surgery.slice_model(model, variables, mask)
  masked, _ = apply(model, variables, x, mask, True)
  sliced, _ = apply(small, small_vars, x, rest, True)
  # Train-mode BN on 3 images (1x1 maps at the end) amplifies summation-order rounding.
  scale = float(jnp.max(jnp.abs(masked)))
  np.testing.assert_allclose(np.asarray(sliced), np.asarray(masked), rtol=1e-3, atol=1e-3 * scale)


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_short"])
def test_slicing_twice_equals_masking_twice(name):
  model, variables, x = setup(name)
  mask1 = random_mask(models.describe(model), 10)
  small, small_vars, rest1 = surgery.slice_model(model, variables, mask1)
  mask2 = random_mask(models.describe(small), 11, closed_frac=(0.2, 0.4))
  keep1 = surgery.removal_plan(models.describe(model), mask1)
  both = dict(mask1)  # mask2 scattered back onto the big model's channels, times mask1
  for key, gate in mask2.items():
    full_gate = np.ones(keep1[key].shape, np.float32)
    full_gate[keep1[key]] = np.asarray(gate)
    both[key] = jnp.asarray(np.asarray(mask1.get(key, 1.0)) * full_gate)
  combined = {k: rest1.get(k, 1.0) * mask2[k] for k in mask2}
  smaller, smaller_vars, rest2 = surgery.slice_model(small, small_vars, combined)
  assert costs.param_count(smaller_vars) < costs.param_count(small_vars)
  expected = apply(model, variables, x, both)
  assert_close(apply(small, small_vars, x, combined), expected)
  assert_close(apply(smaller, smaller_vars, x, rest2), expected)


def _stream_partial_mask(graph):
  stream = next(s for s, pts in masks.spaces(graph.gates).items() if len(pts) > 1)
  points = masks.spaces(graph.gates)[stream]
  gate = np.ones(points[0].channels, np.float32)
  gate[1] = 0.0
  return stream, points, {points[1].key: jnp.asarray(gate)}  # closed at one gate point only


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_short"])
def test_partial_residual_group(name):
  model, variables, x = setup(name)
  graph = models.describe(model)
  stream, points, mask = _stream_partial_mask(graph)
  with pytest.raises(surgery.SurgeryError, match=f"space '{stream}': channel 1 .*{points[1].key}"):
    surgery.slice_model(model, variables, mask)
  # strict=False keeps the channel (masked) and still matches the masked model.
  small, small_vars, rest = surgery.slice_model(model, variables, mask, strict=False)
  assert costs.param_count(small_vars) == costs.param_count(variables)
  assert set(rest) == {points[1].key} and float(rest[points[1].key][1]) == 0.0
  masked = apply(model, variables, x, mask)
  assert float(jnp.max(jnp.abs(masked - apply(model, variables, x)))) > 1e-4
  assert_close(apply(small, small_vars, x, rest), masked)
  # Closed at every gate point of the stream: removed.
  full = {p.key: mask[points[1].key] for p in points}
  small, small_vars, rest = surgery.slice_model(model, variables, full)
  assert rest == {} and models.describe(small).gate(points[0].key).channels == points[0].channels - 1
  assert_close(apply(small, small_vars, x, rest), apply(model, variables, x, full))


def test_depthwise_rules_fold_and_private_input():
  """Closed at expand only -> folded away (constant into project BN mean); closed at dw
  only -> removed with its expand channel; a t=1 block's dw input (the stem) goes with the
  dw channel when the stem feeds only that layer, else it stays masked."""
  model, variables, x = setup("mobilenet_short")
  graph = models.describe(model)
  c = graph.gate("stage2_block0/expand").channels
  expand_only = np.ones(c, np.float32)
  expand_only[[0, 3]] = 0
  dw_only = np.ones(c, np.float32)
  dw_only[[1, 5, 6]] = 0
  mask = {"stage2_block0/expand": jnp.asarray(expand_only),
          "stage2_block0/dw": jnp.asarray(dw_only),
          "stage1_block0/dw": jnp.zeros(graph.gate("stage1_block0/dw").channels).at[0].set(1.0)}
  the_plan = surgery.plan(graph, mask)
  assert the_plan.keep["stage2_block0/expand"].sum() == c - 5
  assert np.array_equal(the_plan.keep["stage2_block0/expand"], the_plan.keep["stage2_block0/dw"])
  assert list(np.flatnonzero(the_plan.folds["stage2_block0/dw"])) == [0, 3]
  # At this width the stem continues into stage 1's residual stream: not private, kept.
  assert graph.gate("stem").coupled and the_plan.keep["stem"].all()
  small, small_vars, rest = surgery.slice_model(model, variables, mask)
  assert list(rest) == ["stage1_block0/dw"]
  masked = apply(model, variables, x, mask)
  assert_close(apply(small, small_vars, x, rest), masked)
  # The fold matters: without it the sliced model is off.
  graph_small = models.describe(small)
  unfolded = surgery.slice_variables(graph, variables, surgery.Plan(the_plan.keep, {}))
  assert graph_small.gate("stage2_block0/dw").channels == c - 5
  off = apply(small, unfolded, x, rest)
  assert float(jnp.max(jnp.abs(off - masked))) > 1e-3
  # Width 0.5: the stem (16) feeds only the t=1 block's dw (its output is 8 wide): private.
  wide = models.describe(models.create("mobilenet_v2_cifar", num_classes=5, width=0.5))
  assert not wide.gate("stem").coupled
  stem_plan = surgery.plan(wide, {"stage1_block0/dw": jnp.zeros(16).at[2].set(1.0)})
  assert list(np.flatnonzero(stem_plan.keep["stem"])) == [2]


def test_all_closed_space_keeps_one_masked_channel():
  model, variables, x = setup("vgg16")
  graph = models.describe(model)
  mask = {"conv3": jnp.zeros(graph.gate("conv3").channels)}
  small, small_vars, rest = surgery.slice_model(model, variables, mask)
  assert models.describe(small).gate("conv3").channels == 1
  assert set(rest) == {"conv3"}
  assert_close(apply(small, small_vars, x, rest), apply(model, variables, x, mask))


def test_continuous_gates_are_kept_in_remaining_mask():
  model, variables, x = setup("vgg16")
  c = models.describe(model).gate("conv1").channels
  gate = np.linspace(0.0, 1.0, c).astype(np.float32)  # one exact 0, the rest non-zero
  small, small_vars, rest = surgery.slice_model(model, variables, {"conv1": jnp.asarray(gate)})
  np.testing.assert_array_equal(np.asarray(rest["conv1"]), gate[1:])
  full_open = surgery.slice_model(model, variables, {"conv1": jnp.ones(c)})
  assert full_open[2] == {}


def test_bad_masks_raise():
  model, variables, _ = setup("vgg16")
  with pytest.raises(masks.MaskError, match="unknown gate point"):
    surgery.slice_model(model, variables, {"conv99": jnp.ones(3)})
  with pytest.raises(masks.MaskError, match="'conv1' must have shape"):
    surgery.slice_model(model, variables, {"conv1": jnp.ones(3)})


@pytest.mark.parametrize("name", ["vgg16", "resnet20", "mobilenet_short"])
def test_channel_multiple_rounds_widths_and_stays_exact(name):
  """channel_multiple=4: every width is a multiple of 4 (or full), the kept-back channels
  stay closed in the remaining mask, outputs still equal, physical costs still agree."""
  model, variables, x = setup(name)
  graph = models.describe(model)
  mask = random_mask(graph, 5, tie_depthwise=True)
  exact_small, _, _ = surgery.slice_model(model, variables, mask)
  small, small_vars, rest = surgery.slice_model(model, variables, mask, channel_multiple=4)
  full = {p.space: p.channels for p in graph.gates}
  widths = {p.space: p.channels for p in models.describe(small).gates}
  exact = {p.space: p.channels for p in models.describe(exact_small).gates}
  assert all(w % 4 == 0 or w == full[s] for s, w in widths.items()), widths
  assert all(widths[s] >= exact[s] for s in widths)
  assert any(widths[s] > exact[s] for s in widths), "rounding changed nothing: test is vacuous"
  assert_close(apply(small, small_vars, x, rest), apply(model, variables, x, mask))
  reported = costs.count(model, mask, mode="physical", channel_multiple=4)
  assert costs.count(small).params == reported.params == costs.param_count(small_vars)
  assert costs.count(small).macs == reported.macs
  with pytest.raises(ValueError, match="channel_multiple"):
    surgery.slice_model(model, variables, mask, channel_multiple=0)
