"""The 'dmnn' method end to end: `python -m jaxdr.main --config=configs/dmnn50_imagenet.py`
on the generated ImageNet stand-in (tiny widths and images through --config overrides), what
it writes, and bad input as one `jaxdr: error:` line."""
import json
import os
import runpy
import subprocess
import sys

import pytest

from jaxdr import costs
from jaxdr.errors import ConfigError
from jaxdr.methods import dmnn as dmnn_method
from jaxdr.models import dmnn_nets
from tests import xla_flags

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TINY = ["--config.model.width=0.0625", "--config.model.conv_impl=xla", "--config.dataset.image_size=32",
        "--config.train.batch_size=8", "--config.train.max_steps=2", "--config.train.log_every_steps=1",
        "--config.train.eval_batch_size=8", "--config.dmnn.example_classes=2"]


def _env():
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  env["XLA_FLAGS"] = xla_flags.subprocess_flags()  # none of the caller's others
  return env


def _main(workdir, *args, config="configs/dmnn50_imagenet.py"):
  cmd = [sys.executable, "-m", "jaxdr.main", f"--config={config}", f"--workdir={workdir}", *args]
  return subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)


def test_dmnn50_imagenet_command_runs_on_the_standin(imagenet_dir, tmp_path):
  workdir = tmp_path / "dmnn50"
  proc = _main(workdir, f"--config.dataset.data_dir={imagenet_dir}", *TINY)
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((workdir / "results.json").read_text())
  assert results["method"] == "dmnn" and results["steps"] == 2 and results["paths"] == 2
  assert results["evaluation"]["test_examples"] == 10  # the stand-in's validation split
  assert results["model"]["categories"] == 58  # ImageNet's WordNet superclasses
  assert 0 < results["flops_ratio"] <= 1 and results["total_macs"] > results["mean_executed_macs"] * 0.5
  assert len(results["evaluation"]["execution_rates"]) == 16  # DMNN-50: 3 + 4 + 6 + 3 blocks
  for k in ("test_accuracy", "all_on_accuracy", "controller_macs", "category_macs", "params"):
    assert k in results, k
  for name in ("report.md", "curves.png", "flops_histogram.png", "execution_rates.png", "easy_hard.png"):
    assert (workdir / name).exists(), name
  train = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert "train_flops_ratio" in train[0] and "test_flops_ratio" in train[-1]
  model, variables, table = dmnn_method.load(workdir)
  assert (model.paths, model.categories) == (2, 58)
  assert table.params + table.category_params == costs.param_count(variables)


def test_bad_input_is_one_error_line(tmp_path):
  proc = _main(tmp_path / "w", "--config.dmnn.paths=0")
  errors = [l for l in proc.stderr.splitlines() if l.startswith("jaxdr: error:")]
  assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
  assert errors == ["jaxdr: error: dmnn.paths (N, sub-blocks per block) must be >= 1, got 0"]


def _config(**changes):
  c = runpy.run_path(os.path.join(REPO, "configs", "dmnn_fashion_mnist.py"))["get_config"]()
  for key, value in changes.items():
    section, name = key.split(".")
    c[section][name] = value
  return c


@pytest.mark.parametrize("changes,message", [
    ({"dmnn.target_rate": 0.0}, "dmnn.target_rate (r) must be in (0, 1], got 0.0"),
    ({"dmnn.target_rate": 1.5}, "dmnn.target_rate (r) must be in (0, 1], got 1.5"),
    ({"dataset.name": "mnist"}, "no superclass map for dataset 'mnist'"),
    ({"model.name": "resnet20"}, "model.name must be a DMNN model"),
    ({"dmnn.gate_bias": (0.1, 2.0, 3.0)}, "dmnn.gate_bias must be (off, on) logit biases"),
])
def test_bad_input_is_a_config_error(changes, message, tmp_path):
  with pytest.raises(ConfigError) as e:
    dmnn_method.run(_config(**changes), tmp_path)
  assert message in str(e.value) and "\n" not in str(e.value)
  assert not list(tmp_path.iterdir())  # nothing written


def test_the_twin_config_is_what_the_default_job_trains_as_its_twin():
  dmnn_config = runpy.run_path(os.path.join(REPO, "configs", "dmnn_fashion_mnist.py"))["get_config"]()
  twin = runpy.run_path(os.path.join(REPO, "configs", "dmnn_fashion_mnist_twin.py"))["get_config"]()
  assert dmnn_config.dmnn.twin and twin.method == "train"
  assert twin.model.name == dmnn_nets.twin(dmnn_config.model.name) == "resnet20"
  for section in ("seed", "dataset", "train"):
    want, got = dmnn_config[section], twin[section]
    assert (got.to_dict() if hasattr(got, "to_dict") else got) == (
        want.to_dict() if hasattr(want, "to_dict") else want), section
  assert twin.model.width == dmnn_config.model.width
