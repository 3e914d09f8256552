"""CDRP gate fitting: batching, clipping, the top-1 fallback and the update rule."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdr import models
from jaxdr.errors import ConfigError
from jaxdr.methods.drnet import cdrp
from jaxdr.models import vgg

models.register("tiny_vgg_cdrp", lambda **kw: vgg.VGG(cfg=(4, "M", 6, "M"), **kw))


def _model(classifier_scale=3.0, bias=None, class0_weight=None):
  model = models.create("tiny_vgg_cdrp", num_classes=3, image_size=8, input_channels=1)
  variables = models.init(model, jax.random.PRNGKey(0))
  params = jax.tree_util.tree_map(lambda a: a, variables["params"])
  dense = dict(params["classifier"]["dense"])
  dense["kernel"] = dense["kernel"] * classifier_scale
  if class0_weight is not None:
    dense["kernel"] = dense["kernel"].at[:, 0].set(class0_weight)
  if bias is not None:
    dense["bias"] = jnp.asarray(bias, jnp.float32)
  params["classifier"] = {"dense": dense}
  return model, dict(variables, params=params)


def _images(n=4, seed=1):
  return jax.random.normal(jax.random.PRNGKey(seed), (n, 8, 8, 1))


def test_batched_gates_equal_one_image_alone():
  model, variables = _model()
  images = _images(4)
  opts = cdrp.CdrpOptions(steps=6, learning_rate=0.5)
  gates, info = cdrp.fit_gates(model, variables, images, opts)
  fit = cdrp.make_fitter(model, opts)
  spread = max(float(jnp.std(g[:, 0])) for g in gates.values())
  assert spread > 1e-2, "images should get different gates, else the test proves nothing"
  for i in range(images.shape[0]):
    alone, _ = fit(variables, images[i:i + 1])
    for key in gates:
      np.testing.assert_allclose(alone[key][0], gates[key][i], atol=1e-5, err_msg=key)


@pytest.mark.parametrize("loop,unroll", [("fori", 1), ("python", 1), ("scan", 3)])
def test_loop_modes_agree(loop, unroll):
  model, variables = _model()
  images = _images(2)
  ref, _ = cdrp.fit_gates(model, variables, images, cdrp.CdrpOptions(steps=4, loop="scan"))
  got, _ = cdrp.fit_gates(model, variables, images, cdrp.CdrpOptions(steps=4, loop=loop, unroll=unroll))
  for key in ref:
    np.testing.assert_allclose(got[key], ref[key], atol=1e-6)


def test_update_rule_sgd_momentum_kl_plus_l1():
  model, variables = _model()
  image = _images(1)
  gamma, lr, mu = 0.05, 0.1, 0.9
  # Step 1 starts at lambda = 1, where the KL gradient vanishes: lambda = 1 - lr * gamma.
  one, _ = cdrp.fit_gates(model, variables, image, cdrp.CdrpOptions(steps=1))
  for g in one.values():
    np.testing.assert_allclose(g, 1 - lr * gamma, atol=1e-6)
  # Step 2 by hand: v2 = g2 + mu * v1, lambda2 = clip(lambda1 - lr * v2).
  target = jax.nn.log_softmax(models.apply(model, variables, image))[0]

  def loss(gates):
    logp = jax.nn.log_softmax(models.apply(model, variables, image, gates)[0])
    return jnp.sum(jnp.exp(target) * (target - logp)) + gamma * sum(jnp.abs(g).sum() for g in gates.values())
  lam1 = {k: v[0] for k, v in one.items()}
  g1 = {k: jnp.full_like(v, gamma) for k, v in lam1.items()}
  g2 = jax.grad(loss)(lam1)
  two, _ = cdrp.fit_gates(model, variables, image, cdrp.CdrpOptions(steps=2))
  for k in lam1:
    want = jnp.clip(lam1[k] - lr * (g2[k] + mu * g1[k]), 0.0, 10.0)
    np.testing.assert_allclose(two[k][0], want, atol=1e-6)


def test_gates_are_clipped_after_each_step():
  # Class 0 wins by its bias whatever the gates, so top-1 never changes and no fallback hides clipping.
  model, variables = _model(classifier_scale=1.0, bias=[50.0, 0.0, 0.0])
  images = _images(2)
  low, _ = cdrp.fit_gates(model, variables, images, cdrp.CdrpOptions(steps=3, learning_rate=100.0))
  high, _ = cdrp.fit_gates(model, variables, images,
                           cdrp.CdrpOptions(steps=3, learning_rate=100.0, gamma=-1.0, clip_max=2.5))
  for key in low:
    np.testing.assert_array_equal(low[key], 0.0)
    np.testing.assert_array_equal(high[key], 2.5)


def test_top1_change_resets_gates_to_ones():
  # Features vote strongly for class 0, the bias alone for class 1: closing the gates flips top-1.
  model, variables = _model(bias=[0.0, 5.0, 0.0], class0_weight=200.0)
  images = _images(3)
  opts = dict(steps=5, learning_rate=0.05, gamma=5.0)
  assert np.all(np.asarray(jnp.argmax(models.apply(model, variables, images), -1)) == 0)
  gates, info = cdrp.fit_gates(model, variables, images, cdrp.CdrpOptions(**opts, on_top1_change="reset"))
  assert np.all(np.asarray(info["changed"]))
  for g in gates.values():
    np.testing.assert_array_equal(g, 1.0)
  best, info = cdrp.fit_gates(model, variables, images, cdrp.CdrpOptions(**opts, on_top1_change="best"))
  n = sum(g.shape[-1] for g in best.values())
  assert np.all(np.asarray(info["loss"]) <= opts["gamma"] * n + 1e-4)
  logits = models.apply(model, variables, images, best)
  np.testing.assert_array_equal(jnp.argmax(logits, -1), 0)
  assert any(float(jnp.min(g)) < 1.0 for g in best.values()), "best gates should improve on all ones"


def test_bad_options_raise():
  with pytest.raises(ConfigError, match="loop"):
    cdrp.CdrpOptions(loop="while")
  with pytest.raises(ConfigError, match="on_top1_change"):
    cdrp.CdrpOptions(on_top1_change="keep")
  with pytest.raises(ConfigError, match="clip_min"):
    cdrp.CdrpOptions(clip_min=1.0, clip_max=0.5)
