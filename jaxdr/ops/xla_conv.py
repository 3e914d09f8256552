"""XLA's convolution, and a stride-1 variant whose VJP is written as forward convs.

`flipped_transposed`, `stride1_kernel_grad` and `stride1_grads` are the pieces every custom conv
VJP in `jaxdr.ops` shares (Winograd, the native kernel): the input gradient of a stride-1 conv is
the same conv of the output cotangent with the flipped, transposed kernel, and the kernel
gradient is XLA's.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def xla_conv(x, kernel, stride: int, padding: int, groups: int):
  """lax.conv: x [N, H, W, Cin] (*) kernel [kh, kw, Cin / groups, Cout], symmetric padding."""
  return jax.lax.conv_general_dilated(
      x, kernel, (stride, stride), [(padding, padding)] * 2,
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)


def flipped_transposed(kernel):
  """[kh, kw, Cin, Cout] -> [kh, kw, Cout, Cin] reversed in space: the kernel whose stride-1
  conv of the output cotangent is the input gradient."""
  return jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)


def stride1_kernel_grad(x, kernel, g, padding: int):
  """Kernel gradient of a stride-1 conv of x [N, H, W, Cin] with cotangent g, by XLA (dead
  code, removed by XLA, where the kernel is frozen)."""
  _, kernel_vjp = jax.vjp(lambda k: xla_conv(x, k, 1, padding, 1), kernel)
  return kernel_vjp(g)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_stride1(x, kernel, padding: int):
  """A stride-1 XLA conv whose input gradient is written as a plain forward conv (flipped,
  transposed kernel). XLA's own transpose of the conv, inside a ``lax.scan`` over a
  loop-invariant kernel (the CDRP fit), falls back to a slow CPU conv (~4x). Needs
  padding < kernel size (the gradient's padding, kh - 1 - padding, must not be negative)."""
  return xla_conv(x, kernel, 1, padding, 1)


def stride1_grads(x, kernel, g, padding: int):
  """(input, kernel) gradients of a stride-1 conv of x with a square kernel, cotangent g: the
  input gradient as a plain forward conv (flipped, transposed kernel), the kernel's by XLA."""
  dx = xla_conv(g, flipped_transposed(kernel), 1, kernel.shape[0] - 1 - padding, 1)
  return dx, stride1_kernel_grad(x, kernel, g, padding)


def _conv_stride1_fwd(x, kernel, padding):
  return conv_stride1(x, kernel, padding), (x, kernel)


def _conv_stride1_bwd(padding, res, g):
  return stride1_grads(*res, g, padding)


conv_stride1.defvjp(_conv_stride1_fwd, _conv_stride1_bwd)
