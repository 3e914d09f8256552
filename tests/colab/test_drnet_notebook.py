"""colab/drnet.ipynb runs end to end (nbclient) on a tiny Fashion-MNIST and a few training steps."""
import pytest

from tests.colab import notebooks

pytest.importorskip("nbclient")


@pytest.mark.slow
def test_drnet_notebook_runs(tmp_path, monkeypatch):
  out = notebooks.execute("drnet", tmp_path, monkeypatch, overrides={"model.width": 0.0625},
                          parameters="IMAGES_PER_CLASS = 2\nSTEPS = 2\nSUBTASK = ('Trouser', 'Bag')")
  assert "sub-network    accuracy" in out and "sliced network accuracy" in out
  assert "max |logit diff| vs masked" in out
