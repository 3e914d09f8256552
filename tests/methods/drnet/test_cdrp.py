"""CDRP gate fitting: batching, clipping, the top-1 readings ('reset' / 'best' / 'last'), the
update rule and the L1 term's sign subgradient."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
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
  one, _ = cdrp.fit_gates(model, variables, image, cdrp.CdrpOptions(steps=1, on_top1_change="reset"))
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
  two, _ = cdrp.fit_gates(model, variables, image, cdrp.CdrpOptions(steps=2, on_top1_change="reset"))
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
  assert np.all(np.asarray(info["changed"])) and np.all(np.asarray(info["reset"]))
  np.testing.assert_array_equal(info["step"], 0)
  for g in gates.values():
    np.testing.assert_array_equal(g, 1.0)
  best, info = cdrp.fit_gates(model, variables, images, cdrp.CdrpOptions(**opts, on_top1_change="best"))
  n = sum(g.shape[-1] for g in best.values())
  assert np.all(np.asarray(info["loss"]) <= opts["gamma"] * n + 1e-4)
  logits = models.apply(model, variables, images, best)
  np.testing.assert_array_equal(jnp.argmax(logits, -1), 0)
  assert any(float(jnp.min(g)) < 1.0 for g in best.values()), "best gates should improve on all ones"


def _reference_iterates(model, variables, image, opts):
  """Iterates 0..steps of one image by a plain loop: [(gates, loss, top-1 unchanged)]."""
  target = jax.nn.log_softmax(models.apply(model, variables, image))[0]

  def loss(g):
    logits = models.apply(model, variables, image, g)[0]
    l1 = sum(jnp.sum(v * jnp.sign(v)) for v in g.values())  # value |g|, gradient sign(g)
    kl = jnp.sum(jnp.exp(target) * (target - jax.nn.log_softmax(logits)))
    return kl + opts.gamma * l1, jnp.argmax(logits) == jnp.argmax(target)
  gates = {g.key: jnp.ones((g.channels,)) for g in models.describe(model).gates}
  tx = optax.sgd(opts.learning_rate, momentum=opts.momentum)
  state, out = tx.init(gates), []
  for _ in range(opts.steps + 1):
    (value, same), grads = jax.value_and_grad(loss, has_aux=True)(gates)
    out.append((gates, float(value), bool(same)))
    updates, state = tx.update(grads, state, gates)
    gates = jax.tree.map(lambda a: jnp.clip(a, opts.clip_min, opts.clip_max), optax.apply_updates(gates, updates))
  return out


def test_top1_readings_reset_best_last():
  # Top-1 flips for a few iterates in the middle of the fit; each reading picks its iterate.
  model, variables = _model(bias=[0.0, 3.0, 0.0], class0_weight=50.0)
  images = _images(3)
  base = dict(steps=7, learning_rate=0.1, gamma=1.0)
  chosen = {}
  for mode in cdrp.ON_TOP1_CHANGE:
    opts = cdrp.CdrpOptions(**base, on_top1_change=mode)
    gates, info = cdrp.fit_gates(model, variables, images, opts)
    for i in range(images.shape[0]):
      its = _reference_iterates(model, variables, images[i:i + 1], opts)
      ok = [t for t, (_, _, same) in enumerate(its) if same]
      want = {"reset": opts.steps if its[-1][2] else 0, "last": ok[-1],
              "best": min(ok, key=lambda t: its[t][1])}[mode]
      assert int(info["step"][i]) == want, (mode, i)
      assert bool(info["changed"][i]) == (not its[-1][2])
      assert bool(info["reset"][i]) == (want == 0)
      np.testing.assert_allclose(info["loss"][i], its[want][1], rtol=1e-4)
      for key in gates:
        np.testing.assert_allclose(gates[key][i], its[want][0][key], atol=1e-5)
    chosen[mode] = np.asarray(info["step"]).tolist()
  # The three readings differ here, else the test would prove little.
  assert len({tuple(v) for v in chosen.values()}) == 3, chosen
  assert any(chosen["reset"][i] == 0 and chosen["best"][i] > 0 for i in range(3)), chosen


def test_l1_subgradient_is_sign_zero_at_zero():
  grad = jax.grad(lambda g: cdrp.l1_norm(g))(jnp.array([0.0, 0.5, -0.5, 2.0]))
  np.testing.assert_array_equal(grad, [0.0, 1.0, -1.0, 1.0])  # jnp.abs's autodiff gives 1 at 0
  np.testing.assert_allclose(cdrp.l1_norm(jnp.array([[0.0, -0.5, 2.0]])), [2.5])
  # In the fit: step 1 (lr * gamma = 1, no momentum, the KL gradient is exactly 0 at all ones)
  # lands every gate exactly on 0; step 2 must leave it there (gradient gamma * sign(0) = 0 plus
  # a vanishing KL term: class 0 wins by its bias). With jnp.abs the gates would reach -1.
  model, variables = _model(classifier_scale=1.0, bias=[50.0, 0.0, 0.0])
  opts = cdrp.CdrpOptions(steps=2, learning_rate=1.0, gamma=1.0, momentum=0.0, clip_min=-10.0)
  gates, info = cdrp.fit_gates(model, variables, _images(2), opts)
  assert not np.any(np.asarray(info["changed"]))
  for g in gates.values():
    np.testing.assert_allclose(g, 0.0, atol=1e-6)


def test_bad_options_raise():
  with pytest.raises(ConfigError, match="loop"):
    cdrp.CdrpOptions(loop="while")
  with pytest.raises(ConfigError, match="on_top1_change"):
    cdrp.CdrpOptions(on_top1_change="keep")
  with pytest.raises(ConfigError, match="clip_min"):
    cdrp.CdrpOptions(clip_min=1.0, clip_max=0.5)
