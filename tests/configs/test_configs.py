"""Every configs/*.py loads and names things that exist: method, model, dataset; training
configs also build their model and learning-rate schedule (nothing is compiled or read)."""
import glob
import importlib
import importlib.util
import os
import subprocess
import sys

import jax
import pytest

from jaxdr import data, models, training

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_FILES = sorted(glob.glob(os.path.join(REPO, "configs", "*.py")))


def _load(path):
  spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _cases():
  for path in CONFIG_FILES:
    name = os.path.relpath(path, REPO)
    args = getattr(_load(path), "CONFIG_ARGS", None)
    if args:
      for arg in args:
        yield pytest.param(path, arg, id=f"{name}:{arg}")
    else:
      yield pytest.param(path, None, id=name)


def test_there_are_training_configs():
  names = {os.path.basename(p) for p in CONFIG_FILES}
  for required in ("quickstart.py", "train_vgg16_cifar10.py", "train_resnet18_cifar100.py",
                   "train_resnet56_cifar10.py", "train_resnet110_cifar100.py",
                   "train_mobilenet_v2_cifar10.py", "train_resnet50_imagenet.py",
                   "train_resnet101_imagenet.py", "train_mobilenet_v2_imagenet.py",
                   "train_lenet5_mnist.py"):
    assert required in names


@pytest.mark.parametrize("path,arg", list(_cases()))
def test_config_validates(path, arg):
  module = _load(path)
  config = module.get_config() if arg is None else module.get_config(arg)
  assert isinstance(config.seed, int)
  if config.method != "train":
    method = importlib.import_module(f"jaxdr.methods.{config.method}")
    # The method's section is its options dataclass's (every key known, every value valid).
    options = {"drnet": "DrnetOptions", "car": "CarOptions", "whitebox": "WhiteboxOptions"}.get(config.method)
    if options:
      getattr(method, options).from_config(config[config.method], config.method)
  if "model" in config:
    assert config.model.name in models.names(), config.model.name
  if "dataset" in config:
    ds = data.info(config.dataset.name)
    assert (config.dataset.num_classes, config.dataset.input_channels) == (ds.num_classes, ds.channels)
  if config.method == "train":
    model = training.create_model(config)  # constructor arguments are valid
    assert model.num_classes == config.dataset.num_classes
  if "train" in config:
    t = training.TrainOptions.from_config(config.train, "train")  # every key known, values valid
    assert t.batch_size % 8 == 0 or os.path.basename(path) == "quickstart.py"
    spe = max(data.info(config.dataset.name).num_train // t.batch_size, 1)
    total = training.total_steps(t, spe)
    sched = training.learning_rate_schedule(t, spe, total)
    assert float(sched(0)) <= t.learning_rate * (1 + 1e-6) and float(sched(total // 2)) > 0
    for m in t.milestones:
      assert 0 < m < t.epochs


def test_paper_schedules():
  paper = _load(os.path.join(REPO, "configs", "train_paper.py"))
  r50 = paper.get_config("resnet50_imagenet").train
  assert (r50.epochs, tuple(r50.milestones), r50.warmup_epochs) == (90, (30, 60, 80), 5.0)
  assert r50.learning_rate == pytest.approx(0.1 * r50.batch_size / 256)
  mnv2 = paper.get_config("mobilenet_v2_cifar100").train
  assert (mnv2.schedule, mnv2.weight_decay) == ("cosine", 4e-5)
  lenet = paper.get_config("lenet5_mnist").train
  assert (lenet.learning_rate, lenet.max_steps) == (0.01, 10000)
  with pytest.raises(ValueError, match="unknown setting"):
    paper.get_config("vgg19_cifar10")


def test_wrappers_match_the_table():
  paper = _load(os.path.join(REPO, "configs", "train_paper.py"))
  for setting in paper.SETTINGS:
    wrapper = _load(os.path.join(REPO, "configs", f"train_{setting}.py"))
    assert wrapper.get_config().to_dict() == paper.get_config(setting).to_dict()


def test_loading_every_config_imports_no_jax():
  """`python -m jaxdr.main` loads the config before it restarts itself on tcmalloc: a config
  that imported JAX (through an eager package ``__init__``) would make every run import it twice."""
  script = ("import runpy, sys\n"
            f"for path in {CONFIG_FILES!r}:\n"
            "  runpy.run_path(path)['get_config']()\n"
            "heavy = sorted(m for m in ('jax', 'flax', 'optax', 'orbax', 'tensorflow') if m in sys.modules)\n"
            "assert not heavy, heavy\n")
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-2000:]
