"""Which explainer a model gets: a registry from model classes to attribution functions.

Lookup walks the model's class hierarchy (most specific first) by ``"module:Class"`` names,
so no model module is imported to build the table (the torch models stay unloaded until
used) and a subclass inherits its parent's explainer. A model with no entry is explained
by leave-one-out, which works for any model through ``model.score``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from recstack.data import Histories
from recstack.errors import ConfigError
from recstack.explain.attribution import Attribution
from recstack.explain.baselines import popularity_attribution
from recstack.explain.factors import als_attribution
from recstack.explain.linear import ease_attribution, itemknn_attribution, puresvd_attribution
from recstack.explain.loo import leave_one_out
from recstack.explain.sequential import attention_attribution

#: ``explainer(model, histories, targets (n, K) int) -> Attribution``
Explainer = Callable[[Any, Histories, np.ndarray], Attribution]

#: the base of the torch sequence models: they read at most the latest ``max_len`` events
_SEQUENTIAL = "recstack.models.neural.base:SequentialRecommender"


def loo_explainer(model: Any, histories: Histories, targets: np.ndarray) -> Attribution:
    """:func:`leave_one_out`, skipping (exactly) the items a sequential model cannot see:
    those outside its latest ``max_len`` events."""
    window = int(model.max_len) if _SEQUENTIAL in class_paths(model) else None
    return leave_one_out(model, histories, targets, window=window)


#: ``"module:Class"`` -> its explainer (``method="auto"``); others get :func:`loo_explainer`
EXPLAINERS: dict[str, Explainer] = {
    "recstack.models.knn:ItemKNN": itemknn_attribution,
    "recstack.models.ease:EASE": ease_attribution,
    "recstack.models.svd:PureSVD": puresvd_attribution,
    "recstack.models.als:ALS": als_attribution,
    "recstack.models.baselines:Popularity": popularity_attribution,
}

#: explainers chosen by name, whatever the model
METHODS: dict[str, Explainer] = {
    "leave-one-out": loo_explainer,
    "attention": attention_attribution,
}


def class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def class_paths(model: Any) -> list[str]:
    """``"module:Class"`` of the model's class and its bases, most specific first."""
    return [class_path(c) for c in type(model).__mro__]


def register(model_class: type | str, explainer: Explainer) -> None:
    """Explain ``model_class`` (a class or its ``"module:Class"`` name) and its subclasses
    with ``explainer`` by default (``method="auto"``)."""
    key = model_class if isinstance(model_class, str) else class_path(model_class)
    if ":" not in key:
        raise ConfigError(f"register: expected a class or 'module:Class', got {key!r}")
    EXPLAINERS[key] = explainer


def explainer_for(model: Any, method: str = "auto") -> Explainer:
    """The explainer of ``model``: its registered one for ``"auto"`` (leave-one-out when it
    has none), or the one named by ``method`` (``"leave-one-out"``, ``"attention"``)."""
    if method == "auto":
        return next((EXPLAINERS[p] for p in class_paths(model) if p in EXPLAINERS), loo_explainer)
    if method not in METHODS:
        raise ConfigError(
            f"method must be 'auto' or one of {', '.join(map(repr, METHODS))}, got {method!r}"
        )
    return METHODS[method]
