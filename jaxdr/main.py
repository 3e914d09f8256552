"""The entry point: ``python -m jaxdr.main --config=configs/X.py --workdir=DIR``.

``--config.key=value`` overrides any config value (unknown keys are rejected). Dispatches
on ``config.method``: ``'train'`` -> `jaxdr.train.train_and_evaluate`, any other ``m`` ->
``jaxdr.methods.m.run(config, workdir)``. Every run leaves ``DIR/results.json`` and
``DIR/report.md``. Expected failures (bad flag or config, unknown model or dataset, missing
dataset, unusable workdir, corrupt checkpoint) print one ``jaxdr: error: ...`` line on
stderr and exit 1; nothing already in the workdir is removed. With tcmalloc installed the
command first restarts itself on it (``--allocator``; ``--xla_cpu_ynn``: `jaxdr.cpu_runtime`).

Multi-host: every host runs the same command; ``--coordinator_address`` /
``--num_processes`` / ``--process_id`` (or JAX's auto-detection on Cloud TPU) join them.
"""
from __future__ import annotations

import importlib
import os
import sys
import uuid

from absl import app
from absl import flags
from absl import logging
from etils import epath
from ml_collections import config_flags

from jaxdr import cpu_runtime

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", "",
                                   "host:port of process 0 for a multi-process run ('' = auto).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "Processes in a multi-process run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "This process's index in a multi-process run.")
_ALLOCATOR = flags.DEFINE_enum("allocator", "auto", cpu_runtime.ALLOCATORS,
                               "Memory allocator: 'auto' restarts on tcmalloc when it is installed "
                               "(much faster on CPU, see jaxdr/cpu_runtime.py).")
_XLA_CPU_YNN = flags.DEFINE_bool("xla_cpu_ynn", True, "Let XLA's CPU compiler use YNNPACK fusions "
                                 "(XLA's default); false runs wide convs faster and narrow nets "
                                 "slower (jaxdr/cpu_runtime.py). Unset: XLA_FLAGS decides.")

PROG = "jaxdr"


class UsageError(ValueError):
  """A bad command line or config (reported in one line)."""


def fail(message: str, code: int = 1) -> "NoReturn":  # noqa: F821
  """Prints ``jaxdr: error: message`` (one line) on stderr and exits."""
  first = " ".join(str(message).split()) or "unknown error"
  sys.stdout.flush()
  sys.stderr.write(f"{PROG}: error: {first}\n")
  sys.stderr.flush()
  os._exit(code)  # pylint: disable=protected-access  (no atexit hooks printing more)


def _parse_flags(argv):
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(str(e), code=2)
  except Exception as e:  # the config file itself failed to load
    fail(f"cannot load config: {type(e).__name__}: {e}", code=2)


def _check_workdir(workdir: str) -> epath.Path:
  """Creates ``workdir`` if needed and checks that files can be written in it."""
  path = epath.Path(workdir)
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".write_test_{uuid.uuid4().hex}"
    probe.write_text("ok")
    probe.unlink()
  except OSError as e:
    raise UsageError(f"workdir {workdir} is not writable: {e.strerror or e}") from e
  return path


def validate_config(config) -> None:
  """Checks names the run needs before anything is written (one clear error each)."""
  from jaxdr import data, models  # pylint: disable=g-import-not-at-top
  for section in ("method", "seed"):
    if section not in config:
      raise UsageError(f"config has no '{section}'")
  if "model" in config and config.model.get("name"):
    if config.model.name not in models.names():
      raise UsageError(f"unknown model {config.model.name!r}; known models: {', '.join(models.names())}")
  if "dataset" in config and config.dataset.get("name"):
    data.info(config.dataset.name)  # ValueError naming the known datasets


def run(config, workdir: str) -> dict:
  """Runs ``config`` in ``workdir``; writes and returns the results."""
  from jaxdr import reporting  # pylint: disable=g-import-not-at-top
  validate_config(config)
  path = _check_workdir(workdir)
  method = config.method
  if method == "train":
    from jaxdr import train  # pylint: disable=g-import-not-at-top
    metrics = train.train_and_evaluate(config, path)
    reporting.write_results(path, metrics, config, method=method)
    figures = []
    history = train.read_metrics(path)
    if history:
      reporting.plot_curves(history, path / "curves.png",
                            title=f"{config.model.name} on {config.dataset.name}")
      figures.append("curves.png")
    reporting.write_report(
        path, f"Training {config.model.name} on {config.dataset.name}",
        {k: metrics[k] for k in ("test_accuracy", "test_loss", "train_loss", "train_accuracy",
                                 "steps", "epochs", "train_time_s", "images_per_sec") if k in metrics},
        config, figures=figures)
    return metrics
  try:
    module = importlib.import_module(f"jaxdr.methods.{method}")
  except ModuleNotFoundError as e:
    if e.name not in (f"jaxdr.methods.{method}", "jaxdr.methods"):
      raise
    raise UsageError(f"unknown method {method!r} (no module jaxdr.methods.{method})") from e
  if not hasattr(module, "run"):
    raise UsageError(f"jaxdr.methods.{method} has no run(config, workdir)")
  results = module.run(config, str(path))
  if not (path / reporting.RESULTS_FILE).exists():
    reporting.write_results(path, results or {}, config, method=method)
  if not (path / reporting.REPORT_FILE).exists():
    reporting.write_report(path, f"{method} run", results or {}, config)
  return results


def _quiet_orbax(record) -> bool:
  """Keeps orbax's per-save INFO chatter out of the progress log."""
  return record.levelno >= 30 or "/orbax/" not in record.pathname


def main(argv):
  logging.get_absl_handler().addFilter(_quiet_orbax)
  if len(argv) > 1:
    fail(f"unexpected arguments: {' '.join(argv[1:])}", code=2)
  if _CONFIG.value is None:
    fail("--config is required (e.g. --config=configs/quickstart.py)", code=2)
  if not _WORKDIR.value:
    fail("--workdir is required", code=2)
  cpu_runtime.ensure_allocator(_ALLOCATOR.value)
  if _XLA_CPU_YNN.present:  # else keep what XLA_FLAGS already says
    cpu_runtime.set_ynn(_XLA_CPU_YNN.value)
  logging.info("cpu runtime: %s", cpu_runtime.describe())
  from jaxdr import checkpoints, data, train  # pylint: disable=g-import-not-at-top
  expected = (UsageError, ValueError, KeyError, OSError, checkpoints.CheckpointError,
              data.DatasetNotFoundError)
  try:
    train.maybe_initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    results = run(_CONFIG.value, _WORKDIR.value)
  except expected as e:
    logging.debug("failure", exc_info=True)
    fail(e.args[0] if isinstance(e, KeyError) and e.args else e)
  if "test_accuracy" in (results or {}):
    print(f"test_accuracy {results['test_accuracy']:.4f}  results in {_WORKDIR.value}/results.json")


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
