"""Flags shared by the launch scripts, and running (or, with --dry_run, printing) commands."""
from __future__ import annotations

import shlex
import subprocess
import sys
from typing import Callable, List, Sequence

from absl import flags
from absl import logging

from launch import tpu_vm

flags.DEFINE_string("name", "jaxdr", "TPU VM name.")
flags.DEFINE_string("zone", "", "GCP zone; '' = a zone offering the accelerator type "
                    "(us-central2-b for v4, us-west4-a for v5e).")
flags.DEFINE_string("accelerator_type", "v4-8", "v4-8 / v5e-8 (single host), v4-32 (pod slice), ...")
flags.DEFINE_string("runtime_version", "", "TPU software version; '' = tpu-ubuntu2204-base for "
                    "v2-v4, v2-alpha-tpuv5-lite for v5e, v2-alpha-tpuv5 for v5p, v2-alpha-tpuv6e.")
flags.DEFINE_string("project", "", "GCP project; '' = gcloud's configured project.")
flags.DEFINE_bool("spot", False, "Create a Spot VM (cheaper, can be preempted).")
flags.DEFINE_string("repo", "", "jaxdr to install: a git URL, or a local checkout copied with scp.")
flags.DEFINE_string("extras", "", "Extras to install with jaxdr, e.g. 'test'.")
flags.DEFINE_list("apt_packages", list(tpu_vm.APT_PACKAGES), "Debian packages to install on "
                  "every worker besides python3.11 (tpu_vm.APT_PACKAGES); '' = none.")
flags.DEFINE_string("config", "", "Config file relative to the jaxdr checkout, e.g. configs/quickstart.py.")
flags.DEFINE_string("workdir", "", "Run directory every host can write, e.g. gs://BUCKET/jaxdr/run1.")
flags.DEFINE_multi_string("set", [], "Config override KEY=VALUE, passed as --config.KEY=VALUE; repeatable.")
flags.DEFINE_multi_string("sweep", [], "Sweep axis 'KEY=V1,V2,...'; repeatable: runs the cartesian "
                          "product, one workdir WORKDIR/KEY=V,... per point.")
flags.DEFINE_string("log", "", "Detach the run with nohup, writing to ~/LOG on every worker.")
flags.DEFINE_bool("keep", False, "launch.experiment: keep the TPU VM after the runs (default: delete "
                  "it, also after a failure).")
flags.DEFINE_bool("dry_run", False, "Print the gcloud commands (one per line, shell-quoted) "
                  "instead of running them.")

FLAGS = flags.FLAGS


def declare(*names: str) -> None:
  """Marks the flags a script uses as its key flags (shown by its --help)."""
  for name in names:
    flags.declare_key_flag(name)


def tpu_from_flags() -> tpu_vm.TPU:
  return tpu_vm.TPU(name=FLAGS.name, zone=FLAGS.zone, accelerator_type=FLAGS.accelerator_type,
                    runtime_version=FLAGS.runtime_version, project=FLAGS.project, spot=FLAGS.spot)


def execute(commands: Sequence[List[str]], dry_run: bool) -> None:
  """Prints ``commands`` (dry run) or runs them in order, stopping at the first failure."""
  if dry_run:
    sys.stdout.write(tpu_vm.format_commands(commands))
    return
  for cmd in commands:
    logging.info("$ %s", shlex.join(cmd))
    try:
      returncode = subprocess.run(cmd, check=False).returncode
    except FileNotFoundError:
      raise SystemExit(f"error: {cmd[0]} not found; install the Google Cloud CLI "
                       "(https://cloud.google.com/sdk/docs/install) or use --dry_run") from None
    if returncode != 0:
      raise SystemExit(f"error: command failed with exit status {returncode}: {shlex.join(cmd)}")


def main_for(build: Callable[[], Sequence[List[str]]]) -> Callable[[List[str]], None]:
  """An absl main that builds the commands and executes them; bad flags give one error line."""
  def main(argv: List[str]) -> None:
    if len(argv) > 1:
      raise SystemExit(f"error: unexpected arguments {argv[1:]}")
    try:
      commands = build()
    except (ValueError, OSError) as e:
      raise SystemExit(f"error: {e}") from None
    execute(commands, FLAGS.dry_run)
  return main
