"""toolkit.compression / latency: the summary's numbers are costs.count of the sliced model, the
sliced model computes the masked one's logits, it saves and reloads; latency is measured."""
import jax
import numpy as np
import pytest

from jaxdr import checkpoints, costs, models
from jaxdr.toolkit import compression, latency


@pytest.mark.parametrize("name,mask_keys", [("lenet5", ("conv1", "conv2")),
                                            ("resnet20", ("stage1_block0/conv1",))])
def test_summary_counts_the_sliced_model_and_it_computes_the_masked_logits(tiny, images, tmp_path, name,
                                                                           mask_keys):
  model, variables = tiny(name)
  graph = models.describe(model)
  rng = np.random.default_rng(0)
  mask = {}
  for key in mask_keys:
    gate = (rng.uniform(size=graph.gate(key).channels) > 0.5).astype(np.float32)
    gate[0] = 1.0
    mask[key] = gate
  summary, sliced = compression.compress(model, variables, mask, save_to=tmp_path / "small",
                                         model_name=name, model_kwargs=dict(
                                             num_classes=10, image_size=28, input_channels=1,
                                             width=model.width, conv_impl="xla"))
  small = costs.count(sliced.model)
  assert (summary.params_after, summary.macs_after) == (small.params, small.macs)
  full = costs.count(model)
  assert (summary.params_before, summary.macs_before) == (full.params, full.macs)
  assert summary.macs_after < summary.macs_before
  assert summary.bytes_before == 4 * costs.param_count(variables)
  assert summary.bytes_after == 4 * costs.param_count(sliced.variables) < summary.bytes_before
  assert summary.kept == {k: int(v.sum()) for k, v in mask.items()}
  x = images(3)
  np.testing.assert_allclose(models.apply(sliced.model, sliced.variables, x, sliced.mask),
                             models.apply(model, variables, x, mask), atol=1e-4, rtol=1e-4)
  loaded, loaded_vars = checkpoints.load_model(tmp_path / "small", conv_impl="xla")  # the same convs
  assert loaded.channels == sliced.model.channels and summary.saved_to == str(tmp_path / "small")
  np.testing.assert_allclose(models.apply(loaded, loaded_vars, x, sliced.mask),
                             models.apply(sliced.model, sliced.variables, x, sliced.mask), atol=1e-6)
  d = summary.as_dict()
  assert d["params_after"] == small.params and d["latency"] == []


def test_latency_is_measured_per_batch_size(tiny):
  model, variables = tiny("lenet5")
  mask = {"conv2": np.r_[np.ones(4), np.zeros(6)].astype(np.float32)}
  summary, _ = compression.compress(model, variables, mask, latency_batch_sizes=(1, 4), repeats=3)
  assert [t.batch_size for t in summary.latency] == [1, 4]
  for t in summary.latency:
    assert t.unpruned_s > 0 and t.sliced_s > 0 and t.speedup == pytest.approx(t.unpruned_s / t.sliced_s)
  row = summary.as_dict()["latency"][1]
  assert set(row) == {"batch_size", "unpruned_s", "sliced_s", "speedup"} and summary.saved_to is None


def test_side_by_side_times_every_sliced_model_against_one_unpruned_reference(tiny, monkeypatch):
  model, variables = tiny("lenet5")
  cuts = {}
  for name, kept in (("four", 4), ("seven", 7)):
    mask = {"conv2": np.r_[np.ones(kept), np.zeros(10 - kept)].astype(np.float32)}
    _, sliced = compression.compress(model, variables, mask)
    cuts[name] = (sliced.model, sliced.variables, sliced.mask)
  seen = []
  real = latency.compare
  monkeypatch.setattr(latency, "compare", lambda entries, b, r: seen.append(sorted(entries)) or real(entries, b, r))
  out = compression.time_side_by_side(model, variables, cuts, (1, 4), repeats=2)
  assert seen == [["four", "seven", "unpruned"]] * 2  # one loop per batch size, all models in it
  for b, (t4, t7) in zip((1, 4), zip(out["four"], out["seven"])):
    assert t4.batch_size == t7.batch_size == b and t4.unpruned_s == t7.unpruned_s > 0  # one reference
    assert t4.sliced_s > 0 and t7.sliced_s > 0
  with pytest.raises(ValueError, match="unpruned"):
    compression.time_side_by_side(model, variables, {"unpruned": cuts["four"]}, (1,))


def test_time_calls_alternates_and_takes_the_median():
  order = []
  calls = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
  times = latency.time_calls(calls, repeats=3, warmup_s=0.0)
  assert order == ["a", "b"] + ["a", "b"] * 3  # one untimed call each, then alternating rounds
  order.clear()
  latency.time_calls(calls, repeats=3, warmup_s=0.05)  # untimed alternating rounds for 50 ms first
  assert len(order) > 2 + 6 and order[:2] == ["a", "b"] and order == ["a", "b"] * (len(order) // 2)
  assert set(times) == {"a", "b"} and all(t >= 0 for t in times.values())
  with pytest.raises(ValueError, match="repeats"):
    latency.time_calls(calls, repeats=0)
  model_fn = latency.forward(*_lenet(), None, 2)
  assert model_fn().shape == (2, 10)


def _lenet():
  model = models.create("lenet5", num_classes=10, image_size=28, input_channels=1, width=0.2, conv_impl="xla")
  return model, models.init(model, jax.random.PRNGKey(0))
