"""The papers' other architectures: torchvision's VGG-16 (with and without BN) and ResNet-18,
AlexNet at Caffe's widths, DRNet Fig. 8's MNIST ConvNet: published counts, gate points, the
flattening fc layer surgery slices, pools as torch's."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdr import costs, models
from jaxdr.models import vgg

IMAGENET = dict(num_classes=1000, image_size=224, input_channels=3)
MNIST = dict(num_classes=10, image_size=28, input_channels=1)


PUBLISHED = [
    ("vgg16_torchvision", IMAGENET, 138_357_544, 15.47e9),     # torchvision: 138,357,544, 15.47 GFLOPS
    ("vgg16_bn_torchvision", IMAGENET, 138_365_992, 15.47e9),  # torchvision: 138,365,992, 15.47
    ("resnet18_torchvision", IMAGENET, 11_689_512, 1.81e9),    # torchvision: 11,689,512, 1.81
    ("alexnet", IMAGENET, 61_100_840, 0.71e9),                 # torchvision: 61,100,840, 0.71
    # Caffe widths, one tower: 60,965,224 with Caffe's two groups in conv2/4/5.
    ("alexnet_caffe", IMAGENET, 62_378_344, 1.14e9),
    ("convnet5", MNIST, 96_554, 18.3e6),
]


@pytest.mark.parametrize("name,kw,params,macs", PUBLISHED)
def test_published_counts(name, kw, params, macs):
  c = costs.count(models.create(name, **kw))
  assert c.params == params
  assert abs(c.macs - macs) <= 0.01 * macs, c.macs  # published MACs are rounded


@pytest.mark.parametrize("name", ["vgg16_torchvision", "vgg16_bn_torchvision"])
def test_torchvision_vgg_describe(name):
  graph = models.describe(models.create(name, **IMAGENET))
  assert [g.key for g in graph.gates] == [f"conv{i}" for i in range(13)]  # as jaxdr's vgg16
  assert [g.spatial[0] for g in graph.gates] == [224] * 2 + [112] * 2 + [56] * 3 + [28] * 3 + [14] * 3
  convs = [l for l in graph.layers if l.kind == "conv"]
  assert all(l.use_bias and l.use_bn == ("bn" in name) for l in convs)
  fc = {l.key: l for l in graph.layers if l.kind == "dense"}
  assert (fc["fc1"].src, fc["fc1"].in_channels, fc["fc1"].in_positions, fc["fc1"].out_channels) == (
      "conv12", 512, 49, 4096)
  assert (fc["fc2"].src, fc["fc3"].src, fc["fc3"].out_channels) == (None, None, 1000)


def test_resnet18_torchvision_describe():
  graph = models.describe(models.create("resnet18_torchvision", **IMAGENET))
  gates = {g.key: g for g in graph.gates}
  assert gates["stem"].spatial == (112, 112) and gates["stage1_block0/out"].spatial == (56, 56)
  assert gates["stage4_block1/out"].spatial == (7, 7)
  # layer1 keeps the stem's 64-channel stream (no downsample); the later stages open new ones.
  assert gates["stage1_block1/out"].space == "stem"
  shortcuts = [l.key for l in graph.layers if l.path[-1] == "shortcut"]
  assert shortcuts == ["stage2_block0/shortcut", "stage3_block0/shortcut", "stage4_block0/shortcut"]
  assert [(l.kernel, l.stride) for l in graph.layers if l.key.startswith("stage2_block0/")] == [
      (3, 2), (3, 1), (1, 2)]


def test_alexnet_caffe_widths():
  graph = models.describe(models.create("alexnet_caffe", **IMAGENET))
  assert [(g.key, g.channels, g.spatial) for g in graph.gates] == [
      ("conv1", 96, (55, 55)), ("conv2", 256, (27, 27)), ("conv3", 384, (13, 13)),
      ("conv4", 384, (13, 13)), ("conv5", 256, (13, 13))]
  fc1 = [l for l in graph.layers if l.key == "fc1"][0]
  assert (fc1.in_channels, fc1.in_positions) == (256, 36)


def test_convnet5_describe():
  graph = models.describe(models.create("convnet5", **MNIST))
  assert [(g.key, g.channels, g.spatial) for g in graph.gates] == [
      ("conv1", 32, (28, 28)), ("conv2", 32, (28, 28)), ("conv3", 64, (14, 14)), ("conv4", 64, (14, 14))]
  assert [(l.key, l.src, l.in_positions) for l in graph.layers if l.kind == "dense"] == [("fc", "conv4", 49)]


@pytest.mark.parametrize("name", ["vgg16_torchvision", "vgg16_bn_torchvision", "resnet18_torchvision",
                                  "alexnet_caffe", "convnet5"])
def test_output_shapes(name):
  for size, channels, classes in [(28, 1, 7), (32, 3, 100), (224, 3, 1000)]:
    model = models.create(name, num_classes=classes, image_size=size, input_channels=channels)
    x = jax.ShapeDtypeStruct((2, size, size, channels), jnp.float32)
    shapes = jax.eval_shape(lambda: models.init(model, jax.random.PRNGKey(0)))
    out = jax.eval_shape(lambda v, x: models.apply(model, v, x), shapes, x)
    assert out.shape == (2, classes), (name, size)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 14])
def test_floor_max_pool_matches_torch(size):
  torch = pytest.importorskip("torch")
  x = np.random.default_rng(size).normal(size=(2, size, size, 3)).astype(np.float32)
  ours = np.asarray(vgg.floor_max_pool_2x2(jnp.asarray(x)))
  if size == 1:  # torch refuses a 0-pixel output; jaxdr passes the pixel on
    np.testing.assert_array_equal(ours, x)
    return
  ref = torch.nn.functional.max_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), 2, 2)
  np.testing.assert_array_equal(ours, ref.permute(0, 2, 3, 1).numpy())


def test_torchvision_vgg_dropout_only_with_train_and_rng(tiny, images):
  model, variables = tiny("vgg16_torchvision", image_size=32)
  x = images(2, size=32)
  eval_logits = models.apply(model, variables, x)
  np.testing.assert_array_equal(models.apply(model, variables, x, train=True)[0], eval_logits)
  dropped = models.apply(model, variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(0)})[0]
  assert not np.allclose(dropped, eval_logits)
