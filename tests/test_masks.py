"""The mask pytree on every architecture family: open gates are exact no-ops, every gate
point is wired in, per-example / continuous / stacked gates work under vmap and grad."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdr import masks, models

FAMILIES = ["vgg16", "resnet20", "resnet50", "mobilenet_v2", "lenet5", "alexnet"]


def _gates(model):
  return models.describe(model).gates


def _random_mask(points, rng, lead=(), low=0.0):
  """Continuous gates in [low, 1) (or 0/1 when low is None) for every gate point."""
  out = {}
  for p in points:
    shape = lead + (p.channels,)
    out[p.key] = np.asarray(rng.integers(0, 2, shape) if low is None else rng.uniform(low, 1.0, shape),
                            np.float32)
  return jax.device_put(out)  # (jnp.asarray compiles a staging op per new shape)


@pytest.mark.parametrize("name", FAMILIES)
def test_open_mask_is_exact_noop(name, tiny, images):
  model, variables = tiny(name)
  x = images(2)
  ref = models.apply(model, variables, x, None)
  ones = masks.ones_mask(_gates(model))
  np.testing.assert_array_equal(models.apply(model, variables, x, {}), ref)
  np.testing.assert_array_equal(models.apply(model, variables, x, ones), ref)
  per_example = masks.ones_mask(_gates(model), batch_size=2)
  np.testing.assert_array_equal(models.apply(model, variables, x, per_example), ref)


@pytest.mark.parametrize("name", FAMILIES)
def test_every_gate_point_is_applied(name, tiny, images):
  """Closing any single gate point alone changes the logits (fails if one were ignored),
  and so does a random 0/1 mask."""
  model, variables = tiny(name)
  points = _gates(model)
  logits = jax.jit(lambda m: models.apply(model, variables, images(2), m))
  ones = masks.ones_mask(points)
  ref = logits(ones)
  scale = float(jnp.max(jnp.abs(ref)))
  for p in points:
    closed = logits({**ones, p.key: jnp.zeros(p.channels)})
    assert float(jnp.max(jnp.abs(closed - ref))) > 1e-4 * scale, f"gate {p.key} has no effect"
  random01 = _random_mask(points, np.random.default_rng(0), low=None)
  assert float(jnp.max(jnp.abs(logits(random01) - ref))) > 1e-4 * scale


@pytest.mark.parametrize("name", ["resnet20", "lenet5"])
def test_per_example_gates_under_vmap_equal_batched(name, tiny, images):
  model, variables = tiny(name)
  points = _gates(model)
  x = images(3)
  gates = _random_mask(points, np.random.default_rng(1), lead=(3,))
  batched = jax.jit(lambda m: models.apply(model, variables, x, m))(gates)
  one_at_a_time = jax.jit(jax.vmap(lambda xi, m: models.apply(model, variables, xi[None], m)[0]))(x, gates)
  np.testing.assert_allclose(one_at_a_time, batched, rtol=1e-5, atol=1e-5)
  # The rows really are per example: example 1 under example 0's gates differs.
  first_row = {k: g[0] for k, g in gates.items()}
  assert not np.allclose(models.apply(model, variables, x, first_row)[1], batched[1], atol=1e-4)


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2"])
def test_grad_wrt_continuous_gates(name, tiny, images):
  """CDRP fits [B, C] gates by gradient: every gate point gets a finite, non-zero gradient."""
  model, variables = tiny(name)
  x = images(2)
  gates = _random_mask(_gates(model), np.random.default_rng(2), lead=(2,), low=0.5)

  def loss(m):
    return -jnp.sum(jax.nn.log_softmax(models.apply(model, variables, x, m))[:, 0])

  grads = jax.jit(jax.grad(loss))(gates)
  assert grads.keys() == gates.keys()
  for key, g in grads.items():
    assert g.shape == gates[key].shape
    assert np.all(np.isfinite(g)), key
    assert float(jnp.max(jnp.abs(g))) > 0, f"zero gradient at {key}"


@pytest.mark.parametrize("name,key", [("lenet5", "conv2"), ("resnet20", "stage2_block0/conv1")])
def test_candidate_mask_stack_vmapped_equals_loop(name, key, tiny, images):
  """CAR scores K candidate 0/1 masks (each closes one more channel) with one vmap over K."""
  model, variables = tiny(name)
  x = images(2)
  channels = models.describe(model).gate(key).channels
  candidates = 1.0 - jnp.eye(channels)  # [K=C, C]
  one = lambda m: models.apply(model, variables, x, {key: m})  # noqa: E731
  stacked = jax.jit(jax.vmap(one))(candidates)
  looped = jnp.stack([jax.jit(one)(m) for m in candidates])  # one compile, K calls
  assert stacked.shape == (channels, 2, 10)
  np.testing.assert_allclose(stacked, looped, rtol=1e-5, atol=1e-5)
  assert not np.allclose(stacked[0], stacked[1])


def test_validate_mask():
  points = _gates(models.create("lenet5", image_size=28, input_channels=1))
  masks.validate_mask(None, points)
  masks.validate_mask({"conv1": np.ones(20), "conv2": np.ones((4, 50))}, points)
  with pytest.raises(masks.MaskError, match=r"unknown gate point\(s\) \['conv3'\]"):
    masks.validate_mask({"conv3": np.ones(20)}, points)
  with pytest.raises(masks.MaskError, match=r"gate 'conv2' must have shape \[50\] or \[B, 50\], got \(49,\)"):
    masks.validate_mask({"conv2": np.ones(49)}, points)
  with pytest.raises(masks.MaskError, match=r"got \(2, 2, 20\)"):
    masks.validate_mask({"conv1": np.ones((2, 2, 20))}, points)
  assert issubclass(masks.MaskError, ValueError)


def test_apply_gate_errors_and_broadcast():
  x = jnp.ones((2, 3, 3, 4))
  np.testing.assert_array_equal(masks.apply_gate(x, {"g": jnp.array([1.0, 0.0, 2.0, 1.0])}, "g")[1, 2, 0],
                                [1.0, 0.0, 2.0, 1.0])
  per_example = masks.apply_gate(x, {"g": jnp.array([[1.0, 1, 1, 1], [0, 0, 0, 3]])}, "g")
  np.testing.assert_array_equal(per_example[:, 0, 0], [[1, 1, 1, 1], [0, 0, 0, 3]])
  with pytest.raises(masks.MaskError, match="has 3 channels, activation has 4"):
    masks.apply_gate(x, {"g": jnp.ones(3)}, "g")
  with pytest.raises(masks.MaskError, match="batch 3"):
    masks.apply_gate(x, {"g": jnp.ones((3, 4))}, "g")


def test_expand_groups():
  g = jnp.array([[1.0, 0.0], [0.0, 1.0]])  # [B=2, G=2]
  np.testing.assert_array_equal(masks.expand_groups(g, 6), [[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]])
  with pytest.raises(masks.MaskError, match="do not split into 4 equal groups"):
    masks.expand_groups(jnp.ones(4), 6)


def test_spaces_group_coupled_gate_points():
  points = _gates(models.create("resnet20", width=0.25))
  by_space = masks.spaces(points)
  stem = [p.key for p in by_space["stem"]]
  assert stem == ["stem", "stage1_block0/out", "stage1_block1/out", "stage1_block2/out"]
  assert all(p.coupled for p in by_space["stem"])
  assert by_space["stage1_block0/conv1"][0].removable_alone


@pytest.mark.parametrize("name,lead", [("vgg16", (2,))])
def test_cpu_fast_gate_gradient_equals_plain(name, lead, tiny, images):
  """'auto' models take gate gradients as tree sums on CPU (a custom VJP, inside the units:
  tests/models/test_layers.py); 'xla' models use plain autodiff. Shared [C] and per-example
  [B, C] gates get the same gradients through a whole network (VGG-16: with its tiny-map
  conv VJPs), and 'xla' models keep forward mode."""
  model, variables = tiny(name)
  x = images(2)
  gates = _random_mask(_gates(model), np.random.default_rng(3), lead=lead, low=0.5)

  def loss(impl):
    m = model.clone(conv_impl=impl)
    return lambda g: jnp.sum(jax.nn.log_softmax(models.apply(m, variables, x, g))[:, 0] ** 2)

  fast, plain = jax.jit(jax.grad(loss("auto")))(gates), jax.jit(jax.grad(loss("xla")))(gates)
  for key in gates:
    np.testing.assert_allclose(fast[key], plain[key], rtol=1e-4, atol=1e-6, err_msg=key)
  assert "custom_vjp" in str(jax.make_jaxpr(loss("auto"))(gates))
  assert "custom_vjp" not in str(jax.make_jaxpr(loss("xla"))(gates))
  tangent = jax.tree.map(jnp.ones_like, gates)
  _, jvp = jax.jit(lambda g, t: jax.jvp(loss("xla"), (g,), (t,)))(gates, tangent)
  np.testing.assert_allclose(jvp, sum(jnp.sum(plain[k]) for k in gates), rtol=1e-4)


def test_gate_for_is_none_for_open_gates():
  x = jnp.ones((2, 3, 3, 4))
  assert masks.gate_for(x, None, "g") is None and masks.gate_for(x, {"h": jnp.ones(4)}, "g") is None
  gate = masks.gate_for(x.astype(jnp.bfloat16), {"g": np.ones(4, np.float32)}, "g")
  assert gate.dtype == jnp.bfloat16 and gate.shape == (4,)
