"""Options dataclasses: a config section's schema and defaults, defined once.

Every method (and the trainer) declares its options as a frozen dataclass deriving from
`Options`. Configs build their section from it (``c.car = car.Options().to_config()``, then
set what differs), so every key exists for ``--config.x=y`` overrides and the defaults live
in one place; `from_config` reads a section back and rejects unknown keys by name::

    @dataclasses.dataclass(frozen=True)
    class CarOptions(options.Options):
      layers: tuple = ("conv1",)
      finetune: FinetuneOptions = FinetuneOptions()   # nested sections are dataclasses too

    opts = CarOptions.from_config(config.car)          # ConfigError on 'car.layerz'
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any, Dict, Iterable, Mapping, TypeVar

import ml_collections

from jaxdr.errors import ConfigError

T = TypeVar("T", bound="Options")


def nearest(name: str, candidates: Iterable[str], n: int = 3) -> str:
  """'; nearest: a, b' for an unknown ``name`` (or the valid names when none is close)."""
  candidates = sorted(candidates)
  close = difflib.get_close_matches(name, candidates, n=n, cutoff=0.5)
  if close:
    return f"; nearest: {', '.join(close)}"
  return f"; valid: {', '.join(candidates[:12])}{', ...' if len(candidates) > 12 else ''}"


def _nested_type(cls, field: dataclasses.Field):
  """The Options subclass a field holds (nested section), or None."""
  hint = typing.get_type_hints(cls).get(field.name, field.type)
  return hint if isinstance(hint, type) and issubclass(hint, Options) else None


def _plain(value: Any) -> Any:
  """ConfigDict / list values as the immutable Python values a frozen dataclass holds."""
  if isinstance(value, (list, tuple)):
    return tuple(_plain(v) for v in value)
  if isinstance(value, ml_collections.ConfigDict):
    return {k: _plain(v) for k, v in value.items()}
  return value


@dataclasses.dataclass(frozen=True)
class Options:
  """Base of every options dataclass (see the module docstring)."""

  @classmethod
  def from_config(cls: type[T], section: Mapping[str, Any] | None, path: str = "") -> T:
    """The options in ``section`` (a ConfigDict or dict; missing keys take the defaults).
    ``path`` names the section in errors ('car', 'car.finetune')."""
    section = {} if section is None else dict(section.items())
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(section) - set(fields))
    if unknown:
      where = f"{path}." if path else ""
      raise ConfigError(f"unknown config key '{where}{unknown[0]}'{nearest(unknown[0], fields)}")
    values: Dict[str, Any] = {}
    for name, value in section.items():
      nested = _nested_type(cls, fields[name])
      if nested is not None:
        values[name] = nested.from_config(value, f"{path}.{name}" if path else name)
      else:
        values[name] = _plain(value)
    try:
      return cls(**values)
    except (TypeError, ValueError) as e:
      if isinstance(e, ConfigError):
        raise
      raise ConfigError(f"{path or cls.__name__}: {e}") from e

  def to_config(self) -> ml_collections.ConfigDict:
    """Every field as a ConfigDict (nested options as nested sections)."""
    out = ml_collections.ConfigDict()
    hints = typing.get_type_hints(type(self))
    for f in dataclasses.fields(self):
      value = getattr(self, f.name)
      if isinstance(value, Options):
        value = value.to_config()
      elif hints.get(f.name) is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)  # a float field stays float, so '--config.x=0.5' overrides it
      out[f.name] = value
    return out

  def replace(self: T, **changes) -> T:
    return dataclasses.replace(self, **changes)


def check(condition: bool, message: str) -> None:
  """Raises ConfigError(message) unless ``condition`` (for ``__post_init__`` range checks)."""
  if not condition:
    raise ConfigError(message)
