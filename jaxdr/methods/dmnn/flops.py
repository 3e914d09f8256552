"""Exact costs of a DMNN model by part: every sub-block, the always-on rest, the controllers.

    table = flops.cost_table(model)
    table.sub_macs            # int64 [L, N]: MACs of sub-block n of gated block l (f_{l,n})
    table.executed(gates)     # [B]: MACs an image runs given its gates [B, L, N]

MACs (what the papers call FLOPs) and parameters come from `jaxdr.costs` on the model's
`describe()` graph. The *inference* network, whose FLOPs the paper reports, is everything but
the controllers and the category heads: ``total_macs = base_macs + sub_macs.sum()`` with every
sub-block on; ``base_macs`` is what always runs (stem, shortcuts, static blocks, classifier).
Controllers (embed / state / gate layers) and category heads are counted separately.
"""
from __future__ import annotations

import dataclasses
from typing import Tuple

import jax.numpy as jnp
import numpy as np

from jaxdr import costs, models
from jaxdr.models import dmnn

CONTROLLER = "controller"
CATEGORY = "category"


@dataclasses.dataclass(frozen=True)
class CostTable:
  """Costs of a DMNN model (see the module docstring). ``stages`` [L]: stage index (0-based)
  of each gated block, by its output resolution (blocks at the largest maps are stage 0)."""
  blocks: Tuple[str, ...]
  sub_macs: np.ndarray
  base_macs: int
  controller_macs: int
  category_macs: int
  backbone_params: int
  controller_params: int
  category_params: int
  stages: np.ndarray

  @property
  def total_macs(self) -> int:
    """Inference MACs with every sub-block on (controllers and category heads excluded)."""
    return int(self.base_macs + self.sub_macs.sum())

  @property
  def params(self) -> int:
    """Inference parameters: backbone + controllers (the category heads are training-only)."""
    return int(self.backbone_params + self.controller_params)

  def executed(self, gates):
    """MACs each image runs, ``base + sum_{l,n} gates[b, l, n] f_{l,n}``: gates [B, L, N] (jnp
    or numpy, 0/1 or soft) -> [B] (float32 for jnp, float64 for numpy)."""
    if isinstance(gates, np.ndarray):
      return self.base_macs + np.einsum("bln,ln->b", gates.astype(np.float64), self.sub_macs)
    return self.base_macs + jnp.einsum("bln,ln->b", gates, jnp.asarray(self.sub_macs, jnp.float32))

  def as_dict(self) -> dict:
    return {"blocks": list(self.blocks), "sub_macs": self.sub_macs.tolist(), "base_macs": self.base_macs,
            "total_macs": self.total_macs, "controller_macs": self.controller_macs,
            "category_macs": self.category_macs, "params": self.params,
            "backbone_params": self.backbone_params, "controller_params": self.controller_params,
            "category_params": self.category_params}


def _part(path: str, blocks) -> tuple:
  """('controller' | 'category' | 'sub', block index, sub-block index) or ('base',)."""
  parts = path.split("/")
  if CONTROLLER in parts:
    return (CATEGORY,) if parts[-1] == CATEGORY else (CONTROLLER,)
  block = "/".join(parts[:-2])
  if len(parts) >= 3 and parts[-2].startswith("sub") and block in blocks:
    return ("sub", blocks[block], int(parts[-2][3:]))
  return ("base",)


def cost_table(model) -> CostTable:
  """The `CostTable` of a DMNN model (a static function of its architecture)."""
  keys = dmnn.block_keys(model)
  if not keys:
    raise ValueError(f"{type(model).__name__} has no DMNN blocks (paths gate points)")
  graph = models.describe(model)
  index = {k: i for i, k in enumerate(keys)}
  paths = graph.gate(keys[0] + "/paths").channels
  sub = np.zeros((len(keys), paths), np.int64)
  macs = {"base": 0, CONTROLLER: 0, CATEGORY: 0}
  params = {"base": 0, CONTROLLER: 0, CATEGORY: 0}
  for row in costs.count(graph).layers:
    part = _part(row.path, index)
    if part[0] == "sub":
      sub[part[1], part[2]] += row.macs
      params["base"] += row.params
    else:
      macs[part[0]] += row.macs
      params[part[0]] += row.params
  sizes = [graph.gate(k + "/out").spatial[0] for k in keys]
  order = sorted(set(sizes), reverse=True)
  return CostTable(blocks=keys, sub_macs=sub, base_macs=int(macs["base"]),
                   controller_macs=int(macs[CONTROLLER]), category_macs=int(macs[CATEGORY]),
                   backbone_params=int(params["base"]), controller_params=int(params[CONTROLLER]),
                   category_params=int(params[CATEGORY]),
                   stages=np.asarray([order.index(s) for s in sizes], np.int32))
