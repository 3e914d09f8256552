"""benchmarks/allocator.py: bad choices exit with one line; 'tcmalloc' re-executes the script
with the library really loaded; 'system' and an existing preload leave the process alone."""
import os
import subprocess
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks")
sys.path.insert(0, BENCHMARKS)
import allocator  # noqa: E402

_SCRIPT = """
import sys
sys.path.insert(0, {benchmarks!r})
import allocator
allocator.ensure(sys.argv[1])
maps = open('/proc/self/maps').read()
print('LOADED' if 'tcmalloc' in maps else 'NOT LOADED', allocator.in_use())
"""


def _run(tmp_path, choice, **env):
  script = tmp_path / "probe.py"
  script.write_text(_SCRIPT.format(benchmarks=os.path.abspath(BENCHMARKS)))
  env = {k: v for k, v in dict(os.environ, **env).items() if v is not None}
  return subprocess.run([sys.executable, str(script), choice], capture_output=True, text=True, env=env)


def test_unknown_choice_exits_with_one_line():
  with pytest.raises(SystemExit, match=r"--allocator must be one of \('tcmalloc', 'system'\), got 'jemalloc'"):
    allocator.ensure("jemalloc")


def test_system_keeps_glibc(tmp_path):
  proc = _run(tmp_path, "system", LD_PRELOAD=None)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.split() == ["NOT", "LOADED", "glibc", "malloc"]


@pytest.mark.skipif(allocator.find_tcmalloc() is None, reason="libtcmalloc-minimal4 not installed")
def test_tcmalloc_reexecutes_with_library_loaded(tmp_path):
  proc = _run(tmp_path, "tcmalloc", LD_PRELOAD=None)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.startswith("LOADED tcmalloc (LD_PRELOAD=") and allocator.find_tcmalloc() in proc.stdout


def test_missing_tcmalloc_exits_with_one_line(tmp_path, monkeypatch):
  monkeypatch.setattr(allocator, "find_tcmalloc", lambda: None)
  monkeypatch.delenv("LD_PRELOAD", raising=False)
  with pytest.raises(SystemExit, match="tcmalloc not found .*--allocator=system"):
    allocator.ensure("tcmalloc")
