"""Lazy package namespaces (PEP 562): a package's public names import their module on first use.

Config files import options dataclasses (``jaxdr.training.options``, ``jaxdr.methods.dmnn.options``),
and Python runs every parent package's ``__init__`` first. With eager ``__init__``s that pulled
in JAX, Flax, optax and orbax before ``jaxdr.main`` restarts itself on tcmalloc, so every run
paid those imports twice. A package declares its exports here instead:

    __getattr__, __dir__, __all__ = lazy.exports(__name__, {"loop": ("fit", "FitResult"), ...})

``package.fit`` and ``from package import fit`` then import ``package.loop`` when first asked
for. An exported name must not also be a submodule's name: importing that submodule would
rebind the package attribute to the module.
"""
from __future__ import annotations

import importlib
from typing import Callable, List, Mapping, Sequence, Tuple


def exports(package: str, names: Mapping[str, Sequence[str]]
            ) -> Tuple[Callable[[str], object], Callable[[], List[str]], List[str]]:
  """``(__getattr__, __dir__, __all__)`` for ``package`` whose ``names[module]`` are the public
  names defined in ``package.module``."""
  owner = {name: module for module, members in names.items() for name in members}
  clash = sorted(set(owner) & set(names))
  if clash:
    raise ValueError(f"{package}: exported names {clash} are also its submodules' names")

  def __getattr__(name: str):  # noqa: N807
    module = owner.get(name)
    if module is None:
      raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{package}.{module}"), name)
    setattr(importlib.import_module(package), name, value)  # next time: a plain attribute
    return value

  def __dir__() -> List[str]:  # noqa: N807
    return sorted(set(owner) | set(vars(importlib.import_module(package))))

  return __getattr__, __dir__, sorted(owner)
