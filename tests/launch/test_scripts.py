"""The launch scripts end to end: --dry_run prints the commands; without it they are run."""
import os
import pathlib
import shlex
import subprocess
import sys

from absl import flags
import pytest

from launch import common, create, delete, install, run, sweep, tpu_vm

REPO = pathlib.Path(__file__).resolve().parents[2]


def _script(name, *args):
  env = {**os.environ, "PYTHONPATH": str(REPO)}
  return subprocess.run([sys.executable, "-m", f"launch.{name}", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=120, check=False)


def test_dry_run_prints_one_quoted_command_per_line():
  proc = _script("sweep", "--dry_run", "--name=pod", "--accelerator_type=v4-32",
                 "--config=configs/quickstart.py", "--workdir=gs://b/s", "--set=train.epochs=2",
                 "--sweep=seed=0,1", "--sweep=dataset.name=a b")
  assert proc.returncode == 0, proc.stderr
  tpu = tpu_vm.TPU(name="pod", accelerator_type="v4-32")
  expected = tpu_vm.sweep_commands(tpu, "configs/quickstart.py", "gs://b/s",
                                   ["seed=0,1", "dataset.name=a b"], {"train.epochs": "2"})
  lines = proc.stdout.splitlines()
  assert [shlex.split(line) for line in lines] == expected
  assert all("--worker=all" in line for line in lines) and len(lines) == 2


@pytest.mark.parametrize("script,args,expected", [
    ("create", ["--accelerator_type=v5e-8", "--project=p"],
     "gcloud compute tpus tpu-vm create jaxdr --zone=us-west4-a --project=p "
     "--accelerator-type=v5litepod-8 --version=v2-alpha-tpuv5-lite"),
    ("delete", ["--name=x", "--zone=europe-west4-a"],
     "gcloud compute tpus tpu-vm delete x --zone=europe-west4-a --quiet"),
    ("run", ["--config=configs/quickstart.py", "--workdir=gs://b/q"],
     "gcloud compute tpus tpu-vm ssh jaxdr --zone=us-central2-b '--command=cd jaxdr && ~/jaxdr-venv/bin/python -m "
     "jaxdr.main --config=configs/quickstart.py --workdir=gs://b/q'"),
])
def test_dry_run_output(script, args, expected):
  proc = _script(script, "--dry_run", *args)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout == expected + "\n"


def test_install_dry_run_copies_this_checkout():
  proc = _script("install", "--dry_run", f"--repo={REPO}", "--apt_packages=")
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  assert len(lines) == 3 and shlex.split(lines[1])[4:8] == ["scp", "--recurse", str(REPO), "jaxdr:jaxdr"]


@pytest.mark.parametrize("script,args,message", [
    ("run", ["--workdir=/w"], "error: --config is required"),
    ("create", ["--accelerator_type=tpu"], "error: unknown accelerator type 'tpu'"),
    ("sweep", ["--config=c.py", "--workdir=/w", "--sweep=seed"], "error: --sweep must look like"),
])
def test_bad_flags_give_one_error_line(script, args, message):
  proc = _script(script, "--dry_run", *args)
  assert proc.returncode != 0 and proc.stdout == ""
  assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
  assert proc.stderr.startswith(message)


@pytest.fixture
def parse_flags():
  """Parses argv into the global absl FLAGS for one test, and restores them after."""
  def parse(argv):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["prog", *argv])
  yield parse
  flags.FLAGS.unparse_flags()


@pytest.fixture
def calls(monkeypatch):
  recorded = []

  def fake_run(cmd, check):
    recorded.append(cmd)
    return subprocess.CompletedProcess(cmd, 0)
  monkeypatch.setattr(common.subprocess, "run", fake_run)
  return recorded


def test_without_dry_run_each_command_goes_to_subprocess(parse_flags, calls, capsys):
  parse_flags(["--name=pod", "--accelerator_type=v4-32", "--config=configs/quickstart.py",
               "--workdir=gs://b/s", "--sweep=seed=0,1"])
  sweep.main(["prog"])
  tpu = tpu_vm.TPU(name="pod", accelerator_type="v4-32")
  assert calls == tpu_vm.sweep_commands(tpu, "configs/quickstart.py", "gs://b/s", ["seed=0,1"])
  assert capsys.readouterr().out == ""  # nothing printed: the commands were run
  for module, builder in [(create, tpu_vm.create_commands), (delete, tpu_vm.delete_commands)]:
    calls.clear()
    module.main(["prog"])
    assert calls == builder(tpu)
  calls.clear()
  run.main(["prog"])
  assert calls == tpu_vm.run_commands(tpu, "configs/quickstart.py", "gs://b/s")
  calls.clear()
  parse_flags(["--name=pod", "--repo=https://example.com/j.git"])
  install.main(["prog"])
  assert calls == tpu_vm.install_commands(tpu_vm.TPU(name="pod"), "https://example.com/j.git")


def test_a_failing_command_stops_the_script(parse_flags, monkeypatch):
  ran = []

  def failing_run(cmd, check):
    ran.append(cmd)
    return subprocess.CompletedProcess(cmd, 2)
  monkeypatch.setattr(common.subprocess, "run", failing_run)
  parse_flags(["--config=configs/x.py", "--workdir=/w", "--sweep=seed=0,1"])
  with pytest.raises(SystemExit, match="command failed with exit status 2: gcloud compute"):
    sweep.main(["prog"])
  assert len(ran) == 1  # the second sweep point was not started


def test_experiment_runs_every_step_then_deletes(parse_flags, calls):
  from launch import experiment  # pylint: disable=g-import-not-at-top
  parse_flags(["--name=pod", "--accelerator_type=v4-32", "--repo=https://example.com/j.git",
               "--config=configs/quickstart.py", "--workdir=gs://b/s", "--sweep=seed=0,1"])
  experiment.main(["prog"])
  tpu = tpu_vm.TPU(name="pod", accelerator_type="v4-32")
  assert calls == (tpu_vm.create_commands(tpu)
                   + tpu_vm.install_commands(tpu, "https://example.com/j.git")
                   + tpu_vm.sweep_commands(tpu, "configs/quickstart.py", "gs://b/s", ["seed=0,1"])
                   + tpu_vm.delete_commands(tpu))


def test_experiment_deletes_the_vm_after_a_failed_run(parse_flags, monkeypatch):
  from launch import experiment  # pylint: disable=g-import-not-at-top
  ran = []

  def run_fails(cmd, check):
    ran.append(cmd[4])
    return subprocess.CompletedProcess(cmd, 1 if "--command=cd jaxdr && ~/jaxdr-venv" in cmd[-1] else 0)
  monkeypatch.setattr(common.subprocess, "run", run_fails)
  parse_flags(["--repo=https://example.com/j.git", "--config=c.py", "--workdir=/w"])
  with pytest.raises(SystemExit, match="exit status 1: gcloud compute tpus tpu-vm ssh jaxdr"):
    experiment.main(["prog"])
  assert ran == ["create", "ssh", "ssh", "delete"]
  parse_flags(["--repo=https://example.com/j.git", "--config=c.py", "--workdir=/w", "--keep"])
  ran.clear()
  with pytest.raises(SystemExit):
    experiment.main(["prog"])
  assert ran == ["create", "ssh", "ssh"]


def test_missing_gcloud_is_one_clear_error(parse_flags, monkeypatch):
  def no_gcloud(cmd, check):
    raise FileNotFoundError(2, "No such file or directory", cmd[0])
  monkeypatch.setattr(common.subprocess, "run", no_gcloud)
  parse_flags(["--name=x"])
  with pytest.raises(SystemExit, match="^error: gcloud not found; install the Google Cloud CLI"):
    delete.main(["prog"])
