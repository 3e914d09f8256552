"""DMNN architectures: ResNets (bottleneck DMNN-50/101, basic-block CIFAR DMNNs) and
MobileNetV2 whose blocks are split into N gated sub-blocks (`jaxdr.models.dmnn`).

Sub-block widths. The paper splits a block so that it keeps about the original block's
parameters (Eqs. 1-3); the exact widths are in a supplement nobody has.
  * Bottleneck (ImageNet DMNN-50/101): N sub-blocks of width c per stage, from
    `BOTTLENECK_SUB_WIDTHS` for N = 1..4, chosen so the totals (backbone + controllers, without
    the training-only category heads) match the paper's Table 1 within 1%:
      N=1 (64, 128, 256, 512)  the plain block (gating whole blocks);
      N=2 (40, 80, 152, 304)   stages 1-2 solve Eq. 1 = Eq. 2 (ResNeXt's 2x40d: c = 39.95 in
                               stage 1); the Eq. 1 = Eq. 2 widths 160 / 320 in stages 3-4 give
                               25.89M / 45.54M (+5% / +6% over the paper's 24.67M / 43.12M),
                               152 / 304 give 24.54M / 42.86M (-0.5% / -0.6%);
      N=3 (32, 64, 120, 240)   26.13M (paper: 25.81M, +1.2%);
      N=4 (24, 48, 96, 192)    ResNeXt's 4x24d: 25.82M (paper: 25.81M).
    Other N solve Eq. 1 = Eq. 2 for a stage's non-first block (C_in = C_out = 4w), rounded to
    a multiple of 4.
  * Basic blocks (CIFAR): both convs are 3x3, so parameters are linear in the inner width
    and c = w / N keeps them exactly (rounded to an integer).
  * MobileNetV2: each sub-block expands by t / N (hidden = round(C_in * t / N)): the sum of
    the sub-blocks has the block's convs exactly (plus N - 1 projection BNs). Blocks without
    an identity shortcut (stride 2 or a width change, 7 of 17) have no shortcut to fall back
    on when every sub-block is off, so they stay static (whole, always on, no controller).
    DMNN-MobileNetV2 N=2: 3.54M (paper 3.63M, -2.4%); 1.4x: 6.16M (paper 6.29M, -2.1%).
The `width` multiplier scales every width; ``channels`` (space -> width) overrides one, e.g.
``stage1_block0/sub0/conv1``.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp

from jaxdr.models import dmnn, layers, mobilenet

# Per-stage sub-block widths of the ImageNet bottleneck DMNNs (stage widths 64..512), by N.
BOTTLENECK_SUB_WIDTHS = {1: (64, 128, 256, 512), 2: (40, 80, 152, 304), 3: (32, 64, 120, 240),
                         4: (24, 48, 96, 192)}
RESNET_WIDTHS = (64, 128, 256, 512)
# Architecture options of every DMNN model (`models.create(name, **options)`).
OPTIONS = ("paths", "hidden", "categories", "previous_state", "temperature", "gate_bias", "dispatch",
           "buckets")


def solve_bottleneck_width(paths: int, width: int) -> int:
  """c with N (C c + 9 c^2 + c C) = C w + 9 w^2 + w C for C = 4w (Eq. 1 = Eq. 2), rounded to
  a multiple of 4 (at least 4)."""
  a, b, c0 = 9 * paths, 8 * paths * width, -17 * width * width
  root = (-b + math.sqrt(b * b - 4 * a * c0)) / (2 * a)
  return max(4, int(round(root / 4)) * 4)


def bottleneck_sub_widths(paths: int, stage_widths: Sequence[int] = RESNET_WIDTHS) -> Tuple[int, ...]:
  if tuple(stage_widths) == RESNET_WIDTHS and paths in BOTTLENECK_SUB_WIDTHS:
    return BOTTLENECK_SUB_WIDTHS[paths]
  return tuple(solve_bottleneck_width(paths, w) for w in stage_widths)


class DMNNNet(layers.Backbone):
  """Fields every DMNN model has (see `jaxdr.models.dmnn`): ``paths`` N >= 1, controller
  ``hidden`` d, ``categories`` K (0: no category heads), ``previous_state`` (W2 h_{l-1}),
  Gumbel ``temperature``, initial controller ``gate_bias`` (off, on), ``dispatch`` ('masked' |
  'skip') and ``buckets`` (capacities per batch of the 'skip' dispatch)."""
  paths: int = 2
  hidden: int = 32
  categories: int = 0
  previous_state: bool = True
  temperature: float = 1.0
  gate_bias: Tuple[float, float] = (0.1, 2.0)
  dispatch: str = "masked"
  buckets: int = 8

  def check(self):
    if self.paths < 1:
      raise ValueError(f"paths (N) must be >= 1, got {self.paths}")
    if self.dispatch not in dmnn.DISPATCHES:
      raise ValueError(f"dispatch must be one of {dmnn.DISPATCHES}, got {self.dispatch!r}")
    if self.hidden < 1 or self.categories < 0 or self.buckets < 1 or not self.temperature > 0:
      raise ValueError("hidden and buckets must be >= 1, categories >= 0, temperature > 0")

  def block_options(self):
    return dict(paths=self.paths, hidden=self.hidden, categories=self.categories,
                previous_state=self.previous_state, temperature=self.temperature,
                gate_bias=tuple(self.gate_bias), dispatch=self.dispatch, buckets=self.buckets, conv_impl=self.conv_impl)


class DMNNResNet(DMNNNet):
  """A ResNet (`jaxdr.models.resnet` layout: stem, stages, avg-pool, linear) of DMNN blocks.

  ``sub_widths``: per-stage sub-block width (None: `bottleneck_sub_widths`, or stage width / N
  for basic blocks). Gate points: ``stem``, ``stageS_blockB/{paths, subN/conv1, ..., out}``."""
  stage_sizes: Sequence[int] = (3, 3, 3)
  stage_widths: Sequence[int] = (16, 32, 64)
  sub_widths: Optional[Sequence[int]] = None
  stem_width: int = 16
  bottleneck: bool = False
  imagenet_stem: bool = False

  def stage_sub_widths(self) -> Tuple[int, ...]:
    if self.sub_widths is not None:
      return tuple(self.sub_widths)
    if self.bottleneck:
      return bottleneck_sub_widths(self.paths, self.stage_widths)
    return tuple(max(1, int(round(w / self.paths))) for w in self.stage_widths)

  @nn.compact
  def __call__(self, x, mask=None, train: bool = False):
    self.check()
    stem_key = layers.child_key(self, "stem")
    stem = self.width_of(stem_key, self.stem_width)
    if self.imagenet_stem:
      x = layers.ConvUnit(stem, kernel=7, stride=2, conv_impl=self.conv_impl, name="stem")(x, mask, train)
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    else:
      x = layers.ConvUnit(stem, conv_impl=self.conv_impl, name="stem")(x, mask, train)
    src, space, space_default, h = stem_key, stem_key, self.stem_width, None
    expansion = 4 if self.bottleneck else 1
    kind = "bottleneck" if self.bottleneck else "basic"
    for s, (blocks, width, sub) in enumerate(zip(self.stage_sizes, self.stage_widths, self.stage_sub_widths())):
      for b in range(blocks):
        name = f"stage{s + 1}_block{b}"
        block_key = layers.child_key(self, name)
        stride = 2 if (b == 0 and s > 0) else 1
        out_default = width * expansion
        projection = stride != 1 or out_default != space_default
        if projection:
          space, space_default = block_key + "/out", out_default
        # Sub-blocks share one width (their space keys may override it together).
        inner = self.width_of(f"{block_key}/sub0/conv1", sub)
        x, h = dmnn.DynamicBlock(kind=kind, width=inner, out_width=self.width_of(space, out_default),
                                 stride=stride, projection=projection, post_act=True, space=space,
                                 name=name, **self.block_options())(x, h, mask, train, src)
        src = block_key + "/out"
    x = jnp.mean(x, axis=(1, 2))
    return layers.DenseUnit(self.num_classes, name="classifier")(x, src=src)


class DMNNMobileNetV2(DMNNNet):
  """MobileNetV2 (`jaxdr.models.mobilenet` layout) whose identity-shortcut blocks are DMNN
  blocks of ``paths`` sub-blocks expanding by t / N; the other blocks stay static."""
  stages: Sequence[Tuple[int, int, int, int]] = mobilenet.IMAGENET_STAGES
  stem_stride: int = 2
  stem_width: int = 32
  head_width: int = 1280
  dropout: float = 0.2

  def width_of(self, space: str, default: float) -> int:
    return dict(self.channels).get(space, mobilenet.make_divisible(default * self.width))

  def _exact(self, space: str, default: int) -> int:
    return dict(self.channels).get(space, default)

  @nn.compact
  def __call__(self, x, mask=None, train: bool = False):
    self.check()
    stem_key = layers.child_key(self, "stem")
    x = layers.ConvUnit(self.width_of(stem_key, self.stem_width), kernel=3, stride=self.stem_stride,
                        act="relu6", conv_impl=self.conv_impl, name="stem")(x, mask, train)
    src, space = stem_key, stem_key
    in_default, h = mobilenet.make_divisible(self.stem_width * self.width), None
    for s, (t, c, n, first_stride) in enumerate(self.stages):
      out_default = mobilenet.make_divisible(c * self.width)
      for b in range(n):
        name = f"stage{s + 1}_block{b}"
        block_key = layers.child_key(self, name)
        stride = first_stride if b == 0 else 1
        residual = stride == 1 and in_default == out_default
        if not residual:
          space = block_key + "/out"
          hidden = None if t == 1 else self._exact(block_key + "/expand", int(round(in_default * t)))
          x = mobilenet.InvertedResidual(hidden=hidden, out_width=self._exact(space, out_default),
                                         stride=stride, residual=False, space=space,
                                         conv_impl=self.conv_impl, name=name)(x, mask, train, src=src)
        else:
          sub = self._exact(f"{block_key}/sub0/expand", max(1, int(round(in_default * t / self.paths))))
          x, h = dmnn.DynamicBlock(kind="inverted", width=sub, out_width=self._exact(space, out_default),
                                   stride=1, projection=False, post_act=False, space=space, name=name,
                                   **self.block_options())(x, h, mask, train, src)
        src, in_default = block_key + "/out", out_default
    head_key = layers.child_key(self, "head")
    head = self._exact(head_key, mobilenet.make_divisible(self.head_width * max(1.0, self.width)))
    x = layers.ConvUnit(head, kernel=1, act="relu6", conv_impl=self.conv_impl, name="head")(
        x, mask, train, src=src)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(self.dropout, deterministic=not (train and self.has_rng("dropout")))(x)
    return layers.DenseUnit(self.num_classes, name="classifier")(x, src=head_key)


_IMAGENET = dict(stage_widths=RESNET_WIDTHS, stem_width=64, bottleneck=True)
# name -> (factory, plain twin: the zoo network the DMNN was split from).
ARCHS = {
    "dmnn50": (lambda **kw: DMNNResNet(stage_sizes=(3, 4, 6, 3), imagenet_stem=True, **_IMAGENET, **kw),
               "resnet50"),
    "dmnn101": (lambda **kw: DMNNResNet(stage_sizes=(3, 4, 23, 3), imagenet_stem=True, **_IMAGENET, **kw),
                "resnet101"),
    "dmnn50_cifar": (lambda **kw: DMNNResNet(stage_sizes=(3, 4, 6, 3), **_IMAGENET, **kw), "resnet50_cifar"),
    "dmnn_resnet8": (lambda **kw: DMNNResNet(stage_sizes=(1, 1, 1), **kw), "resnet8"),
    "dmnn_resnet20": (lambda **kw: DMNNResNet(stage_sizes=(3, 3, 3), **kw), "resnet20"),
    "dmnn_resnet_cifar": (lambda **kw: DMNNResNet(stage_sizes=(9, 9, 9), **kw), "resnet56"),
    "dmnn_mobilenet_v2": (lambda **kw: DMNNMobileNetV2(**kw), "mobilenet_v2"),
    "dmnn_mobilenet_v2_1.4": (
        lambda **kw: DMNNMobileNetV2(**dict(kw, width=1.4 * kw.get("width", 1.0))), "mobilenet_v2_1.4"),
    "dmnn_mobilenet_v2_cifar": (lambda **kw: DMNNMobileNetV2(stages=mobilenet.CIFAR_STAGES, stem_stride=1, **kw),
                                "mobilenet_v2_cifar"),
}


def twin(name: str) -> str:
  """The plain zoo network a DMNN model was split from (``'dmnn50'`` -> ``'resnet50'``)."""
  if name not in ARCHS:
    raise ValueError(f"{name!r} is not a DMNN model; DMNN models: {', '.join(sorted(ARCHS))}")
  return ARCHS[name][1]
