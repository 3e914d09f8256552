"""Learning-rate schedules and the SGD optimiser, with per-layer rates and extra trainables.

The optimiser updates the trainable pytree ``{'params': ..., 'extra': ...}``: the model's
parameters and whatever a method trains beside them (White-Box's class-wise masks, ...).
Parameters follow the schedule, or a fixed rate of their own for layers named in
``layer_lrs`` (a rate of 0 freezes them bit for bit, `optax.set_to_zero`); extras follow
``extra_lr`` (default: the schedule). L2 weight decay is added to the gradient before
momentum, on conv / dense kernels only, and on every extra leaf (``extra_weight_decay``).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import flax
import optax

from jaxdr.training.options import TrainOptions

PyTree = Any
Rate = Union[float, Callable[[Any], Any]]
EXTRA = "extra"


def learning_rate_schedule(options: TrainOptions, steps_per_epoch: int, total_steps: int
                           ) -> optax.Schedule:
  """Linear warm-up from 0, then 'cosine' (to 0 at ``total_steps``), 'step' (x gamma at
  each milestone epoch), 'constant' or 'inv' (Caffe: x (1 + gamma * step) ** -power)."""
  base = float(options.learning_rate)
  warmup = int(round(options.warmup_epochs * steps_per_epoch))
  warmup = min(warmup, max(total_steps - 1, 0))
  kind = options.schedule
  if kind == "cosine":
    main = optax.cosine_decay_schedule(base, max(total_steps - warmup, 1))
  elif kind == "step":
    bounds = {int(round(m * steps_per_epoch)) - warmup: float(options.gamma) for m in options.milestones}
    main = optax.piecewise_constant_schedule(base, bounds)
  elif kind == "constant":
    main = optax.constant_schedule(base)
  else:  # 'inv', Caffe's lr_policy: base * (1 + gamma * step) ** -power
    gamma, power = float(options.gamma), float(options.power)
    main = lambda step: base * (1.0 + gamma * step) ** (-power)  # noqa: E731
  if not warmup:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, base, warmup), main], [warmup])


def layer_of(path: Tuple[str, ...], layer_keys) -> Optional[str]:
  """The longest layer key ('stage1_block0/conv1') that is a prefix of a parameter path."""
  best = None
  for n in range(1, len(path) + 1):
    k = "/".join(path[:n])
    if k in layer_keys:
      best = k
  return best


def _kernels_only(tree: PyTree) -> PyTree:
  return flax.traverse_util.path_aware_map(lambda path, _: path[-1] == "kernel", tree)


def _sgd(rate: Rate, momentum: float, nesterov: bool, weight_decay: float, decay_mask
         ) -> optax.GradientTransformation:
  if not callable(rate) and float(rate) == 0.0:
    return optax.set_to_zero()
  return optax.chain(optax.add_decayed_weights(float(weight_decay), mask=decay_mask),
                     optax.sgd(rate, momentum=float(momentum) or None, nesterov=bool(nesterov)))


def make_optimizer(options: TrainOptions, schedule: optax.Schedule, trainable: PyTree,
                   layer_lrs: Mapping[str, float] = (), extra_lr: Optional[float] = None,
                   extra_weight_decay: Optional[float] = None) -> optax.GradientTransformation:
  """The optimiser of ``trainable`` = ``{'params': ..., 'extra': ...}`` (module docstring)."""
  layer_lrs = dict(layer_lrs)
  wd = float(options.weight_decay)
  extra_wd = wd if extra_weight_decay is None else float(extra_weight_decay)
  has_extra = bool(flax.traverse_util.flatten_dict(flax.core.unfreeze(trainable.get(EXTRA, {}))))
  if not layer_lrs and not has_extra:  # one rule for every leaf
    return _sgd(schedule, options.momentum, options.nesterov, wd, _kernels_only)
  rules: Dict[str, Tuple[Rate, float, Any]] = {"schedule": (schedule, wd, _kernels_only)}
  rules.update({f"lr={rate:g}": (float(rate), wd, _kernels_only) for rate in layer_lrs.values()})
  if has_extra:
    rules[EXTRA] = (schedule if extra_lr is None else float(extra_lr), extra_wd, None)

  def label(path, _):
    if path[0] == EXTRA:
      return EXTRA
    layer = layer_of(tuple(path[1:]), layer_lrs)
    return "schedule" if layer is None else f"lr={float(layer_lrs[layer]):g}"

  labels = flax.traverse_util.path_aware_map(label, flax.core.unfreeze(trainable))
  transforms = {name: _sgd(rate, options.momentum, options.nesterov, decay, mask)
                for name, (rate, decay, mask) in rules.items()}
  return optax.multi_transform(transforms, labels)
