"""The open trainer: extras beside the params, a held mask, per-layer rates, a fresh key per
step that does not depend on the device count, exact resume (extras included)."""
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdr import models, training
from tests.conftest import random_variables

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _setup(n=32):
  model = models.create("lenet5", num_classes=4, image_size=16, input_channels=1, conv_impl="xla",
                        channels={"conv1": 3, "conv2": 4})
  rng = np.random.default_rng(0)
  labels = (np.arange(n) % 4).astype(np.int32)
  images = (rng.normal(size=(n, 16, 16, 1)) + labels[:, None, None, None]).astype(np.float32) * 0.3
  return model, random_variables(model), training.ArraySource({"image": images, "label": labels})


def _opts(**kw):
  return training.TrainOptions(**{**dict(batch_size=8, epochs=100, max_steps=12, learning_rate=0.01,
                                         schedule="constant", weight_decay=0.0, log_every_steps=4), **kw})


def _ce(model, variables, source):
  logits = models.apply(model, variables, source.arrays["image"])
  return float(jnp.mean(training.cross_entropy(logits, source.arrays["label"])))


def test_fit_lowers_the_loss_from_given_variables():
  model, variables, source = _setup()
  result = training.fit(model, _opts(), source, init_variables=variables)
  assert result.metrics["steps"] == 12 and np.isfinite(result.metrics["train_loss"])
  assert _ce(model, result.variables, source) < 0.8 * _ce(model, variables, source)
  assert isinstance(jax.tree.leaves(result.variables)[0], np.ndarray)  # host copies


def _shift_objective(penalty_weight=0.1):
  """Trains an extra logit shift [K] beside the params, with a penalty logged as a metric."""
  def loss(ctx, params, extra, batch):
    logits, stats = models.apply(ctx.model, ctx.variables(params), batch["image"], ctx.mask, train=True)
    logits = logits + extra["shift"]
    penalty = penalty_weight * jnp.sum(extra["shift"] ** 2)
    ce = jnp.mean(training.cross_entropy(logits, batch["label"]))
    return ce + penalty, training.LossOutput(logits, stats, {"penalty": penalty})
  return training.Objective(loss=loss, init_extra=lambda rng, model, v: {"shift": jnp.full((4,), 0.5)},
                            extra_lr=0.1, extra_weight_decay=0.0)


def test_extra_trainables_get_gradients_and_metrics_are_logged(tmp_path):
  model, variables, source = _setup()
  result = training.fit(model, _opts(), source, objective=_shift_objective(), init_variables=variables,
                        workdir=tmp_path)
  shift = result.extra["shift"]
  assert not np.allclose(shift, 0.5)  # moved by the CE gradient and the penalty
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [4, 8, 12]
  assert all(r["train_penalty"] > 0 for r in records)


def test_held_mask_and_frozen_layers():
  model, variables, source = _setup()
  mask = {"conv1": np.array([1, 0, 1], np.float32)}
  objective = training.Objective(layer_lrs={"conv1": 0.0, "fc2": 0.0})
  tuned = training.fit(model, _opts(learning_rate=0.05), source, objective=objective,
                       init_variables=variables, mask=mask).variables
  p0, p1 = variables["params"], tuned["params"]
  np.testing.assert_array_equal(p1["conv1"]["kernel"], p0["conv1"]["kernel"])
  np.testing.assert_array_equal(p1["fc2"]["dense"]["kernel"], p0["fc2"]["dense"]["kernel"])
  moved = np.abs(np.asarray(p1["conv2"]["kernel"]) - np.asarray(p0["conv2"]["kernel"]))
  assert moved.max() > 1e-6
  # conv1's closed filter 1 feeds nothing while training: its conv2 weights get no gradient.
  assert moved[:, :, 1, :].max() == 0.0


def _noise_objective():
  """Draws Uniform noise per example from the step key: logged, and not in the loss."""
  def loss(ctx, params, extra, batch):
    logits, stats = models.apply(ctx.model, ctx.variables(params), batch["image"], None, train=True)
    noise = jax.random.uniform(ctx.rng, batch["label"].shape)
    return (jnp.mean(training.cross_entropy(logits, batch["label"])),
            training.LossOutput(logits, stats, {"noise": jnp.mean(noise), "noise0": noise[0]}))
  return training.Objective(loss=loss)


def test_step_keys_are_fresh_every_step(tmp_path):
  model, variables, source = _setup()
  training.fit(model, _opts(max_steps=3, log_every_steps=1), source, objective=_noise_objective(),
               init_variables=variables, workdir=tmp_path, seed=3)
  strict = lambda token: pytest.fail(f"metrics.jsonl holds {token}")  # noqa: E731
  records = [json.loads(l, parse_constant=strict) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert len(set(r["train_noise0"] for r in records)) == 3
  # the first step's window is only its compile: no rate logged (not NaN), then one per log
  assert "images_per_sec" not in records[0] and all(r["images_per_sec"] > 0 for r in records[1:])


def test_step_noise_is_per_device_and_independent_of_the_device_count():
  """On 4 devices each device draws its own rows' noise inside the step, and the values equal
  one draw for the global batch on one device (so the run does not depend on the count)."""
  script = textwrap.dedent("""
      import os
      os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=4"  # after the suite's opt level
      import jax, jax.numpy as jnp, numpy as np
      from jaxdr import training
      from jaxdr.training import distributed
      assert jax.device_count() == 4
      mesh = distributed.data_mesh()
      key = jax.random.fold_in(jax.random.PRNGKey(0), 5)
      draw = jax.jit(lambda k, labels: jax.random.uniform(k, labels.shape),
                     out_shardings=distributed.batch_sharded(mesh))
      labels = distributed.global_batch(mesh, {"l": np.zeros(16, np.int32)})["l"]
      noise = draw(key, labels)
      shards = [np.asarray(s.data) for s in noise.addressable_shards]
      assert len(shards) == 4 and len({s.tobytes() for s in shards}) == 4
      with jax.default_device(jax.devices()[0]):
        single = np.asarray(jax.jit(lambda k: jax.random.uniform(k, (16,)))(key))
      np.testing.assert_array_equal(np.concatenate(shards), single)
      print("OK")
  """)
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


def test_resume_is_exact_extras_included(tmp_path):
  model, variables, source = _setup()
  opts = _opts(max_steps=6, checkpoint_every_steps=2, log_every_steps=2)
  full = training.fit(model, opts, source, objective=_shift_objective(), init_variables=variables,
                      workdir=tmp_path / "full")
  training.fit(model, opts.replace(max_steps=4), source, objective=_shift_objective(),
               init_variables=variables, workdir=tmp_path / "cut")
  resumed = training.fit(model, opts, source, objective=_shift_objective(), init_variables=variables,
                         workdir=tmp_path / "cut")
  assert resumed.metrics["steps"] == 6
  for a, b in zip(jax.tree.leaves((full.variables, full.extra)),
                  jax.tree.leaves((resumed.variables, resumed.extra))):
    np.testing.assert_array_equal(a, b)
