"""The front door stays true: README commands == .ci/run, README code runs, setup.cfg declares
every third-party import of jaxdr and ships the superclass JSON files."""
import ast
import configparser
import glob
import importlib.metadata
import pathlib
import re
import shlex
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
CI = (REPO / ".ci" / "run").read_text()


def _blocks(lang):
  return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _setup_cfg():
  cfg = configparser.ConfigParser()
  cfg.read(REPO / "setup.cfg")
  return cfg


def _requirement_names(text):
  names = set()
  for line in text.splitlines():
    line = line.split("#")[0].strip()
    if line:
      names.add(re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0].lower().replace("_", "-"))
  return names


def test_readme_starts_with_the_two_setup_commands_and_ci_runs_them():
  install, tests = [b.strip() for b in _blocks("bash")[:2]]
  assert README.index(install) < README.index("## ")  # before any section
  assert "\n" not in install and "\n" not in tests  # one command each
  steps = [s.strip() for s in install.split("&&")]
  assert steps[-1] == "python3 -m jaxdr.main --config=configs/quickstart.py --workdir=/tmp/jaxdr_quickstart"
  ci_lines = [l.strip() for l in CI.splitlines() if l.strip() and not l.lstrip().startswith("#")]
  # CI installs the same Debian packages and the same pip line, then ends with the test command.
  apt = next(s for s in steps if "apt-get install" in s)
  assert any(l.endswith(apt.split("apt-get install -y ")[1]) and "apt-get install" in l for l in ci_lines)
  pip = next(s for s in steps if "pip install" in s)
  assert shlex.split(pip)[-1] in [shlex.split(l)[-1] for l in ci_lines if "pip install" in l]
  assert ci_lines[-1] == tests
  assert ci_lines[0] == "set -euo pipefail"


def test_the_test_command_needs_only_the_test_extra():
  """The test command's plugin flags (-n, --dist: pytest-xdist) come with `pip install -e '.[test]'`."""
  tests = shlex.split(_blocks("bash")[1].strip())
  assert tests[:3] == ["python3", "-m", "pytest"]
  test_extra = _requirement_names(_setup_cfg()["options.extras_require"]["test"])
  if {"-n", "--dist"} & set(tests):
    assert "pytest-xdist" in test_extra


def test_readme_mask_example_runs_and_surgery_matches_the_mask():
  (code,) = [b for b in _blocks("python") if "surgery.slice_model" in b]
  scope = {}
  exec(compile(code, "README.md", "exec"), scope)  # pylint: disable=exec-used
  models, x = scope["models"], np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype(np.float32)
  full = models.apply(scope["model"], scope["variables"], x, scope["mask"])
  unmasked = models.apply(scope["model"], scope["variables"], x)
  small = models.apply(scope["small"], scope["small_vars"], x, scope["rest"])
  assert scope["logits"].shape == (8, 10)
  assert not np.allclose(full, unmasked, atol=1e-4)  # the mask does something
  np.testing.assert_allclose(small, full, atol=1e-4)
  assert scope["small_vars"]["params"]["conv3"]["kernel"].shape[-1] == 16


def test_readme_model_table_lists_exactly_the_zoo():
  # A fresh process: other tests register extra (tiny) architectures in this one.
  import subprocess  # pylint: disable=g-import-not-at-top
  names = subprocess.run([sys.executable, "-c", "from jaxdr import models; print(*models.names())"],
                         cwd=REPO, capture_output=True, text=True, check=True, timeout=300).stdout
  table = re.findall(r"^\| `([\w.]+)` \|", README, flags=re.M)
  assert sorted(table) == names.split()


def test_paths_named_in_readme_exist():
  paths = set(re.findall(r"(?<![/\w])((?:configs|jaxdr|launch|benchmarks|colab|docs)/[\w./*-]*\w)",
                         README)) - {"configs/X.py"}  # placeholder in the usage line
  paths |= {p.replace(".", "/") + ".py" for p in re.findall(r"-m (launch\.\w+)", README)}
  missing = sorted(p for p in paths if not glob.glob(str(REPO / p)))
  assert not missing, f"README names paths that do not exist: {missing}"


def test_setup_cfg_declares_every_third_party_import():
  declared = _requirement_names(_setup_cfg()["options"]["install_requires"])
  dists = importlib.metadata.packages_distributions()
  undeclared = set()
  for path in (REPO / "jaxdr").rglob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        tops = [a.name.split(".")[0] for a in node.names]
      elif isinstance(node, ast.ImportFrom) and node.level == 0:
        tops = [node.module.split(".")[0]]
      else:
        continue
      for top in tops:
        if top in sys.stdlib_module_names or top == "jaxdr":
          continue
        names = {d.lower().replace("_", "-") for d in dists.get(top, [top])}
        if not names & declared:
          undeclared.add(f"{top} ({path.relative_to(REPO)})")
  assert not undeclared, f"imported but not in install_requires: {sorted(undeclared)}"


def test_torch_is_never_a_default_dependency():
  cfg = _setup_cfg()
  assert "torch" not in _requirement_names(cfg["options"]["install_requires"])
  assert "torch" not in _requirement_names(cfg["options.extras_require"]["test"])


def test_superclass_maps_and_native_kernel_source_are_package_data():
  """A wheel must carry the superclass maps and the C++ source the native conv builds from."""
  patterns = [p.strip() for p in _setup_cfg()["options.package_data"]["jaxdr"].split(",")]
  assert patterns == ["data/superclasses/*.json", "ops/native_conv.cc"]
  assert len(glob.glob(str(REPO / "jaxdr" / patterns[0]))) >= 3
  assert (REPO / "jaxdr" / patterns[1]).is_file()


@pytest.mark.parametrize("extra", ["test", "bench"])
def test_extras_exist(extra):
  assert _requirement_names(_setup_cfg()["options.extras_require"][extra])
