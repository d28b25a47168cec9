"""The exception family. Every error names what was wrong, where, and what was expected."""

from __future__ import annotations

from typing import Any


class RecstackError(Exception):
    """Base class of every error recstack raises on purpose."""


class DataError(RecstackError, ValueError):
    """Input data is malformed: a missing column, a bad value, an empty file, ...

    The message names the file (when there is one), the column and the first bad row.
    """


class ConfigError(RecstackError, ValueError):
    """A parameter, option or configuration key is unknown or has a bad value."""


class NotFittedError(RecstackError, RuntimeError):
    """A model was used before ``fit`` (or ``load``)."""


class ModelFitError(RecstackError, RuntimeError):
    """Training diverged or produced invalid parameters (NaN, inf)."""


class UnknownIdError(RecstackError, KeyError):
    """An external user or item ID is not in the ID map and the policy is ``"raise"``."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class MissingDependencyError(RecstackError, ImportError):
    """An optional dependency (an extra) is not installed."""


def require(module: str, extra: str) -> Any:
    """Import ``module`` or raise an actionable error naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module!r} is not installed; install it with: pip install 'recstack[{extra}]'"
        ) from exc
