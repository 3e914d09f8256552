"""conv2d: one NHWC x HWIO convolution, dispatched to the algorithm that is fastest here.

    'xla'     lax.conv everywhere (every JAX transformation, forward mode included).
    'im2col'  patches + matmul (grouped convs: lax.conv).
    'auto'    on CPU, per conv: one-channel stride-1 inputs as a fused sum of shifted taps;
              tiny maps as one matmul (a dense matrix when every output pixel sees the
              whole input, else im2col); wide 3x3 'same' convs on even maps by
              Winograd F(2x2, 3x3); other stride-1 convs on maps up to 4x4 by im2col, on
              larger maps by lax.conv with a forward-conv VJP.
              Elsewhere 'xla'.
    'native'  'auto', plus jaxdr's native AVX-512 kernel for the 3x3 'same' float32 convs
              'auto' leaves to lax.conv, where `native_conv.load()` succeeded before tracing
              (``models.create`` calls it); else exactly 'auto'.

Results are the same to float tolerance. The taps, dense, Winograd, native and stride-1
paths carry custom VJPs (reverse mode only) whose input gradient is a forward conv: use 'xla' for
forward-mode autodiff.
"""
from __future__ import annotations

import jax

from jaxdr.ops import im2col, native_conv, taps, winograd, xla_conv

CONV_IMPLS = ("xla", "im2col", "auto", "native")
# XLA's CPU convolution is pathologically slow on tiny maps with many channels
# (benchmarks/results/surgery_speed.md): at or below this many output pixels 'auto' uses a
# matmul on CPU, before anything else.
AUTO_IM2COL_MAX_PIXELS = 4
# Up to 4x4 maps, stride-1 convs that Winograd does not take run as im2col, not lax.conv: as
# fast on wide channels, faster on the narrow ones pruning leaves (in a network:
# benchmarks/results/pruned_latency.md).
SMALL_MAP_IM2COL_MAX_PIXELS = 16


def cpu_fast_paths(impl: str) -> bool:
  """Whether ``impl`` takes jaxdr's CPU fast paths in this process ('auto' / 'native' on the
  CPU backend): units then also take gate gradients as tree sums (`scale_channels`)."""
  return impl in ("auto", "native") and jax.default_backend() == "cpu"


def conv2d(x, kernel, *, stride: int, padding: int, groups: int, impl: str):
  """x [N, H, W, Cin] (*) kernel [kh, kw, Cin / groups, Cout] -> [N, Ho, Wo, Cout], symmetric
  zero padding; ``impl`` in CONV_IMPLS (see the module docstring)."""
  if impl not in CONV_IMPLS:
    raise ValueError(f"conv_impl must be one of {CONV_IMPLS}, got {impl!r}")
  if groups != 1 or impl == "xla":
    return xla_conv.xla_conv(x, kernel, stride, padding, groups)
  if impl == "im2col":
    return im2col.im2col_conv(x, kernel, stride, padding)
  if jax.default_backend() != "cpu":
    return xla_conv.xla_conv(x, kernel, stride, padding, groups)
  if taps.applies(x.shape, kernel.shape, stride, padding, groups):
    return taps.taps_conv(x, kernel, padding)
  kh = kernel.shape[0]
  pixels = ((x.shape[1] + 2 * padding - kh) // stride + 1) ** 2
  if pixels <= AUTO_IM2COL_MAX_PIXELS:
    if im2col.dense_is_cheaper(x.shape, kernel.shape[:2], pixels):
      return im2col.dense_conv(x, kernel, stride, padding)
    return im2col.im2col_conv(x, kernel, stride, padding)
  if winograd.applies(x.shape, kernel.shape, stride, padding):
    return winograd.winograd_conv(x, kernel)
  if stride == 1 and pixels <= SMALL_MAP_IM2COL_MAX_PIXELS:
    return im2col.im2col_conv(x, kernel, stride, padding)
  if impl == "native" and native_conv.applies(x, kernel, stride, padding, groups):
    if native_conv.ready():
      return native_conv.conv3x3(x, kernel)
    native_conv.warn_not_ready()
  if stride == 1 and padding < kh:
    return xla_conv.conv_stride1(x, kernel, padding)
  return xla_conv.xla_conv(x, kernel, stride, padding, groups)
