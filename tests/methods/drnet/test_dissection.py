"""Dissection: the CIV is the class mean of CDRP gates; an interrupted run resumes; other
settings refuse the saved state."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdr.errors import ConfigError
from jaxdr.methods import drnet
from jaxdr.methods.drnet import cdrp


def test_dissection_is_the_class_mean_of_cdrp_and_resumes(tmp_path, tiny_drnet):
  model, variables = tiny_drnet("tiny_vgg_drnet")
  images = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (12, 8, 8, 1)))
  labels = np.array([0, 1, 2] * 4)
  opts = cdrp.CdrpOptions(steps=2, learning_rate=0.5)
  indices = drnet.select_images(labels, [0, 1, 2], 3, seed=0)
  assert len(indices) == 9 and all(np.sum(labels[indices] == c) == 3 for c in range(3))
  ref = drnet.Dissection(model, 3, opts).run(variables, images, labels, indices, batch_size=4)
  gates, _ = cdrp.fit_gates(model, variables, jnp.asarray(images[indices]), opts)
  for key, g in gates.items():
    for c in range(3):
      np.testing.assert_allclose(ref[key][c], np.mean(np.asarray(g)[labels[indices] == c], 0), atol=1e-5)

  class Interrupt(Exception):
    pass
  first = drnet.Dissection(model, 3, opts, tmp_path / "civ")
  fit, calls = first._fit, []

  def flaky(*args):
    calls.append(1)
    if len(calls) == 2:
      raise Interrupt()
    return fit(*args)
  first._fit = flaky
  with pytest.raises(Interrupt):
    first.run(variables, images, labels, indices, batch_size=4)
  second = drnet.Dissection(model, 3, opts, tmp_path / "civ")
  resumed, seen = second._fit, []
  second._fit = lambda *a: (seen.append(a[1].shape), resumed(*a))[1]
  civ = second.run(variables, images, labels, indices, batch_size=4)
  assert seen == [(4, 8, 8, 1)] * 2  # batches 2 and 3 of 3 (the last padded): batch 1 came from the save
  for key in ref:
    np.testing.assert_allclose(civ[key], ref[key], atol=1e-6)
  with pytest.raises(ConfigError, match=r"other settings \(options.steps: 2 -> 3\)"):
    drnet.Dissection(model, 3, opts.replace(steps=3), tmp_path / "civ").run(
        variables, images, labels, indices, batch_size=4)


def test_civ_file_round_trip_and_missing(tmp_path):
  civ = {"conv0": np.ones((2, 3), np.float32), "stage1_block0/out": np.zeros((2, 4), np.float32)}
  drnet.save_civ(tmp_path, civ)
  back = drnet.load_civ(tmp_path)
  assert set(back) == set(civ) and all(np.array_equal(back[k], civ[k]) for k in civ)
  with pytest.raises(ConfigError, match="no CIV"):
    drnet.load_civ(tmp_path / "elsewhere")
