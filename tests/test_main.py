"""`python -m jaxdr.main`: results files, SIGKILL + rerun resumes exactly, one-line errors.

Runs the real command in subprocesses on a tiny real Fashion-MNIST (256 train / 100 test
images) with the quickstart config shrunk to LeNet-5 through ``--config.`` overrides.
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxdr import checkpoints
from tests import tiny_fashion, xla_flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 256 / 32 = 8 steps per epoch, 16 epochs = 128 steps, a checkpoint every 8.
SMALL = ["--config.model.name=lenet5", "--config.model.width=0.2", "--config.train.batch_size=32",
         "--config.train.epochs=16", "--config.train.learning_rate=0.02",
         "--config.train.log_every_steps=4", "--config.train.checkpoint_every_steps=8",
         "--config.train.eval_batch_size=64"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  e = dict(os.environ)
  e.update(tiny_fashion.env(tmp_path_factory.mktemp("tiny_fashion_main")))
  e["PYTHONPATH"] = REPO + os.pathsep + e.get("PYTHONPATH", "")
  e["XLA_FLAGS"] = xla_flags.subprocess_flags()  # none of the caller's others
  return e


def command(workdir, *overrides, config="configs/quickstart.py"):
  return [sys.executable, "-m", "jaxdr.main", f"--config={config}", f"--workdir={workdir}",
          *SMALL, *overrides]


def run(cmd, env, timeout=300):
  return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def snapshot(directory):
  """{relative path: sha256} of every file under ``directory``."""
  out = {}
  for root, _, files in os.walk(directory):
    for f in files:
      path = os.path.join(root, f)
      with open(path, "rb") as fh:
        out[os.path.relpath(path, directory)] = hashlib.sha256(fh.read()).hexdigest()
  return out


def assert_one_error_line(proc, *fragments):
  assert proc.returncode != 0, proc.stdout + proc.stderr
  assert "Traceback" not in proc.stderr, proc.stderr
  errors = [l for l in proc.stderr.splitlines() if l.startswith("jaxdr: error:")]
  assert len(errors) == 1, proc.stderr
  for fragment in fragments:
    assert fragment in errors[0], errors[0]
  return errors[0]


@pytest.fixture(scope="module")
def runs(env, tmp_path_factory):
  """An uninterrupted run, and the same command SIGKILLed after its step-16 checkpoint, then rerun."""
  root = tmp_path_factory.mktemp("runs")
  full, killed = root / "full", root / "killed"
  run(command(root / "warm", "--config.train.max_steps=1"), env)  # prepares the tiny data set once
  a = subprocess.Popen(command(full), cwd=REPO, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
  b = subprocess.Popen(command(killed), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  while not (killed / "checkpoints" / "16").exists() and b.poll() is None and time.time() < deadline:
    time.sleep(0.005)
  b.send_signal(signal.SIGKILL)
  b.wait()
  steps_at_kill = sorted(int(p) for p in os.listdir(killed / "checkpoints") if p.isdigit())
  out, err = a.communicate(timeout=300)
  assert a.returncode == 0, err
  resumed = run(command(killed), env)
  assert resumed.returncode == 0, resumed.stderr
  return dict(full=full, killed=killed, steps_at_kill=steps_at_kill, resumed=resumed, stdout=out)


def test_run_writes_results_and_report(runs):
  full = runs["full"]
  results = json.loads((full / "results.json").read_text())
  assert 0.0 <= results["test_accuracy"] <= 1.0 and results["test_examples"] == 100
  assert results["steps"] == 128 and results["train_time_s"] > 0
  assert results["config"]["model"]["name"] == "lenet5"  # the overrides are recorded
  assert results["config"]["train"]["batch_size"] == 32
  for lib in ("jax", "flax", "optax", "orbax_checkpoint", "tensorflow_datasets", "python"):
    assert results["environment"][lib]
  report = (full / "report.md").read_text()
  assert "test_accuracy" in report and "curves.png" in report and (full / "curves.png").exists()
  assert f"test_accuracy {results['test_accuracy']:.4f}" in runs["stdout"]


def test_sigkill_then_rerun_resumes_and_matches_an_uninterrupted_run(runs):
  killed, full = runs["killed"], runs["full"]
  assert runs["steps_at_kill"] and max(runs["steps_at_kill"]) < 128, runs["steps_at_kill"]
  assert "resuming from step" in runs["resumed"].stderr
  a = json.loads((full / "results.json").read_text())
  b = json.loads((killed / "results.json").read_text())
  for key in ("test_accuracy", "test_loss", "train_loss", "train_accuracy", "steps", "test_examples"):
    assert a[key] == b[key], (key, a[key], b[key])
  _, va = checkpoints.load_model(full)
  _, vb = checkpoints.load_model(killed)
  for x, y in zip(__import__("jax").tree.leaves(va), __import__("jax").tree.leaves(vb)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  # the metrics log has each step once, as if never interrupted
  steps = [json.loads(l)["step"] for l in (killed / "metrics.jsonl").read_text().splitlines()
           if "train_loss" in l]
  assert steps == list(range(4, 129, 4))


def test_unknown_config_key_is_one_line_naming_the_nearest(env, tmp_path):
  proc = run(command(tmp_path / "w", "--config.train.batch_sise=1"), env)
  line = assert_one_error_line(proc, "unknown config key 'train.batch_sise'", "train.batch_size")
  assert proc.returncode == 2, line
  assert proc.stderr.strip().count("\n") == 0  # nothing else on stderr
  proc = run(command(tmp_path / "w", "--config.trian.epochs=1"), env)
  assert_one_error_line(proc, "unknown config key 'trian'", "nearest: train")
  proc = run(command(tmp_path / "w", "--config.train.batch_size=abc"), env)
  assert_one_error_line(proc, "train.batch_size", "abc")
  proc = run(command(tmp_path / "w", config="configs/no_such_config.py"), env)
  assert_one_error_line(proc, "cannot load config configs/no_such_config.py")
  assert not (tmp_path / "w").exists()


BUG_SCRIPT = """
import sys, types
import jaxdr.main as m
from jaxdr import errors
def method_module(name):
  def run(config, workdir):
    if name == "bug":
      raise RuntimeError("boom: a real bug")
    raise errors.ConfigError("bad value for car.layers")
  return types.SimpleNamespace(run=run)
m.method_module = method_module
sys.argv = ["jaxdr"] + sys.argv[1:]
m.entry_point()
"""


@pytest.mark.parametrize("method", ["bug", "user"])
def test_a_bug_keeps_its_traceback_a_user_error_is_one_line(env, tmp_path, method):
  proc = subprocess.run([sys.executable, "-c", BUG_SCRIPT, "--config=configs/quickstart.py",
                         f"--workdir={tmp_path / 'w'}", f"--config.method={method}", "--allocator=system"],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  if method == "bug":
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "boom: a real bug" in proc.stderr
    assert "jaxdr: error:" not in proc.stderr
  else:
    assert proc.returncode == 2
    assert_one_error_line(proc, "bad value for car.layers")


def test_unknown_model_and_dataset_names_are_one_line(env, tmp_path):
  proc = run(command(tmp_path / "w", "--config.model.name=vgg17"), env)
  assert_one_error_line(proc, "unknown model 'vgg17'")
  proc = run(command(tmp_path / "w", "--config.dataset.name=fashion"), env)
  assert_one_error_line(proc, "unknown dataset 'fashion'")
  assert not (tmp_path / "w").exists()


def test_missing_dataset_is_one_line(env, tmp_path):
  e = dict(env, JAXDR_DATA_DIR=str(tmp_path / "empty"))
  proc = run(command(tmp_path / "w", "--config.dataset.name=cifar10",
                     "--config.dataset.image_size=32", "--config.dataset.input_channels=3"), e)
  assert_one_error_line(proc, "cifar10")


def test_unwritable_or_unreadable_workdir_is_one_line(env, tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("keep me")
  proc = run(command(blocker / "sub"), env)
  assert_one_error_line(proc, "workdir")
  proc = run(command(blocker), env)  # the workdir is a file
  assert_one_error_line(proc, "workdir")
  assert blocker.read_text() == "keep me"


def test_unknown_method_is_one_line(env, tmp_path):
  proc = run(command(tmp_path / "w", "--config.method=no_such_method"), env)
  assert_one_error_line(proc, "unknown method 'no_such_method'")


def test_corrupt_checkpoint_is_one_line_and_nothing_is_lost(runs, env, tmp_path):
  workdir = tmp_path / "w"
  shutil.copytree(runs["full"], workdir)
  for root, _, files in os.walk(workdir / "checkpoints" / "128"):
    for f in files:
      with open(os.path.join(root, f), "wb") as fh:
        fh.write(b"not a checkpoint")
  before = snapshot(workdir)
  proc = run(command(workdir), env)
  assert_one_error_line(proc, "checkpoint", "corrupt")
  assert snapshot(workdir) == before
