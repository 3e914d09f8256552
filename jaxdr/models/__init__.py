"""The model zoo: every model is a pure function of (variables, images, mask, train).

    model = models.create("resnet56", num_classes=10)
    variables = models.init(model, jax.random.PRNGKey(0))
    logits = models.apply(model, variables, images, mask)            # eval mode
    logits, new_state = models.apply(model, variables, images, mask, train=True)
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdr.models import alexnet, dmnn_nets, lenet, mobilenet, resnet, vgg
from jaxdr.models import convnet  # DRNet Fig. 8's MNIST net
from jaxdr.models.graph import Graph, Layer, describe  # noqa: F401
from jaxdr.ops import CONV_IMPLS, native_conv  # noqa: F401

_ARCHS: Dict[str, Callable[..., nn.Module]] = {
    "vgg16": lambda **kw: vgg.VGG(**kw),
    "vgg16_torchvision": lambda **kw: vgg.TorchvisionVGG(**kw),
    "vgg16_bn_torchvision": lambda **kw: vgg.TorchvisionVGG(batch_norm=True, **kw),
    "resnet18": lambda **kw: resnet.ResNet(stage_sizes=(2, 2, 2, 2), stage_widths=(64, 128, 256, 512),
                                           stem_width=64, **kw),
    "resnet8": lambda **kw: resnet.ResNet(stage_sizes=(1, 1, 1), **kw),
    "resnet18_torchvision": lambda **kw: resnet.ResNet(
        stage_sizes=(2, 2, 2, 2), stage_widths=(64, 128, 256, 512), stem_width=64, imagenet_stem=True, **kw),
    "resnet20": lambda **kw: resnet.ResNet(stage_sizes=(3, 3, 3), **kw),
    "resnet56": lambda **kw: resnet.ResNet(stage_sizes=(9, 9, 9), **kw),
    "resnet110": lambda **kw: resnet.ResNet(stage_sizes=(18, 18, 18), **kw),
    "resnet50": lambda **kw: resnet.ResNet(stage_sizes=(3, 4, 6, 3), stage_widths=(64, 128, 256, 512),
                                           stem_width=64, bottleneck=True, imagenet_stem=True, **kw),
    "resnet101": lambda **kw: resnet.ResNet(stage_sizes=(3, 4, 23, 3), stage_widths=(64, 128, 256, 512),
                                            stem_width=64, bottleneck=True, imagenet_stem=True, **kw),
    # ResNet-50 on 32x32 inputs: 3x3 stride-1 stem, no max-pool (the twin of 'dmnn50_cifar').
    "resnet50_cifar": lambda **kw: resnet.ResNet(stage_sizes=(3, 4, 6, 3), stage_widths=(64, 128, 256, 512),
                                                 stem_width=64, bottleneck=True, **kw),
    "mobilenet_v2": lambda **kw: mobilenet.MobileNetV2(**kw),
    "mobilenet_v2_1.4": lambda **kw: mobilenet.MobileNetV2(**dict(kw, width=1.4 * kw.get("width", 1.0))),
    "mobilenet_v2_cifar": lambda **kw: mobilenet.MobileNetV2(stages=mobilenet.CIFAR_STAGES, stem_stride=1,
                                                             **kw),
    "lenet5": lambda **kw: lenet.LeNet5(**kw),
    "alexnet": lambda **kw: alexnet.AlexNet(**kw),
    "alexnet_caffe": lambda **kw: alexnet.AlexNet(conv_layers=alexnet.CAFFE_FEATURES, **kw),
    "convnet5": lambda **kw: convnet.ConvNet5(**kw),
}


# The static architectures jaxdr ships (what `register` adds later is not among them).
ZOO = tuple(sorted(_ARCHS))
# Architecture options beyond the Backbone fields a factory accepts (`create(name, **options)`).
_OPTIONS: Dict[str, Tuple[str, ...]] = {}


def register(name: str, factory: Callable[..., nn.Module], options: Sequence[str] = ()) -> None:
  """Adds an architecture: ``factory(**Backbone fields, **options) -> module``; ``options``
  names the extra constructor arguments it takes (saved with the model by `checkpoints`)."""
  _ARCHS[name] = factory
  _OPTIONS[name] = tuple(options)


def options(name: str) -> Tuple[str, ...]:
  """The extra constructor arguments architecture ``name`` takes (DMNN: paths, ...)."""
  return _OPTIONS.get(name, ())


# DMNN (jaxdr/models/dmnn.py): dynamic networks whose blocks are N gated sub-blocks.
DMNN = tuple(sorted(dmnn_nets.ARCHS))
for _name, (_factory, _) in dmnn_nets.ARCHS.items():
  register(_name, _factory, dmnn_nets.OPTIONS)


def names():
  return sorted(_ARCHS)


def create(name: str, *, num_classes: int = 10, image_size: int = 32, input_channels: int = 3,
           width: float = 1.0, conv_impl: str = "auto", channels: Mapping[str, int] = (),
           **arch_options) -> nn.Module:
  """Builds architecture ``name``; ``channels`` (space -> width) is what surgery sets;
  ``arch_options``: the architecture's own options (`options(name)`, e.g. DMNN's ``paths``).

  ``conv_impl`` (`jaxdr.ops.conv`) is how the convs run, not part of the model's identity:
  the variables are the same for every value. 'native' loads jaxdr's native conv kernel here,
  outside any trace (where it cannot run, it logs why once and the model runs as 'auto')."""
  if name not in _ARCHS:
    raise ValueError(f"unknown model {name!r}; known models: {', '.join(names())}")
  if conv_impl not in CONV_IMPLS:
    raise ValueError(f"conv_impl must be one of {CONV_IMPLS}, got {conv_impl!r}")
  unknown = sorted(set(arch_options) - set(options(name)))
  if unknown:
    raise ValueError(f"model {name!r} takes no option(s) {unknown}; its options: "
                     f"{', '.join(options(name)) or 'none'}")
  if conv_impl == "native":
    native_conv.load()
  channels = tuple(sorted(dict(channels).items()))
  # JSON (model.json) gives lists; module fields must be hashable (graph caches key on them).
  arch_options = {k: tuple(v) if isinstance(v, list) else v for k, v in arch_options.items()}
  return _ARCHS[name](num_classes=num_classes, image_size=image_size, input_channels=input_channels,
                      width=width, conv_impl=conv_impl, channels=channels, **arch_options)


def init(model: nn.Module, rng: jax.Array) -> Dict[str, Any]:
  """Variables ``{'params': ..., 'batch_stats': ...}`` for ``model``."""
  x = jnp.zeros((1, model.image_size, model.image_size, model.input_channels), jnp.float32)
  return dict(jax.jit(lambda r: model.init(r, x, train=False))(rng))


def apply(model: nn.Module, variables: Mapping[str, Any], images: jnp.ndarray,
          mask: Optional[Mapping[str, jnp.ndarray]] = None, train: bool = False,
          rngs: Optional[Mapping[str, jax.Array]] = None):
  """Logits [N, classes] for images [N, H, W, C]; with ``train`` also the new batch_stats.
  ``rngs``: Flax rng streams (e.g. 'dropout', which acts only with ``train``)."""
  if train:
    logits, state = model.apply(variables, images, mask, True, mutable=["batch_stats"], rngs=rngs)
    return logits, state.get("batch_stats", {})
  return model.apply(variables, images, mask, False, rngs=rngs)
