"""`jaxdr.lazy`: a package's exports load on first use, every one resolves, clashes are refused."""
import subprocess
import sys

import pytest

from jaxdr import lazy

PACKAGES = ("jaxdr.training", "jaxdr.methods.car", "jaxdr.methods.dmnn", "jaxdr.methods.drnet",
            "jaxdr.methods.whitebox")


@pytest.mark.parametrize("package", PACKAGES)
def test_every_export_resolves_to_its_modules_object(package):
  import importlib
  pkg = importlib.import_module(package)
  for module, names in pkg._EXPORTS.items():  # pylint: disable=protected-access
    source = importlib.import_module(f"{package}.{module}")
    for name in names:
      assert getattr(pkg, name) is getattr(source, name), (package, name)
  assert set(pkg.__all__) <= set(dir(pkg))
  with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
    getattr(pkg, "no_such_name")


def test_import_is_lazy_and_from_import_works():
  script = ("import sys\nimport jaxdr.training\nassert 'jaxdr.training.loop' not in sys.modules\n"
            "from jaxdr.training import fit, evaluate\nimport jaxdr.training.evaluation\n"
            "assert callable(evaluate) and jaxdr.training.evaluate is evaluate\n")
  proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-2000:]


def test_an_export_named_like_a_submodule_is_refused():
  with pytest.raises(ValueError, match=r"\['loop'\]"):
    lazy.exports("some.package", {"loop": ("loop", "fit")})
