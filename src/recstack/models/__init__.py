"""Models: the :class:`Recommender` contract and every model family (one module each).

Every registered model class is importable from here by its class name
(``from recstack.models import EASE, ALS``); its module is imported on first use, so the
torch models cost nothing until asked for.
"""

from typing import Any

from recstack.models.base import Recommendations, Recommender
from recstack.models.baselines import Popularity, Random
from recstack.models.registry import REGISTRY, create_model, get_model_class, model_names

#: class name -> registry name, for the lazy exports below
_BY_CLASS = {target.split(":")[1]: name for name, (target, _) in REGISTRY.items()}


def __getattr__(attr: str) -> Any:
    if attr in _BY_CLASS:
        return get_model_class(_BY_CLASS[attr])
    raise AttributeError(f"module 'recstack.models' has no attribute {attr!r}")


__all__ = [
    "Popularity",
    "Random",
    "Recommendations",
    "Recommender",
    "create_model",
    "get_model_class",
    "model_names",
    *sorted(set(_BY_CLASS) - {"Popularity", "Random"}),
]
