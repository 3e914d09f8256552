"""colab/whitebox.ipynb runs end to end (nbclient) on a tiny Fashion-MNIST and a few training steps
(a narrow LeNet-5 instead of the VGG-16: the same code path, compiled faster)."""
import pytest

from tests.colab import notebooks

pytest.importorskip("nbclient")


@pytest.mark.slow
def test_whitebox_notebook_runs(tmp_path, monkeypatch):
  out = notebooks.execute("whitebox", tmp_path, monkeypatch,
                          parameters="TARGET = 0.4\nMASK_STEPS = 3\nFINETUNE_STEPS = 3\nTEST_LIMIT = 64",
                          overrides={"model.name": "lenet5", "model.width": 0.4,
                                     "whitebox.channel_multiple": 1, "whitebox.mask_train.batch_size": 32,
                                     "whitebox.finetune.batch_size": 32})
  assert "masks on ['conv1', 'conv2']" in out and "base test accuracy" in out
  for name in ("White-Box", "L1-norm"):
    line = next(l for l in out.splitlines() if l.startswith(f"{name}: MACs removed"))
    assert float(line.split()[3]) >= 0.4
    assert f"{name}: " in out and "fine-tuned | batch 1:" in out
  assert "reloaded: {'conv1':" in out and "reloaded test accuracy" in out
