"""Pretrained PyTorch weights: a torchvision-layout ``state_dict`` as jaxdr variables.

    model = models.create("vgg16_torchvision", num_classes=1000, image_size=224)
    variables = torch_weights.load_pth("vgg16-397923af.pth", model)     # needs torch installed
    variables = torch_weights.from_state_dict(model, {key: numpy array})  # no torch needed

Architectures and the torchvision modules whose ``state_dict`` keys they read:
  * `vgg.TorchvisionVGG` (``vgg16_torchvision``, ``vgg16_bn_torchvision``): ``features.N``
    (conv, then its BN at N+1), ``classifier.0/3/6``;
  * `resnet.ResNet` (``resnet18_torchvision``, ``resnet50``, ``resnet101``): ``conv1``/``bn1``,
    ``layerS.B.convK``/``bnK``, ``layerS.B.downsample.0/1``, ``fc``;
  * `mobilenet.MobileNetV2` (``mobilenet_v2``, ``mobilenet_v2_1.4``): ``features.0.0/1``,
    ``features.I.conv.J[.0/1]``, ``features.18.0/1``, ``classifier.1``;
  * `alexnet.AlexNet` (``alexnet``, ``alexnet_caffe``: the file's widths must match):
    ``features.0/3/6/8/10``, ``classifier.1/4/6``.
(jaxdr's CIFAR ResNets and ``mobilenet_v2_cifar`` are read by the same rules; torchvision has no
such models to check them against, so they are not in `IMPORTABLE`.)
Conversions: conv weight OIHW -> kernel HWIO (a depthwise [C, 1, k, k] -> [k, k, 1, C]); linear
weight [out, in] -> kernel [in, out]; a linear layer after a spatial map (VGG's and AlexNet's
fc1) also has its rows reordered from torch's (C, H, W) flattening to jaxdr's (H, W, C); BN
weight / bias / running_mean / running_var -> ``bn`` scale / bias and batch_stats mean / var
(jaxdr's BN uses torch's eps 1e-5). ``num_batches_tracked`` is ignored. A file that does not
match the model exactly (a missing, unexpected or mis-shaped key) is one `TorchImportError`
naming the key. Torch is imported only when a ``.pth`` file is read (it is not a jaxdr
dependency: ``pip install torch==2.13.0``).
"""
from __future__ import annotations

import dataclasses
import importlib
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

from etils import epath
import flax.linen as nn
import jax
import numpy as np

from jaxdr import models
from jaxdr.errors import UserError
from jaxdr.models import alexnet, mobilenet, resnet, vgg

PTH_SUFFIXES = (".pth", ".pt")


class TorchImportError(UserError, ValueError):
  """A PyTorch weights file is unreadable or does not match the model it is imported into."""


@dataclasses.dataclass(frozen=True)
class Entry:
  """One torch tensor and the jaxdr leaf it becomes. ``kind``: 'conv' (OIHW -> HWIO),
  'dense' (transposed; rows reordered when ``positions`` > 1) or 'vector' (as is)."""
  key: str
  collection: str  # 'params' | 'batch_stats'
  path: Tuple[str, ...]
  kind: str
  positions: int = 1


def _vgg_names(model: vgg.TorchvisionVGG, graph) -> Dict[Tuple[str, ...], Tuple[str, Optional[str]]]:
  names, index, conv = {}, 0, 0
  for v in model.cfg:
    if v == "M":
      index += 1
      continue
    names[(f"conv{conv}",)] = (f"features.{index}", f"features.{index + 1}" if model.batch_norm else None)
    index, conv = index + (3 if model.batch_norm else 2), conv + 1
  names.update({("fc1",): ("classifier.0", None), ("fc2",): ("classifier.3", None),
                ("fc3",): ("classifier.6", None)})
  return names


def _resnet_names(model: resnet.ResNet, graph) -> Dict[Tuple[str, ...], Tuple[str, Optional[str]]]:
  names = {("stem",): ("conv1", "bn1"), ("classifier",): ("fc", None)}
  for layer in graph.layers:
    m = re.fullmatch(r"stage(\d+)_block(\d+)", layer.path[0])
    if not m:
      continue
    base = f"layer{m.group(1)}.{m.group(2)}"
    unit = layer.path[1]
    if unit == "shortcut":
      names[layer.path] = (f"{base}.downsample.0", f"{base}.downsample.1")
    else:  # convK
      names[layer.path] = (f"{base}.{unit}", f"{base}.bn{unit[4:]}")
  return names


def _mobilenet_names(model: mobilenet.MobileNetV2, graph) -> Dict[Tuple[str, ...], Tuple[str, Optional[str]]]:
  blocks = list(dict.fromkeys(l.path[0] for l in graph.layers if l.path[0].startswith("stage")))
  expands = {l.path[0] for l in graph.layers if l.path[-1] == "expand"}
  names = {("stem",): ("features.0.0", "features.0.1"),
           ("head",): (f"features.{len(blocks) + 1}.0", f"features.{len(blocks) + 1}.1"),
           ("classifier",): ("classifier.1", None)}
  for i, block in enumerate(blocks, start=1):
    base, j = f"features.{i}.conv", int(block in expands)
    if j:
      names[(block, "expand")] = (f"{base}.0.0", f"{base}.0.1")
    names[(block, "dw")] = (f"{base}.{j}.0", f"{base}.{j}.1")
    names[(block, "project")] = (f"{base}.{j + 1}", f"{base}.{j + 2}")
  return names


def _alexnet_names(model: alexnet.AlexNet, graph) -> Dict[Tuple[str, ...], Tuple[str, Optional[str]]]:
  names, index = {}, 0
  for i, (*_, pool) in enumerate(model.conv_layers, start=1):
    names[(f"conv{i}",)] = (f"features.{index}", None)
    index += 3 if pool else 2  # conv, ReLU[, max pool]
  names.update({("fc1",): ("classifier.1", None), ("fc2",): ("classifier.4", None),
                ("fc3",): ("classifier.6", None)})
  return names


_LAYOUTS = ((vgg.TorchvisionVGG, _vgg_names), (resnet.ResNet, _resnet_names),
            (mobilenet.MobileNetV2, _mobilenet_names), (alexnet.AlexNet, _alexnet_names))
# Zoo models with a torchvision counterpart (tests/test_torch_import.py checks each).
IMPORTABLE = ("alexnet", "alexnet_caffe", "mobilenet_v2", "mobilenet_v2_1.4", "resnet101",
              "resnet18_torchvision", "resnet50", "vgg16_bn_torchvision", "vgg16_torchvision")


def layout(model: nn.Module) -> List[Entry]:
  """Every torch tensor ``model`` reads, in the model's layer order (no torch needed)."""
  namer = next((f for cls, f in _LAYOUTS if isinstance(model, cls)), None)
  if namer is None:
    raise TorchImportError(f"no torchvision layout for {type(model).__name__}; PyTorch weights import "
                           f"into {', '.join(IMPORTABLE)}")
  graph = models.describe(model)
  names = namer(model, graph)
  entries = []
  for layer in graph.layers:
    weight, bn = names[layer.path]
    if layer.kind == "dense":
      entries += [Entry(f"{weight}.weight", "params", layer.path + ("dense", "kernel"), "dense",
                        layer.in_positions),
                  Entry(f"{weight}.bias", "params", layer.path + ("dense", "bias"), "vector")]
      continue
    entries.append(Entry(f"{weight}.weight", "params", layer.path + ("kernel",), "conv"))
    if layer.use_bias:
      entries.append(Entry(f"{weight}.bias", "params", layer.path + ("bias",), "vector"))
    if layer.use_bn:
      bn_path = layer.path + ("bn",)
      entries += [Entry(f"{bn}.weight", "params", bn_path + ("scale",), "vector"),
                  Entry(f"{bn}.bias", "params", bn_path + ("bias",), "vector"),
                  Entry(f"{bn}.running_mean", "batch_stats", bn_path + ("mean",), "vector"),
                  Entry(f"{bn}.running_var", "batch_stats", bn_path + ("var",), "vector")]
  return entries


def _abstract_variables(model: nn.Module) -> Dict[str, Any]:
  return jax.eval_shape(lambda: models.init(model, jax.random.PRNGKey(0)))


def _get(tree, path):
  for p in path:
    tree = tree[p]
  return tree


def _torch_shape(entry: Entry, shape: Tuple[int, ...]) -> Tuple[int, ...]:
  if entry.kind == "conv":
    kh, kw, cin, cout = shape
    return (cout, cin, kh, kw)
  if entry.kind == "dense":
    return (shape[1], shape[0])
  return tuple(shape)


def _expected(entries: List[Entry], abstract: Mapping[str, Any]) -> Dict[str, Tuple[int, ...]]:
  return {e.key: _torch_shape(e, _get(abstract[e.collection], e.path).shape) for e in entries}


def expected_shapes(model: nn.Module) -> Dict[str, Tuple[int, ...]]:
  """torch key -> the shape its tensor must have for ``model`` (its state_dict, less
  ``num_batches_tracked``); computed from shapes alone."""
  return _expected(layout(model), _abstract_variables(model))


def _convert(entry: Entry, array: np.ndarray) -> np.ndarray:
  if entry.kind == "conv":
    return array.transpose(2, 3, 1, 0)
  if entry.kind == "dense":
    out, rows = array.shape
    channels = rows // entry.positions  # torch rows (c, p) -> jaxdr rows (p, c), p = h * W + w
    return array.reshape(out, channels, entry.positions).transpose(2, 1, 0).reshape(rows, out)
  return array


def _describe_model(model: nn.Module) -> str:
  return (f"{type(model).__name__}(num_classes={model.num_classes}, input_channels={model.input_channels}, "
          f"width={model.width})")


def _plural(n: int, what: str) -> str:
  return f"{n} {what}{'' if n == 1 else 's'}"


def _check_keys(model: nn.Module, state: Mapping[str, np.ndarray], want: Mapping[str, Tuple[int, ...]],
                source: str) -> None:
  missing = [k for k in want if k not in state]
  unexpected = [k for k in state if k not in want]
  if missing or unexpected:
    parts = []
    if missing:
      parts.append(f"missing key {missing[0]!r}" + (f" ({_plural(len(missing), 'key')} missing)"
                                                    if len(missing) > 1 else ""))
    if unexpected:
      parts.append(f"unexpected key {unexpected[0]!r}" + (f" ({_plural(len(unexpected), 'key')} unexpected)"
                                                          if len(unexpected) > 1 else ""))
    raise TorchImportError(f"{source} does not match the torchvision layout of {_describe_model(model)}: "
                           + "; ".join(parts))
  for key, shape in want.items():
    got = tuple(np.shape(state[key]))
    if got != shape:
      raise TorchImportError(f"{source}: {key!r} has shape {got}, {_describe_model(model)} needs {shape} "
                             "(check num_classes, input_channels, width and the architecture)")


def _strip_wrappers(state: Mapping[str, Any]) -> Dict[str, Any]:
  """Drops ``num_batches_tracked`` and a ``module.`` prefix on every key (DataParallel)."""
  state = {str(k): v for k, v in state.items() if not str(k).endswith("num_batches_tracked")}
  if state and all(k.startswith("module.") for k in state):
    state = {k[len("module."):]: v for k, v in state.items()}
  return state


def _shapes(tree) -> Dict[str, Any]:
  """Nested dict of leaf shapes, without empty collections."""
  return {k: v for k, v in jax.tree.map(lambda x: tuple(np.shape(x)), dict(tree),
                                        is_leaf=lambda x: hasattr(x, "shape")).items() if v}


def from_state_dict(model: nn.Module, state_dict: Mapping[str, Any], source: str = "state_dict"
                    ) -> Dict[str, Any]:
  """``{'params': ..., 'batch_stats': ...}`` (float32 numpy) for ``model`` from a torchvision-layout
  ``state_dict`` of numpy arrays (or anything ``np.asarray`` takes). ``source`` names it in errors."""
  state = _strip_wrappers(state_dict)
  entries, abstract = layout(model), _abstract_variables(model)
  _check_keys(model, state, _expected(entries, abstract), source)
  variables: Dict[str, Any] = {}
  for e in entries:
    node = variables.setdefault(e.collection, {})
    for p in e.path[:-1]:
      node = node.setdefault(p, {})
    node[e.path[-1]] = _convert(e, np.asarray(state[e.key], np.float32))
  if _shapes(variables) != _shapes(abstract):  # a bug in the layout, not in the file
    raise AssertionError(f"torchvision layout of {type(model).__name__} does not cover its variables")
  return variables


def _torch():
  try:
    return importlib.import_module("torch")  # optional (the 'bench' extra): only here
  except ImportError as e:
    raise TorchImportError("reading PyTorch weights (.pth) needs PyTorch, which jaxdr does not install: "
                           "python3 -m pip install torch==2.13.0") from e


def read_pth(path) -> Dict[str, np.ndarray]:
  """The tensors of a ``torch.save``d state_dict (or of its ``'state_dict'`` / ``'model'``
  entry, as training scripts save them) as numpy arrays; tensors only (``weights_only``)."""
  torch = _torch()
  path = epath.Path(path)
  if not path.exists():
    raise TorchImportError(f"no such PyTorch weights file: {path}")
  try:
    with path.open("rb") as f:
      obj = torch.load(f, map_location="cpu", weights_only=True)
  except Exception as e:  # pickle / zip / torch errors of many types
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise TorchImportError(f"cannot read {path} as a PyTorch state_dict: {first}") from e
  for wrapper in ("state_dict", "model"):
    if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
      obj = obj[wrapper]
  if not isinstance(obj, Mapping):
    raise TorchImportError(f"{path} holds a {type(obj).__name__}, not a state_dict "
                           "(save model.state_dict(), not the model)")
  not_tensors = [k for k, v in obj.items() if not torch.is_tensor(v)]
  if not_tensors:
    raise TorchImportError(f"{path}: entry {not_tensors[0]!r} is not a tensor; expected a state_dict")
  return {k: (v.detach().float() if v.is_floating_point() else v.detach()).cpu().numpy()
          for k, v in obj.items()}


def load_pth(path, model: nn.Module) -> Dict[str, Any]:
  """Variables (jax arrays) of ``model`` from the torchvision-layout state_dict saved at ``path``."""
  variables = from_state_dict(model, read_pth(path), source=str(path))
  return jax.tree.map(jax.numpy.asarray, variables)
