"""Blend: a convex mix of several models' normalized scores, the weights fitted on validation.

The weighted hybrid of Burke ("Hybrid Recommender Systems: Survey and Experiments", UMUAI
2002): each sub-model scores the whole catalog, each user's scores are normalized per model
(z-score, min-max or rank, as in score fusion for metasearch: Fox & Shaw, "Combination of
Multiple Searches", TREC-2 1994; Montague & Aslam, "Relevance Score Normalization for
Metasearch", CIKM 2001), and the blend scores their weighted sum. The convex weights are
the simplex grid point with the best validation NDCG@K.
"""

from __future__ import annotations

import copy
import itertools
import math
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from recstack.data import Histories, Interactions
from recstack.errors import ConfigError, DataError
from recstack.models.base import SCORE_BUDGET, Recommender, batch_rows
from recstack.models.registry import create_model

NORMALIZATIONS = ("zscore", "minmax", "rank", "none")
#: most weight vectors tried on validation: the grid step is the finest of GRID_STEPS
#: (as 1/n) whose simplex grid has at most this many points
MAX_GRID = 100
GRID_STEPS = (20, 10, 5, 4, 2, 1)
#: the sub-models' saved directories, inside the blend's directory
MODELS_DIR = "models"


def parse_models(models: object) -> list[tuple[str, dict[str, Any]]]:
    """The ``(name, params)`` of each sub-model of a ``models`` specification.

    Parameters
    ----------
    models : str or list
        Comma-separated registry names (``"ease,itemknn"``), or a list whose entries are
        names or ``{"name": ..., "params": {...}}`` dicts.

    Raises
    ------
    ConfigError
        The specification is malformed, names an unknown model or an unknown parameter.
    """
    if isinstance(models, str):
        entries: list[Any] = [m.strip() for m in models.split(",")]
    elif isinstance(models, list | tuple):
        entries = list(models)
    else:
        raise ConfigError(
            "models must be comma-separated model names or a list of names or "
            f"{{'name': ..., 'params': {{...}}}} dicts, got {models!r}"
        )
    if not entries or entries == [""]:
        raise ConfigError("models: give at least one model to blend")
    out = []
    for entry in entries:
        if isinstance(entry, dict):
            extra = set(entry) - {"name", "params"}
            if "name" not in entry or extra:
                raise ConfigError(
                    "models: a dict entry has the keys 'name' and optionally 'params', got "
                    f"{sorted(entry)}"
                )
            name, params = entry["name"], entry.get("params") or {}
        else:
            name, params = entry, {}
        if not isinstance(name, str) or not name:
            raise ConfigError(f"models: a model name must be a non-empty string, got {name!r}")
        if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
            raise ConfigError(f"models: the params of {name!r} must be a dict, got {params!r}")
        try:
            create_model(name, **params)  # unknown model or parameter names
        except ConfigError as exc:
            raise ConfigError(f"models: {exc}") from None
        out.append((name, dict(params)))
    return out


def normalize_scores(scores: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Normalize each row over its finite entries.

    Parameters
    ----------
    scores : (n, n_items) float
        One model's scores; ``-inf`` (or NaN) marks items the model never recommends.
    method : {"zscore", "minmax", "rank", "none"}
        ``zscore``: ``(s - mean) / std``; ``minmax``: onto [0, 1]; ``rank``: the average
        rank (ties share it) onto [0, 1], best 1; ``none``: unchanged. A row whose finite
        scores are all equal normalizes to 0 (except with ``none``).

    Returns
    -------
    normalized : (n, n_items) float32
        Non-finite entries hold the row's lowest normalized score (0 for a row without
        finite entries), so a blend treats them as this model's worst items.
    finite : (n, n_items) bool
        Where ``scores`` was finite.
    """
    finite = np.isfinite(scores)
    x = np.where(finite, scores, 0.0).astype(np.float64)
    n = finite.sum(axis=1, keepdims=True)
    if method == "zscore":
        mean = x.sum(axis=1, keepdims=True) / np.maximum(n, 1)
        dev = np.where(finite, x - mean, 0.0)
        std = np.sqrt((dev**2).sum(axis=1, keepdims=True) / np.maximum(n, 1))
        z = dev / np.where(std > 0, std, 1.0)
    elif method == "minmax":
        lo = np.where(finite, x, np.inf).min(axis=1, keepdims=True, initial=np.inf)
        hi = np.where(finite, x, -np.inf).max(axis=1, keepdims=True, initial=-np.inf)
        span = hi - lo
        z = np.where(span > 0, (x - lo) / np.where(span > 0, span, 1.0), 0.0)
    elif method == "rank":
        # non-finite entries take the lowest ranks 1..m; finite ones m+1..n_items
        ranks = rankdata(np.where(finite, x, -np.inf), method="average", axis=1)
        n_out = scores.shape[1] - n
        z = (ranks - n_out - 1) / np.maximum(n - 1, 1)
    elif method == "none":
        z = x
    else:
        raise ConfigError(f"normalize must be one of {NORMALIZATIONS}, got {method!r}")
    low = np.where(finite, z, np.inf).min(axis=1, keepdims=True, initial=np.inf)
    z = np.where(finite, z, np.where(n > 0, low, 0.0))
    return z.astype(np.float32), finite


def mix(normalized: Sequence[np.ndarray], finite: Sequence[np.ndarray], weights: Any) -> np.ndarray:
    """The blend's scores: ``sum_m weights[m] * normalized[m]``, (n, n_items) float32;
    ``-inf`` where no sub-model with a positive weight has a finite score."""
    out = np.zeros(normalized[0].shape, dtype=np.float32)
    alive = np.zeros(normalized[0].shape, dtype=bool)
    for z, f, w in zip(normalized, finite, weights, strict=True):
        if w > 0:
            out += np.float32(w) * z
            alive |= f
    out[~alive] = -np.inf
    return out


def simplex_grid(n_models: int, max_points: int = MAX_GRID) -> np.ndarray:
    """Every convex weight vector with coordinates in multiples of ``1/steps``, shape
    (G, n_models) float64, for the finest ``steps`` of :data:`GRID_STEPS` that keeps
    ``G <= max_points`` (2 models: step .05; 3: .1; 4: .2). The vertices (one model
    alone) and, when the step allows it, equal weights are in the grid."""
    steps = next(
        (s for s in GRID_STEPS if math.comb(s + n_models - 1, n_models - 1) <= max_points), 1
    )
    # stars and bars: the bar positions split `steps` units among the models
    points = []
    for bars in itertools.combinations(range(steps + n_models - 1), n_models - 1):
        edges = np.array([-1, *bars, steps + n_models - 1])
        points.append(np.diff(edges) - 1)
    return np.asarray(points, dtype=np.float64) / steps


class Blend(Recommender):
    """A convex blend of sub-models' per-user normalized scores (a weighted hybrid).

    Every sub-model is fitted on the training data (with the validation data, which the
    models with early stopping use). With validation data and ``weights=None`` the
    weights are then chosen on it: for each convex weight vector of a simplex grid
    (:func:`simplex_grid`), the NDCG@``metric_k`` of each validation user's first held-out
    item, ranked from the training history with its items excluded (ties broken as the
    evaluator does, by item index); the best vector wins (ties: the most even one). The
    sub-models stay as fitted on the training data: they are **not** refitted on train +
    valid after the weights are chosen (refit with fixed ``weights`` for that). Without
    validation data the weights are equal.

    An item scores ``sum_m w_m z_m`` where ``z_m`` is sub-model ``m``'s score normalized
    over the user's catalog (:func:`normalize_scores`); an item a sub-model scores ``-inf``
    gets that model's lowest normalized score for the user, and the item scores ``-inf``
    when every sub-model with a positive weight does. Sub-models with weight 0 are not
    scored at all.

    Parameters
    ----------
    models : str or list
        The sub-models: comma-separated registry names (``"ease,itemknn"``), or a list of
        names or ``{"name": "ease", "params": {"l2": 50.0}}`` dicts.
    normalize : {"rank", "zscore", "minmax", "none"}
        Per-user score normalization of each sub-model before blending. ``rank`` (a
        Borda-like fusion, blind to each model's score scale and outliers) had the best
        validation NDCG@10 on ML-100K (``benchmarks/results/blend.md``).
    weights : list of float or None
        Fixed convex weights (non-negative, summing to 1), one per sub-model; None fits
        them on validation data (equal weights without it).
    metric_k : int
        Cut-off of the validation NDCG that chooses the weights.

    Attributes
    ----------
    weights_ : (n_models,) float64
        The blend's weights.
    valid_ndcg_ : float or None
        Validation NDCG@``metric_k`` of the chosen weights (None when not fitted on
        validation data).
    model_valid_ndcg_ : list of float or None
        Validation NDCG@``metric_k`` of each sub-model alone.
    n_valid_users_ : int
        Validation users the weights were chosen on (0 without).

    Notes
    -----
    The sub-models are in :attr:`models_`; saving writes each with its own ``save`` into
    ``models/<i>-<name>/`` of the blend's directory. Adding items (:meth:`add_items`)
    changes the per-user normalization statistics, so existing items' blended scores may
    move slightly (not with ``normalize="none"``).

    Examples
    --------
    >>> import pandas as pd
    >>> from recstack.data import Interactions
    >>> log = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": ["a", "b", "a", "c", "b"]})
    >>> model = Blend("itemknn,popularity", weights=[0.5, 0.5]).fit(Interactions.from_frame(log))
    >>> model.weights_.tolist()
    [0.5, 0.5]
    >>> model.recommend(histories=[["a"]], k=2).item_ids.tolist()
    [['b', 'c']]
    """

    name = "blend"
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {
        "normalize": ("categorical", list(NORMALIZATIONS)),
    }

    def __init__(
        self,
        models: str | Sequence[str | dict[str, Any]] = "ease,itemknn",
        normalize: str = "rank",
        weights: list[float] | None = None,
        metric_k: int = 10,
    ) -> None:
        self.models = models
        self.normalize = normalize
        self.weights = weights
        self.metric_k = metric_k

    _models: list[Recommender]

    # ------------------------------------------------------------------ parameters
    def _validate_params(self) -> None:
        spec = parse_models(self.models)
        for name, params in spec:
            try:
                create_model(name, **params)._validate_params()  # fail before any fit
            except ConfigError as exc:
                raise ConfigError(f"models: {name}: {exc}") from None
        if self.normalize not in NORMALIZATIONS:
            raise ConfigError(f"normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}")
        k = self.metric_k
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k <= 0:
            raise ConfigError(f"metric_k must be a positive integer, got {k!r}")
        w = self.weights
        if w is None:
            return
        if not isinstance(w, list | tuple) or not all(
            isinstance(x, numbers.Real) and not isinstance(x, bool) for x in w
        ):
            raise ConfigError(f"weights must be a list of numbers or None, got {w!r}")
        if len(w) != len(spec):
            raise ConfigError(
                f"weights has {len(w)} values for {len(spec)} models "
                f"({', '.join(name for name, _ in spec)})"
            )
        if not all(math.isfinite(x) and x >= 0 for x in w):
            raise ConfigError(f"weights must be finite and non-negative, got {w!r}")
        if abs(math.fsum(w) - 1.0) > 1e-6:
            raise ConfigError(f"weights must sum to 1 (convex weights), got sum {math.fsum(w):g}")

    @property
    def models_(self) -> list[Recommender]:
        """The fitted sub-models, in the order of ``models``."""
        self._check_fitted()
        return list(self._models)

    # ------------------------------------------------------------------ fitting
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        spec = parse_models(self.models)
        self._models = [create_model(name, **params).fit(train, valid) for name, params in spec]
        self.valid_ndcg_: float | None = None
        self.model_valid_ndcg_: list[float] | None = None
        self.n_valid_users_ = 0
        if self.weights is not None:
            self.weights_ = np.asarray(self.weights, dtype=np.float64)
            return
        self.weights_ = np.full(len(spec), 1.0 / len(spec))
        if valid is None or valid.n_events == 0 or len(spec) == 1:
            return
        hist, target = _validation_targets(train, valid)
        if len(hist) == 0:
            return
        grid = simplex_grid(len(spec))
        ndcg = self._grid_ndcg(hist, target, grid)
        best = np.flatnonzero(ndcg == ndcg.max())
        # ties: the most even weights (closest to uniform)
        spread = ((grid[best] - 1.0 / len(spec)) ** 2).sum(axis=1)
        choice = int(best[np.argmin(spread)])
        self.weights_ = grid[choice]
        self.valid_ndcg_ = float(ndcg[choice])
        vertex = [int(np.flatnonzero(grid[:, m] == 1.0)[0]) for m in range(len(spec))]
        self.model_valid_ndcg_ = [float(ndcg[v]) for v in vertex]
        self.n_valid_users_ = len(hist)

    def _grid_ndcg(self, hist: Histories, target: np.ndarray, grid: np.ndarray) -> np.ndarray:
        """Mean NDCG@``metric_k`` of ``target`` (one item per history) for each weight
        vector of ``grid`` (G, n_models): each sub-model scores each batch once."""
        k = int(self.metric_k)
        n_items = self.n_items
        total = np.zeros(len(grid))
        step = batch_rows(n_items, SCORE_BUDGET // (len(self._models) + 3))
        cols = np.arange(n_items)
        for start in range(0, len(hist), step):
            h = hist.select(slice(start, start + step))
            t = target[start : start + step]
            rows = np.arange(len(h))
            parts = [normalize_scores(m.score(h), self.normalize) for m in self._models]
            seen = np.zeros((len(h), n_items), dtype=bool)
            seen[h.rows, h.items] = True
            before = cols[None, :] < t[:, None]  # equal scores rank by item index, as top-K
            for g, w in enumerate(grid):
                s = mix([p[0] for p in parts], [p[1] for p in parts], w)
                s[seen] = -np.inf
                st = s[rows, t][:, None]
                rank = (s > st).sum(axis=1) + ((s == st) & before).sum(axis=1)
                hit = (rank < k) & np.isfinite(st[:, 0])
                total[g] += (1.0 / np.log2(rank[hit] + 2.0)).sum()
        return total / len(hist)

    # ------------------------------------------------------------------ scoring
    def _score(self, histories: Histories) -> np.ndarray:
        active = np.flatnonzero(self.weights_ > 0)  # a model with weight 0 is not scored
        parts = [normalize_scores(self._models[m].score(histories), self.normalize) for m in active]
        return mix([p[0] for p in parts], [p[1] for p in parts], self.weights_[active])

    # ------------------------------------------------------------------ cold items
    def optimize_inference(self) -> bool:
        """Each sub-model's :meth:`~Recommender.optimize_inference`; whether any changed."""
        self._check_fitted()
        return any([m.optimize_inference() for m in self.models_])  # every one, no short cut

    def add_items(self, item_features: pd.DataFrame) -> Blend:
        """Add new items to every sub-model (each from its item features, e.g. text),
        without retraining; all sub-models must have ``add_items``.

        The sub-models are updated on copies and replaced together, so when one rejects
        the items the blend is left unchanged.

        Returns
        -------
        Blend
            self.

        Raises
        ------
        ConfigError
            A sub-model has no ``add_items`` (it cannot score items it was not trained on).
        DataError
            A sub-model rejected the items (see its ``add_items``).
        """
        self._check_fitted()
        for i, model in enumerate(self._models):
            if not callable(getattr(model, "add_items", None)):
                raise ConfigError(
                    f"Blend cannot add items: its sub-model {i} ({model.name!r}, "
                    f"{type(model).__name__}) has no add_items; blend models that can score "
                    "items from their features (content-knn, als-text, sasrec-text)"
                )
        updated = [copy.copy(m) for m in self._models]
        for model in updated:
            model.add_items(item_features)  # type: ignore[attr-defined]
        items = updated[0].items_
        if any(m.items_ != items for m in updated):
            raise DataError("add_items: the sub-models disagree on the new item map")
        self._models = updated
        self.items_ = items
        self.item_features_ = updated[0].item_features_
        h = self.history_
        self.history_ = Histories(h.indptr, h.items, h.values, h.times, len(items), h.users)
        return self

    # ------------------------------------------------------------------ persistence
    def _save_extra(self, path: Path) -> None:
        for i, model in enumerate(self._models):
            model.save(path / MODELS_DIR / f"{i}-{model.name}")

    def _load_extra(self, path: Path) -> None:
        models = []
        for i, (name, _) in enumerate(parse_models(self.models)):
            sub = path / MODELS_DIR / f"{i}-{name}"
            model = Recommender.load(sub)
            if model.name != name:
                raise DataError(f"{sub}: holds a {model.name!r} model, the blend expects {name!r}")
            if model.items_ != self.items_:
                raise DataError(
                    f"{sub}: the sub-model's item map does not match the blend's "
                    f"({len(model.items_)} vs {len(self.items_)} items, or other IDs)"
                )
            models.append(model)
        self._models = models


def _validation_targets(train: Interactions, valid: Interactions) -> tuple[Histories, np.ndarray]:
    """Training histories of the validation users that have one, and each one's first
    held-out item, (n,) int64."""
    users = np.unique(valid.user)
    target = valid.item[valid.indptr[users]].astype(np.int64)
    in_train = train.users.index(valid.users.to_ids(users), unknown="ignore")
    keep = in_train >= 0
    keep[keep] = train.user_lengths[in_train[keep]] > 0
    return train.histories(in_train[keep]), target[keep]
