"""DMNN (Su et al., *Dynamic Multi-path Neural Network*): blocks of N gated sub-blocks.

Block l (Eq. 4): ``X_l = act(S(X_{l-1}) + sum_n s_{l,n} F_{l,n}(X_{l-1}))`` with N parallel
sub-blocks F (`SubBlock`), gates ``s in {0, 1}`` and S the shortcut: the identity, or a 1x1
conv + BN where the block changes shape (always on); ``act`` is ReLU in ResNets, none in
MobileNetV2 (its linear bottleneck).

Controller (`Controller`, one per block): ``z = GAP(X_{l-1})``, ``V = ReLU(W1 z + b1)``
(``hidden`` = d = 32), ``h' = ReLU(W2 h_{l-1} + b2)``, ``h_l = V + h'`` (``h' `` is left out in
the first block and with ``previous_state=False``); gate logits ``g = W3 h_l + b3`` as [N, 2]
(index 1 = on); with ``categories`` K > 0 a linear category head ``W4 h_l + b4`` [K] for the
category loss (training only: its output is only sown, so inference never computes it).

Gates (`gate_values`): in training (``train=True`` with a 'gumbel' rng) a hard Gumbel-softmax
sample with a straight-through gradient, ``s = hard + soft - stop_gradient(soft)``, ``soft =
softmax((g + Gumbel noise) / temperature)[..., 1]``: the forward value is exactly 0/1, the
gradient that of the soft sample. Noise is drawn with ``jax.random`` inside the jitted step
from the 'gumbel' stream (Flax folds in each block's path). In evaluation, or in training
without a 'gumbel' rng: the deterministic argmax (on iff ``g[..., 1] > g[..., 0]``).

Masks. Gate point ``{block}/paths`` (`PathGate`, N channels) holds the sub-block gates: a
mask entry ([N] or [B, N]) *replaces* the controller's decision (1 forces a sub-block on, 0
off, other values scale it: the all-on reference is ``masks.ones_mask`` of these points);
without one the controller decides. Each sub-block's convs are ordinary channel gate points
(``{block}/sub{n}/conv1`` ...). `describe` records which gate points each sub-block gate
controls (`graph.Graph.groups`), so `jaxdr.costs` counts a closed sub-block as absent.

Dispatch. ``'masked'`` computes every sub-block and multiplies it by its gate (training, and
what ConvNet-AIG / SkipNet / BlockDrop do: no time saved). ``'skip'`` (inference only)
computes a sub-block only for the images whose gate is on: at batch 1 one switch per pair of
sub-blocks over their on/off patterns (`dispatch.on_patterns`, chained through the block's
sum), for batches the on-rows gathered into the smallest of ``buckets`` capacities
(`dispatch.on_rows`); same outputs as 'masked' to float tolerance.

Aux outputs. Each block sows into the 'dmnn' collection: ``gates`` [B, N] (the gates used),
``logits`` [B, N, 2], ``state`` [B, d] (``h_l``) and ``category`` [B, K]; `forward` returns
them stacked over blocks as `Paths`.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Tuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdr import masks
from jaxdr.models import dispatch, graph as graph_lib, layers

COLLECTION = "dmnn"
RNG = "gumbel"
DISPATCHES = ("masked", "skip")
# Gated units of one sub-block, by kind: closing them closes the whole sub-block (its last
# conv reads their channels).
UNITS = {"bottleneck": ("conv1", "conv2"), "basic": ("conv1",), "inverted": ("expand", "dw")}
# Skip dispatch at batch 1: sub-blocks per pattern switch. One switch over all N copies each
# sub-block's weights into 2^(N-1) branches when they are constants (7.5x the weights at N = 4,
# slower than chained conds); pairs keep it at 2 (benchmarks/results/dmnn_pattern_switch_ab).
PATTERN_GROUP = 2


def gate_values(logits: jnp.ndarray, rng: Optional[jax.Array], temperature: float = 1.0
                ) -> jnp.ndarray:
  """Sub-block gates [..., N] from controller logits [..., N, 2] (index 1 = on).

  ``rng`` None: argmax (on iff ``logits[..., 1] > logits[..., 0]``). Else a hard Gumbel-softmax
  sample whose gradient is that of ``softmax((logits + noise) / temperature)[..., 1]``
  (straight-through); the value is exactly 0 or 1."""
  if rng is None:
    return (logits[..., 1] > logits[..., 0]).astype(logits.dtype)
  noisy = logits + jax.random.gumbel(rng, logits.shape, logits.dtype)
  soft = jax.nn.softmax(noisy / temperature, axis=-1)[..., 1]
  hard = (noisy[..., 1] > noisy[..., 0]).astype(logits.dtype)
  return hard + (soft - jax.lax.stop_gradient(soft))


class Controller(nn.Module):
  """GAP -> embed (W1, ReLU) [+ ReLU(W2 h_prev)] -> gate logits [B, N, 2] (W3) [, category
  logits [B, K] (W4)].  Returns ``(logits, h, category or None)``. ``gate_bias``: initial b3
  of each sub-block's (off, on) logits (ConvNet-AIG's (0.1, 2) opens ~85% of gates at init)."""
  paths: int
  hidden: int = 32
  categories: int = 0
  previous_state: bool = True
  gate_bias: Tuple[float, float] = (0.1, 2.0)

  @nn.compact
  def __call__(self, x, h_prev: Optional[jnp.ndarray], src: Optional[str]):
    z = jnp.mean(x, axis=(1, 2))
    h = layers.DenseUnit(self.hidden, act="relu", name="embed")(z, src=src)
    if self.previous_state and h_prev is not None:
      h = h + layers.DenseUnit(self.hidden, act="relu", name="state")(h_prev)
    bias = jnp.tile(jnp.asarray(self.gate_bias, jnp.float32), self.paths)  # [off, on] per sub-block
    logits = layers.DenseUnit(2 * self.paths, bias_init=lambda *_: bias, name="gates")(h)
    logits = logits.reshape(h.shape[0], self.paths, 2)
    category = None
    if self.categories:
      category = layers.DenseUnit(self.categories, name="category")(h)
    return logits, h, category


class PathGate(layers.Gate):
  """Gate point of a block's N sub-block gates: the controller's decisions [B, N], or the
  mask's entry ([N] or [B, N]) in their place. ``members[n]``: the gate keys of sub-block n."""
  members: Tuple[Tuple[str, ...], ...] = ()

  @nn.compact
  def __call__(self, decided, mask=None):
    key = layers.path_key(self.scope.path)
    if mask is None or key not in mask:
      return decided
    forced = jnp.asarray(mask[key], decided.dtype)
    if forced.shape[-1] != decided.shape[-1] or forced.ndim not in (1, 2) or (
        forced.ndim == 2 and forced.shape[0] != decided.shape[0]):
      raise masks.MaskError(f"gate {key!r} must have shape [{decided.shape[-1]}] or "
                            f"[{decided.shape[0]}, {decided.shape[-1]}], got {forced.shape}")
    return jnp.broadcast_to(forced, decided.shape)


class SubBlock(nn.Module):
  """One sub-block F_n, ending in BN without activation (its output is gated, then added).

  'bottleneck': 1x1 (width) -> 3x3 (width, stride) -> 1x1 (out); 'basic': 3x3 (width,
  stride) -> 3x3 (out); 'inverted': 1x1 expand (width, ReLU6) -> depthwise 3x3 (stride,
  ReLU6) -> 1x1 project (out). Inner units are gate points; the last flows to ``dst``."""
  kind: str
  width: int
  out_width: int
  stride: int
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, mask, train, src, dst):
    key = lambda name: layers.child_key(self, name)  # noqa: E731
    kw = dict(conv_impl=self.conv_impl)
    last = dict(act=None, gate=False, **kw)
    if self.kind == "bottleneck":
      y = layers.ConvUnit(self.width, kernel=1, name="conv1", **kw)(x, mask, train, src=src)
      y = layers.ConvUnit(self.width, stride=self.stride, name="conv2", **kw)(y, mask, train, src=key("conv1"))
      return layers.ConvUnit(self.out_width, kernel=1, name="conv3", **last)(
          y, mask, train, src=key("conv2"), dst=dst)
    if self.kind == "basic":
      y = layers.ConvUnit(self.width, stride=self.stride, name="conv1", **kw)(x, mask, train, src=src)
      return layers.ConvUnit(self.out_width, name="conv2", **last)(y, mask, train, src=key("conv1"), dst=dst)
    if self.kind == "inverted":
      y = layers.ConvUnit(self.width, kernel=1, act="relu6", name="expand", **kw)(x, mask, train, src=src)
      y = layers.ConvUnit(self.width, stride=self.stride, depthwise=True, act="relu6", name="dw", **kw)(
          y, mask, train, src=key("expand"))
      return layers.ConvUnit(self.out_width, kernel=1, name="project", **last)(
          y, mask, train, src=key("dw"), dst=dst)
    raise ValueError(f"unknown sub-block kind {self.kind!r}; known: {', '.join(UNITS)}")


class DynamicBlock(nn.Module):
  """A block of ``paths`` sub-blocks of ``width`` channels each, its controller and gates.

  ``(x [B, H, W, Cin], h_prev [B, d] or None, mask, train, src) -> (X_l, h_l)``.
  ``projection``: 1x1 conv + BN shortcut (shape changes), else identity. ``post_act``: ReLU
  after the add (ResNet) or none (MobileNetV2). ``space``: stream space of the ``out`` gate.
  """
  kind: str
  paths: int
  width: int
  out_width: int
  stride: int
  projection: bool
  post_act: bool
  space: str
  hidden: int = 32
  categories: int = 0
  previous_state: bool = True
  temperature: float = 1.0
  gate_bias: Tuple[float, float] = (0.1, 2.0)
  dispatch: str = "masked"
  buckets: int = 8
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, h_prev, mask, train, src):
    out_key = layers.child_key(self, "out")
    logits, h, category = Controller(self.paths, self.hidden, self.categories, self.previous_state,
                                     tuple(self.gate_bias), name="controller")(x, h_prev, src)
    rng = self.make_rng(RNG) if train and self.has_rng(RNG) else None
    decided = gate_values(logits, rng, self.temperature)
    members = tuple(tuple(f"{layers.child_key(self, f'sub{n}')}/{u}" for u in UNITS[self.kind])
                    for n in range(self.paths))
    gates = PathGate(members=members, conv_impl=self.conv_impl, name="paths")(decided, mask)
    if not self.is_initializing():  # init's variables carry no aux outputs
      self.sow(COLLECTION, "gates", gates)
      self.sow(COLLECTION, "logits", logits)
      self.sow(COLLECTION, "state", h)
      if category is not None:
        self.sow(COLLECTION, "category", category)

    y = x
    if self.projection:
      y = layers.ConvUnit(self.out_width, kernel=1, stride=self.stride, act=None, gate=False,
                          conv_impl=self.conv_impl, name="shortcut")(x, mask, train, src=src, dst=out_key)
    skip = self.dispatch == "skip" and not self.is_initializing()
    if skip and train:
      raise ValueError("dispatch='skip' is for inference (train=False); train with 'masked'")
    sub = lambda n: SubBlock(self.kind, self.width, self.out_width, self.stride, self.conv_impl,  # noqa: E731
                             name=f"sub{n}")
    finish = lambda y: nn.relu(y) if self.post_act else y  # noqa: E731
    if skip and x.shape[0] == 1:
      # One image: the sub-blocks in pairs, one switch per pair over its on/off patterns, each
      # branch adding its sub-blocks (the last pair's also applying the activation): half the
      # conditionals, no separate ReLU pass, and each sub-block's weights in two branches only.
      starts = range(0, self.paths, PATTERN_GROUP)
      for start in starts:
        group = tuple(range(start, min(start + PATTERN_GROUP, self.paths)))

        def pattern(mdl, subset, x, y, gates, mask, group=group, last=start == starts[-1]):
          del mdl  # the sub-blocks bind to the lifted scope by name
          for j in subset:
            y = y + sub(group[j])(x, mask, False, src, out_key) * gates[0, group[j]]
          return finish(y) if last else y
        y = dispatch.on_patterns(pattern, gates[0, group[0]:group[-1] + 1] != 0, x, y, gates, mask,
                                 module=self)
    elif skip:
      per_row = {k: v for k, v in dict(mask or {}).items() if np.ndim(v) == 2}
      shared = {k: v for k, v in dict(mask or {}).items() if np.ndim(v) != 2}
      sizes = dispatch.capacities(x.shape[0], self.buckets)
      run = lambda mdl, rows, row_mask, common: mdl(  # noqa: E731
          rows, {**common, **row_mask}, False, src, out_key)
      for n in range(self.paths):
        y = dispatch.on_rows(run, x, gates[:, n] != 0, sizes, y, scale=gates[:, n], module=sub(n),
                             per_row=per_row, shared=shared)
      y = finish(y)
    else:
      for n in range(self.paths):
        y = y + sub(n)(x, mask, train, src, out_key) * gates[:, n].reshape((-1, 1, 1, 1))
      y = finish(y)
    return layers.Gate(space=self.space, conv_impl=self.conv_impl, name="out")(y, mask), h


@flax.struct.dataclass
class Paths:
  """What the controllers did, stacked over the L gated blocks (network order).

  ``gates`` [B, L, N] (the gates used: 0/1, or a mask's values), ``logits`` [B, L, N, 2],
  ``states`` [B, L, d] (``h_l``), ``categories`` [B, L, K] (None without category heads)."""
  gates: jnp.ndarray
  logits: jnp.ndarray
  states: jnp.ndarray
  categories: Optional[jnp.ndarray] = None


def block_keys(model: nn.Module) -> Tuple[str, ...]:
  """Keys of the model's gated blocks in network order (``stage1_block0``, ...)."""
  suffix = "/paths"
  return tuple(key[:-len(suffix)] for key, _ in graph_lib.describe(model).groups if key.endswith(suffix))


def forward(model: nn.Module, variables: Mapping[str, Any], images: jnp.ndarray,
            mask: Optional[Mapping[str, jnp.ndarray]] = None, train: bool = False,
            rngs: Optional[Mapping[str, jax.Array]] = None):
  """``(logits [B, classes], Paths, new batch_stats or None)`` of a DMNN model.

  With ``train`` BatchNorm uses batch statistics (returned) and, given a 'gumbel' rng in
  ``rngs``, the gates are Gumbel samples; otherwise they are the controllers' argmax."""
  mutable = [COLLECTION, "batch_stats"] if train else [COLLECTION]
  variables = {k: v for k, v in variables.items() if k != COLLECTION}
  logits, state = model.apply(variables, images, mask, train, mutable=mutable, rngs=rngs)
  sown = flax.traverse_util.flatten_dict(flax.core.unfreeze(state.get(COLLECTION, {})), sep="/")
  keys = block_keys(model)

  def stack(name):
    found = [sown.get(f"{k}/{name}") for k in keys]
    if not keys or any(f is None for f in found):
      return None
    return jnp.stack([f[0] for f in found], axis=1)

  paths = Paths(gates=stack("gates"), logits=stack("logits"), states=stack("state"),
                categories=stack("category"))
  return logits, paths, (state.get("batch_stats", {}) if train else None)
