"""Pretrained weights from PyTorch (jaxdr.torch_weights, checkpoints.load_pretrained, the
``python -m jaxdr.torch_import`` CLI).

For every importable architecture a torch model in torchvision's layout
(tests/torchvision_reference.py) gets random weights and BN statistics here, is saved with
``torch.save(model.state_dict())``, imported, and its eval-mode logits equal jaxdr's within
1e-4 (width-reduced models on small images); the full-size key / shape layouts equal
torchvision's, on torch's meta device (no memory, no forward pass). Tests that read .pth
files skip when torch is not installed; the errors are checked without it.
"""
import sys

import jax
import numpy as np
import pytest

from jaxdr import checkpoints, costs, models, torch_import, torch_weights
from jaxdr.models import alexnet, vgg

NO_TORCH = "PyTorch is not installed (python3 -m pip install torch==2.13.0); the import tests need it"


@pytest.fixture(scope="module")
def tv():
  pytest.importorskip("torch", reason=NO_TORCH)
  from tests import torchvision_reference  # pylint: disable=g-import-not-at-top
  return torchvision_reference


def _scaled(cfg, w):
  return tuple(v if v == "M" else max(1, round(v * w)) for v in cfg)


W = 1 / 16
# name -> (jaxdr create kwargs, torch reference factory (tv -> module), image size). Widths
# are jaxdr's at `width` (round(default * width)); VGG / AlexNet at 224 end on 7x7 / 6x6 maps,
# so every row permutation of fc1 is exercised (smaller images replicate one pixel).
SMALL = {
    "vgg16_torchvision": (dict(width=W), lambda tv: tv.VGG(_scaled(vgg.VGG16, W), False, 10, 256),
                          224),
    "vgg16_bn_torchvision": (dict(width=W), lambda tv: tv.VGG(_scaled(vgg.VGG16, W), True, 10, 256),
                             224),
    "resnet18_torchvision": (dict(width=W), lambda tv: tv.ResNet(tv.BasicBlock, (2, 2, 2, 2), 10,
                                                                 (4, 8, 16, 32), 4), 64),
    "resnet50": (dict(width=W), lambda tv: tv.ResNet(tv.Bottleneck, (3, 4, 6, 3), 10, (4, 8, 16, 32), 4),
                 64),
    "resnet101": (dict(width=W), lambda tv: tv.ResNet(tv.Bottleneck, (3, 4, 23, 3), 10, (4, 8, 16, 32),
                                                      4), 64),
    "mobilenet_v2": (dict(width=0.25), lambda tv: tv.MobileNetV2(10, 0.25), 64),
    "alexnet": (dict(width=W), lambda tv: tv.AlexNet(10, _scaled([w for w, *_ in alexnet.FEATURES], W), 256),
                224),
    "alexnet_caffe": (dict(width=W), lambda tv: tv.AlexNet(
        10, _scaled([w for w, *_ in alexnet.CAFFE_FEATURES], W), 256), 224),
}
# name -> torch reference at full size (1000 classes) and torchvision's published parameter count.
FULL = {
    "vgg16_torchvision": (lambda tv: tv.VGG(vgg.VGG16, False), 138_357_544),
    "vgg16_bn_torchvision": (lambda tv: tv.VGG(vgg.VGG16, True), 138_365_992),
    "resnet18_torchvision": (lambda tv: tv.ResNet(tv.BasicBlock, (2, 2, 2, 2)), 11_689_512),
    "resnet50": (lambda tv: tv.ResNet(tv.Bottleneck, (3, 4, 6, 3)), 25_557_032),
    "resnet101": (lambda tv: tv.ResNet(tv.Bottleneck, (3, 4, 23, 3)), 44_549_160),
    "mobilenet_v2": (lambda tv: tv.MobileNetV2(), 3_504_872),
    "mobilenet_v2_1.4": (lambda tv: tv.MobileNetV2(width_mult=1.4), 6_108_776),
    "alexnet": (lambda tv: tv.AlexNet(), 61_100_840),
    "alexnet_caffe": (lambda tv: tv.AlexNet(widths=(96, 256, 384, 384, 256)), 62_378_344),
}


def test_every_importable_model_is_tested():
  assert set(FULL) == set(torch_weights.IMPORTABLE)
  assert set(SMALL) == set(FULL) - {"mobilenet_v2_1.4"}  # mobilenet_v2 at another width


def _small(tv, name, tmp_path):
  """(jaxdr model kwargs, images NHWC, torch logits, path of the saved state_dict)."""
  import torch  # pylint: disable=g-import-not-at-top
  kwargs, factory, size = SMALL[name]
  net = tv.randomize_(factory(tv), seed=len(name))
  x = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype(np.float32)
  with torch.no_grad():
    ref = net(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
  path = tmp_path / f"{name}.pth"
  torch.save(net.state_dict(), path)
  model_kwargs = dict(name=name, num_classes=10, image_size=size, input_channels=3, conv_impl="xla", **kwargs)
  return model_kwargs, x, ref, path


@pytest.mark.parametrize("name", sorted(SMALL))
def test_logits_equal_torch(name, tv, tmp_path):
  model_kwargs, x, ref, path = _small(tv, name, tmp_path)
  model, variables = checkpoints.load_pretrained(path, model_kwargs)
  ours = np.asarray(jax.jit(lambda v, x: models.apply(model, v, x))(variables, x))
  assert np.std(ref) > 0.1  # logits of order 1: the tolerance means something
  assert np.max(np.abs(ours - ref)) <= 1e-4


@pytest.mark.parametrize("name", ["vgg16_torchvision", "alexnet"])
def test_flattening_fc_needs_its_rows_reordered(name, tv, tmp_path):
  """fc1 without the (C, H, W) -> (H, W, C) row order gives other logits: the test above sees it."""
  model_kwargs, x, ref, path = _small(tv, name, tmp_path)
  model, variables = checkpoints.load_pretrained(path, model_kwargs)
  key = "classifier.0.weight" if name.startswith("vgg") else "classifier.1.weight"
  weight = torch_weights.read_pth(path)[key]
  variables["params"]["fc1"]["dense"]["kernel"] = weight.T
  naive = np.asarray(jax.jit(lambda v, x: models.apply(model, v, x))(variables, x))
  assert np.max(np.abs(naive - ref)) > 1e-2


@pytest.mark.parametrize("name", sorted(FULL))
def test_full_size_layout_is_torchvisions(name, tv):
  """Keys (in state_dict order) and shapes of torchvision's full-size model, 1000 classes."""
  import torch  # pylint: disable=g-import-not-at-top
  factory, published = FULL[name]
  with torch.device("meta"):
    net = factory(tv)
  shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()
            if not k.endswith("num_batches_tracked")}
  model = models.create(name, num_classes=1000, image_size=224)
  assert list(torch_weights.expected_shapes(model).items()) == list(shapes.items())
  assert sum(p.numel() for p in net.parameters()) == published == costs.count(model).params


def _numpy_state(model, seed=0):
  rng = np.random.default_rng(seed)
  return {k: rng.normal(size=s).astype(np.float32) for k, s in torch_weights.expected_shapes(model).items()}


def _tiny_alexnet(**kw):
  return models.create("alexnet", **{**dict(num_classes=10, image_size=64, width=W), **kw})


def test_bad_state_dicts_name_the_key():
  model = _tiny_alexnet()
  good = _numpy_state(model)
  missing = {k: v for k, v in good.items() if k != "features.3.bias"}
  with pytest.raises(torch_weights.TorchImportError, match=r"missing key 'features.3.bias'$"):
    torch_weights.from_state_dict(model, missing)
  extra = dict(good, **{"features.99.weight": np.zeros(3)})
  with pytest.raises(torch_weights.TorchImportError, match=r"unexpected key 'features.99.weight'$"):
    torch_weights.from_state_dict(model, extra)
  with pytest.raises(torch_weights.TorchImportError,
                     match=r"f.pth: 'classifier.6.weight' has shape \(10, 256\), AlexNet\(num_classes=7"):
    torch_weights.from_state_dict(_tiny_alexnet(num_classes=7), good, source="f.pth")
  resnet = models.create("resnet50", num_classes=10, image_size=32, width=W)
  with pytest.raises(torch_weights.TorchImportError, match=r"missing key 'conv1.weight' \(\d+ keys missing\); "
                     r"unexpected key 'features.0.weight' \(16 keys unexpected\)"):
    torch_weights.from_state_dict(resnet, good)
  with pytest.raises(torch_weights.TorchImportError, match="no torchvision layout for LeNet5"):
    torch_weights.from_state_dict(models.create("lenet5"), good)


def test_data_parallel_prefix_and_batch_counters_are_accepted():
  model = models.create("resnet18_torchvision", num_classes=10, image_size=32, width=W)
  state = _numpy_state(model)
  wrapped = {f"module.{k}": v for k, v in state.items()}
  wrapped["module.bn1.num_batches_tracked"] = np.array(3)
  a, b = torch_weights.from_state_dict(model, state), torch_weights.from_state_dict(model, wrapped)
  assert jax.tree.all(jax.tree.map(np.array_equal, a, b))
  np.testing.assert_array_equal(a["batch_stats"]["stem"]["bn"]["var"], state["bn1.running_var"])
  np.testing.assert_array_equal(a["params"]["stem"]["kernel"], state["conv1.weight"].transpose(2, 3, 1, 0))


def test_without_torch_one_clear_error(tmp_path, monkeypatch, capsys):
  monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
  with pytest.raises(torch_weights.TorchImportError, match=r"needs PyTorch.*pip install torch==2.13.0"):
    torch_weights.read_pth(tmp_path / "x.pth")
  assert torch_import.main(["--model=alexnet", f"--pth={tmp_path / 'x.pth'}", f"--out={tmp_path / 'o'}"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("jaxdr: error: reading PyTorch weights (.pth) needs PyTorch") and err.count("\n") == 1


def test_read_pth_unwraps_and_refuses(tv, tmp_path):
  import torch  # pylint: disable=g-import-not-at-top
  state = {"features.0.weight": torch.ones(2, 3), "features.0.bias": torch.zeros(2, dtype=torch.float16)}
  torch.save({"state_dict": state, "epoch": 3}, tmp_path / "ckpt.pth")
  got = torch_weights.read_pth(tmp_path / "ckpt.pth")
  assert sorted(got) == sorted(state) and got["features.0.bias"].dtype == np.float32
  torch.save(torch.ones(3), tmp_path / "tensor.pth")
  with pytest.raises(torch_weights.TorchImportError, match="holds a Tensor, not a state_dict"):
    torch_weights.read_pth(tmp_path / "tensor.pth")
  with pytest.raises(torch_weights.TorchImportError, match="no such PyTorch weights file"):
    torch_weights.read_pth(tmp_path / "missing.pth")
  (tmp_path / "junk.pth").write_text("not a torch file")
  with pytest.raises(torch_weights.TorchImportError, match="cannot read .*junk.pth as a PyTorch state_dict"):
    torch_weights.read_pth(tmp_path / "junk.pth")


def test_cli_writes_a_jaxdr_model(tv, tmp_path, capsys):
  import torch  # pylint: disable=g-import-not-at-top
  net = tv.randomize_(tv.AlexNet(10, _scaled([w for w, *_ in alexnet.FEATURES], W), 256))
  torch.save(net.state_dict(), tmp_path / "a.pth")
  args = ["--model=alexnet", "--num_classes=10", "--image_size=64", f"--width={W}",
          f"--pth={tmp_path / 'a.pth'}"]
  assert torch_import.main(args + [f"--out={tmp_path / 'out'}"]) == 0
  assert "alexnet" in capsys.readouterr().out
  model, saved = checkpoints.load_model(tmp_path / "out")
  # A saved model as `pretrained`: load_pretrained is load_model (the model kwargs are unused).
  _, again = checkpoints.load_pretrained(tmp_path / "out", dict(name="vgg16"))
  direct = torch_weights.load_pth(tmp_path / "a.pth", model)
  assert model == _tiny_alexnet()
  for tree in (saved, again):
    assert jax.tree.all(jax.tree.map(np.array_equal, tree, direct))
  # Errors: one line, exit 2, naming what is wrong.
  assert torch_import.main(["--model=alexnett", "--pth=a", "--out=b"]) == 2
  assert "jaxdr: error: unknown model 'alexnett'; nearest: alexnet" in capsys.readouterr().err
  assert torch_import.main(args[1:] + ["--model=alexnet_caffe", f"--out={tmp_path / 'o2'}"]) == 2
  assert "'features.0.weight' has shape (4, 3, 11, 11)" in capsys.readouterr().err
  assert torch_import.main(["--model=alexnet"]) == 2
  assert "required: --pth, --out" in capsys.readouterr().err


def test_config_pretrained_pth_is_what_a_method_loads(tv, tmp_path):
  """``--config.pretrained=file.pth``: every method's base model (toolkit.base.load_or_train)
  is the import into the config's model, with no training."""
  import torch  # pylint: disable=g-import-not-at-top
  from configs import quickstart  # pylint: disable=g-import-not-at-top
  from jaxdr.toolkit import base  # pylint: disable=g-import-not-at-top
  net = tv.randomize_(tv.AlexNet(10, _scaled([w for w, *_ in alexnet.FEATURES], W), 256))
  torch.save(net.state_dict(), tmp_path / "a.pth")
  config = quickstart.get_config()
  config.model.name, config.model.width = "alexnet", W
  config.dataset.image_size, config.dataset.input_channels = 64, 3
  config.pretrained = str(tmp_path / "a.pth")
  model, variables = base.load_or_train(config, tmp_path / "work")
  assert model == _tiny_alexnet(conv_impl=config.model.conv_impl) and not (tmp_path / "work").exists()
  direct = torch_weights.load_pth(tmp_path / "a.pth", model)
  assert jax.tree.all(jax.tree.map(np.array_equal, variables, direct))
