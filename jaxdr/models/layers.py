"""Building blocks shared by every model: gated conv / dense units and stream gates.

Every unit knows where its input channels come from (``src``: the key of the gate
point that produced them, ``None`` for the image) and which gate point its output
flows through (its own key when it gates itself, else ``dst``). `jaxdr.models.describe`
records these by intercepting the calls, which is all cost accounting and channel
surgery need to know about an architecture.
"""
from __future__ import annotations

import functools
import itertools
from typing import Any, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdr import cpu_runtime, masks
from jaxdr.models import native_conv

ACTIVATIONS = {None: lambda x: x, "relu": nn.relu, "relu6": lambda x: jnp.minimum(nn.relu(x), 6.0)}
# 'xla': lax.conv everywhere (every JAX transformation, forward mode included).
# 'im2col': patches + matmul. 'auto': on CPU, tiny maps as one matmul (a dense matrix
# when every output pixel sees the whole input, else im2col), wide 3x3 'same' convs by
# Winograd F(2x2, 3x3), other 3x3 'same' float32 convs by jaxdr's native kernel
# (`native_conv`, when it builds here), other stride-1 convs as lax.conv; the dense, Winograd,
# native and lax.conv paths have custom VJPs (reverse mode only) whose input gradient is a
# forward conv.
# Elsewhere 'xla'. Results are the same to float tolerance.
CONV_IMPLS = ("xla", "im2col", "auto")
# XLA's CPU convolution is pathologically slow on tiny maps with many channels (VGG-16's
# 2x2 block: 150x slower than im2col at batch 128), while on 4x4 and larger maps it beats
# im2col (benchmarks/results/surgery_speed.md); at or below this many output pixels 'auto'
# uses im2col + matmul on CPU.
AUTO_IM2COL_MAX_PIXELS = 4


def path_key(path) -> str:
  return "/".join(path)


def child_key(module: nn.Module, name: str) -> str:
  """Mask key of the submodule ``name`` of ``module`` (call inside a compact method)."""
  return path_key(tuple(module.scope.path) + (name,))


def _im2col_conv(x, kernel, stride, padding):
  kh, kw, cin, cout = kernel.shape
  n, h, w, _ = x.shape
  ho = (h + 2 * padding - kh) // stride + 1
  wo = (w + 2 * padding - kw) // stride + 1
  if (kh, kw, stride, padding) == (1, 1, 1, 0):
    return jnp.dot(x, kernel.reshape(cin, cout))
  xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  cols = [xp[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride, :]
          for i in range(kh) for j in range(kw)]
  patches = jnp.concatenate(cols, axis=-1)  # [N, Ho, Wo, kh*kw*Cin], (kh, kw, Cin)-major
  return jnp.dot(patches, kernel.reshape(kh * kw * cin, cout))


def _dense_conv_matrix(kernel, in_hw, stride: int, padding: int, transposed: bool = False):
  """The conv as a dense [H*W*Cin, Ho*Wo*Cout] matrix (``transposed``: its transpose,
  built directly, since XLA's CPU matmul against a transposed operand is ~7x slower).
  Block (input pixel, output pixel) is the kernel tap joining them, or zeros; rows and
  columns are (pixel, channel)-major, so NHWC maps flatten onto them."""
  kh, kw, cin, cout = kernel.shape
  h, w = in_hw
  ho, wo = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
  taps = kernel.transpose(0, 1, 3, 2) if transposed else kernel
  zeros = jnp.zeros(taps.shape[2:], kernel.dtype)

  def block(iy, ix, oy, ox):
    ty, tx = iy - oy * stride + padding, ix - ox * stride + padding
    return taps[ty, tx] if 0 <= ty < kh and 0 <= tx < kw else zeros

  ins, outs = list(itertools.product(range(h), range(w))), list(itertools.product(range(ho), range(wo)))
  if transposed:
    rows = [[block(*i, *o) for i in ins] for o in outs]
  else:
    rows = [[block(*i, *o) for o in outs] for i in ins]
  return jnp.concatenate([jnp.concatenate(r, axis=1) for r in rows], axis=0), (ho, wo)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _dense_conv(x, kernel, stride: int, padding: int):
  """Conv of a tiny map as one matmul. When every output pixel sees every input pixel
  (e.g. 3x3 on 2x2 or 1x1 maps) this does only the MACs that touch real pixels, where
  im2col would also multiply the zero padding (2.25x as many MACs on a 2x2 map)."""
  n, h, w, cin = x.shape
  matrix, (ho, wo) = _dense_conv_matrix(kernel, (h, w), stride, padding)
  return jnp.dot(x.reshape(n, h * w * cin), matrix).reshape(n, ho, wo, kernel.shape[-1])


def _dense_conv_fwd(x, kernel, stride, padding):
  return _dense_conv(x, kernel, stride, padding), (x, kernel)


def _dense_conv_bwd(stride, padding, res, g):
  x, kernel = res
  n, h, w, cin = x.shape
  matrix_t, _ = _dense_conv_matrix(kernel, (h, w), stride, padding, transposed=True)
  dx = jnp.dot(g.reshape(n, -1), matrix_t).reshape(x.shape)
  _, matrix_vjp = jax.vjp(lambda k: _dense_conv_matrix(k, (h, w), stride, padding)[0], kernel)
  dmatrix = jnp.dot(x.reshape(n, -1).T, g.reshape(n, -1))
  return dx, matrix_vjp(dmatrix)[0]


_dense_conv.defvjp(_dense_conv_fwd, _dense_conv_bwd)


def _dense_is_cheaper(x_shape, kernel_hw, out_pixels: int) -> bool:
  """Dense matmul MACs (input x output pixels) <= im2col MACs (output pixels x taps), and
  the matrix is free (1x1 maps) or amortised over >= DENSE_MIN_PIXELS output pixels."""
  n, h, w = x_shape[:3]
  return h * w <= kernel_hw[0] * kernel_hw[1] and (h * w == 1 or n * out_pixels >= DENSE_MIN_PIXELS)


# Winograd F(2x2, 3x3) (Lavin & Gray 2016): a 4x4 input tile d and a 3x3 kernel g give
# the 2x2 output tile A^T [(G g G^T) * (B^T d B)] A: 16 MACs per 4 outputs and channel
# pair instead of 36, as 16 [tiles, Cin] x [Cin, Cout] matmuls.
_WINOGRAD_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)
_WINOGRAD_G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float32)
_WINOGRAD_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)
# Winograd beats XLA's CPU conv from this many input and output channels, which depends on
# the conv XLA runs (single convs at batch 128, benchmarks/results/cdrp_speed.md): with
# YNNPACK fusions (XLA's default) from 48 channels (64 on 16x16 / 32x32: 1.3-1.6x faster;
# 32: slower); with them off (`cpu_runtime.set_ynn(False)`) XLA's own conv is faster up
# to 64 channels and Winograd wins from 128 (1.3-1.7x). The kernel transform (16 x Cin x
# Cout, per call) must be amortised over at least WINOGRAD_MIN_PIXELS input pixels
# (N x H x W; e.g. batch >= 16 on 8x8 maps, >= 64 on 4x4).
WINOGRAD_MIN_CHANNELS = {"ynn": 48, "xla": 128}
WINOGRAD_MIN_PIXELS = 1024
# The dense matrix of a conv on a tiny map (16 x Cin x Cout on 2x2 maps, built per call)
# pays off over im2col from this many output pixels (N x Ho x Wo; batch 128 on 2x2 maps);
# on 1x1 maps it is the kernel's centre tap, free to build.
DENSE_MIN_PIXELS = 512


def _combine(coeffs, terms):
  """sum(c * t) over the non-zero coefficients, without multiplying by +-1."""
  out = None
  for c, t in zip(coeffs, terms):
    if c:
      t = t if c == 1 else (-t if c == -1 else c * t)
      out = t if out is None else out + t
  return out


def winograd_min_channels() -> int:
  """WINOGRAD_MIN_CHANNELS for the CPU conv this process runs (YNNPACK fusions on or off)."""
  return WINOGRAD_MIN_CHANNELS["ynn" if cpu_runtime.ynn_enabled() else "xla"]


def _winograd_applies(x_shape, kernel_shape, stride: int, padding: int) -> bool:
  """3x3 stride-1 'same' convs on even maps, >= winograd_min_channels() in and out and
  >= WINOGRAD_MIN_PIXELS input pixels in the batch."""
  n, h, w, _ = x_shape
  kh, kw, cin, cout = kernel_shape
  return ((kh, kw, stride, padding) == (3, 3, 1, 1) and h % 2 == 0 and w % 2 == 0
          and min(cin, cout) >= winograd_min_channels() and n * h * w >= WINOGRAD_MIN_PIXELS)


def _winograd_kernel(kernel):
  """[3, 3, Cin, Cout] -> the 16 transformed taps G g G^T, [16, Cin, Cout]: sums of taps,
  elementwise (an einsum with G ran as small dots with transposes, ~20x slower)."""
  rows = [_combine(g, list(kernel)) for g in _WINOGRAD_G]  # [3, Cin, Cout] each
  return jnp.stack([_combine(g, list(r)) for r in rows for g in _WINOGRAD_G])


def _winograd_apply(x, u):
  """3x3 'same' conv of x [N, H, W, Cin] (H, W even) given transformed taps u [16, Cin, Cout]."""
  n, h, w, cin = x.shape
  th, tw = h // 2, w // 2
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  rows = [xp[:, i:i + 2 * th:2] for i in range(4)]  # tile row i of every tile: [N, th, W+2, Cin]
  v = []
  for row in (_combine(bt, rows) for bt in _WINOGRAD_BT):
    cols = [row[:, :, j:j + 2 * tw:2] for j in range(4)]
    v += [_combine(bt, cols) for bt in _WINOGRAD_BT]
  m = jnp.einsum("kmc,kcd->kmd", jnp.stack(v).reshape(16, n * th * tw, cin), u)
  m = m.reshape(4, 4, n, th, tw, -1)
  half = [_combine(at, list(m)) for at in _WINOGRAD_AT]  # [4, N, th, tw, Cout] each
  y = [jnp.stack([_combine(at, list(r)) for at in _WINOGRAD_AT], 3) for r in half]
  return jnp.stack(y, 2).reshape(n, h, w, -1)  # [N, th, 2, tw, 2, Cout] -> NHWC


@jax.custom_vjp
def _winograd_conv(x, kernel):
  """3x3 stride-1 'same' conv by Winograd F(2x2, 3x3); its input gradient is the same
  algorithm on the flipped, transposed kernel. Equal to XLA's conv to float tolerance."""
  return _winograd_apply(x, _winograd_kernel(kernel))


def _winograd_conv_fwd(x, kernel):
  return _winograd_conv(x, kernel), (x, kernel)


def _winograd_conv_bwd(res, g):
  x, kernel = res
  dx = _winograd_apply(g, _winograd_kernel(_flipped_transposed(kernel)))
  return dx, _stride1_kernel_grad(x, kernel, g, 1)


_winograd_conv.defvjp(_winograd_conv_fwd, _winograd_conv_bwd)


def conv2d(x, kernel, *, stride: int, padding: int, groups: int, impl: str):
  """NHWC x HWIO convolution with symmetric zero padding; ``impl`` in CONV_IMPLS."""
  if impl not in CONV_IMPLS:
    raise ValueError(f"conv_impl must be one of {CONV_IMPLS}, got {impl!r}")
  on_cpu = jax.default_backend() == "cpu"
  if groups == 1 and impl != "xla":
    kh = kernel.shape[0]
    pixels = ((x.shape[1] + 2 * padding - kh) // stride + 1) ** 2
    if impl == "im2col":
      return _im2col_conv(x, kernel, stride, padding)
    if on_cpu and pixels <= AUTO_IM2COL_MAX_PIXELS:
      if _dense_is_cheaper(x.shape, kernel.shape[:2], pixels):
        return _dense_conv(x, kernel, stride, padding)
      return _im2col_conv(x, kernel, stride, padding)
    if on_cpu and _winograd_applies(x.shape, kernel.shape, stride, padding):  # impl == 'auto'
      return _winograd_conv(x, kernel)
    if native_conv.applies(x, kernel, stride, padding, groups):
      return native_conv.conv3x3(x, kernel)
    if on_cpu and stride == 1 and padding < kh:
      return _conv_stride1(x, kernel, padding)
  return _xla_conv(x, kernel, stride, padding, groups)


def _xla_conv(x, kernel, stride: int, padding: int, groups: int):
  return jax.lax.conv_general_dilated(
      x, kernel, (stride, stride), [(padding, padding)] * 2,
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_stride1(x, kernel, padding: int):
  """A stride-1 XLA conv whose input gradient is written as a plain forward conv (flipped,
  transposed kernel). XLA's own transpose of the conv, inside a ``lax.scan`` over a
  loop-invariant kernel (the CDRP fit), falls back to a slow CPU conv (~4x)."""
  return _xla_conv(x, kernel, 1, padding, 1)


def _conv_stride1_fwd(x, kernel, padding):
  return _conv_stride1(x, kernel, padding), (x, kernel)


def _flipped_transposed(kernel):
  """[kh, kw, Cin, Cout] -> [kh, kw, Cout, Cin] reversed in space: the kernel whose stride-1
  conv of the output cotangent is the input gradient."""
  return jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)


def _stride1_kernel_grad(x, kernel, g, padding: int):
  """Kernel gradient of a stride-1 conv, by XLA (dead code where the kernel is frozen)."""
  _, kernel_vjp = jax.vjp(lambda k: _xla_conv(x, k, 1, padding, 1), kernel)
  return kernel_vjp(g)[0]


def _conv_stride1_bwd(padding, res, g):
  x, kernel = res
  dx = _xla_conv(g, _flipped_transposed(kernel), 1, kernel.shape[0] - 1 - padding, 1)
  return dx, _stride1_kernel_grad(x, kernel, g, padding)


_conv_stride1.defvjp(_conv_stride1_fwd, _conv_stride1_bwd)


def _tiled_max_pool(x, k: int):
  """Max over the non-overlapping k x k windows of ``x`` [N, H, W, C] (H, W divisible by k).
  Strict ``>`` keeps the earlier value on ties, so the gradient goes to the first maximum
  of each window in row-major order, as XLA's select-and-scatter and PyTorch's do."""
  views = [x[:, i::k, j::k, :] for i in range(k) for j in range(k)]
  out = views[0]
  for view in views[1:]:
    out = jnp.where(view > out, view, out)
  return out


def max_pool(x, window: int, stride: int, padding="VALID"):
  """k x k max pooling of NHWC ``x``. Non-overlapping windows that tile the map (window ==
  stride, H and W divisible) are computed with reshapes: XLA's CPU reduce-window and its
  select-and-scatter gradient took ~1/3 of VGG-16's gated forward+backward. The gradient
  goes to the first maximum of each window in row-major order, as XLA's and PyTorch's do,
  so results are identical. Other shapes use ``nn.max_pool``."""
  h, w = x.shape[1:3]
  if window == stride and h % window == 0 and w % window == 0 and padding in ("SAME", "VALID"):
    return _tiled_max_pool(x, window)
  return nn.max_pool(x, (window, window), strides=(stride, stride), padding=padding)


class ConvUnit(nn.Module):
  """conv -> [BN] -> [activation] -> [gate].  x: [N, H, W, Cin] -> [N, H', W', features].

  ``depthwise`` makes a per-channel conv (features == Cin). With ``gate`` the unit is a
  gate point of channel space ``space`` (default: its own key).
  """
  features: int
  kernel: int = 3
  stride: int = 1
  padding: Optional[int] = None  # default kernel // 2
  depthwise: bool = False
  use_bias: bool = False
  use_bn: bool = True
  act: Optional[str] = "relu"
  gate: bool = True
  space: Optional[str] = None
  conv_impl: str = "auto"
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, mask: Optional[Mapping[str, Any]] = None, train: bool = False,
               src: Optional[str] = None, dst: Optional[str] = None):
    del src, dst  # recorded by jaxdr.models.describe
    cin = x.shape[-1]
    if self.depthwise and self.features != cin:
      raise ValueError(f"depthwise unit needs features == input channels ({self.features} != {cin})")
    groups = cin if self.depthwise else 1
    kernel = self.param("kernel", nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
                        (self.kernel, self.kernel, cin // groups, self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32) if self.use_bias else None
    y = self.preactivation(x, kernel, bias)
    if self.use_bn:
      y = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                       epsilon=1e-5, name="bn")(y)
    y = ACTIVATIONS[self.act](y)
    if self.gate:
      y = masks.apply_gate(y, mask, path_key(self.scope.path), cpu_fast_grad=self.conv_impl == "auto")
    return y

  def preactivation(self, x, kernel, bias=None):
    """conv(x, kernel) [+ bias]: its own method so a Flax method interceptor can supply it
    (CAR scores candidates by handing each its next layer's pre-activation)."""
    pad = self.kernel // 2 if self.padding is None else self.padding
    groups = x.shape[-1] if self.depthwise else 1
    y = conv2d(x, kernel, stride=self.stride, padding=pad, groups=groups, impl=self.conv_impl)
    return y if bias is None else y + bias


class DenseUnit(nn.Module):
  """[flatten] -> dense -> [activation] -> [gate].  x: [N, ..., Cin] -> [N, features].

  A 4-D input is flattened in (H, W, C) order, so input channel c owns rows c, c+C, ...
  """
  features: int
  act: Optional[str] = None
  gate: bool = False
  space: Optional[str] = None

  @nn.compact
  def __call__(self, x, mask=None, train: bool = False, src: Optional[str] = None,
               dst: Optional[str] = None):
    del train, src, dst
    x = x.reshape((x.shape[0], -1))
    y = nn.Dense(self.features, name="dense")(x)
    y = ACTIVATIONS[self.act](y)
    if self.gate:
      y = masks.apply_gate(y, mask, path_key(self.scope.path))
    return y


class Gate(nn.Module):
  """A parameter-free gate point (e.g. a residual block's output on the stream ``space``);
  ``conv_impl`` as its model's ('auto' turns on the CPU fast gradient of `masks.apply_gate`)."""
  space: Optional[str] = None
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, mask=None):
    return masks.apply_gate(x, mask, path_key(self.scope.path), cpu_fast_grad=self.conv_impl == "auto")


class Backbone(nn.Module):
  """Fields every jaxdr model has; ``channels`` overrides widths per channel space."""
  num_classes: int = 10
  image_size: int = 32
  input_channels: int = 3
  width: float = 1.0
  conv_impl: str = "auto"
  channels: tuple = ()  # ((space, width), ...): set by channel surgery

  def width_of(self, space: str, default: float) -> int:
    return dict(self.channels).get(space, max(1, int(round(default * self.width))))
