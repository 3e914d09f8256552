"""Builds the gcloud command lines that run jaxdr on a Cloud TPU VM (pure functions).

Every builder returns a list of commands, each an argv list (``["gcloud", ...]``); the
launch scripts either print them (``--dry_run``, one per line, shell-quoted) or run them
in order. Commands that run on the VM go in ``--command=``, quoted for the remote shell.

    tpu = TPU(name="jaxdr", zone="us-central2-b", accelerator_type="v4-32")
    create_commands(tpu)                      # gcloud compute tpus tpu-vm create ...
    run_commands(tpu, "configs/x.py", "gs://b/run", overrides={"seed": "1"})
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import re
import shlex
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

Command = List[str]

# Per TPU generation: the unit the accelerator type counts (cores or chips), how many of
# those one host has, the runtime (software) version Google recommends for JAX, and a
# zone that offers it. v5e/v6e counts chips, the others TensorCores.
_FAMILIES = {
    "v2": dict(per_host=8, runtime="tpu-ubuntu2204-base", zone="us-central1-b"),
    "v3": dict(per_host=8, runtime="tpu-ubuntu2204-base", zone="europe-west4-a"),
    "v4": dict(per_host=8, runtime="tpu-ubuntu2204-base", zone="us-central2-b"),
    "v5litepod": dict(per_host=8, runtime="v2-alpha-tpuv5-lite", zone="us-west4-a"),
    "v5p": dict(per_host=8, runtime="v2-alpha-tpuv5", zone="us-east5-a"),
    "v6e": dict(per_host=8, runtime="v2-alpha-tpuv6e", zone="us-east5-b"),
}
# Multi-host v5e / v6e slices have 4 chips per host (v5litepod-16 = 4 hosts).
_POD_CHIPS_PER_HOST = {"v5litepod": 4, "v6e": 4}
_ALIASES = {"v5e": "v5litepod"}
REMOTE_DIR = "jaxdr"  # the checkout on every worker, relative to the home directory
# jaxdr needs Python >= 3.11; the TPU images are Ubuntu 22.04 (Python 3.10), so the install
# puts Debian's python3.11 in a venv and every remote command uses it.
REMOTE_PYTHON_PACKAGES = ("python3.11", "python3.11-venv")
# Debian packages every worker gets by default: the offline Fashion-MNIST files the default
# configs read, and tcmalloc (jaxdr.main restarts on it: jaxdr/cpu_runtime.py).
APT_PACKAGES = ("dataset-fashion-mnist", "libtcmalloc-minimal4")
REMOTE_VENV = "~/jaxdr-venv"
REMOTE_PYTHON = f"{REMOTE_VENV}/bin/python"  # unquoted in remote lines, so ~ expands
# On a pod slice every host joins one jax.distributed run: jaxdr.main initialises it when
# JAX_COORDINATOR_ADDRESS is set, and JAX reads the process count and index from the TPU
# metadata. Worker 0's address (the coordinator) comes from the same metadata.
_METADATA = "http://metadata.google.internal/computeMetadata/v1/instance/attributes"
POD_COORDINATOR = ("export JAX_COORDINATOR_ADDRESS=$(curl -sf -H 'Metadata-Flavor: Google' "
                   f"{_METADATA}/worker-network-endpoints | cut -d, -f1 | awk -F: '{{print $NF}}'):8476")


@dataclasses.dataclass(frozen=True)
class TPU:
  """A Cloud TPU VM: ``accelerator_type`` like ``v4-8``, ``v4-32``, ``v5e-8``/``v5litepod-8``."""
  name: str
  zone: str = ""
  accelerator_type: str = "v4-8"
  runtime_version: str = ""
  project: str = ""
  spot: bool = False

  def __post_init__(self):
    if not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", self.name):
      raise ValueError(f"TPU name must be lower-case letters, digits and '-', got {self.name!r}")
    family, count = parse_accelerator_type(self.accelerator_type)
    object.__setattr__(self, "accelerator_type", f"{family}-{count}")
    object.__setattr__(self, "zone", self.zone or _FAMILIES[family]["zone"])
    object.__setattr__(self, "runtime_version", self.runtime_version or _FAMILIES[family]["runtime"])

  @property
  def num_hosts(self) -> int:
    family, count = parse_accelerator_type(self.accelerator_type)
    if count <= _FAMILIES[family]["per_host"]:
      return 1
    return count // _POD_CHIPS_PER_HOST.get(family, _FAMILIES[family]["per_host"])

  @property
  def is_pod(self) -> bool:
    return self.num_hosts > 1

  def location_flags(self) -> Command:
    return [f"--zone={self.zone}"] + ([f"--project={self.project}"] if self.project else [])


def parse_accelerator_type(accelerator_type: str) -> Tuple[str, int]:
  """``'v4-32'`` -> ``('v4', 32)``; ``'v5e-8'`` -> ``('v5litepod', 8)``."""
  m = re.fullmatch(r"(v\d+[a-z]*)-(\d+)", accelerator_type)
  family = _ALIASES.get(m.group(1), m.group(1)) if m else None
  if family not in _FAMILIES:
    raise ValueError(f"unknown accelerator type {accelerator_type!r}; expected e.g. v4-8, v4-32, "
                     f"v5e-8 (= v5litepod-8), v5p-8, v6e-8 ({', '.join(sorted(_FAMILIES))})")
  return family, int(m.group(2))


def _tpu_vm(verb: str, tpu: TPU) -> Command:
  return ["gcloud", "compute", "tpus", "tpu-vm", verb, tpu.name]


def ssh_command(tpu: TPU, remote: str) -> Command:
  """Runs the shell line ``remote`` on the VM: on every worker of a pod slice."""
  workers = ["--worker=all"] if tpu.is_pod else []
  return _tpu_vm("ssh", tpu) + tpu.location_flags() + workers + [f"--command={remote}"]


def create_commands(tpu: TPU) -> List[Command]:
  cmd = _tpu_vm("create", tpu) + tpu.location_flags() + [
      f"--accelerator-type={tpu.accelerator_type}", f"--version={tpu.runtime_version}"]
  return [cmd + (["--spot"] if tpu.spot else [])]


def delete_commands(tpu: TPU) -> List[Command]:
  return [_tpu_vm("delete", tpu) + tpu.location_flags() + ["--quiet"]]


def is_git_url(repo: str) -> bool:
  return bool(re.match(r"^([a-z+]+://|git@)", repo))


def install_commands(tpu: TPU, repo: str, extras: str = "",
                     apt_packages: Sequence[str] = APT_PACKAGES) -> List[Command]:
  """Puts ``repo`` (git URL, or local checkout copied with scp) on every worker and installs it.

  Installs Python 3.11 (a venv), jaxdr with ``jax[tpu]``, and the Debian packages (the
  offline Fashion-MNIST files that the default configs read; tcmalloc, see `jaxdr.cpu_runtime`).
  """
  if not repo:
    raise ValueError("--repo is required: a git URL or a local checkout of jaxdr")
  commands, steps = [], ["set -e"]
  if is_git_url(repo):
    steps.append(f"if [ -d {REMOTE_DIR}/.git ]; then git -C {REMOTE_DIR} pull --ff-only; "
                 f"else git clone {shlex.quote(repo)} {REMOTE_DIR}; fi")
  else:
    if not os.path.isfile(os.path.join(repo, "setup.cfg")):
      raise ValueError(f"--repo {repo!r} is neither a git URL nor a local jaxdr checkout (no setup.cfg)")
    commands.append(ssh_command(tpu, f"rm -rf {REMOTE_DIR}"))
    scp = ["gcloud", "compute", "tpus", "tpu-vm", "scp", "--recurse", os.path.abspath(repo),
           f"{tpu.name}:{REMOTE_DIR}"] + tpu.location_flags()
    commands.append(scp + (["--worker=all"] if tpu.is_pod else []))
  packages = list(REMOTE_PYTHON_PACKAGES) + [p for p in apt_packages if p]
  steps.append("sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
               + shlex.join(packages))
  steps.append(f"{REMOTE_PYTHON_PACKAGES[0]} -m venv {REMOTE_VENV}")
  package = f"./{REMOTE_DIR}" + (f"[{extras}]" if extras else "")
  steps.append(f"{REMOTE_PYTHON} -m pip install -q -U pip")
  steps.append(f"{REMOTE_PYTHON} -m pip install -q -e {shlex.quote(package)} 'jax[tpu]'")
  commands.append(ssh_command(tpu, "; ".join(steps)))
  return commands


def main_line(config: str, workdir: str, overrides: Mapping[str, str] = ()) -> str:
  """The remote shell line running ``jaxdr.main`` with ``--config.KEY=VALUE`` overrides."""
  if not config:
    raise ValueError("--config is required, e.g. configs/quickstart.py")
  if not workdir:
    raise ValueError("--workdir is required, e.g. gs://BUCKET/jaxdr/run1 (every host must see it)")
  args = ["-m", "jaxdr.main", f"--config={config}", f"--workdir={workdir}"]
  args += [f"--config.{k}={v}" for k, v in dict(overrides).items()]
  return f"cd {REMOTE_DIR} && {REMOTE_PYTHON} " + shlex.join(args)


def run_commands(tpu: TPU, config: str, workdir: str, overrides: Mapping[str, str] = (),
                 log: str = "") -> List[Command]:
  """Runs one config on every host; on a pod slice the hosts join one jax.distributed run.

  With ``log``, the run is detached with nohup and writes to ``~/<log>`` on each worker.
  """
  line = main_line(config, workdir, overrides)
  if tpu.is_pod:
    line = f"{POD_COORDINATOR} && {line}"
  if log:
    line = f"nohup bash -c {shlex.quote(line)} > {shlex.quote(log)} 2>&1 &"
  return [ssh_command(tpu, line)]


def parse_sweep(specs: Sequence[str]) -> List[Tuple[str, List[str]]]:
  """``['train.learning_rate=0.1,0.05', 'seed=0,1']`` -> ``[(key, [values...]), ...]``."""
  axes = []
  for spec in specs:
    key, sep, values = spec.partition("=")
    key = key.strip().removeprefix("--").removeprefix("config.")
    if not sep or not key or not values:
      raise ValueError(f"--sweep must look like 'KEY=V1,V2,...', got {spec!r}")
    if any(k == key for k, _ in axes):
      raise ValueError(f"--sweep key {key!r} given twice")
    axes.append((key, values.split(",")))
  return axes


def sweep_points(axes: Sequence[Tuple[str, Sequence[str]]]) -> List[Dict[str, str]]:
  """Cartesian product of the sweep axes, first axis slowest: a list of override dicts."""
  keys = [k for k, _ in axes]
  return [dict(zip(keys, values)) for values in itertools.product(*(v for _, v in axes))]


def point_name(point: Mapping[str, str]) -> str:
  """A workdir-safe name for one sweep point: ``train.learning_rate=0.1,seed=1``."""
  parts = [f"{k}={v}" for k, v in point.items()]
  return re.sub(r"[^A-Za-z0-9._=,+-]", "_", ",".join(parts)) or "default"


def sweep_commands(tpu: TPU, config: str, workdir: str, sweep: Sequence[str],
                   overrides: Mapping[str, str] = ()) -> List[Command]:
  """One run per sweep point, one after another, each in ``WORKDIR/<point_name>``."""
  points = sweep_points(parse_sweep(sweep))
  names = [point_name(p) for p in points]
  if len(set(names)) != len(names):
    raise ValueError("two sweep points map to the same workdir name; make the values differ in "
                     "letters or digits")
  commands = []
  for point, name in zip(points, names):
    commands += run_commands(tpu, config, workdir.rstrip("/") + "/" + name, {**dict(overrides), **point})
  return commands


def format_commands(commands: Sequence[Command]) -> str:
  """One shell-quoted command per line, ready to paste into a shell."""
  return "".join(shlex.join(c) + "\n" for c in commands)


def parse_overrides(specs: Sequence[str]) -> Dict[str, str]:
  """``['model.width=0.5']`` -> ``{'model.width': '0.5'}``."""
  out = {}
  for spec in specs:
    key, sep, value = spec.partition("=")
    key = key.strip().removeprefix("--").removeprefix("config.")
    if not sep or not key:
      raise ValueError(f"--set must look like 'KEY=VALUE', got {spec!r}")
    out[key] = value
  return out
