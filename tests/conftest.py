"""Shared fixtures: tiny models with random (non-trivial) variables, built without compiling init.

`jax.eval_shape` gives the variable shapes; numpy fills them (He-scaled kernels, non-zero
biases and BN statistics), so tests exercise every parameter and cost no init compile.
"""
# pylint: disable=g-import-not-at-top,wrong-import-position  (the cache is set before JAX loads)
from tests import compile_cache

# Before JAX reads its configuration: one compilation cache for the whole run (workers and the
# commands tests start included; tests/compile_cache.py says why).
compile_cache.share_within_run()

import gc

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdr import models
from tests import xla_flags

# Before any test starts JAX: compile with LLVM at -O0 (tests/xla_flags.py says why and how to
# run at XLA's default level instead).
xla_flags.apply_to_environ()


def pytest_unconfigure(config):  # pylint: disable=unused-argument
  compile_cache.remove_if_made_here()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):  # pylint: disable=unused-argument
  """Moves everything still alive out of the garbage collector's view once the tests are done.

  A worker's heap ends up holding millions of long-lived objects (JAX's, TensorFlow's); each full
  collection then takes over a second, and pytest's cleanup runs several after the last test,
  past the 5 s in which an xdist worker must exit before it is sent SIGINT (a
  KeyboardInterrupt traceback at the end of a passing run). Frozen, those collections are quick."""
  gc.freeze()


@pytest.fixture(autouse=True)
def _no_latency_warmup(monkeypatch):
  """Timings in tests only check their plumbing: no second of warm-up rounds per measurement
  (`jaxdr.toolkit.latency.WARMUP_S`; tests of the warm-up pass ``warmup_s`` themselves)."""
  from jaxdr.toolkit import latency  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(latency, "WARMUP_S", 0.0)


# One tiny configuration per architecture family (widths of a few channels).
TINY = {
    "vgg16": dict(width=1 / 16),
    "resnet20": dict(width=0.25),
    "resnet50": dict(width=1 / 16),
    "mobilenet_v2": dict(width=0.25),
    "lenet5": dict(width=0.2),
    "alexnet": dict(width=1 / 16),
    "vgg16_torchvision": dict(width=1 / 16),
    "vgg16_bn_torchvision": dict(width=1 / 16),
    "resnet18_torchvision": dict(width=1 / 16),
    "alexnet_caffe": dict(width=1 / 16),
    "convnet5": dict(width=0.25),
}


def _random_leaf(path, leaf, rng):
  name = path[-1].key
  shape = leaf.shape
  if name == "kernel":
    return rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[:-1])), shape)
  if name == "scale":
    return rng.uniform(0.5, 1.5, shape)
  if name == "var":
    return rng.uniform(0.5, 1.5, shape)
  return rng.normal(0.0, 0.1, shape)  # bias, BN bias, BN mean


def random_variables(model, seed=0):
  """Variables of ``model`` filled with seeded random values (float32)."""
  x = jax.ShapeDtypeStruct((1, model.image_size, model.image_size, model.input_channels), jnp.float32)
  shapes = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), x)
  rng = np.random.default_rng(seed)
  return jax.device_put(jax.tree_util.tree_map_with_path(  # device_put: no compile per shape
      lambda p, l: np.asarray(_random_leaf(p, l, rng), np.float32), dict(shapes)))


@pytest.fixture(scope="session")
def tiny():
  """``tiny(name, **create_kwargs) -> (model, variables)``, cached; 28x28x1, 10 classes and
  conv_impl 'xla' by default (im2col on tiny maps runs op by op slowly outside jit)."""
  cache = {}

  def build(name, **kw):
    kw = {**dict(image_size=28, input_channels=1, num_classes=10, conv_impl="xla"), **TINY.get(name, {}),
          **kw}
    key = (name, tuple(sorted(kw.items())))
    if key not in cache:
      model = models.create(name, **kw)
      cache[key] = model, random_variables(model)
    return cache[key]

  return build


@pytest.fixture(scope="session")
def images():
  """``images(n, size=28, channels=1)``: seeded standard-normal NHWC batch (numpy's generator:
  jax.random compiles its generator once per shape)."""
  def make(n, size=28, channels=1, seed=1):
    return jax.device_put(np.random.default_rng(seed).standard_normal((n, size, size, channels), np.float32))
  return make
