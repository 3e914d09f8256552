"""The model zoo: exact parameter counts, shapes on every input size, conv impls agree,
and what `describe()` reports for MobileNetV2 / LeNet-5 / AlexNet."""
import functools

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdr.models import alexnet, layers, mobilenet
from jaxdr import models

IMAGENET = dict(num_classes=1000, image_size=224, input_channels=3)
CIFAR10 = dict(num_classes=10, image_size=32, input_channels=3)


def _variable_shapes(model):
  x = jax.ShapeDtypeStruct((1, model.image_size, model.image_size, model.input_channels), jnp.float32)
  return jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), x)


def _num_params(model):
  return sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(_variable_shapes(model)["params"]))


@functools.partial(jax.jit, static_argnums=0)
def _apply(model, variables, x):
  """models.apply compiled once (op by op, every op of a deep network compiles on its own)."""
  return models.apply(model, variables, x)


LENET = dict(num_classes=10, image_size=28, input_channels=1)


# (name, the paper's input, exact parameter count)
PARAM_COUNTS = [
    ("vgg16", CIFAR10, 14_728_266),            # DRNet Table 1: 14.73M
    ("resnet18", CIFAR10, 11_173_962),
    ("resnet20", CIFAR10, 272_474),            # He et al. 0.27M (option A); ours: B projections
    ("resnet56", CIFAR10, 855_770),            # 0.85M
    ("resnet110", CIFAR10, 1_730_714),         # 1.7M
    ("resnet8", CIFAR10, 78_042),              # DMNN's small twin (dmnn_resnet8)
    ("resnet50_cifar", CIFAR10, 23_520_842),   # resnet50 with a 3x3 stride-1 stem (dmnn50_cifar's twin)
    ("resnet50", IMAGENET, 25_557_032),        # torchvision
    ("resnet101", IMAGENET, 44_549_160),       # torchvision
    ("mobilenet_v2", IMAGENET, 3_504_872),     # torchvision
    ("mobilenet_v2_1.4", IMAGENET, 6_108_776),  # torchvision rounding (paper: 6.06M)
    ("mobilenet_v2_cifar", CIFAR10, 2_236_682),
    ("alexnet", IMAGENET, 61_100_840),         # torchvision
    ("lenet5", LENET, 431_080),                # Caffe
]


@pytest.mark.parametrize("name,kw,expected", PARAM_COUNTS)
def test_param_counts_and_output_shapes(name, kw, expected):
  """Full-size models: the exact parameter count at the paper's input size, and logits of
  the right shape there and on 28x28x1 with 7 classes (ImageNet models on small maps too).
  One abstract trace per size (jax.eval_shape: nothing runs)."""
  for size, channels, classes in [(28, 1, 7), (kw["image_size"], kw["input_channels"], kw["num_classes"])]:
    model = models.create(name, num_classes=classes, image_size=size, input_channels=channels)
    x = jax.ShapeDtypeStruct((3, size, size, channels), jnp.float32)
    out, variables = jax.eval_shape(lambda x: model.init_with_output(jax.random.PRNGKey(0), x), x)
    assert out.shape == (3, classes), (name, size)
  assert sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(variables["params"])) == expected


def test_every_zoo_model_has_its_count():
  from tests.models.test_paper_archs import PUBLISHED  # pylint: disable=g-import-not-at-top
  counted = [name for name, _, _ in PARAM_COUNTS] + [name for name, *_ in PUBLISHED]
  assert sorted(set(counted)) == sorted(models.ZOO)


def test_alexnet_params_do_not_depend_on_image_size():
  """The adaptive pool fixes fc1 at 6*6*256 inputs, so the count is the same at 28x28x1 (less conv1)."""
  small = _num_params(models.create("alexnet", num_classes=1000, image_size=28, input_channels=1))
  assert small == 61_100_840 - 11 * 11 * 2 * 64


@pytest.mark.parametrize("name", sorted(models.names()))
def test_every_model_runs_on_28x28x1(name, tiny, images):
  width = {"resnet18": 1 / 16, "resnet56": 0.25, "resnet110": 0.25, "resnet101": 1 / 16,
           "mobilenet_v2_1.4": 0.25 / 1.4, "mobilenet_v2_cifar": 0.25, "resnet50_cifar": 1 / 16,
           "dmnn50": 1 / 16, "dmnn101": 1 / 16, "dmnn50_cifar": 1 / 16, "dmnn_resnet20": 0.25,
           "dmnn_resnet_cifar": 0.25, "dmnn_mobilenet_v2": 0.25, "dmnn_mobilenet_v2_1.4": 0.25 / 1.4,
           "dmnn_mobilenet_v2_cifar": 0.25}
  model, variables = tiny(name, **({"width": width[name]} if name in width else {}))
  # The deep ResNets op by op: their identical blocks per stage reuse each op's compile, where
  # compiling the whole network takes longer (DMNN-101 at -O0: 7.8 s jitted, 4.5 s op by op).
  op_by_op = ("resnet56", "resnet110", "dmnn50", "dmnn101", "dmnn_resnet20", "dmnn_resnet_cifar")
  apply = models.apply if name in op_by_op else _apply
  logits = apply(model, variables, images(2))
  assert logits.shape == (2, 10)
  assert np.all(np.isfinite(logits))


@pytest.mark.parametrize("name,impls", [("vgg16", models.CONV_IMPLS), ("resnet20", ("xla", "auto", "native")),
                                        ("mobilenet_v2_cifar", ("xla", "auto"))])
def test_conv_impls_agree(name, impls, tiny, images):
  """conv_impls give the same logits: VGG-16 every one (tiny maps: the dense and im2col
  paths; 'native' takes the wider maps of a batch of 8 where its kernel loads), ResNet-20
  the strided and 1x1 convs, MobileNetV2 its depthwise convs (which stay on XLA). Each
  conv path is pinned against lax.conv in tests/ops."""
  x = images(8, size=32, channels=3)
  width = {"mobilenet_v2_cifar": 0.25}.get(name, {})
  outs = []
  for impl in impls:
    # Same seed and shapes: the same variables for every impl.
    model, variables = tiny(name, conv_impl=impl, **CIFAR10, **({"width": width} if width else {}))
    outs.append(np.asarray(_apply(model, variables, x)))
  scale = np.max(np.abs(outs[0]))
  assert scale > 0
  for impl, out in zip(impls, outs):
    np.testing.assert_allclose(out, outs[0], rtol=0, atol=1e-4 * scale, err_msg=impl)


def test_make_divisible_matches_torchvision_rounding():
  assert [mobilenet.make_divisible(v) for v in (32, 22.4, 33.6, 134.4, 1792, 11.2, 4)] == \
      [32, 24, 32, 136, 1792, 16, 8]


def test_mobilenet_v2_describe():
  graph = models.describe(models.create("mobilenet_v2", **IMAGENET))
  gates = {g.key: g for g in graph.gates}
  layers_by_key = {l.key: l for l in graph.layers}
  # 17 blocks: expand (16 of them) + dw + out each, plus stem and head.
  assert len(gates) == 17 * 3 - 1 + 2 and len(graph.layers) == 17 * 3 - 1 + 3
  assert "stage1_block0/expand" not in gates  # t=1: no expand conv
  dw = layers_by_key["stage1_block0/dw"]
  assert (dw.src, dw.dst, dw.depthwise, dw.in_channels, dw.out_channels) == (
      "stem", "stage1_block0/dw", True, 32, 32)
  for l in graph.layers:
    if l.path[-1] == "dw":
      block = l.key.rsplit("/", 1)[0]
      assert l.depthwise and l.in_channels == l.out_channels and l.dst == l.key
      if block != "stage1_block0":
        assert l.src == block + "/expand"
    if l.path[-1] == "project":
      assert l.dst == l.key.replace("project", "out") and l.src == l.key.replace("project", "dw")
  # Identity blocks continue their input's stream; the others open a new one.
  assert gates["stage3_block0/out"].space == "stage3_block0/out"
  assert gates["stage3_block1/out"].space == gates["stage3_block2/out"].space == "stage3_block0/out"
  assert gates["stage3_block0/out"].coupled and not gates["stage7_block0/out"].coupled
  assert not gates["stage3_block1/expand"].coupled and not gates["stage3_block1/dw"].coupled
  assert (gates["stem"].channels, gates["head"].channels, gates["stem"].spatial) == (32, 1280, (112, 112))
  assert layers_by_key["classifier"].src == "head"
  assert gates["stage7_block0/expand"].channels == 960 and gates["stage7_block0/out"].channels == 320


def test_mobilenet_v2_cifar_strides():
  graph = models.describe(models.create("mobilenet_v2_cifar", **CIFAR10))
  gates = {g.key: g for g in graph.gates}
  assert gates["stem"].spatial == (32, 32)
  assert gates["stage2_block0/out"].spatial == (32, 32)  # stride 1 in the 24-channel stage
  assert gates["stage3_block0/out"].spatial == (16, 16)
  assert gates["head"].spatial == (4, 4)


def test_mobilenet_v2_channels_override_widths():
  """Surgery's ``channels`` (space -> width) sets the stream, expand and head widths."""
  model = models.create("mobilenet_v2", **IMAGENET, channels={
      "stage3_block0/out": 20, "stage3_block1/expand": 100, "head": 1000, "stem": 16})
  gates = {g.key: g for g in models.describe(model).gates}
  assert gates["stage3_block2/out"].channels == 20
  assert gates["stage3_block1/expand"].channels == gates["stage3_block1/dw"].channels == 100
  assert gates["head"].channels == 1000
  assert gates["stage1_block0/dw"].channels == 16  # a depthwise unit follows its input's width


def test_mobilenet_v2_1_4_widths():
  gates = {g.key: g for g in models.describe(models.create("mobilenet_v2_1.4", **IMAGENET)).gates}
  assert (gates["stem"].channels, gates["stage1_block0/out"].channels, gates["stage2_block0/expand"].channels,
          gates["stage7_block0/out"].channels, gates["head"].channels) == (48, 24, 144, 448, 1792)


def test_mobilenet_v2_linear_bottleneck(tiny, images):
  """No activation after the residual add or the projection: block outputs go negative
  (with a ReLU after the add, as in ResNet, they could not)."""
  model, variables = tiny("mobilenet_v2")

  @jax.jit
  def gate_outputs(variables, x):
    _, state = model.apply(variables, x, None, False, mutable=["intermediates"],
                           capture_intermediates=lambda m, name: isinstance(m, layers.Gate))
    return {"/".join(k[:-1]): v[0] for k, v in traverse_util.flatten_dict(state["intermediates"]).items()}

  outs = gate_outputs(variables, images(2))
  assert "stage3_block1/out" in outs  # an identity block
  assert all(float(jnp.min(y)) < 0 for y in outs.values())


def test_lenet5_describe():
  graph = models.describe(models.create("lenet5", num_classes=10, image_size=28, input_channels=1))
  assert [(g.key, g.channels, g.spatial) for g in graph.gates] == [
      ("conv1", 20, (24, 24)), ("conv2", 50, (8, 8))]
  assert [(l.key, l.src, l.dst, l.in_channels, l.out_channels, l.in_positions) for l in graph.layers] == [
      ("conv1", None, "conv1", 1, 20, 1), ("conv2", "conv1", "conv2", 20, 50, 1),
      ("fc1", "conv2", None, 50, 500, 16), ("fc2", None, None, 500, 10, 1)]
  assert all(l.use_bias and not l.use_bn for l in graph.layers)


def test_alexnet_describe():
  graph = models.describe(models.create("alexnet", **IMAGENET))
  assert [(g.key, g.channels, g.spatial) for g in graph.gates] == [
      ("conv1", 64, (55, 55)), ("conv2", 192, (27, 27)), ("conv3", 384, (13, 13)),
      ("conv4", 256, (13, 13)), ("conv5", 256, (13, 13))]
  fc1 = [l for l in graph.layers if l.key == "fc1"][0]
  assert (fc1.src, fc1.in_channels, fc1.in_positions, fc1.out_channels) == ("conv5", 256, 36, 4096)
  assert [(l.kernel, l.stride) for l in graph.layers if l.kind == "conv"] == [
      (11, 4), (5, 1), (3, 1), (3, 1), (3, 1)]


@pytest.mark.parametrize("size", [1, 2, 5, 6, 7, 13, 14])
def test_adaptive_avg_pool_matches_torch(size):
  torch = pytest.importorskip("torch")
  x = np.random.default_rng(size).normal(size=(2, size, size + 1, 3)).astype(np.float32)
  ours = alexnet.adaptive_avg_pool(jnp.asarray(x), 6)
  ref = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), 6)
  np.testing.assert_allclose(ours, ref.permute(0, 2, 3, 1).numpy(), rtol=1e-6, atol=1e-6)


def test_alexnet_dropout_only_with_train_and_rng(tiny, images):
  model, variables = tiny("alexnet")
  x = images(2)
  eval_logits = model.apply(variables, x, None, False)
  no_rng = model.apply(variables, x, None, True)
  eval_with_rng = model.apply(variables, x, None, False, rngs={"dropout": jax.random.PRNGKey(0)})
  dropped = model.apply(variables, x, None, True, rngs={"dropout": jax.random.PRNGKey(0)})
  np.testing.assert_array_equal(no_rng, eval_logits)
  train_logits, new_state = models.apply(model, variables, x, train=True)  # no BN: no state
  np.testing.assert_array_equal(train_logits, eval_logits)
  assert new_state == {}
  np.testing.assert_array_equal(eval_with_rng, eval_logits)
  assert not np.allclose(dropped, eval_logits)


def _torch_reference(name, variables, x):
  """The same network written in torch with our weights (kernels HWIO -> OIHW, fc1 rows
  (h, w, c) -> (c, h, w)): pins layouts, paddings, pools and flatten order."""
  torch = pytest.importorskip("torch")
  F = torch.nn.functional
  p = jax.tree_util.tree_map(lambda a: torch.from_numpy(np.asarray(a).copy()), variables["params"])
  conv = lambda t, k, **kw: F.conv2d(t, p[k]["kernel"].permute(3, 2, 0, 1), p[k]["bias"], **kw)

  def dense(t, k, spatial=None):
    w = p[k]["dense"]["kernel"]
    if spatial is not None:  # rows (h, w, c) -> (c, h, w)
      c = w.shape[0] // (spatial * spatial)
      w = w.reshape(spatial, spatial, c, -1).permute(2, 0, 1, 3).reshape(c * spatial * spatial, -1)
    return t.flatten(1) @ w + p[k]["dense"]["bias"]

  t = torch.from_numpy(np.array(x)).permute(0, 3, 1, 2)
  with torch.no_grad():
    if name == "lenet5":
      t = F.max_pool2d(conv(t, "conv1"), 2)
      t = F.max_pool2d(conv(t, "conv2"), 2)
      return dense(F.relu(dense(t, "fc1", spatial=t.shape[-1])), "fc2").numpy()
    t = F.max_pool2d(F.relu(conv(t, "conv1", stride=4, padding=2)), 3, 2)
    t = F.max_pool2d(F.relu(conv(t, "conv2", padding=2)), 3, 2)
    for k in ("conv3", "conv4", "conv5"):
      t = F.relu(conv(t, k, padding=1))
    t = F.adaptive_avg_pool2d(F.max_pool2d(t, 3, 2), 6)
    t = F.relu(dense(F.relu(dense(t, "fc1", spatial=6)), "fc2"))
    return dense(t, "fc3").numpy()


@pytest.mark.parametrize("name,size", [("lenet5", 28), ("alexnet", 67)])
def test_matches_torch_reference(name, size, tiny, images):
  model, variables = tiny(name, image_size=size)
  x = images(2, size=size)
  ours = np.asarray(models.apply(model, variables, x))
  np.testing.assert_allclose(ours, _torch_reference(name, variables, x), rtol=1e-4,
                             atol=1e-4 * np.max(np.abs(ours)))


def test_mobilenet_v2_matches_torch_reference(tiny, images):
  """torchvision's forward (ConvBNReLU6, inverted residuals with a linear bottleneck and
  `stride == 1 and inp == oup` shortcuts), written in torch with our weights."""
  torch = pytest.importorskip("torch")
  F = torch.nn.functional
  model, variables = tiny("mobilenet_v2")
  x = images(2)
  to_t = lambda a: torch.from_numpy(np.array(a))
  params, stats = variables["params"], variables["batch_stats"]

  def unit(t, scope, stride=1, act=True):
    p, s = params[scope[0]], stats[scope[0]]
    for k in scope[1:]:
      p, s = p[k], s[k]
    w = to_t(p["kernel"]).permute(3, 2, 0, 1)
    groups = t.shape[1] if scope[-1] == "dw" else 1
    t = F.conv2d(t, w, stride=stride, padding=w.shape[-1] // 2, groups=groups)
    t = F.batch_norm(t, to_t(s["bn"]["mean"]), to_t(s["bn"]["var"]), to_t(p["bn"]["scale"]),
                     to_t(p["bn"]["bias"]), eps=1e-5)
    return F.relu6(t) if act else t

  t = to_t(x).permute(0, 3, 1, 2)
  with torch.no_grad():
    t = unit(t, ("stem",), stride=2)
    for s, (expand, _, n, first_stride) in enumerate(mobilenet.IMAGENET_STAGES):
      for b in range(n):
        name, stride = f"stage{s + 1}_block{b}", first_stride if b == 0 else 1
        y = unit(t, (name, "expand")) if expand != 1 else t
        y = unit(unit(y, (name, "dw"), stride=stride), (name, "project"), act=False)
        t = t + y if stride == 1 and y.shape == t.shape else y
    t = unit(t, ("head",)).mean((2, 3))
    ref = (t @ to_t(params["classifier"]["dense"]["kernel"]) + to_t(params["classifier"]["dense"]["bias"]))
  ours = np.asarray(models.apply(model, variables, x))
  np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-4, atol=1e-4 * np.max(np.abs(ours)))
