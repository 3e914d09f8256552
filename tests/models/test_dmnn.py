"""DMNN models: Eq. 4, parameter counts, controllers in describe/costs, Gumbel gates with a
straight-through gradient, masks forcing sub-blocks, and the skip-compute dispatch."""
import flax.linen as nn
import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdr import costs, masks, models
from jaxdr.models import dmnn, dmnn_nets, layers

IMAGENET = dict(num_classes=1000, image_size=224, input_channels=3)
# Tiny DMNNs (xla convs: the fewest ops to compile), one per sub-block kind, cut to a few
# blocks (identity and projection / static blocks, every stage's first block).
TINY = {
    "basic": ("dmnn_resnet20", dict(image_size=12, width=0.5), dict(stage_sizes=(2, 2))),
    "bottleneck": ("dmnn50", dict(image_size=32, width=1 / 16), dict(stage_sizes=(2, 1))),
    "inverted": ("dmnn_mobilenet_v2_cifar", dict(image_size=8, width=0.25),
                 dict(stages=((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 1)), head_width=32)),
}


def tiny(kind, **kw):
  name, base, fields = TINY[kind]
  model = models.create(name, num_classes=5, input_channels=3, conv_impl="xla",
                        **{"categories": 3, **base, **kw}).clone(**fields)
  return model, _random_variables(model)


def _random_variables(model, seed=0):
  """Non-trivial variables (BN statistics too), drawn in numpy: nothing to compile."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda: models.init(model, jax.random.PRNGKey(0)))

  def draw(path, s):
    name = str(path[-1].key)
    if name == "bias" and "gates" in str(path):  # gate logits from the images, not a bias
      return jnp.zeros(s.shape, jnp.float32)
    if name == "kernel":
      x = rng.normal(0, np.sqrt(2.0 / np.prod(s.shape[:-1])), s.shape)
    elif name in ("var", "scale"):
      x = rng.uniform(0.5, 1.5, s.shape)
    else:
      x = rng.normal(0, 0.3, s.shape)
    return jnp.asarray(x, jnp.float32)
  return jax.tree_util.tree_map_with_path(draw, shapes)


def _x(model, n, seed=1):
  return jax.random.normal(jax.random.PRNGKey(seed), (n, model.image_size, model.image_size, 3))


def _path_points(model):
  graph = models.describe(model)
  return [graph.gate(k) for k, _ in graph.groups]


# --- parameter counts -------------------------------------------------------------------

@pytest.mark.parametrize("name,paths,documented,paper", [
    ("dmnn50", 2, 24_535_176, 24.67e6),
    ("dmnn50", 3, 26_126_056, 25.81e6),
    ("dmnn50", 4, 25_824_008, 25.81e6),
    ("dmnn101", 2, 42_857_164, 43.12e6),
    ("dmnn_mobilenet_v2", 2, 3_542_944, 3.63e6),
    ("dmnn_mobilenet_v2_1.4", 2, 6_157_728, 6.29e6),
])
def test_params_match_the_documented_counts_and_the_paper(name, paths, documented, paper):
  """Backbone + controllers (the inference network; category heads are training-only)."""
  count = costs.count(models.create(name, paths=paths, **IMAGENET)).params
  assert count == documented
  assert abs(count / paper - 1) < 0.03


def test_a_split_bottleneck_has_eq2_params():
  """Every stage-1 non-first block of DMNN-50 (N=2, c=40): N (C_in c + 9 c^2 + c C_out) weights
  plus BN (2c, 2c, 2 C_out per sub-block) and the controller (C_in d + d, d d + d, 2N d + 2N)."""
  graph = models.describe(models.create("dmnn50", paths=2, **IMAGENET))
  by_block = {}
  for row in costs.count(graph).layers:
    by_block.setdefault(row.path.split("/")[0], {}).setdefault(
        "controller" if "/controller/" in row.path else "block", 0)
    by_block[row.path.split("/")[0]]["controller" if "/controller/" in row.path else "block"] += row.params
  c, cin, cout, d, n = 40, 256, 256, 32, 2
  assert by_block["stage1_block1"]["block"] == n * (cin * c + 9 * c * c + c * cout + 2 * c + 2 * c + 2 * cout)
  assert by_block["stage1_block1"]["controller"] == cin * d + d + d * d + d + 2 * n * d + 2 * n
  assert by_block["stage1_block0"]["controller"] == 64 * d + d + 2 * n * d + 2 * n  # no W2: no h_0


def test_sub_block_widths():
  assert dmnn_nets.bottleneck_sub_widths(2) == (40, 80, 152, 304)
  assert dmnn_nets.solve_bottleneck_width(2, 64) == 40  # Eq. 1 = Eq. 2: ResNeXt's 2x40d
  assert dmnn_nets.bottleneck_sub_widths(5) == tuple(dmnn_nets.solve_bottleneck_width(5, w)
                                                     for w in (64, 128, 256, 512))
  gates = {g.key: g.channels for g in models.describe(models.create("dmnn_resnet20", paths=2)).gates}
  assert (gates["stage1_block0/sub1/conv1"], gates["stage3_block2/sub0/conv1"]) == (8, 32)  # w / N
  mb = {g.key: g.channels for g in models.describe(models.create("dmnn_mobilenet_v2", **IMAGENET)).gates}
  assert mb["stage3_block1/sub0/expand"] == 32 * 6 // 2 and "stage3_block0/paths" not in mb  # static


# --- describe, costs, masks --------------------------------------------------------------

def test_describe_records_controllers_and_costs_count_them():
  model, _ = tiny("basic")
  graph = models.describe(model)
  keys = {l.key for l in graph.layers}
  for part in ("embed", "gates", "category"):
    assert f"stage1_block0/controller/{part}" in keys
  assert "stage1_block0/controller/state" not in keys and "stage1_block1/controller/state" in keys
  embed = next(l for l in graph.layers if l.key == "stage2_block0/controller/embed")
  assert (embed.kind, embed.src, embed.in_channels, embed.out_channels) == (
      "dense", "stage1_block1/out", 8, 32)
  assert costs.count(model).params == sum(np.size(p) for p in jax.tree.leaves(
      jax.eval_shape(lambda: models.init(model, jax.random.PRNGKey(0)))["params"]))


def test_a_closed_sub_block_costs_nothing():
  model, _ = tiny("bottleneck")
  graph = models.describe(model)
  key, members = graph.groups[1]
  full = costs.count(model)
  closed = costs.count(model, {key: jnp.asarray([1.0, 0.0])})
  sub1 = sum(r.macs for r in full.layers if r.path.startswith(members[1][0].rsplit("/", 1)[0] + "/"))
  assert sub1 > 0 and full.macs - closed.macs == sub1
  # Per-example group gates: soft_costs gives each image's MACs.
  per_image = costs.soft_costs(graph, {key: jnp.asarray([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])})[1]
  np.testing.assert_allclose(full.macs - per_image, [0, sub1, full.macs - costs.count(
      model, {key: jnp.zeros(2)}).macs], rtol=1e-6)


def test_eq4_block_output_is_the_shortcut_plus_the_gated_sub_blocks():
  """MobileNetV2 blocks add no activation: out(s) = x + sum_n s_n F_n(x), so
  out(1, 1) = out(1, 0) + out(0, 1) - out(0, 0) and out(0, 0) = x (the block's input)."""
  model, variables = tiny("inverted")
  block = dmnn.block_keys(model)[0]
  points = _path_points(model)

  @jax.jit
  def out(s):
    seen = {}

    def record(next_fun, args, kwargs, context):
      y = next_fun(*args, **kwargs)
      path = layers.path_key(context.module.scope.path)
      if path == block + "/out":
        seen["y"] = y
      if path == block and context.method_name == "__call__":
        seen["x"] = args[0]
      return y
    mask = {**masks.ones_mask(points), block + "/paths": s}
    with nn.intercept_methods(record):
      models.apply(model, variables, _x(model, 2), mask)
    return seen["y"], seen["x"]
  (both, x), (first, _), (second, _), (none, _) = (out(jnp.asarray(s, jnp.float32))
                                                   for s in ([1, 1], [1, 0], [0, 1], [0, 0]))
  np.testing.assert_allclose(none, x, atol=1e-6)
  np.testing.assert_allclose(both, first + second - none, rtol=1e-5, atol=1e-5)
  assert float(jnp.max(jnp.abs(first - none))) > 1e-3 and float(jnp.max(jnp.abs(second - none))) > 1e-3


def test_mask_forces_paths_and_forward_reports_them():
  model, variables = tiny("basic")
  x = _x(model, 4)
  points = _path_points(model)
  logits, paths, stats = dmnn.forward(model, variables, x)
  assert stats is None and paths.gates.shape == (4, len(points), 2) and paths.categories.shape == (4, 4, 3)
  assert set(np.unique(paths.gates)) <= {0.0, 1.0}
  np.testing.assert_array_equal(paths.gates, (paths.logits[..., 1] > paths.logits[..., 0]))
  np.testing.assert_allclose(logits, models.apply(model, variables, x), rtol=1e-6)
  forced = masks.ones_mask(points)
  forced[points[2].key] = jnp.asarray([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])  # [B, N]
  _, paths, _ = dmnn.forward(model, variables, x, forced)
  assert float(paths.gates[:, [0, 1, 3]].min()) == 1.0
  np.testing.assert_array_equal(paths.gates[:, 2], forced[points[2].key])
  with pytest.raises(masks.MaskError):
    dmnn.forward(model, variables, x, {points[0].key: jnp.ones(3)})


# --- Gumbel gates ------------------------------------------------------------------------

def test_gate_values_straight_through_gradient():
  logits = jnp.asarray([[0.3, -0.2], [-1.0, 2.0], [0.5, 0.5]])
  rng, t = jax.random.PRNGKey(0), 0.7
  s = dmnn.gate_values(logits, rng, t)
  noisy = logits + jax.random.gumbel(rng, logits.shape)
  assert set(np.asarray(s).tolist()) <= {0.0, 1.0}
  np.testing.assert_array_equal(s, noisy[:, 1] > noisy[:, 0])
  soft = jax.nn.softmax(noisy / t)[:, 1]
  grad = jax.grad(lambda g: jnp.sum(dmnn.gate_values(g, rng, t) * jnp.arange(1.0, 4.0)))(logits)
  expected = (soft * (1 - soft) / t * jnp.arange(1.0, 4.0))[:, None] * jnp.asarray([-1.0, 1.0])
  np.testing.assert_allclose(grad, expected, rtol=1e-4)
  np.testing.assert_array_equal(dmnn.gate_values(logits, None), [0.0, 1.0, 0.0])  # argmax; ties off


def test_straight_through_gradients_reach_the_controllers():
  """Only the gates connect W3 (controller/gates) to the classification loss: with the
  gradient stopped at the gates (what a plain argmax would do) it would be exactly 0."""
  model, variables = tiny("basic", categories=0)
  x, y = _x(model, 8), jnp.arange(8) % 5

  def ce(params, stop):
    def gates_fn(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      return jax.lax.stop_gradient(out) if stop and isinstance(context.module, dmnn.PathGate) else out
    with nn.intercept_methods(gates_fn):
      logits, _, _ = dmnn.forward(model, {**variables, "params": params}, x, train=True,
                                  rngs={dmnn.RNG: jax.random.PRNGKey(3)})
    return jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(8), y])

  for stop in (False, True):
    grads = jax.jit(jax.grad(ce), static_argnums=1)(variables["params"], stop)
    w3 = [grads[b]["controller"]["gates"]["dense"]["kernel"] for b in dmnn.block_keys(model)]
    norms = [float(jnp.linalg.norm(g)) for g in w3]
    if stop:
      assert max(norms) == 0.0
    else:
      assert min(norms) > 0.0, norms  # every block's controller learns from the task loss


def test_same_key_same_paths_other_key_other_samples():
  model, variables = tiny("basic")
  x = _x(model, 16)

  @jax.jit
  def sample(key):
    return dmnn.forward(model, variables, x, train=True, rngs={dmnn.RNG: key})[1].gates
  a, b, c = sample(jax.random.PRNGKey(0)), sample(jax.random.PRNGKey(0)), sample(jax.random.PRNGKey(1))
  np.testing.assert_array_equal(a, b)
  assert float(jnp.mean(a != c)) > 0.05
  no_rng = dmnn.forward(model, variables, x, train=True)[1]  # no 'gumbel' rng: argmax
  np.testing.assert_array_equal(no_rng.gates, no_rng.logits[..., 1] > no_rng.logits[..., 0])


def test_gate_bias_sets_the_initial_opening_rate():
  """``gate_bias`` (off, on) is b3 of every controller at init: (0.1, 2) opens most gates
  (ConvNet-AIG's ~85%), (2, 0.1) closes most, (0, 0) is even odds."""
  rates = {}
  for bias in ((0.1, 2.0), (0.0, 0.0), (2.0, 0.1)):
    model = models.create("dmnn_resnet20", num_classes=5, input_channels=3, conv_impl="xla",
                          image_size=12, width=0.5, gate_bias=bias).clone(stage_sizes=(2, 2))
    variables = models.init(model, jax.random.PRNGKey(0))
    b3 = variables["params"]["stage1_block0"]["controller"]["gates"]["dense"]["bias"]
    np.testing.assert_allclose(b3, np.tile(bias, model.paths))
    gates = dmnn.forward(model, variables, _x(model, 256), train=True,
                         rngs={dmnn.RNG: jax.random.PRNGKey(3)})[1].gates
    rates[bias] = float(jnp.mean(gates))
  assert rates[(0.1, 2.0)] > 0.75 and rates[(2.0, 0.1)] < 0.25, rates
  assert 0.3 < rates[(0.0, 0.0)] < 0.7, rates
  listed = models.create("dmnn_resnet20", num_classes=5, gate_bias=[0.1, 2.0])  # as model.json has it
  assert listed.gate_bias == (0.1, 2.0) and models.describe(listed).groups


# --- skip-compute dispatch ---------------------------------------------------------------

@pytest.mark.parametrize("kind", list(TINY))
def test_skip_compute_equals_the_masked_path(kind):
  """'skip' runs only the sub-blocks whose gate is on (a switch over on/off patterns per pair of
  sub-blocks at batch 1, capacity buckets for batches); logits and paths equal the masked path's,
  with controller-decided gates and with forced masks (per example; all off; every pattern with
  gate values other than 1)."""
  model, variables = tiny(kind, buckets=2)  # capacities 4 and 7 at batch 7
  fast = model.clone(dispatch="skip")
  points = _path_points(model)
  x = _x(model, 7)
  rng = np.random.default_rng(0)
  per_example = {p.key: jnp.asarray(rng.random((7, p.channels)) < 0.4, jnp.float32) for p in points}
  all_off = {p.key: jnp.zeros(p.channels) for p in points}
  run_masked = jax.jit(lambda v, x, m: dmnn.forward(model, v, x, m)[:2])
  run_skip = jax.jit(lambda v, x, m: dmnn.forward(fast, v, x, m)[:2])
  decided = run_masked(variables, x, None)[1].gates
  assert 0.0 < float(decided.mean()) < 1.0  # the controllers' own paths mix on and off
  cases = [(x, None), (x[:1], None)]
  if kind == "basic":  # batch 1: every on/off pattern, gate values other than 1
    cases += [(x, per_example), (x[:1], all_off), (x[:1], {k: v[:1] for k, v in per_example.items()})]
    n = points[0].channels
    for pattern in range(1, 2 ** n):
      scales = [(0.5 + i) * (pattern >> i & 1) for i in range(n)]
      cases.append((x[:1], {p.key: jnp.asarray(scales, jnp.float32) for p in points}))
  for batch, mask in cases:
    (want, want_paths), (got, got_paths) = run_masked(variables, batch, mask), run_skip(variables, batch, mask)
    np.testing.assert_array_equal(got_paths.gates, want_paths.gates)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(want))))


def _conds(jaxpr):
  """The `cond` equations of a jaxpr and of every jaxpr nested in it, in order."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "cond":
      found.append(eqn)
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      found += _conds(sub)
  return found


def _count(jaxpr, name):
  """How many `name` equations a jaxpr holds, nested jaxprs included."""
  nested = lambda eqn: jax.extend.core.jaxprs_in_params(eqn.params)  # noqa: E731
  return sum((eqn.primitive.name == name) + sum(_count(sub, name) for sub in nested(eqn))
             for eqn in jaxpr.eqns)


@pytest.mark.parametrize("paths", [2, 3, 5])
def test_skip_at_batch_one_computes_only_the_sub_blocks_that_are_on(paths):
  """At batch 1 each block's sub-blocks go in pairs (the last alone when N is odd), one switch
  per pair over its on/off patterns: the branch of pattern k holds the convs of exactly the
  sub-blocks that are on in k. Values: every forced pattern (with gate values other than 1)
  equals the masked path (N = 3: a pair and a single)."""
  model, variables = tiny("basic", paths=paths)
  fast = model.clone(dispatch="skip")
  blocks = len(_path_points(model))
  jaxpr = jax.make_jaxpr(lambda x: models.apply(fast, variables, x))(_x(model, 1)).jaxpr
  conds = _conds(jaxpr)
  groups = [dmnn.PATTERN_GROUP] * (paths // dmnn.PATTERN_GROUP) + [paths % dmnn.PATTERN_GROUP] * (
      paths % dmnn.PATTERN_GROUP > 0)
  assert dmnn.PATTERN_GROUP == 2 and len(conds) == blocks * len(groups)
  per_sub = 2  # a basic sub-block's two 3x3 convs
  for cond, size in zip(conds, groups * blocks):
    convs = [_count(b.jaxpr, "conv_general_dilated") for b in cond.params["branches"]]
    assert convs == [per_sub * bin(k).count("1") for k in range(2 ** size)]
  if paths == 3:
    points = _path_points(model)
    run_masked = jax.jit(lambda v, x, m: dmnn.forward(model, v, x, m)[0])
    run_skip = jax.jit(lambda v, x, m: dmnn.forward(fast, v, x, m)[0])
    x = _x(model, 1)
    for pattern in range(2 ** paths):
      scales = jnp.asarray([(0.5 + i) * (pattern >> i & 1) for i in range(paths)], jnp.float32)
      mask = {p.key: scales for p in points}
      want = run_masked(variables, x, mask)
      np.testing.assert_allclose(run_skip(variables, x, mask), want, rtol=1e-4,
                                 atol=1e-4 * float(jnp.max(jnp.abs(want))))


def test_skip_dispatch_is_inference_only():
  model, variables = tiny("basic")
  with pytest.raises(ValueError, match="inference"):
    models.apply(model.clone(dispatch="skip"), variables, _x(model, 2), train=True)


def test_create_rejects_bad_options():
  with pytest.raises(ValueError, match="takes no option"):
    models.create("resnet20", paths=2)
  with pytest.raises(ValueError, match="paths"):
    models.describe(models.create("dmnn_resnet20", paths=0))
  assert models.options("dmnn50") == dmnn_nets.OPTIONS and dmnn_nets.twin("dmnn50") == "resnet50"
