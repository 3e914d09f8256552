"""AlexNet in torchvision's layout (the single-tower variant of Krizhevsky's "one weird trick"),
with torchvision's widths (``alexnet``: 64/192/384/256/256) or Caffe's reference widths
(``alexnet_caffe``: 96/256/384/384/256, the BVLC model the CAR paper compresses).

The Caffe-width variant keeps torchvision's geometry (conv1 padding 2 on 224x224 inputs,
adaptive 6x6 pool) and is a single tower: no local response normalisation and no grouped
convs (Caffe's conv2/4/5 run as two groups). LRN normalises each channel by its neighbours
by channel index, so cutting a channel out would change its neighbours' outputs (surgery
would no longer equal the mask); grouped convs tie channels to their group. Weights of the
grouped, LRN Caffe model therefore do not reproduce its outputs here, and the single tower has
more conv weights (62,378,344 params at 1000 classes against the grouped model's 60,965,224).
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxdr.models import layers

# (width, kernel, stride, padding, max-pool after)
FEATURES = ((64, 11, 4, 2, True), (192, 5, 1, 2, True), (384, 3, 1, 1, False),
            (256, 3, 1, 1, False), (256, 3, 1, 1, True))
CAFFE_FEATURES = ((96, 11, 4, 2, True), (256, 5, 1, 2, True), (384, 3, 1, 1, False),
                  (384, 3, 1, 1, False), (256, 3, 1, 1, True))


def _pool_matrix(size: int, out: int) -> np.ndarray:
  """[out, size] averaging weights of adaptive average pooling (torch's bins:
  [floor(i*size/out), ceil((i+1)*size/out))); a map smaller than ``out`` is replicated."""
  m = np.zeros((out, size), np.float32)
  for i in range(out):
    lo, hi = (i * size) // out, -((-(i + 1) * size) // out)
    m[i, lo:hi] = 1.0 / (hi - lo)
  return m


def adaptive_avg_pool(x: jnp.ndarray, out: int) -> jnp.ndarray:
  """[N, H, W, C] -> [N, out, out, C], as torch.nn.AdaptiveAvgPool2d(out)."""
  ph, pw = _pool_matrix(x.shape[1], out), _pool_matrix(x.shape[2], out)
  return jnp.einsum("ih,jw,nhwc->nijc", ph, pw, x)


def max_pool_3x3s2(x: jnp.ndarray) -> jnp.ndarray:
  """torch MaxPool2d(3, 2); the window shrinks to the map on maps below 3x3 (small images)."""
  k = min(3, x.shape[1], x.shape[2])
  return nn.max_pool(x, (k, k), strides=(2, 2), padding="VALID")


class AlexNet(layers.Backbone):
  """Five conv+ReLU layers (gate points ``conv1`` ... ``conv5``, with bias, no BN), max
  pools, adaptive average pool to 6x6, then dropout-fc1-ReLU-dropout-fc2-ReLU-fc3.

  61,100,840 params for 1000 classes (62,378,344 with ``conv_layers=CAFFE_FEATURES``), at
  any image size (the adaptive pool fixes fc1's input at 6*6*C5). Dropout acts only when
  ``train=True`` and a 'dropout' rng is given (``model.apply(..., rngs={'dropout': key})``);
  otherwise it is skipped, so the model stays a pure function of its inputs. ``width``
  scales the fc layers too.
  """
  conv_layers: tuple = FEATURES  # (width, kernel, stride, padding, max-pool after) per conv
  hidden: int = 4096
  dropout: float = 0.5
  pool_size: int = 6

  @nn.compact
  def __call__(self, x, mask=None, train: bool = False):
    src = None
    for i, (default, kernel, stride, pad, pool) in enumerate(self.conv_layers):
      name = f"conv{i + 1}"
      key = layers.child_key(self, name)
      x = layers.ConvUnit(self.width_of(key, default), kernel=kernel, stride=stride, padding=pad,
                          use_bias=True, use_bn=False, conv_impl=self.conv_impl, name=name)(
                              x, mask, train, src=src)
      if pool:
        x = max_pool_3x3s2(x)
      src = key
    x = adaptive_avg_pool(x, self.pool_size)
    deterministic = not (train and self.has_rng("dropout"))
    x = nn.Dropout(self.dropout, deterministic=deterministic)(x)  # [N, 6, 6, C]: fc1 flattens
    hidden = max(1, int(round(self.hidden * self.width)))  # not gate points: width only
    x = layers.DenseUnit(hidden, act="relu", name="fc1")(x, src=src)
    x = nn.Dropout(self.dropout, deterministic=deterministic)(x)
    x = layers.DenseUnit(hidden, act="relu", name="fc2")(x)
    return layers.DenseUnit(self.num_classes, name="fc3")(x)
