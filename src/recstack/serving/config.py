"""The service's configuration: which models serve which share of users, where events go."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from recstack.errors import ConfigError
from recstack.serving.experiment import Experiment
from recstack.serving.store import DEFAULT_DB

#: environment variable holding the admin token when the configuration has none
TOKEN_ENV = "RECSTACK_ADMIN_TOKEN"
#: environment variable carrying the configuration (JSON) to each uvicorn worker
CONFIG_ENV = "RECSTACK_SERVE_CONFIG"
#: the variant name of a single served model
DEFAULT_VARIANT = "default"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class ServeConfig:
    """What ``recstack serve`` runs.

    Parameters
    ----------
    variants : mapping of str to str
        Variant name -> saved model directory. One model is variant ``"default"``
        (:meth:`single`).
    traffic : mapping of str to float, optional
        Variant name -> percentage of users, summing to 100 (default: equal shares).
    db : str
        Event store URL (:func:`recstack.serving.store.open_store`).
    salt : str
        Experiment name hashed with each user ID for the assignment; change it to start a
        new experiment with a fresh draw of users.
    admin_token : str, optional
        Bearer token of ``POST /admin/reload`` (default: the ``RECSTACK_ADMIN_TOKEN``
        environment variable; without either, reloading is disabled).
    candidates : int
        Top-scored items a re-ranker chooses from (at least ``k``).
    max_body_bytes : int
        Larger request bodies are answered 413.
    sync_seconds : float
        Every this many seconds, read events other processes stored (several workers
        share one store); 0 turns it off (one process sees all its events at once).
    history_since : float, optional
        At start, replay only stored events with a timestamp from this unix time on (e.g.
        the end of the served model's training data); default: all.
    ann_from : int
        Catalog size from which a model with a dot-product form is served through an
        approximate item index (faiss IVF) instead of scoring every item.
    max_batch : int
        The most concurrent requests scored in one call (micro-batching); 1 scores each
        request alone, inline on the event loop.
    """

    variants: Mapping[str, str]
    traffic: Mapping[str, float] | None = None
    db: str = DEFAULT_DB
    salt: str = "recstack"
    admin_token: str | None = field(default=None, repr=False)
    candidates: int = 100
    max_body_bytes: int = 1 << 20
    sync_seconds: float = 0.0
    history_since: float | None = None
    ann_from: int = 100_000
    max_batch: int = 64

    def __post_init__(self) -> None:
        if not self.variants:
            raise ConfigError("serve: give at least one model directory")
        object.__setattr__(self, "variants", {str(k): str(v) for k, v in self.variants.items()})
        for name in self.variants:
            if not _NAME.match(name):
                raise ConfigError(
                    f"variant name {name!r} must be 1-64 letters, digits, '_', '.' or '-'"
                )
        if self.traffic is None:
            share = 100.0 / len(self.variants)
            object.__setattr__(self, "traffic", dict.fromkeys(self.variants, share))
        else:
            object.__setattr__(self, "traffic", {str(k): v for k, v in self.traffic.items()})
            missing = sorted(set(self.variants) - set(self.shares))
            extra = sorted(set(self.shares) - set(self.variants))
            if missing or extra:
                raise ConfigError(
                    "traffic must name each variant once: "
                    + "; ".join(
                        ([f"no share for {', '.join(missing)}"] if missing else [])
                        + ([f"no model for {', '.join(extra)}"] if extra else [])
                    )
                )
        Experiment(self.shares, self.salt)  # checks the shares
        _check_int("candidates", self.candidates, 1)
        _check_int("max_body_bytes", self.max_body_bytes, 1)
        _check_int("ann_from", self.ann_from, 1)
        _check_int("max_batch", self.max_batch, 1)
        if isinstance(self.sync_seconds, bool) or not (
            isinstance(self.sync_seconds, int | float) and 0 <= self.sync_seconds < math.inf
        ):
            raise ConfigError(f"sync_seconds must be a number >= 0, got {self.sync_seconds!r}")

    @classmethod
    def single(cls, model_dir: str | os.PathLike[str], **options: Any) -> ServeConfig:
        """One model, served as variant ``"default"`` to every user."""
        return cls(variants={DEFAULT_VARIANT: os.fspath(model_dir)}, **options)

    @property
    def shares(self) -> dict[str, float]:
        """Traffic percentages by variant."""
        return dict(self.traffic or {})

    @property
    def token(self) -> str | None:
        """The admin token: the configured one, else ``$RECSTACK_ADMIN_TOKEN``, else None."""
        return self.admin_token or os.environ.get(TOKEN_ENV) or None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        """The configuration :meth:`to_json` wrote (unknown keys are errors)."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"serve configuration is not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise ConfigError("serve configuration must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"unknown serve configuration key(s): {', '.join(unknown)}")
        return cls(**raw)


def _check_int(name: str, value: object, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ConfigError(f"{name} must be an integer >= {lo}, got {value!r}")
