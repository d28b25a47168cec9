"""Non-personalized baselines: popularity (the bar every model must clear) and random."""

from __future__ import annotations

import numbers
from typing import Any, ClassVar

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
        ``None`` counts every user of an item once. With a value, each user still counts
        once, weighted ``0.5 ** (d / half_life_days)`` where ``d`` is how many days their
        latest event with the item is older than the newest training event: recent
        popularity counts more (news, trends). Times are the data's timestamps in seconds.

    Examples
    --------
    >>> import pandas as pd
    >>> from recstack.data import Interactions
    >>> log = pd.DataFrame({"user_id": [1, 1, 2, 3], "item_id": ["a", "b", "b", "c"]})
    >>> model = Popularity().fit(Interactions.from_frame(log))
    >>> model.recommend(histories=[[]], k=3).item_ids.tolist()
    [['b', 'a', 'c']]
    """

    name = "popularity"
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {
        "half_life_days": ("categorical", [None, 7.0, 30.0, 90.0, 365.0])
    }

    def __init__(self, half_life_days: float | None = None) -> None:
        self.half_life_days = half_life_days

    def _validate_params(self) -> None:
        h = self.half_life_days
        if h is None:
            return
        if not isinstance(h, numbers.Real) or isinstance(h, bool) or not h > 0:  # NaN too
            raise ConfigError(f"half_life_days must be a positive number or None, got {h!r}")

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        counts: np.ndarray
        if self.half_life_days is None:
            counts = train.item_user_counts
        else:
            # events are sorted by (user, time): a pair's last occurrence is its latest
            pair = train.user.astype(np.int64) * train.n_items + train.item
            _, first_reversed = np.unique(pair[::-1], return_index=True)
            last = train.n_events - 1 - first_reversed
            age_days = (train.time.max() - train.time[last]) / _DAY
            weight = 0.5 ** (age_days / float(self.half_life_days))
            counts = np.bincount(train.item[last], weights=weight, minlength=train.n_items)
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
