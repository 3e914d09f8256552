"""Max pooling; non-overlapping windows as elementwise maxima of strided views."""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


def tiled_max_pool(x, k: int):
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
  stride, H and W divisible) are computed with strided views: XLA's CPU reduce-window and
  its select-and-scatter gradient took ~1/3 of VGG-16's gated forward+backward. The
  gradient goes to the first maximum of each window in row-major order, as XLA's and
  PyTorch's do, so results are identical. Other shapes use ``nn.max_pool``."""
  h, w = x.shape[1:3]
  if window == stride and h % window == 0 and w % window == 0 and padding in ("SAME", "VALID"):
    return tiled_max_pool(x, window)
  return nn.max_pool(x, (window, window), strides=(stride, stride), padding=padding)
