"""The entry point: ``python -m jaxdr.main --config=configs/X.py --workdir=DIR``.

``--config.key=value`` overrides any config value (unknown keys are rejected, naming the
nearest valid ones). Dispatches on ``config.method``: ``jaxdr.methods.<method>.run(config,
workdir)`` ('train' included). Every run leaves ``DIR/results.json`` and ``DIR/report.md``.
A user error (bad flag or config value, unknown model or dataset, missing dataset, unusable
workdir, corrupt checkpoint: `jaxdr.errors.UserError`) prints one ``jaxdr: error: ...`` line
and exits 2, removing nothing from the workdir; any other exception is a bug and keeps its
traceback. On CPU, the command first restarts itself on tcmalloc when it is installed
(``--allocator``; ``--xla_cpu_ynn``: `jaxdr.cpu_runtime`).

Multi-host: every host runs the same command; ``--coordinator_address`` /
``--num_processes`` / ``--process_id`` (or JAX's auto-detection on Cloud TPU) join them.
"""
from __future__ import annotations

import importlib
import re
import sys
import uuid

from absl import app
from absl import flags
from absl import logging
from etils import epath
from ml_collections import config_flags

from jaxdr import cpu_runtime
from jaxdr.errors import ConfigError, UserError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", "",
                                   "host:port of process 0 for a multi-process run ('' = auto).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "Processes in a multi-process run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "This process's index in a multi-process run.")
_ALLOCATOR = flags.DEFINE_enum("allocator", "auto", cpu_runtime.ALLOCATORS,
                               "Memory allocator on CPU: 'auto' restarts on tcmalloc when it is "
                               "installed (much faster, see jaxdr/cpu_runtime.py).")
_XLA_CPU_YNN = flags.DEFINE_bool("xla_cpu_ynn", True, "Let XLA's CPU compiler use YNNPACK fusions "
                                 "(XLA's default); false runs wide convs faster and narrow nets "
                                 "slower (jaxdr/cpu_runtime.py). Unset: XLA_FLAGS decides.")

PROG = "jaxdr"
USAGE_EXIT = 2


class UsageError(UserError, ValueError):
  """A bad command line, config or workdir (reported in one line)."""


def fail(message) -> "NoReturn":  # noqa: F821
  """Prints ``jaxdr: error: message`` (one line) on stderr and exits with status 2."""
  first = " ".join(str(message).split()) or "unknown error"
  sys.stdout.flush()
  sys.stderr.write(f"{PROG}: error: {first}\n")
  sys.stderr.flush()
  sys.exit(USAGE_EXIT)


def _config_path_and_overrides(argv):
  path, overrides = None, []
  for arg in argv[1:]:
    m = re.match(r"--config(\.[^=]+)?=(.*)", arg)
    if m and m.group(1):
      overrides.append((m.group(1)[1:], m.group(2)))
    elif m:
      path = m.group(2)
  return path, overrides


def explain_flag_error(argv, error: Exception) -> str:
  """One line for a command line that did not parse: the config file that does not load, the
  unknown ``--config.`` key (with the nearest valid ones), or the bad flag value."""
  from jaxdr import options  # pylint: disable=g-import-not-at-top
  path, overrides = _config_path_and_overrides(argv)
  if path is None:
    return str(error).splitlines()[0] if str(error) else type(error).__name__
  file, _, arg = path.partition(":")
  try:
    module = config_flags.config_flags._LoadConfigModule("config", file)  # pylint: disable=protected-access
    config = module.get_config(*([arg] if arg else []))
  except Exception as e:  # the config file itself does not load
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    return f"cannot load config {path}: {type(e).__name__}: {lines[-1] if lines else ''}"
  for key, _ in overrides:
    node, walked = config, []
    for part in key.split("."):
      children = list(node.keys()) if hasattr(node, "keys") else []
      if part not in children:
        where, prefix = ".".join(walked + [part]), ".".join(walked)
        names = [f"{prefix}.{c}" if prefix else c for c in children]
        return f"unknown config key '{where}'{options.nearest(where, names)}"
      node, walked = node[part], walked + [part]
  return str(error).splitlines()[0] if str(error) else type(error).__name__


def _parse_flags(argv):
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # a bad flag, a config file that does not load, an unknown key
    fail(explain_flag_error(argv, e))


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
    if config.dataset.name not in data.names():
      raise UsageError(f"unknown dataset {config.dataset.name!r}; known datasets: {', '.join(data.names())}")


def method_module(method: str):
  """``jaxdr.methods.<method>``, which must have ``run(config, workdir)``."""
  try:
    module = importlib.import_module(f"jaxdr.methods.{method}")
  except ModuleNotFoundError as e:
    if e.name not in (f"jaxdr.methods.{method}", "jaxdr.methods"):
      raise
    raise UsageError(f"unknown method {method!r} (no module jaxdr.methods.{method})") from e
  if not hasattr(module, "run"):
    raise UsageError(f"jaxdr.methods.{method} has no run(config, workdir)")
  return module


def run(config, workdir: str) -> dict:
  """Runs ``config`` in ``workdir``; writes and returns the results."""
  from jaxdr import reporting  # pylint: disable=g-import-not-at-top
  validate_config(config)
  module = method_module(config.method)
  path = _check_workdir(workdir)
  results = module.run(config, str(path))
  if not (path / reporting.RESULTS_FILE).exists():
    reporting.write_results(path, results or {}, config, method=config.method)
  if not (path / reporting.REPORT_FILE).exists():
    reporting.write_report(path, f"{config.method} run", results or {}, config)
  return results


def _quiet_orbax(record) -> bool:
  """Keeps orbax's per-save INFO chatter out of the progress log."""
  return record.levelno >= 30 or "/orbax/" not in record.pathname


def main(argv):
  logging.get_absl_handler().addFilter(_quiet_orbax)
  if len(argv) > 1:
    fail(f"unexpected arguments: {' '.join(argv[1:])}")
  config = _CONFIG.value
  try:
    config is None or "method" in config  # pylint: disable=expression-not-assigned
  except Exception as e:  # the config file failed to load (ml_collections defers the error)
    fail(explain_flag_error(sys.argv, e))
  if config is None:
    fail("--config is required (e.g. --config=configs/quickstart.py)")
  if not _WORKDIR.value:
    fail("--workdir is required")
  cpu_runtime.ensure_allocator(_ALLOCATOR.value)
  if _XLA_CPU_YNN.present:  # else keep what XLA_FLAGS already says
    cpu_runtime.set_ynn(_XLA_CPU_YNN.value)
  logging.info("cpu runtime: %s", cpu_runtime.describe())
  from jaxdr import training  # pylint: disable=g-import-not-at-top
  try:
    training.maybe_initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    results = run(config, _WORKDIR.value)
  except UserError as e:
    logging.debug("user error", exc_info=True)
    fail(e)
  if "test_accuracy" in (results or {}):
    print(f"test_accuracy {results['test_accuracy']:.4f}  results in {_WORKDIR.value}/results.json")


def entry_point():
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  entry_point()
