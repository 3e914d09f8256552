"""Everything measured for one compressed layer once its greedy path is known: the curves of
Figs. 2-4 against the baselines, CAR + fine-tuning, the retrained path, Table 1's rows and
the per-class accuracy of Fig. 8 (`analyse`).

All accuracies of the curves and tables are on the evaluation set (the held-out half);
Table 1's stop counts are decided on the scoring set (`table`).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from absl import logging
import numpy as np

from jaxdr import models
from jaxdr.methods import finetune
from jaxdr.methods.car import baselines, curves, greedy, table

ORDINAL = {1: "st", 2: "nd", 3: "rd"}


def ordinal(n: int) -> str:
  return f"{n}{'th' if 10 <= n % 100 <= 20 else ORDINAL.get(n % 10, 'th')}"


def _end_reason(state: greedy.GreedyState, cfg, floor: int) -> str:
  if state.drop_at is not None and cfg.past_drop == "stop":
    return f"stopped at the {cfg.max_relative_drop:.0%} drop (past_drop='stop')"
  if cfg.min_kept > floor:
    return f"min_kept={cfg.min_kept}"
  return state.stop_reason or "greedy run not finished"


def analyse(model, variables, key: str, sets, cfg, state: greedy.GreedyState,
            retrained: Optional[greedy.GreedyState], reference: float, reference_scoring: float,
            seed: int, eval_kw: Dict[str, Any]) -> Dict[str, Any]:
  """Curves, acceptance, Table 1 rows and Fig. 8's per-class accuracies of layer ``key``."""
  graph = models.describe(model)
  channels = graph.gate(key).channels
  lowest = greedy.floors(graph, [key], cfg.min_kept)[key]
  ev = curves.Evaluator(model, variables, key, empty_branch=cfg.empty_branch, masks_per_call=int(cfg.masks_per_call),
                        **eval_kw)
  car_floor = state.greedy_floor(key)
  stop_n = state.kept_at_drop(key)
  grid = curves.curve_grid(channels, int(cfg.curve_points), lowest)
  grid = sorted(set(grid) | {car_floor} | ({stop_n} if stop_n is not None else set()))
  orders = {"car": np.asarray(state.order(key)),
            "incoming": baselines.order_by(baselines.incoming_importance(model, variables, key)),
            "outgoing": baselines.order_by(baselines.outgoing_importance(model, variables, key))}
  rand = baselines.random_orders(channels, int(cfg.random_repeats), seed)
  curve = curves.order_curves(ev, sets.eval_x, sets.eval_y, orders, rand, grid, car_floor)
  at = {p["kept"]: p["accuracy"] for p in curve["car"]}
  if car_floor > lowest:
    curve["car_end"] = {"kept": car_floor, "accuracy": at[car_floor], "reason": _end_reason(state, cfg, lowest)}
  if stop_n is not None:
    per = "" if cfg.greedy(0).past_per_iteration == cfg.per_iteration else \
        f"; past it {cfg.greedy(0).past_per_iteration} filters per iteration"
    curve["car_stop_point"] = {"kept": stop_n, "accuracy": at[stop_n],
                               "label": f"greedy stop point ({cfg.max_relative_drop:.0%} drop on the scoring set{per})"}

  ft = cfg.finetune
  tuner = None
  if ft.enabled:
    rates = finetune.car_layer_rates(model, key, float(ft.lr_compressed), float(ft.lr_next))
    opts = finetune.FinetuneOptions(steps=int(ft.steps), batch_size=int(ft.batch_size), default_lr=float(ft.lr_other),
                                    momentum=float(ft.momentum), seed=seed)
    tuner = curves.FineTuner(model, variables, key, sets, opts, rates, ev)
    for n in curves.curve_grid(channels, int(ft.points), lowest):
      if n >= car_floor:
        tuner(n, orders["car"])
  if retrained is not None:
    curve["car_retrained"] = ([{"kept": channels, "accuracy": reference, "scoring_accuracy": reference_scoring}]
                              + [{"kept": r["kept"][key], "accuracy": r["accuracy"],
                                  "scoring_accuracy": r["scoring_accuracy"]} for r in retrained.retrained])
    curve["car_retrained_order"] = retrained.order(key)

  half = [n for n in grid if lowest <= n <= channels // 2 and n >= car_floor]
  means = {name: float(np.mean([p["accuracy"] for p in curve[name] if p["kept"] in half]))
           for name in ("car", "incoming", "outgoing", "random")}
  acceptance = {**{f"mean_accuracy_{n}": v for n, v in means.items()}, "kept_counts": half,
                "car_ge_weight_baselines": means["car"] >= max(means["incoming"], means["outgoing"]),
                "car_gt_random": means["car"] > means["random"]}
  logging.info("car: %s: mean accuracy over kept <= %d: %s", key, channels // 2,
               ", ".join(f"{n} {v:.4f}" for n, v in means.items()))

  # Table 1: each order pruned while the scoring accuracy stays within the relative drop.
  floor = (1.0 - float(cfg.table_relative_drop)) * reference_scoring
  rows, kept_of = [], {}
  for name, label in (("car", "CAR"), ("incoming", "incoming weights"), ("outgoing", "outgoing weights")):
    lo = car_floor if name == "car" else lowest
    n, crossed = table.kept_at_drop(
        lambda counts, o=orders[name]: ev.accuracy(sets.score_x, sets.score_y, baselines.masks_along(o, counts)),
        channels, lo, floor)
    row = baselines.masks_along(orders[name], [n])
    kept_of[name] = n
    rows.append(table.row(graph, key, label, n, crossed, ev.accuracy(sets.score_x, sets.score_y, row)[0],
                          ev.accuracy(sets.eval_x, sets.eval_y, row)[0]))
  if retrained is not None:
    points = curve["car_retrained"]
    bad = [i for i, p in enumerate(points) if p["scoring_accuracy"] < floor]
    p = points[bad[0] - 1] if bad else points[-1]
    rows.insert(1, table.row(graph, key, f"CAR, retrained every {cfg.retrain_every} iteration(s)", p["kept"],
                             bool(bad), p["scoring_accuracy"], p["accuracy"]))
  if tuner is not None:
    n, crossed = table.smallest_passing(lambda m: tuner(m, orders["car"])["scoring_accuracy"] >= floor,
                                        car_floor, channels) if ft.table_search else (kept_of["car"], True)
    point = tuner(n, orders["car"])
    rows.insert(1, table.row(graph, key, "CAR + fine-tuning", n, crossed, point["scoring_accuracy"],
                             point["accuracy"]))
    curve["car_finetuned"] = tuner.points()
  else:
    curve["car_finetuned"] = []

  # Fig. 8: per-class accuracy with the layer CAR-compressed at Table 1's point.
  before = ev.class_accuracy(sets.eval_x, sets.eval_y, np.ones(channels, np.float32))
  after = ev.class_accuracy(sets.eval_x, sets.eval_y, baselines.masks_along(orders["car"], [kept_of["car"]])[0])
  per_class = {"layer": key, "kept": kept_of["car"], "filters": channels, "set": "evaluation set",
               "before": before.tolist(), "after": after.tolist(),
               "within": float(np.mean(after >= before - 0.03))}
  return {"curve": curve, "acceptance": acceptance, "table1": rows, "per_class": per_class,
          "orders": {k: [int(i) for i in v] for k, v in orders.items()}}


def patch_roles(order: List[int], floor: int, count: int) -> List[tuple]:
  """(filter, role) of the ``count`` filters pruned first and the ``count`` kept last."""
  c = len(order)
  first = [(order[i], f"pruned {ordinal(i + 1)}") for i in range(min(count, c))]
  last = []
  for i in range(c - 1, max(c - 1 - count, -1), -1):
    if order[i] in [f for f, _ in first]:
      continue
    last.append((order[i], "never pruned" if i >= c - floor else f"pruned {ordinal(i + 1)} of {c}"))
  return first + last
