"""The gcloud commands the launch scripts build, pinned exactly (no gcloud is ever run)."""
import shlex

import pytest

from launch import tpu_vm


def _remote(cmd):
  """The shell line an ssh command runs on the VM, as the remote shell will split it."""
  (arg,) = [a for a in cmd if a.startswith("--command=")]
  return shlex.split(arg[len("--command="):])


def test_single_host_create_and_delete():
  tpu = tpu_vm.TPU(name="jaxdr", accelerator_type="v4-8")
  assert tpu.num_hosts == 1 and not tpu.is_pod
  assert tpu_vm.format_commands(tpu_vm.create_commands(tpu)) == (
      "gcloud compute tpus tpu-vm create jaxdr --zone=us-central2-b --accelerator-type=v4-8 "
      "--version=tpu-ubuntu2204-base\n")
  assert tpu_vm.delete_commands(tpu) == [
      ["gcloud", "compute", "tpus", "tpu-vm", "delete", "jaxdr", "--zone=us-central2-b", "--quiet"]]


def test_v5e_defaults_and_alias():
  tpu = tpu_vm.TPU(name="t", accelerator_type="v5e-8", project="p", spot=True)
  assert tpu_vm.create_commands(tpu) == [[
      "gcloud", "compute", "tpus", "tpu-vm", "create", "t", "--zone=us-west4-a", "--project=p",
      "--accelerator-type=v5litepod-8", "--version=v2-alpha-tpuv5-lite", "--spot"]]


@pytest.mark.parametrize("accelerator_type,hosts", [
    ("v4-8", 1), ("v4-16", 2), ("v4-32", 4), ("v5litepod-8", 1), ("v5e-16", 4), ("v5p-8", 1),
    ("v5p-128", 16), ("v3-32", 4), ("v6e-4", 1), ("v6e-64", 16)])
def test_num_hosts(accelerator_type, hosts):
  assert tpu_vm.TPU(name="t", accelerator_type=accelerator_type).num_hosts == hosts


def test_pod_slice_runs_on_all_workers():
  tpu = tpu_vm.TPU(name="pod", zone="us-central2-b", accelerator_type="v4-32")
  (cmd,) = tpu_vm.run_commands(tpu, "configs/quickstart.py", "gs://b/run1")
  assert cmd == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod", "--zone=us-central2-b",
                 "--worker=all", f"--command={tpu_vm.POD_COORDINATOR} && cd jaxdr && "
                 "~/jaxdr-venv/bin/python -m jaxdr.main --config=configs/quickstart.py "
                 "--workdir=gs://b/run1"]
  single = tpu_vm.TPU(name="one", accelerator_type="v4-8")
  (cmd,) = tpu_vm.run_commands(single, "configs/quickstart.py", "gs://b/run1")
  assert "--worker=all" not in cmd


def test_install_from_git_url_on_pod():
  tpu = tpu_vm.TPU(name="pod", accelerator_type="v4-32")
  (cmd,) = tpu_vm.install_commands(tpu, "https://example.com/jaxdr.git", extras="test")
  assert cmd[:8] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod", "--zone=us-central2-b",
                     "--worker=all"]
  line = cmd[8][len("--command="):]
  assert "git clone https://example.com/jaxdr.git jaxdr" in line
  assert "apt-get install -y -q python3.11 python3.11-venv dataset-fashion-mnist" in line
  assert "python3.11 -m venv ~/jaxdr-venv" in line
  assert line.endswith("~/jaxdr-venv/bin/python -m pip install -q -e './jaxdr[test]' 'jax[tpu]'")


def test_install_copies_local_checkout_with_scp(tmp_path):
  (tmp_path / "setup.cfg").write_text("[metadata]\n")
  tpu = tpu_vm.TPU(name="pod", accelerator_type="v4-32")
  rm, scp, install = tpu_vm.install_commands(tpu, str(tmp_path), apt_packages=())
  assert _remote(rm) == ["rm", "-rf", "jaxdr"]
  assert scp == ["gcloud", "compute", "tpus", "tpu-vm", "scp", "--recurse", str(tmp_path),
                 "pod:jaxdr", "--zone=us-central2-b", "--worker=all"]
  line = install[-1][len("--command="):]
  assert "git" not in line and "apt-get install -y -q python3.11 python3.11-venv;" in line


def test_install_rejects_a_path_that_is_not_a_checkout(tmp_path):
  with pytest.raises(ValueError, match="neither a git URL nor a local jaxdr checkout"):
    tpu_vm.install_commands(tpu_vm.TPU(name="t"), str(tmp_path))


def test_sweep_is_the_cartesian_product_with_a_workdir_per_point():
  tpu = tpu_vm.TPU(name="t", accelerator_type="v4-8")
  cmds = tpu_vm.sweep_commands(tpu, "configs/quickstart.py", "gs://b/sweep/",
                               ["train.learning_rate=0.1,0.05", "--config.seed=0,1,2"],
                               overrides={"train.epochs": "3"})
  runs = [_remote(c) for c in cmds]
  assert len(runs) == 6
  points = [(r[r.index("~/jaxdr-venv/bin/python") + 4:]) for r in runs]
  assert points[0] == ["--workdir=gs://b/sweep/train.learning_rate=0.1,seed=0",
                       "--config.train.epochs=3", "--config.train.learning_rate=0.1",
                       "--config.seed=0"]
  assert [p[0] for p in points] == [
      f"--workdir=gs://b/sweep/train.learning_rate={lr},seed={s}"
      for lr in ("0.1", "0.05") for s in "012"]


def test_sweep_values_with_spaces_are_quoted_for_the_remote_shell():
  tpu = tpu_vm.TPU(name="t")
  (cmd,) = tpu_vm.sweep_commands(tpu, "configs/x.py", "/w", ["dataset.name=my data"])
  printed = tpu_vm.format_commands([cmd])
  assert shlex.split(printed) == cmd  # the printed line is the exact argv
  remote = _remote(cmd)
  assert "--config.dataset.name=my data" in remote  # one argument, space kept
  assert "--workdir=/w/dataset.name=my_data" in remote  # workdir name made path-safe


def test_detached_run_keeps_the_quoting():
  (cmd,) = tpu_vm.run_commands(tpu_vm.TPU(name="t"), "configs/x.py", "/w",
                               {"model.name": "a b"}, log="run.log")
  nohup, bash, c, inner, redirect, log, *_ = _remote(cmd)
  assert (nohup, bash, c, redirect, log) == ("nohup", "bash", "-c", ">", "run.log")
  assert shlex.split(inner)[-1] == "--config.model.name=a b"


@pytest.mark.parametrize("bad,match", [
    (["lr"], "KEY=V1,V2"), (["=1,2"], "KEY=V1,V2"), (["seed=1", "seed=2"], "given twice")])
def test_bad_sweep_specs(bad, match):
  with pytest.raises(ValueError, match=match):
    tpu_vm.parse_sweep(bad)


def test_bad_tpu_settings():
  with pytest.raises(ValueError, match="unknown accelerator type 'v9-8'"):
    tpu_vm.TPU(name="t", accelerator_type="v9-8")
  with pytest.raises(ValueError, match="TPU name"):
    tpu_vm.TPU(name="Bad_Name")
  with pytest.raises(ValueError, match="--workdir is required"):
    tpu_vm.run_commands(tpu_vm.TPU(name="t"), "configs/x.py", "")


def _run_remotely(cmd, home):
  """Runs an ssh command's remote line in bash with a fake HOME, curl and venv python.

  The fake python prints its argv (one per line) and $JAX_COORDINATOR_ADDRESS.
  """
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  bin_dir = home / "bin"
  for path, body in [
      (bin_dir / "curl", 'echo "unknown:unknown:10.0.0.7,unknown:unknown:10.0.0.8"'),
      (home / "jaxdr-venv" / "bin" / "python",
       'printf "%s\\n" "$PWD" "coordinator=${JAX_COORDINATOR_ADDRESS:-}" "$@"')]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
  (home / "jaxdr").mkdir(exist_ok=True)
  (arg,) = [a for a in cmd if a.startswith("--command=")]
  env = {"HOME": str(home), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
  out = subprocess.run(["bash", "-c", arg[len("--command="):]], cwd=home, env=env, check=True,
                       capture_output=True, text=True, timeout=60).stdout
  return out.splitlines()


def test_remote_lines_run_in_a_shell_as_intended(tmp_path):
  pod = tpu_vm.TPU(name="pod", accelerator_type="v4-32")
  (cmd,) = tpu_vm.sweep_commands(pod, "configs/q.py", "gs://b/s", ["dataset.name=it's a b"])
  cwd, coordinator, *args = _run_remotely(cmd, tmp_path)
  assert cwd == str(tmp_path / "jaxdr")
  assert coordinator == "coordinator=10.0.0.7:8476"  # worker 0, from the TPU metadata
  assert args == ["-m", "jaxdr.main", "--config=configs/q.py",
                  "--workdir=gs://b/s/dataset.name=it_s_a_b", "--config.dataset.name=it's a b"]
  (single,) = tpu_vm.run_commands(tpu_vm.TPU(name="one"), "configs/q.py", "/w")
  assert _run_remotely(single, tmp_path)[1] == "coordinator="  # one host: no jax.distributed


def test_detached_remote_line_writes_the_log(tmp_path):
  import time  # pylint: disable=g-import-not-at-top
  pod = tpu_vm.TPU(name="pod", accelerator_type="v4-32")
  (cmd,) = tpu_vm.run_commands(pod, "configs/q.py", "/w", {"model.name": "a b"}, log="run.log")
  assert _run_remotely(cmd, tmp_path) == []  # returns at once, output goes to the log
  log = tmp_path / "run.log"
  for _ in range(100):
    lines = log.read_text().splitlines() if log.exists() else []
    if len(lines) == 7:
      break
    time.sleep(0.1)
  assert lines[1:] == ["coordinator=10.0.0.7:8476", "-m", "jaxdr.main", "--config=configs/q.py",
                       "--workdir=/w", "--config.model.name=a b"]
