"""Non-personalized baselines: popularity (the bar every model must clear) and random."""

from __future__ import annotations

import numpy as np

from recstack.data import Histories, Interactions
from recstack.errors import ConfigError
from recstack.models.base import Recommender

_DAY = 86_400.0


class Popularity(Recommender):
    """Recommends the items with the most distinct users in training.

    Parameters
    ----------
    half_life_days : float or None
        With a value, an event ``d`` days older than the newest training event weighs
        ``0.5 ** (d / half_life_days)``: recent popularity counts more (news, trends).
        ``None`` counts every user once.

    Examples
    --------
    >>> from recstack.data.synthetic import make_shop
    >>> data = make_shop(n_users=50, n_items=20, seed=0)
    >>> model = Popularity().fit(data)
    >>> model.recommend(histories=[[]], k=3).index.shape
    (1, 3)
    """

    name = "popularity"

    def __init__(self, half_life_days: float | None = None) -> None:
        self.half_life_days = half_life_days

    def _validate_params(self) -> None:
        h = self.half_life_days
        if h is not None and (not isinstance(h, int | float) or isinstance(h, bool) or h <= 0):
            raise ConfigError(f"half_life_days must be a positive number or None, got {h!r}")

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        if self.half_life_days is None:
            counts = train.item_user_counts.astype(np.float64)
        else:
            age_days = (train.time.max() - train.time) / _DAY
            weight = 0.5 ** (age_days / float(self.half_life_days))
            counts = np.bincount(train.item, weights=weight, minlength=train.n_items)
        self.item_scores_ = counts.astype(np.float32)

    def _score(self, histories: Histories) -> np.ndarray:
        return np.tile(self.item_scores_, (len(histories), 1))


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A fast, well-mixed 64-bit hash (Steele et al. 2014), vectorized; uint64 in, out."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class Random(Recommender):
    """A random ranking, different per history but reproducible.

    Each history's scores are a hash of (``seed``, the history's items, the item), so
    scoring a user alone or in a batch, before or after saving, gives the same list.

    Parameters
    ----------
    seed : int
        Changes every ranking.
    """

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def _validate_params(self) -> None:
        if not isinstance(self.seed, int | np.integer) or isinstance(self.seed, bool):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        pass  # nothing to learn: the catalog size comes from the base class

    def _score(self, histories: Histories) -> np.ndarray:
        with np.errstate(over="ignore"):
            item_hash = _splitmix64(histories.items.astype(np.uint64) + np.uint64(1))
            # order-free signature of each history: sum of its items' hashes
            sig = np.zeros(len(histories), dtype=np.uint64)
            np.add.at(sig, histories.rows, item_hash)
            sig = _splitmix64(sig ^ np.uint64(int(self.seed) & 0xFFFFFFFFFFFFFFFF))
            items = np.arange(self.n_items, dtype=np.uint64) * np.uint64(0x632BE59BD9B4E019)
            h = _splitmix64(sig[:, None] ^ items[None, :])
        return ((h >> np.uint64(40)).astype(np.float32)) / np.float32(1 << 24)
