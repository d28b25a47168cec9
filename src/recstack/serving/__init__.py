"""The recommendation service (the ``serve`` extra): a FastAPI app with live history
updates, A/B tests and an event store (SQLite or PostgreSQL).

A face, like the command line: it may import every layer, and nothing imports it.
Names are imported on first use, so the store and the A/B statistics
(``recstack report-experiment``) work without loading the web stack.

>>> from recstack.serving import ServeConfig, create_app  # doctest: +SKIP
>>> app = create_app(ServeConfig.single("model-dir", db="sqlite:///events.db"))  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from recstack.errors import require

if TYPE_CHECKING:
    from recstack.serving.app import create_app
    from recstack.serving.batching import MicroBatcher
    from recstack.serving.config import ServeConfig
    from recstack.serving.experiment import (
        Experiment,
        assign,
        experiment_report,
        two_proportion_test,
        wilson,
    )
    from recstack.serving.live import LiveHistories, ServedModel
    from recstack.serving.rankers import ExactRanker, IndexRanker, Ranker
    from recstack.serving.store import (
        Event,
        EventStore,
        PostgresStore,
        SQLiteStore,
        StoreError,
        VariantCounts,
        open_store,
    )

#: public name -> the module that defines it
_HOME = {
    "create_app": "app",
    "ServeConfig": "config",
    "Experiment": "experiment",
    "assign": "experiment",
    "experiment_report": "experiment",
    "two_proportion_test": "experiment",
    "wilson": "experiment",
    "MicroBatcher": "batching",
    "ExactRanker": "rankers",
    "IndexRanker": "rankers",
    "LiveHistories": "live",
    "Ranker": "rankers",
    "ServedModel": "live",
    "Event": "store",
    "EventStore": "store",
    "PostgresStore": "store",
    "SQLiteStore": "store",
    "StoreError": "store",
    "VariantCounts": "store",
    "open_store": "store",
}
__all__ = [
    "Event",
    "EventStore",
    "ExactRanker",
    "Experiment",
    "IndexRanker",
    "LiveHistories",
    "MicroBatcher",
    "PostgresStore",
    "Ranker",
    "SQLiteStore",
    "ServeConfig",
    "ServedModel",
    "StoreError",
    "VariantCounts",
    "assign",
    "create_app",
    "experiment_report",
    "open_store",
    "two_proportion_test",
    "wilson",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _HOME[name] == "app":
        for module in ("fastapi", "pydantic", "prometheus_client"):
            require(module, "serve")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
