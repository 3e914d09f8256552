"""Convolutions as matmuls: im2col (patches x kernel) and, for tiny maps, one dense matrix.

XLA's CPU convolution is pathologically slow on tiny maps with many channels (VGG-16's 2x2
block: 150x slower than im2col at batch 128, benchmarks/results/surgery_speed.md); `jaxdr.ops.conv`
sends such maps here.
"""
from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp

# The dense matrix of a conv on a tiny map (16 x Cin x Cout on 2x2 maps, built per call)
# pays off over im2col from this many output pixels (N x Ho x Wo; batch 128 on 2x2 maps);
# on 1x1 maps it is the kernel's centre tap, free to build.
DENSE_MIN_PIXELS = 512


def im2col_conv(x, kernel, stride: int, padding: int):
  """x [N, H, W, Cin] (*) kernel [kh, kw, Cin, Cout] as one matmul of the [N, Ho, Wo,
  kh*kw*Cin] patches with the reshaped kernel (a 1x1 unpadded stride-1 conv: no patches)."""
  kh, kw, cin, cout = kernel.shape
  _, h, w, _ = x.shape
  ho = (h + 2 * padding - kh) // stride + 1
  wo = (w + 2 * padding - kw) // stride + 1
  if (kh, kw, stride, padding) == (1, 1, 1, 0):
    return jnp.dot(x, kernel.reshape(cin, cout))
  xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  cols = [xp[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride, :]
          for i in range(kh) for j in range(kw)]
  patches = jnp.concatenate(cols, axis=-1)  # [N, Ho, Wo, kh*kw*Cin], (kh, kw, Cin)-major
  return jnp.dot(patches, kernel.reshape(kh * kw * cin, cout))


def dense_conv_matrix(kernel, in_hw, stride: int, padding: int, transposed: bool = False):
  """The conv as a dense [H*W*Cin, Ho*Wo*Cout] matrix (``transposed``: its transpose,
  built directly, since XLA's CPU matmul against a transposed operand is ~7x slower).
  Block (input pixel, output pixel) is the kernel tap joining them, or zeros; rows and
  columns are (pixel, channel)-major, so NHWC maps flatten onto them. Returns the matrix
  and the output map size (Ho, Wo)."""
  kh, kw, _, _ = kernel.shape
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
def dense_conv(x, kernel, stride: int, padding: int):
  """Conv of a tiny map x [N, H, W, Cin] as one matmul. When every output pixel sees every
  input pixel (e.g. 3x3 on 2x2 or 1x1 maps) this does only the MACs that touch real pixels,
  where im2col would also multiply the zero padding (2.25x as many MACs on a 2x2 map). Its
  VJP multiplies by the transposed matrix, built directly (reverse mode only)."""
  n, h, w, cin = x.shape
  matrix, (ho, wo) = dense_conv_matrix(kernel, (h, w), stride, padding)
  return jnp.dot(x.reshape(n, h * w * cin), matrix).reshape(n, ho, wo, kernel.shape[-1])


def _dense_conv_fwd(x, kernel, stride, padding):
  return dense_conv(x, kernel, stride, padding), (x, kernel)


def _dense_conv_bwd(stride, padding, res, g):
  x, kernel = res
  n, h, w, _ = x.shape
  matrix_t, _ = dense_conv_matrix(kernel, (h, w), stride, padding, transposed=True)
  dx = jnp.dot(g.reshape(n, -1), matrix_t).reshape(x.shape)
  _, matrix_vjp = jax.vjp(lambda k: dense_conv_matrix(k, (h, w), stride, padding)[0], kernel)
  dmatrix = jnp.dot(x.reshape(n, -1).T, g.reshape(n, -1))
  return dx, matrix_vjp(dmatrix)[0]


dense_conv.defvjp(_dense_conv_fwd, _dense_conv_bwd)


def dense_is_cheaper(x_shape, kernel_hw, out_pixels: int) -> bool:
  """Dense matmul MACs (input x output pixels) <= im2col MACs (output pixels x taps), and
  the matrix is free (1x1 maps) or amortised over >= DENSE_MIN_PIXELS output pixels."""
  n, h, w = x_shape[:3]
  return h * w <= kernel_hw[0] * kernel_hw[1] and (h * w == 1 or n * out_pixels >= DENSE_MIN_PIXELS)
