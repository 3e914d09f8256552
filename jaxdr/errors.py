"""Errors a user can cause and fix (bad config, missing data, unusable checkpoint or mask).

`jaxdr.main` turns a `UserError` into one ``jaxdr: error: ...`` line and exit status 2;
anything else is a bug and keeps its traceback. Each subclass is also the builtin type code
outside jaxdr already catches (``ValueError``, ``RuntimeError``).
"""
from __future__ import annotations


class UserError(Exception):
  """Base of every error caused by the input (config, data, files), not by a bug."""


class ConfigError(UserError, ValueError):
  """A config value is missing, unknown or out of range."""


class DataError(UserError, ValueError):
  """A dataset is missing or one of its files is malformed."""
