"""Winograd F(2x2, 3x3) (Lavin & Gray 2016) for 3x3 stride-1 'same' convs on even maps.

A 4x4 input tile d and a 3x3 kernel g give the 2x2 output tile A^T [(G g G^T) * (B^T d B)] A:
16 MACs per 4 outputs and channel pair instead of 36, as 16 [tiles, Cin] x [Cin, Cout]
matmuls. The transforms are written as sums of slices (no matmuls with the small matrices).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdr import cpu_runtime
from jaxdr.ops import xla_conv

_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)
_G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float32)
_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)
# Winograd beats XLA's CPU conv from this many input and output channels, which depends on
# the conv XLA runs (single convs at batch 128, benchmarks/results/cdrp_speed.md): with
# YNNPACK fusions (XLA's default) from 48 channels (64 on 16x16 / 32x32: 1.3-1.6x faster;
# 32: slower); with them off (`cpu_runtime.set_ynn(False)`) XLA's own conv is faster up
# to 64 channels and Winograd wins from 128 (1.3-1.7x). The kernel transform (16 x Cin x
# Cout, per call) must be amortised over at least MIN_PIXELS input pixels (N x H x W; e.g.
# batch >= 16 on 8x8 maps, >= 64 on 4x4).
MIN_CHANNELS = {"ynn": 48, "xla": 128}
MIN_PIXELS = 1024


def min_channels() -> int:
  """MIN_CHANNELS for the CPU conv this process runs (YNNPACK fusions on or off)."""
  return MIN_CHANNELS["ynn" if cpu_runtime.ynn_enabled() else "xla"]


def applies(x_shape, kernel_shape, stride: int, padding: int) -> bool:
  """3x3 stride-1 'same' convs on even maps, >= min_channels() in and out and >= MIN_PIXELS
  input pixels in the batch."""
  n, h, w, _ = x_shape
  kh, kw, cin, cout = kernel_shape
  return ((kh, kw, stride, padding) == (3, 3, 1, 1) and h % 2 == 0 and w % 2 == 0
          and min(cin, cout) >= min_channels() and n * h * w >= MIN_PIXELS)


def _combine(coeffs, terms):
  """sum(c * t) over the non-zero coefficients, without multiplying by +-1."""
  out = None
  for c, t in zip(coeffs, terms):
    if c:
      t = t if c == 1 else (-t if c == -1 else c * t)
      out = t if out is None else out + t
  return out


def _transform_kernel(kernel):
  """[3, 3, Cin, Cout] -> the 16 transformed taps G g G^T, [16, Cin, Cout]: sums of taps,
  elementwise (an einsum with G ran as small dots with transposes, ~20x slower)."""
  rows = [_combine(g, list(kernel)) for g in _G]  # [3, Cin, Cout] each
  return jnp.stack([_combine(g, list(r)) for r in rows for g in _G])


def _apply(x, u):
  """3x3 'same' conv of x [N, H, W, Cin] (H, W even) given transformed taps u [16, Cin, Cout]."""
  n, h, w, cin = x.shape
  th, tw = h // 2, w // 2
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  rows = [xp[:, i:i + 2 * th:2] for i in range(4)]  # tile row i of every tile: [N, th, W+2, Cin]
  v = []
  for row in (_combine(bt, rows) for bt in _BT):
    cols = [row[:, :, j:j + 2 * tw:2] for j in range(4)]
    v += [_combine(bt, cols) for bt in _BT]
  m = jnp.einsum("kmc,kcd->kmd", jnp.stack(v).reshape(16, n * th * tw, cin), u)
  m = m.reshape(4, 4, n, th, tw, -1)
  half = [_combine(at, list(m)) for at in _AT]  # [4, N, th, tw, Cout] each
  y = [jnp.stack([_combine(at, list(r)) for at in _AT], 3) for r in half]
  return jnp.stack(y, 2).reshape(n, h, w, -1)  # [N, th, 2, tw, 2, Cout] -> NHWC


@jax.custom_vjp
def winograd_conv(x, kernel):
  """3x3 stride-1 'same' conv of x [N, H, W, Cin] (H, W even) by Winograd F(2x2, 3x3); its
  input gradient is the same algorithm on the flipped, transposed kernel (reverse mode
  only). Equal to XLA's conv to float tolerance."""
  return _apply(x, _transform_kernel(kernel))


def _winograd_conv_fwd(x, kernel):
  return winograd_conv(x, kernel), (x, kernel)


def _winograd_conv_bwd(res, g):
  x, kernel = res
  dx = _apply(g, _transform_kernel(xla_conv.flipped_transposed(kernel)))
  return dx, xla_conv.stride1_kernel_grad(x, kernel, g, 1)


winograd_conv.defvjp(_winograd_conv_fwd, _winograd_conv_bwd)
