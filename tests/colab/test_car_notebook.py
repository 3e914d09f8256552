"""colab/car.ipynb runs end to end (nbclient) on a tiny Fashion-MNIST and a few training steps."""
import pytest

from tests.colab import notebooks

pytest.importorskip("nbclient")


@pytest.mark.slow
def test_car_notebook_runs(tmp_path, monkeypatch):
  out = notebooks.execute("car", tmp_path, monkeypatch,
                          parameters="SCORE_PER_CLASS = 5\nTEST_LIMIT = 100\nMIN_KEPT = 16")
  assert "least important first:" in out and "pruned in order:" in out
  pruned = next(line for line in out.splitlines() if line.startswith("pruned in order:"))
  assert pruned.count(",") == 20 - 16 - 1  # conv1's 20 filters down to MIN_KEPT: 4 removed
  assert "max |CAR - mean CARc| =" in out and "top:" in out and "bottom:" in out
  assert "params " in out and "ms ->" in out and "test accuracy masked" in out
