"""Popularity and Random: the conformance suite plus closed forms and distribution checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conformance import RecommenderConformance, planted_data
from recstack.data import Histories, Interactions
from recstack.errors import ConfigError
from recstack.models import Popularity, Random, Recommender

DAY = 86_400.0


class TestPopularity(RecommenderConformance):
    def make_model(self) -> Recommender:
        return Popularity()


class TestPopularityDecay(RecommenderConformance):
    def make_model(self) -> Recommender:
        return Popularity(half_life_days=30.0)


class TestRandom(RecommenderConformance):
    def make_model(self) -> Recommender:
        return Random(seed=3)


# --------------------------------------------------------------------- Popularity
def test_popularity_counts_distinct_users() -> None:
    data = planted_data(seed=4)
    # repeat some events (same user, same item, later) and add a heavy repeater
    frame = data.to_frame()
    extra = frame.iloc[::5].assign(timestamp=lambda d: d["timestamp"] + 1.0)
    repeater = pd.DataFrame(
        {"user_id": "u0", "item_id": 1039, "rating": 1.0, "timestamp": np.arange(50.0)}
    )
    log = Interactions.from_frame(
        pd.concat([frame, extra, repeater]), items=data.items, users=data.users
    )
    model = Popularity().fit(log)
    expected = np.zeros(log.n_items)
    for item in range(log.n_items):  # brute force: the set of users of each item
        expected[item] = len(set(log.user[log.item == item].tolist()))
    np.testing.assert_array_equal(model.item_scores_, expected)
    scores = model.score(Histories.from_lists([[0], []], log.n_items))
    np.testing.assert_array_equal(scores, np.tile(expected, (2, 1)))
    # the ranking: most users first, ties by smaller index
    order = np.lexsort((np.arange(log.n_items), -expected))[:5]
    np.testing.assert_array_equal(model.recommend(histories=[[]], k=5).index[0], order)


def test_popularity_time_decay_closed_form() -> None:
    # item a: u1 at day 0 and again at day 8 (counts once, at its latest event); u2 at day 10
    # item b: u3 at day 4.  Newest event: day 10.  Half-life 2 days.
    log = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u3"],
            "item_id": ["a", "a", "a", "b"],
            "timestamp": np.array([0.0, 8.0, 10.0, 4.0]) * DAY,
        }
    )
    model = Popularity(half_life_days=2.0).fit(Interactions.from_frame(log))
    a = 0.5 ** ((10 - 8) / 2) + 0.5 ** ((10 - 10) / 2)  # 0.5 + 1
    b = 0.5 ** ((10 - 4) / 2)  # 0.125
    np.testing.assert_allclose(model.item_scores_, [a, b], rtol=1e-6)


def test_popularity_long_half_life_tends_to_counts() -> None:
    data = planted_data(seed=2)
    plain = Popularity().fit(data).item_scores_
    slow = Popularity(half_life_days=1e9).fit(data).item_scores_
    np.testing.assert_allclose(slow, plain, rtol=1e-6)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "30", True])
def test_popularity_rejects_bad_half_life(bad: object) -> None:
    with pytest.raises(ConfigError, match="half_life_days must be a positive number"):
        Popularity(half_life_days=bad).fit(planted_data())  # type: ignore[arg-type]


def test_popularity_accepts_numpy_half_life() -> None:
    model = Popularity(half_life_days=np.float32(30.0)).fit(planted_data())  # type: ignore[arg-type]
    assert model.item_scores_.shape == (40,)


# --------------------------------------------------------------------- Random
def _random_top(seed: int, histories: list[list[str]], data: Interactions) -> np.ndarray:
    return Random(seed=seed).fit(data).recommend(histories=histories, k=5).index


def test_random_is_deterministic_per_seed_and_differs_across_seeds() -> None:
    data = planted_data()
    hist = [list(data.items.ids[i : i + 3]) for i in range(10)]
    a = _random_top(7, hist, data)
    np.testing.assert_array_equal(a, _random_top(7, hist, data))
    b = _random_top(8, hist, data)
    assert (a != b).any(axis=1).all()  # every list changes with the seed
    # and different histories get different lists
    assert len({tuple(row) for row in a.tolist()}) == len(hist)


def test_random_scores_in_unit_interval() -> None:
    data = planted_data()
    scores = Random(seed=1).fit(data).score(data.histories())
    assert scores.min() >= 0.0 and scores.max() < 1.0


def test_random_is_roughly_uniform() -> None:
    # rank-1 item over many distinct histories: each of the 40 items about equally often
    data = planted_data()
    model = Random(seed=11).fit(data)
    rng = np.random.default_rng(0)
    n_hist, n_items = 4000, data.n_items
    items = [rng.choice(n_items, size=3, replace=False) for _ in range(n_hist)]
    hist = Histories.from_lists(items, n_items)
    top1 = model.recommend(histories=hist, k=1, exclude_seen=False).index[:, 0]
    counts = np.bincount(top1, minlength=n_items)
    expected = n_hist / n_items
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    # 39 degrees of freedom: mean 39, sd ~8.8; 90 is past the 99.99th percentile
    assert chi2 < 90, (chi2, counts)
    assert counts.min() > 0


@pytest.mark.parametrize("bad", [1.5, "3", None, True])
def test_random_rejects_bad_seed(bad: object) -> None:
    with pytest.raises(ConfigError, match="seed must be an integer"):
        Random(seed=bad).fit(planted_data())  # type: ignore[arg-type]


def test_docstring_examples() -> None:
    import doctest

    import recstack.models.baselines as baselines

    result = doctest.testmod(baselines, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0
