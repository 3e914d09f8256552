"""One resumable method state: JSON documents and orbax array pytrees in a directory,
guarded by a fingerprint of the settings that produced them.

    with state.MethodState(workdir / "civ", {"model": ..., "options": ...}, what="dissection") as st:
      step, sums = st.restore_arrays("sums", empty_sums)     # (None, empty_sums) on a fresh start
      ...
      st.save_arrays("sums", step, sums)                      # collective (every process calls it)
      st.write_json("progress", {...}); st.read_json("progress")   # process 0 writes, all read

Layout: ``DIR/fingerprint.json`` (the settings), ``DIR/NAME.json`` per document and
``DIR/NAME/STEP/`` (an orbax CheckpointManager keeping the last step) per array pytree.
Opening a directory whose fingerprint differs raises `jaxdr.errors.ConfigError` naming the
settings that differ: a state is only resumed by the run that would have produced it.

Multi-process runs share the directory: JSON files are written by process 0 alone
(`reporting.write_text_atomic`: a temporary file and a rename), orbax saves are collective,
and every process reads.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Optional, Tuple

from etils import epath
import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxdr import reporting
from jaxdr.errors import ConfigError

FINGERPRINT_FILE = "fingerprint.json"
PyTree = Any


def _plain(x: Any) -> Any:
  if isinstance(x, (np.generic, np.ndarray)):
    return x.tolist()
  return str(x)


def _normalised(obj: Any) -> Any:
  """``obj`` as it reads back from JSON (tuples as lists, numpy values as Python ones)."""
  return json.loads(json.dumps(obj, default=_plain))


def differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = ""
                ) -> Dict[str, Tuple[Any, Any]]:
  """``{key: (old value, new value)}`` for every key whose value differs; nested dicts are
  compared key by key ('options.steps')."""
  out = {}
  for k in sorted(set(old) | set(new)):
    a, b = old.get(k), new.get(k)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
      out.update(differences(a, b, f"{prefix}{k}."))
    elif a != b:
      out[f"{prefix}{k}"] = (a, b)
  return out


class MethodState:
  """A directory of resumable state (module docstring). ``fingerprint``: a JSON-able dict of
  every setting that shapes the state; ``what`` names the state in errors and logs."""

  def __init__(self, directory, fingerprint: Mapping[str, Any], what: str = "state"):
    self.directory = epath.Path(directory)
    self.what = what
    self.fingerprint = _normalised(dict(fingerprint))
    self._managers: Dict[str, ocp.CheckpointManager] = {}
    self.directory.mkdir(parents=True, exist_ok=True)
    path = self.directory / FINGERPRINT_FILE
    if path.exists():
      old = json.loads(path.read_text())
      if old != self.fingerprint:
        diff = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in differences(old, self.fingerprint).items())
        raise ConfigError(f"{self.directory} holds a {what} made with other settings ({diff}): use "
                          "another workdir, or delete that directory to start over")
    else:
      reporting.write_json(path, self.fingerprint)

  # ------------------------------------------------------------------ JSON documents

  def read_json(self, name: str) -> Optional[Any]:
    """The document ``name`` as saved, or None if there is none yet."""
    path = self.directory / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None

  def write_json(self, name: str, obj: Any) -> None:
    """Saves ``obj`` (JSON-able; numpy values become lists / numbers, NaN stays NaN) as
    document ``name``, atomically, by process 0."""
    reporting.write_text_atomic(self.directory / f"{name}.json", json.dumps(obj, default=_plain))

  # ------------------------------------------------------------------ array pytrees

  def _manager(self, name: str) -> ocp.CheckpointManager:
    if name not in self._managers:
      self._managers[name] = ocp.CheckpointManager(
          (self.directory / name).resolve(), options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True))
    return self._managers[name]

  def restore_arrays(self, name: str, like: PyTree) -> Tuple[Optional[int], PyTree]:
    """``(step, tree)`` of the last save of ``name`` (numpy leaves, ``like``'s structure,
    shapes and dtypes), or ``(None, like)`` when nothing was saved yet."""
    manager = self._manager(name)
    step = manager.latest_step()
    if step is None:
      return None, like
    tree = manager.restore(step, args=ocp.args.StandardRestore(like))
    return int(step), jax.tree.map(np.asarray, tree)

  def save_arrays(self, name: str, step: int, tree: PyTree) -> None:
    """Saves ``tree`` as step ``step`` of ``name`` (asynchronously; every process calls it).
    Older steps are dropped once it is committed."""
    self._manager(name).save(int(step), args=ocp.args.StandardSave(tree))

  def close(self) -> None:
    """Waits for pending saves to commit and releases the managers."""
    for manager in self._managers.values():
      manager.wait_until_finished()
      manager.close()
    self._managers.clear()

  def __enter__(self) -> "MethodState":
    return self

  def __exit__(self, *exc) -> None:
    self.close()
