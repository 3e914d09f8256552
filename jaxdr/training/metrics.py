"""Training metrics: TensorBoard event files and ``metrics.jsonl`` (process 0 writes)."""
from __future__ import annotations

import json
from typing import Any, Dict, Mapping

from etils import epath
import jax

from jaxdr import reporting

METRICS_FILE = "metrics.jsonl"


class MetricWriter:
  """Scalars to TensorBoard (tensorboardX) and ``metrics.jsonl``; a ``None`` workdir logs nothing.

  ``metrics.jsonl`` is rewritten whole (tmp + rename) on every write: it stays valid if the
  run is killed, and works on object stores (gs://) that cannot append. A resumed run drops
  the records after its checkpoint.
  """

  def __init__(self, workdir, resume_step: int):
    self._active = workdir is not None and jax.process_index() == 0
    self._tb = None
    self._records = []
    if workdir is None:
      return
    self._path = epath.Path(workdir) / METRICS_FILE
    self._records = [r for r in read_metrics(workdir) if r["step"] <= resume_step]
    if self._active:
      import tensorboardX  # pylint: disable=g-import-not-at-top
      self._tb = tensorboardX.SummaryWriter(str(epath.Path(workdir) / "tensorboard"),
                                            purge_step=resume_step + 1)

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self._active:
      return
    for k, v in scalars.items():
      self._tb.add_scalar(k, v, step)
    self._records.append({"step": step, **scalars})
    reporting.write_text_atomic(self._path, "".join(json.dumps(r) + "\n" for r in self._records))

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir) -> list:
  """Records ``{'step': .., 'epoch': .., name: value}`` a training run wrote (for plots)."""
  path = epath.Path(workdir) / METRICS_FILE
  if not path.exists():
    return []
  return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def summarise(sums: Mapping[str, Any], prefix: str) -> Dict[str, float]:
  """``{prefix}_loss`` / ``{prefix}_accuracy`` (and any other sum) as means over ``count``."""
  count = max(float(sums["count"]), 1.0)
  out = {f"{prefix}_loss": float(sums["loss"]) / count,
         f"{prefix}_accuracy": float(sums["correct"]) / count}
  out.update({f"{prefix}_{k}": float(v) / count for k, v in sums.items()
              if k not in ("loss", "correct", "count")})
  return out
