"""jaxdr/allocator.py: a bad choice exits with one line; 'tcmalloc' restarts the command with
the library really mapped; 'system' leaves the process alone; `python -m jaxdr.main` runs on
tcmalloc by default when it is installed."""
import os
import subprocess
import sys

import pytest

from jaxdr import allocator

_PROBE = """
import sys
from jaxdr import allocator
allocator.ensure(sys.argv[1])
maps = open('/proc/self/maps').read()
print('LOADED' if 'tcmalloc' in maps else 'NOT LOADED', allocator.in_use())
"""
needs_tcmalloc = pytest.mark.skipif(allocator.find_tcmalloc() is None,
                                    reason="libtcmalloc-minimal4 not installed")


def _env(**changes):
  env = dict(os.environ, **changes)
  return {k: v for k, v in env.items() if v is not None}


def _probe(tmp_path, choice):
  script = tmp_path / "probe.py"
  script.write_text(_PROBE)
  proc = subprocess.run([sys.executable, "-u", str(script), choice], capture_output=True, text=True,
                        env=_env(LD_PRELOAD=None))
  assert proc.returncode == 0, proc.stderr
  return proc.stdout.strip()


def test_unknown_choice_exits_with_one_line():
  with pytest.raises(SystemExit, match=r"--allocator must be one of \('auto', 'tcmalloc', 'system'\), got 'jemalloc'"):
    allocator.ensure("jemalloc")


def test_system_keeps_glibc(tmp_path):
  assert _probe(tmp_path, "system") == "NOT LOADED glibc malloc"


@needs_tcmalloc
@pytest.mark.parametrize("choice", ["tcmalloc", "auto"])
def test_restarts_with_tcmalloc_mapped(tmp_path, choice):
  out = _probe(tmp_path, choice)
  assert out.startswith("LOADED tcmalloc (LD_PRELOAD=") and allocator.find_tcmalloc() in out


def test_missing_tcmalloc(monkeypatch):
  monkeypatch.setattr(allocator, "find_tcmalloc", lambda: None)
  monkeypatch.delenv("LD_PRELOAD", raising=False)
  allocator.ensure("auto")  # falls back to the system allocator
  with pytest.raises(SystemExit, match="tcmalloc not found .*--allocator=system"):
    allocator.ensure("tcmalloc")


@needs_tcmalloc
def test_main_runs_on_tcmalloc_by_default(tmp_path):
  """The entry point restarts itself before any work; a bad --allocator is a usage error."""
  base = [sys.executable, "-m", "jaxdr.main", "--config=configs/quickstart.py", f"--workdir={tmp_path}"]
  repo = os.path.join(os.path.dirname(__file__), "..")
  bad = subprocess.run(base + ["--allocator=jemalloc"], cwd=repo, capture_output=True, text=True,
                       env=_env(LD_PRELOAD=None))
  assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--allocator" in bad.stderr
  # An unknown method fails after the restart, so the log shows which allocator ran.
  proc = subprocess.run(base + ["--config.method=nonexistent"], cwd=repo, capture_output=True,
                        text=True, env=_env(LD_PRELOAD=None))
  assert proc.returncode == 1 and "allocator: tcmalloc (LD_PRELOAD=" in proc.stderr, proc.stderr
