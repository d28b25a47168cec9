"""Models: the :class:`Recommender` contract and every model family (one module each)."""

from recstack.models.base import Recommendations, Recommender
from recstack.models.baselines import Popularity, Random
from recstack.models.registry import create_model, get_model_class, model_names

__all__ = [
    "Popularity",
    "Random",
    "Recommendations",
    "Recommender",
    "create_model",
    "get_model_class",
    "model_names",
]
