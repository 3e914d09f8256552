"""What every run leaves in its workdir: ``results.json``, ``report.md`` and PNG figures.

    reporting.write_results(workdir, metrics, config)          # flat metrics + config + environment
    reporting.write_report(workdir, "Training", metrics, config, figures=["curves.png"])
    reporting.plot_curves(training.read_metrics(workdir), workdir / "curves.png")

Files are written atomically (tmp file + rename), so an interrupted run never leaves a
half-written result, and only by process 0 of a multi-process run.
"""
from __future__ import annotations

import json
import math
import platform
import sys
from typing import Any, Iterable, Mapping, Optional, Sequence

from etils import epath
import jax
import numpy as np

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"


def _jsonable(x: Any) -> Any:
  if isinstance(x, Mapping):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, (np.generic, np.ndarray)) or hasattr(x, "__array__"):
    arr = np.asarray(x)
    return _jsonable(arr.item() if arr.ndim == 0 else arr.tolist())
  if isinstance(x, float) and not math.isfinite(x):
    return None  # JSON has no NaN / inf
  if isinstance(x, (str, int, float, bool)) or x is None:
    return x
  return str(x)


def is_writer() -> bool:
  """Whether this process writes the files all processes share (process 0 of a multi-process run)."""
  return jax.process_index() == 0


def write_text_atomic(path, text: str) -> epath.Path:
  """Writes ``text`` to ``path`` via a temporary file and a rename (process 0 only)."""
  path = epath.Path(path)
  if is_writer():
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text(text)
    tmp.replace(path)
  return path


def write_json(path, obj: Any) -> epath.Path:
  return write_text_atomic(path, json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n")


def environment() -> dict:
  """Versions of the stack and the devices this run used."""
  import flax, optax, orbax.checkpoint  # pylint: disable=g-import-not-at-top,multiple-imports
  import jaxdr  # pylint: disable=g-import-not-at-top
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    tfds_version = tfds.__version__
  except ImportError:
    tfds_version = None
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  return {
      "python": platform.python_version(), "jax": jax.__version__, "jaxlib": metadata.version("jaxlib"),
      "flax": flax.__version__, "optax": optax.__version__,
      "orbax_checkpoint": metadata.version("orbax-checkpoint"), "tensorflow_datasets": tfds_version,
      "jaxdr": jaxdr.__version__, "platform": platform.platform(),
      "backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
      "device_count": jax.device_count(), "local_device_count": jax.local_device_count(),
      "process_count": jax.process_count(),
  }


def write_results(workdir, metrics: Mapping[str, Any], config=None, **extra) -> dict:
  """``workdir/results.json``: the metrics at top level, then ``config`` and ``environment``."""
  results = dict(metrics)
  results.update(extra)
  if config is not None:
    results["config"] = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  results["environment"] = environment()
  write_json(epath.Path(workdir) / RESULTS_FILE, results)
  return _jsonable(results)


def read_results(workdir) -> dict:
  return json.loads((epath.Path(workdir) / RESULTS_FILE).read_text())


def _fmt(v: Any) -> str:
  if isinstance(v, float):
    return f"{v:.4g}" if math.isfinite(v) else "n/a"
  return str(v)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Optional[Sequence[str]] = None) -> str:
  """A GitHub markdown table of ``rows`` (dicts) over ``columns`` (default: the first row's keys)."""
  if not rows:
    return ""
  columns = list(columns or rows[0].keys())
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
  return "\n".join(lines) + "\n"


def write_report(workdir, title: str, metrics: Mapping[str, Any], config=None,
                 sections: Iterable[tuple] = (), figures: Iterable[str] = ()) -> epath.Path:
  """A short ``workdir/report.md``: the metrics, extra ``(heading, markdown)`` sections,
  figures (paths relative to the workdir) and the key config values."""
  out = [f"# {title}\n"]
  flat = {k: v for k, v in metrics.items() if not isinstance(v, (Mapping, list, tuple))}
  if flat:
    out.append(markdown_table([{"metric": k, "value": v} for k, v in flat.items()]))
  for heading, body in sections:
    out.append(f"\n## {heading}\n\n{body.rstrip()}\n")
  for fig in figures:
    out.append(f"\n![{fig}]({fig})\n")
  if config is not None:
    c = config
    summary = [f"method `{c.get('method', '?')}`", f"seed {c.get('seed', '?')}"]
    if "model" in c:
      summary.append(f"model `{c.model.get('name')}` (width {c.model.get('width')})")
    if "dataset" in c:
      summary.append(f"dataset `{c.dataset.get('name')}`")
    out.append("\nConfig: " + ", ".join(summary) + f" (full config in `{RESULTS_FILE}`).\n")
  out.append(f"\nRun on {jax.device_count()} x {jax.devices()[0].device_kind} "
             f"({jax.process_count()} process(es)), jax {jax.__version__}, "
             f"Python {sys.version.split()[0]}.\n")
  return write_text_atomic(epath.Path(workdir) / REPORT_FILE, "".join(out))


def save_figure(fig, path) -> epath.Path:
  """Saves a matplotlib figure as PNG (process 0 only) and closes it."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  path = epath.Path(path)
  if is_writer():
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp.png"
    fig.savefig(str(tmp), dpi=100, bbox_inches="tight")
    tmp.replace(path)
  plt.close(fig)
  return path


def plot_curves(history: Sequence[Mapping[str, Any]], path, title: str = "") -> epath.Path:
  """Loss and accuracy against epoch from training records (``training.read_metrics``: train
  records every log step, test records at each evaluation, both carrying their epoch)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg", force=False)
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
  for split in ("train", "test"):
    recs = sorted((r for r in history if f"{split}_loss" in r and "epoch" in r), key=lambda r: r["step"])
    if not recs:
      continue
    x = [r["epoch"] for r in recs]
    style = "o-" if split == "test" else "-"
    ax_loss.plot(x, [r[f"{split}_loss"] for r in recs], style, label=split)
    ax_acc.plot(x, [r[f"{split}_accuracy"] for r in recs], style, label=split)
  for ax, name in ((ax_loss, "cross-entropy loss"), (ax_acc, "top-1 accuracy")):
    ax.set_xlabel("epoch")
    ax.set_ylabel(name)
    ax.grid(alpha=0.3)
    ax.legend()
  if title:
    fig.suptitle(title)
  return save_figure(fig, path)
