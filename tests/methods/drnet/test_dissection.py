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


def _fake_fitter(model):
  """A stand-in CDRP fit: gates = the image's first pixel on every channel; an image whose first
  pixel is negative is a reset (all-ones gates), one whose second pixel is negative changed top-1."""
  from jaxdr import models

  def fit(variables, images):
    del variables
    first, second = images[:, 0, 0, 0], images[:, 0, 1, 0]
    reset = first < 0
    gates = {g.key: jnp.where(reset[:, None], 1.0, jnp.broadcast_to(first[:, None], (images.shape[0], g.channels)))
             for g in models.describe(model).gates}
    return gates, {"reset": reset, "changed": reset | (second < 0), "loss": first, "step": jnp.zeros_like(first)}
  return fit


def test_reset_counts_per_class_survive_resume(tmp_path, tiny_drnet):
  model, variables = tiny_drnet("tiny_vgg_drnet")
  rng = np.random.default_rng(0)
  images = np.abs(rng.normal(size=(12, 8, 8, 1))).astype(np.float32)
  labels = np.array([0, 1, 2] * 4)
  images[[0, 3, 6], 0, 0, 0] *= -1  # three resets of class 0
  images[[4], 0, 0, 0] *= -1  # one of class 1
  images[[5, 8], 0, 1, 0] *= -1  # class 2: top-1 changed at the last iterate, no reset
  indices = np.arange(12)
  want = {"images": [4, 4, 4], "resets": [3, 1, 0], "changed": [3, 1, 2]}

  class Interrupt(Exception):
    pass
  first = drnet.Dissection(model, 3, cdrp.CdrpOptions(steps=1), tmp_path / "civ")
  fake, calls = _fake_fitter(model), []

  def flaky(*args):
    calls.append(1)
    if len(calls) == 3:
      raise Interrupt()
    return fake(*args)
  first._fit = flaky
  with pytest.raises(Interrupt):
    first.run(variables, images, labels, indices, batch_size=4)
  second = drnet.Dissection(model, 3, cdrp.CdrpOptions(steps=1), tmp_path / "civ")
  second._fit, seen = (lambda *a: (seen.append(1), fake(*a))[1]), []
  civ = second.run(variables, images, labels, indices, batch_size=4)
  assert len(seen) == 1  # batches 1 and 2 came from the save, with their counts
  assert {k: v.tolist() for k, v in second.stats.items()} == want
  mean0 = (images[9, 0, 0, 0] + 3.0) / 4  # class 0: one fitted image (gates = its pixel) + three all-ones
  np.testing.assert_allclose(civ["conv0"][0], mean0, rtol=1e-6)


def test_exclude_and_ones_civ_on_a_hand_state(tiny_drnet):
  model, _ = tiny_drnet("tiny_vgg_drnet")
  state = drnet.Dissection(model, 3, cdrp.CdrpOptions()).empty()
  # conv0 (4 channels). Class 0: 4 images, 1 reset, the 3 fitted ones sum to [0.6, 0, 0.3, 1.5];
  # class 1: 2 images, both reset; class 2: no images.
  state["sums"][0][0] = [0.6, 0.0, 0.3, 1.5]
  state["counts"][:] = [4, 2, 0]
  state["resets"][:] = [1, 2, 0]
  ones = drnet.Dissection(model, 3, cdrp.CdrpOptions(), reset_civ="ones").civ(state)["conv0"]
  exclude = drnet.Dissection(model, 3, cdrp.CdrpOptions(), reset_civ="exclude").civ(state)["conv0"]
  np.testing.assert_allclose(ones[0], [1.6 / 4, 1.0 / 4, 1.3 / 4, 2.5 / 4], rtol=1e-6)  # + 1/N everywhere
  np.testing.assert_allclose(exclude[0], [0.2, 0.0, 0.1, 0.5], rtol=1e-6)  # mean of the 3 fitted images
  np.testing.assert_array_equal(ones[1], 1.0)
  np.testing.assert_array_equal(exclude[1], 1.0)  # nothing but resets: all ones either way
  np.testing.assert_array_equal(ones[2], 0.0)
  np.testing.assert_array_equal(exclude[2], 0.0)
  with pytest.raises(ConfigError, match="reset_civ"):
    drnet.Dissection(model, 3, cdrp.CdrpOptions(), reset_civ="zeros")
