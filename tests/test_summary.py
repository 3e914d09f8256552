"""python -m jaxdr.summary: JSON output and the one-line error for an unknown model."""
import json
import subprocess
import sys

from jaxdr import costs, models, summary


def _run(*args):
  return subprocess.run([sys.executable, "-m", "jaxdr.summary", *args], capture_output=True,
                        text=True, timeout=300)


def test_json_output():
  r = _run("--model=lenet5", "--num_classes=10", "--image_size=28", "--input_channels=1", "--json")
  assert r.returncode == 0, r.stderr
  out = json.loads(r.stdout)
  assert (out["params"], out["macs"]) == (431_080, 2_293_000)
  assert [l["path"] for l in out["layers"]] == ["conv1", "conv2", "fc1", "fc2"]
  assert sum(l["macs"] for l in out["layers"]) == out["macs"]


def test_unknown_model_is_one_line_error():
  r = _run("--model=resnet9000")
  assert r.returncode == 1
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and "unknown model 'resnet9000'" in lines[0]
  assert r.stdout == ""


def test_table_lists_every_layer_and_totals():
  model = models.create("resnet20", num_classes=10, image_size=32, width=0.5)
  table = summary.format_table("resnet20", costs.count(model))
  graph = models.describe(model)
  assert all(l.key in table for l in graph.layers)
  assert table.splitlines()[-1].split()[0] == "total"
  assert f"{costs.count(model).macs:,}" in table.splitlines()[-1]
