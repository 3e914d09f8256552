"""Convs with very few input channels (an image's first layer) as a sum of shifted taps.

A conv of a grey image is kh*kw*Cin multiply-adds per output value: XLA fuses the
whole sum, and the bias / BatchNorm / ReLU after it, into one loop that writes the output
once, where a conv library call (or jaxdr's native kernel, which pads Cin to even) writes its
output and a second pass reads it back (benchmarks/results/conv_speed_first_layer.md).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxdr.ops import xla_conv

# At most this many multiply-adds per output value (kh * kw * Cin): a 3x3 conv of one channel
# (benchmarks/results/conv_speed_first_layer.md; with 2 or 3 channels it lost to the native
# kernel at batch 1 in a probe).
MAX_TAPS = 9


def applies(x_shape, kernel_shape, stride: int, padding: int, groups: int) -> bool:
  """Stride-1 dense square-kernel convs with kh * kw * Cin <= MAX_TAPS and padding < kh."""
  kh, kw, cin, _ = kernel_shape
  return (stride == 1 and groups == 1 and kh == kw and kh * kw * cin <= MAX_TAPS
          and padding < min(kh, kw) and x_shape[-1] == cin)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def taps_conv(x, kernel, padding: int):
  """x [N, H, W, Cin] (*) kernel [kh, kw, Cin, Cout], stride 1, symmetric zero padding, as
  sum over taps (i, j, c) of the shifted input channel times the tap's Cout weights. Its
  VJP is XLA's (reverse mode only)."""
  kh, kw, cin, _ = kernel.shape
  _, h, w, _ = x.shape
  ho, wo = h + 2 * padding - kh + 1, w + 2 * padding - kw + 1
  xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  out = None
  for i in range(kh):
    for j in range(kw):
      for c in range(cin):
        term = xp[:, i:i + ho, j:j + wo, c:c + 1] * kernel[i, j, c]
        out = term if out is None else out + term
  return out


def _taps_conv_fwd(x, kernel, padding):
  return taps_conv(x, kernel, padding), (x, kernel)


def _taps_conv_bwd(padding, res, g):
  return xla_conv.stride1_grads(*res, g, padding)


taps_conv.defvjp(_taps_conv_fwd, _taps_conv_bwd)
