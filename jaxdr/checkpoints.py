"""Trained models on disk: the model's constructor arguments next to its variables.

    save_model(dir, "vgg16", {"num_classes": 10, "width": 0.25, ...}, variables)
    model, variables = load_model(dir, conv_impl="auto")
    model, variables = load_pretrained(path, model_kwargs)   # a saved model, or a PyTorch .pth

``dir/model.json`` holds ``{"name": ..., "kwargs": {num_classes, image_size,
input_channels, width, channels, <the architecture's options>}}`` (``channels``: space ->
width, what channel surgery sets, so a sliced model restores as itself; options:
`models.options(name)`, e.g. DMNN's ``paths``); ``dir/variables`` is an orbax
StandardCheckpointer directory. Paths may be local or ``gs://`` (etils.epath). How the
convs run (``conv_impl``) is a run option, not stored: a model saved with one loads with
any other (model.json files that still hold one load too; the stored value is ignored).
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Mapping, Tuple

from etils import epath
import flax.linen as nn
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jaxdr import models, reporting, torch_weights
from jaxdr.errors import UserError

MODEL_FILE = "model.json"
VARIABLES_DIR = "variables"
MODEL_KWARGS = ("num_classes", "image_size", "input_channels", "width", "channels")
RUN_OPTIONS = ("conv_impl",)  # accepted by save_model and dropped; load_model takes them


class CheckpointError(UserError, RuntimeError):
  """A checkpoint is missing, corrupt or does not match its model."""


def _absolute(path) -> epath.Path:
  """``path`` as an epath, a local one made absolute (orbax refuses relative paths)."""
  text = os.fspath(path)
  return epath.Path(text if "://" in text else os.path.abspath(text))


def _resolve(path) -> epath.Path:
  """``path`` itself, or the saved model inside a training workdir (``model/``, ``train/model/``)."""
  path = _absolute(path)
  for candidate in (path, path / "model", path / "train" / "model"):
    if (candidate / MODEL_FILE).exists():
      return candidate
  raise CheckpointError(f"no saved model in {path} (expected {MODEL_FILE} there or under "
                        "model/ or train/model/)")


def has_model(path) -> bool:
  try:
    _resolve(path)
    return True
  except CheckpointError:
    return False


def save_model(directory, model_name: str, model_kwargs: Mapping[str, Any],
               variables: Mapping[str, Any]) -> epath.Path:
  """Writes ``model_name``'s constructor arguments and ``variables`` to ``directory``
  (``conv_impl`` in ``model_kwargs`` is accepted and not stored)."""
  directory = _absolute(directory)
  kwargs = {k: v for k, v in dict(model_kwargs).items() if k != "name" and k not in RUN_OPTIONS}
  allowed = MODEL_KWARGS + models.options(model_name)  # + the architecture's own (DMNN: paths, ...)
  unknown = sorted(set(kwargs) - set(allowed))
  if unknown:
    raise ValueError(f"unknown model arguments {unknown}; allowed: {', '.join(allowed)}")
  kwargs["channels"] = {str(k): int(v) for k, v in dict(kwargs.get("channels") or {}).items()}
  models.create(model_name, **kwargs)  # fail here, not at load time, on a bad name/argument
  directory.mkdir(parents=True, exist_ok=True)
  variables = jax.tree.map(np.asarray, jax.device_get(dict(variables)))
  # An empty collection (no BatchNorm: batch_stats {}) is not in models.init's tree: drop it.
  variables = {k: v for k, v in variables.items() if jax.tree.leaves(v)}
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(directory / VARIABLES_DIR, variables, force=True)
    ckptr.wait_until_finished()
  # Written last (its presence marks a complete save), by process 0 alone: processes sharing
  # the directory would race on the rename.
  reporting.write_text_atomic(directory / MODEL_FILE,
                              json.dumps({"name": model_name, "kwargs": kwargs}, indent=1, sort_keys=True))
  if jax.process_count() > 1:  # nobody loads the model before process 0 has finished writing it
    multihost_utils.sync_global_devices("jaxdr.checkpoints.save_model")
  return directory


def load_model(directory, conv_impl: str = "auto") -> Tuple[nn.Module, Dict[str, Any]]:
  """``(model, variables)`` saved by `save_model` in ``directory`` (or a workdir holding one),
  the model running its convs with ``conv_impl`` (`jaxdr.ops.CONV_IMPLS`)."""
  directory = _resolve(directory)
  try:
    spec = json.loads((directory / MODEL_FILE).read_text())
    name, kwargs = spec["name"], dict(spec["kwargs"])
  except (ValueError, KeyError, TypeError) as e:
    raise CheckpointError(f"corrupt {directory / MODEL_FILE}: {e}") from e
  for key in RUN_OPTIONS:  # written by older versions
    kwargs.pop(key, None)
  model = models.create(name, conv_impl=conv_impl, **kwargs)
  abstract = jax.eval_shape(lambda: models.init(model, jax.random.PRNGKey(0)))
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), abstract)
  try:
    with ocp.StandardCheckpointer() as ckptr:
      variables = ckptr.restore(directory / VARIABLES_DIR, abstract)
  except Exception as e:  # orbax raises many types for unreadable / mismatched files
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise CheckpointError(f"corrupt or mismatched checkpoint {directory / VARIABLES_DIR}: {msg}") from e
  variables = dict(variables)
  got = jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), variables)
  want = jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), abstract)
  if got != want:
    raise CheckpointError(f"checkpoint {directory / VARIABLES_DIR} does not match the model in "
                          f"{MODEL_FILE} (variable shapes differ)")
  return model, jax.tree.map(jnp.asarray, variables)


def load_pretrained(path, model_kwargs: Mapping[str, Any], conv_impl: str = "auto"
                    ) -> Tuple[nn.Module, Dict[str, Any]]:
  """``(model, variables)`` for a config's ``pretrained`` entry.

  ``path`` ending in ``.pth`` / ``.pt``: a PyTorch state_dict in torchvision's layout
  (`jaxdr.torch_weights`; needs torch), imported into ``models.create(**model_kwargs)``
  (``model_kwargs``: ``name`` plus constructor arguments, e.g. ``training.model_kwargs(config)``).
  Anything else: a jaxdr saved model or workdir (`load_model` with ``conv_impl``;
  ``model_kwargs`` unused, the saved model.json says what it is).
  """
  if str(path).endswith(torch_weights.PTH_SUFFIXES):
    kwargs = dict(model_kwargs)
    name = kwargs.pop("name")
    model = models.create(name, **kwargs)
    return model, torch_weights.load_pth(path, model)
  return load_model(path, conv_impl=conv_impl)
