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
from recstack.explain.factors import als_attribution, nmf_attribution
from recstack.explain.influence import bpr_influence
from recstack.explain.linear import ease_attribution, itemknn_attribution, puresvd_attribution
from recstack.explain.loo import leave_one_out
from recstack.explain.loo_knn import userknn_leave_one_out
from recstack.explain.loo_models import (
    biased_mf_leave_one_out,
    nmf_leave_one_out,
    sequential_leave_one_out,
)
from recstack.explain.sequential import attention_attribution

#: ``explainer(model, histories, targets (n, K) int) -> Attribution``
Explainer = Callable[[Any, Histories, np.ndarray], Attribution]

#: the base of the torch sequence models: they read at most the latest ``max_len`` events
_SEQUENTIAL = "recstack.models.neural.base:SequentialRecommender"


#: ``"module:Class"`` -> a faster path to the same leave-one-out drops (``loo_models``)
LEAVE_ONE_OUT: dict[str, Explainer] = {
    "recstack.models.biased_mf:BiasedMF": biased_mf_leave_one_out,
    "recstack.models.knn:UserKNN": userknn_leave_one_out,
    "recstack.models.nmf:NMF": nmf_leave_one_out,
    _SEQUENTIAL: sequential_leave_one_out,
}


def loo_explainer(model: Any, histories: Histories, targets: np.ndarray) -> Attribution:
    """Leave-one-out: the model's fast path in :data:`LEAVE_ONE_OUT` when it has one, else
    :func:`leave_one_out` (re-scoring the catalog per removed item)."""
    fast = next((LEAVE_ONE_OUT[p] for p in class_paths(model) if p in LEAVE_ONE_OUT), None)
    if fast is not None:
        return fast(model, histories, targets)
    return leave_one_out(model, histories, targets)


#: latest events whose items a sequential model's default explainer re-scores: SASRec
#: explains 10 items in about 1 ms per user on one CPU thread (the budget is 2 ms) and the
#: deletion test passes for 97% of ML-100K pairs (BENCHMARKS.md); ``method="leave-one-out"``
#: re-scores every item the network reads
RECENT = 5


def recent_explainer(recent: int = RECENT) -> Explainer:
    """Leave-one-out over the items among the latest ``recent`` events of each history,
    for the torch sequence models (:func:`sequential_leave_one_out`)."""

    def explainer(model: Any, histories: Histories, targets: np.ndarray) -> Attribution:
        if _SEQUENTIAL not in class_paths(model):
            raise ConfigError(
                f"method='recent' is for the sequential models (sasrec, gru4rec, caser, "
                f"bert4rec...), not {type(model).__name__}: use 'leave-one-out'"
            )
        return sequential_leave_one_out(model, histories, targets, recent=recent)

    return explainer


#: the sequential models' default explainer, also chosen by name as ``"recent"``
_RECENT = recent_explainer()

#: ``"module:Class"`` -> its explainer (``method="auto"``); others get :func:`loo_explainer`
EXPLAINERS: dict[str, Explainer] = {
    "recstack.models.knn:ItemKNN": itemknn_attribution,
    "recstack.models.ease:EASE": ease_attribution,
    "recstack.models.svd:PureSVD": puresvd_attribution,
    "recstack.models.als:ALS": als_attribution,
    "recstack.models.nmf:NMF": nmf_attribution,
    "recstack.models.bpr:BPR": bpr_influence,
    "recstack.models.baselines:Popularity": popularity_attribution,
    _SEQUENTIAL: _RECENT,
}

#: explainers chosen by name, whatever the model (``"recent:N"`` sets ``recent``'s count)
METHODS: dict[str, Explainer] = {
    "leave-one-out": loo_explainer,
    "attention": attention_attribution,
    "recent": _RECENT,
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
    has none), or the one named by ``method`` (``"leave-one-out"``, ``"attention"``,
    ``"recent"`` or ``"recent:N"``)."""
    if method == "auto":
        return next((EXPLAINERS[p] for p in class_paths(model) if p in EXPLAINERS), loo_explainer)
    name, _, count = method.partition(":")
    if name == "recent" and count:
        if not count.isdigit() or int(count) < 1:
            raise ConfigError(f"method 'recent:N' needs a whole number N >= 1, got {method!r}")
        return recent_explainer(int(count))
    if method not in METHODS:
        raise ConfigError(
            f"method must be 'auto' or one of {', '.join(map(repr, METHODS))}, got {method!r}"
        )
    return METHODS[method]
