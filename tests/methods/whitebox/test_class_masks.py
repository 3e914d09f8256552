"""Class-wise masks: soft labels (1 at the label, Uniform[0, 1) elsewhere, fresh per image, layer
and step), gates s @ M on a tiny net, hard / shared variants, scores and fold vectors, bad labels."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdr import models
from jaxdr.errors import ConfigError
from jaxdr.methods import whitebox
from tests.methods.whitebox import nets

K = 4


def test_soft_labels_are_one_at_the_label_and_uniform_elsewhere():
  labels = jnp.asarray(np.arange(2000) % K, jnp.int32)
  s = np.asarray(whitebox.soft_labels(jax.random.PRNGKey(0), labels, K))
  assert s.shape == (2000, K)
  at_label = s[np.arange(2000), np.asarray(labels)]
  assert np.all(at_label == 1.0)
  others = s[np.arange(K)[None, :] != np.asarray(labels)[:, None]]
  assert others.min() >= 0.0 and others.max() < 1.0
  assert abs(others.mean() - 0.5) < 0.02 and abs(others.var() - 1 / 12) < 0.01  # Uniform[0, 1)
  again = np.asarray(whitebox.soft_labels(jax.random.PRNGKey(0), labels, K))
  other = np.asarray(whitebox.soft_labels(jax.random.PRNGKey(1), labels, K))
  assert np.array_equal(s, again) and not np.allclose(s, other)


def test_soft_gates_are_s_times_m_per_layer_with_fresh_draws():
  model = nets.vgg()
  graph = models.describe(model)
  rng = np.random.default_rng(0)
  masks = {k: jnp.asarray(rng.uniform(0.5, 1.5, (K, graph.gate(k).channels)), jnp.float32)
           for k in ("conv1", "conv3")}
  labels = jnp.asarray([0, 3, 3, 1], jnp.int32)
  key = jax.random.PRNGKey(7)
  gates = whitebox.batch_gates(masks, labels, key, "soft")
  for i, k in enumerate(sorted(masks)):
    s = whitebox.soft_labels(jax.random.fold_in(key, i), labels, K)
    np.testing.assert_allclose(gates[k], s @ masks[k], rtol=1e-6)
    # The label's row enters with weight exactly 1, every other row with a draw in [0, 1).
    rest = np.asarray(gates[k]) - np.asarray(masks[k])[np.asarray(labels)]
    assert np.all(rest >= 0) and np.all(rest < np.asarray(masks[k]).sum(0))
  s1 = whitebox.soft_labels(jax.random.fold_in(key, 0), labels, K)
  s2 = whitebox.soft_labels(jax.random.fold_in(key, 1), labels, K)
  assert not np.allclose(s1, s2)  # each layer draws its own soft labels


def test_gates_follow_the_labels_on_a_tiny_net():
  """Fails if the labels were ignored: with M[k] = 10 * e_k the gate of channel k is exactly 10
  for images of class k and below 10 otherwise, and the tiny net's train-mode logits are those
  of the per-example gates s @ M."""
  model, variables = nets.build("vgg")
  graph = models.describe(model)
  eye = {k: 10.0 * jnp.eye(K, graph.gate(k).channels) for k in ("conv1", "conv2")}
  labels = jnp.asarray([0, 1, 2, 3, 1, 0], jnp.int32)
  key = jax.random.PRNGKey(3)
  gates = whitebox.batch_gates(eye, labels, key, "soft")
  for k, g in gates.items():
    g = np.asarray(g)
    np.testing.assert_array_equal(g[np.arange(6), np.asarray(labels)], 10.0)
    others = np.ones_like(g[:, :K], bool)
    others[np.arange(6), np.asarray(labels)] = False
    assert np.all(g[:, :K][others] < 10.0)
  x = jnp.asarray(nets.images(model))
  logits, _ = models.apply(model, variables, x, gates, train=True)
  manual = {k: whitebox.soft_labels(jax.random.fold_in(key, i), labels, K) @ eye[k]
            for i, k in enumerate(sorted(eye))}
  want, _ = models.apply(model, variables, x, manual, train=True)
  np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)
  flipped, _ = models.apply(model, variables, x, whitebox.batch_gates(eye, (labels + 1) % K, key, "soft"),
                            train=True)
  assert not np.allclose(logits, flipped, atol=1e-3)


def test_hard_and_shared_gates():
  m = {"a": jnp.asarray(np.arange(12, dtype=np.float32).reshape(K, 3))}
  labels = jnp.asarray([2, 0, 3], jnp.int32)
  hard = whitebox.batch_gates(m, labels, jax.random.PRNGKey(0), "hard")
  np.testing.assert_array_equal(hard["a"], np.asarray(m["a"])[[2, 0, 3]])
  shared = whitebox.batch_gates({"a": m["a"][:1]}, labels, jax.random.PRNGKey(0), "shared")
  np.testing.assert_array_equal(shared["a"], np.asarray(m["a"])[0])  # [C]: one gate for every image


def test_init_scores_and_fold_vectors():
  graph = models.describe(nets.vgg())
  masks = whitebox.init_masks(graph, ["conv0", "conv3"], K, "soft", value=1.0)
  assert masks["conv0"].shape == (K, 4) and masks["conv3"].shape == (K, 8)
  assert whitebox.init_masks(graph, ["conv0"], K, "shared")["conv0"].shape == (1, 4)
  m = {"a": np.array([[1.0, -2.0], [3.0, -1.0]])}
  np.testing.assert_allclose(whitebox.scores(m)["a"], [4.0, 3.0])
  np.testing.assert_allclose(whitebox.fold_vectors(m, "soft")["a"], [2.0, -1.5])  # sum / 2
  np.testing.assert_allclose(whitebox.fold_vectors(m, "hard")["a"], [2.0, -1.5])  # mean of K=2 rows
  np.testing.assert_allclose(whitebox.fold_vectors({"a": m["a"][:1]}, "shared")["a"], [1.0, -2.0])
  with pytest.raises(ConfigError, match="gating"):
    whitebox.init_masks(graph, ["conv0"], K, "noisy")


@pytest.mark.parametrize("labels", [[0, 4], [-1, 2]])
def test_labels_out_of_range_are_a_config_error(labels):
  m = {"a": jnp.ones((K, 3))}
  for gating in ("soft", "hard"):
    with pytest.raises(ConfigError, match=r"labels must lie in \[0, 4\)"):
      whitebox.batch_gates(m, jnp.asarray(labels, jnp.int32), jax.random.PRNGKey(0), gating)
