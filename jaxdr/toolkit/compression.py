"""One compression summary: a mask's channels cut out with `jaxdr.surgery`, the costs before
and after, the measured speed of both networks, and optionally the small model on disk.

    summary, sliced = compression.compress(model, variables, mask, latency_batch_sizes=(1, 256),
                                           save_to=workdir / "compressed", model_name="lenet5",
                                           model_kwargs=training.model_kwargs(config))
    summary.as_dict()   # {'kept': {...}, 'params_before': ..., 'macs_after': ..., 'latency': [...]}
    sliced.model, sliced.variables, sliced.mask     # apply(sliced...) == apply(model, variables, x, mask)

Params and MACs are `costs.count` of the unpruned model and of the sliced one (whose
remaining mask, with ``strict=False`` or ``channel_multiple``, may keep a few channels masked
that surgery could not cut); bytes are the stored size of ``variables['params']`` (not the
BatchNorm statistics). Latency: `time_side_by_side` of the unpruned model (no mask) and the
sliced one (under its remaining mask) at each batch size.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, NamedTuple, Optional, Sequence, Tuple

import jax
import numpy as np

from jaxdr import checkpoints, costs, surgery
from jaxdr.toolkit import latency


class Sliced(NamedTuple):
  """The sliced network: ``apply(model, variables, x, mask)`` equals the original under the mask."""
  model: Any
  variables: Any
  mask: Dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Latency:
  """Median seconds of one forward of ``batch_size`` images, unpruned vs sliced."""
  batch_size: int
  unpruned_s: float
  sliced_s: float

  @property
  def speedup(self) -> float:
    return self.unpruned_s / self.sliced_s if self.sliced_s > 0 else float("nan")


@dataclasses.dataclass(frozen=True)
class Summary:
  """What compressing under a mask bought: ``kept`` open channels per masked gate key, and
  params / MACs / bytes of the unpruned (``_before``) and sliced (``_after``) models."""
  kept: Dict[str, int]
  params_before: int
  params_after: int
  macs_before: int
  macs_after: int
  bytes_before: int
  bytes_after: int
  latency: Tuple[Latency, ...] = ()
  saved_to: Optional[str] = None

  def as_dict(self) -> Dict[str, Any]:
    out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "latency"}
    out["latency"] = [{"batch_size": l.batch_size, "unpruned_s": l.unpruned_s, "sliced_s": l.sliced_s,
                       "speedup": l.speedup} for l in self.latency]
    return out


def param_bytes(variables: Mapping[str, Any]) -> int:
  """Bytes of ``variables['params']`` as stored (size x item size of every leaf)."""
  return int(sum(np.size(x) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(variables["params"])))


def compress(model, variables: Mapping[str, Any], mask: Mapping[str, Any], *, strict: bool = True,
             channel_multiple: int = 1, latency_batch_sizes: Sequence[int] = (), repeats: int = 20,
             save_to=None, model_name: str = "", model_kwargs: Optional[Mapping[str, Any]] = None
             ) -> Tuple[Summary, Sliced]:
  """Slices ``model`` under the 0/1 ``mask`` (`surgery.slice_model` with ``strict`` and
  ``channel_multiple``), counts both networks, times them at ``latency_batch_sizes`` and,
  with ``save_to``, saves the sliced model there (`checkpoints.save_model` of ``model_name``
  with ``model_kwargs`` and the sliced widths). Returns the summary and the sliced network."""
  if save_to is not None and not model_name:
    raise ValueError("saving the sliced model needs its model_name (and model_kwargs)")
  small, small_vars, rest = surgery.slice_model(model, variables, mask, strict=strict,
                                                channel_multiple=channel_multiple)
  before, after = costs.count(model), costs.count(small)
  timings = time_side_by_side(model, variables, {"sliced": (small, small_vars, rest)},
                              latency_batch_sizes, repeats)["sliced"]
  saved = None
  if save_to is not None:
    saved = str(checkpoints.save_model(save_to, model_name,
                                       {**dict(model_kwargs or {}), "channels": dict(small.channels)},
                                       small_vars))
  summary = Summary(kept={k: int(np.sum(np.asarray(v) != 0)) for k, v in dict(mask).items()},
                    params_before=int(before.params), params_after=int(after.params),
                    macs_before=int(before.macs), macs_after=int(after.macs),
                    bytes_before=param_bytes(variables), bytes_after=param_bytes(small_vars),
                    latency=timings, saved_to=saved)
  return summary, Sliced(small, small_vars, rest)


def time_side_by_side(model, variables: Mapping[str, Any], sliced: Mapping[str, latency.Entry],
                      batch_sizes: Sequence[int], repeats: int = 20) -> Dict[str, Tuple[Latency, ...]]:
  """``{name: Latency per batch size}`` of every sliced ``(model, variables, mask or None)``
  against the unpruned ``model``, all timed in one alternating loop per batch size
  (`latency.compare`): the unpruned model is measured once, beside all of them, so their
  speedups share one reference and one stretch of the machine's time."""
  if "unpruned" in sliced:
    raise ValueError("'unpruned' names the reference; give the sliced models other names")
  entries = {"unpruned": (model, variables, None), **sliced}
  out = {name: [] for name in sliced}
  for b in batch_sizes:
    t = latency.compare(entries, int(b), repeats)
    for name in sliced:
      out[name].append(Latency(batch_size=int(b), unpruned_s=t["unpruned"], sliced_s=t[name]))
  return {name: tuple(v) for name, v in out.items()}
