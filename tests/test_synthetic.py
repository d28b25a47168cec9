"""The synthetic shop: sizes, the planted structure is really there, determinism, late launches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recstack.data import Interactions
from recstack.data.splits import cold_items, global_temporal
from recstack.data.synthetic import _CATEGORIES, LAUNCH_AT, SPAN, START, make_shop
from recstack.errors import ConfigError


@pytest.fixture(scope="module")
def shop() -> Interactions:
    return make_shop(n_users=1000, n_items=400, seed=7)


def _truth(data: Interactions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """User cluster per event, item category per event, successor index per item."""
    assert data.item_features is not None and data.user_features is not None
    user_cluster = data.user_features["cluster"].to_numpy()[data.user]
    item_cluster = data.item_features["category"].to_numpy()[data.item]
    successor = data.items.index(data.item_features["successor"].to_numpy())
    return user_cluster, item_cluster, successor


def _successor_rate(data: Interactions) -> float:
    """Fraction of consecutive events of a user where the second is the first's successor."""
    _, _, successor = _truth(data)
    same_user = data.user[1:] == data.user[:-1]
    return float((data.item[1:] == successor[data.item[:-1]])[same_user].mean())


def test_sizes_and_ids(shop: Interactions):
    assert (shop.n_users, shop.n_items, shop.n_events) == (1000, 400, 20_000)
    assert shop.users.ids[:3].tolist() == ["u0", "u1", "u2"] and shop.items.ids[-1] == "i399"
    assert shop.user_lengths.min() >= 5
    small = make_shop(n_users=10, n_items=30, n_events=25, seed=0)
    assert small.n_events == 25 and small.user_lengths.min() >= 2  # min(5, 25 // 10)
    assert (
        make_shop(n_users=7, n_items=5, n_events=7, n_clusters=5).user_lengths.tolist() == [1] * 7
    )


def test_feature_tables(shop: Interactions):
    f, uf = shop.item_features, shop.user_features
    assert f is not None and uf is not None
    assert f.columns.tolist() == ["title", "category", "price", "successor", "launched"]
    assert f.index.tolist() == shop.items.ids.tolist() and uf.index.equals(pd.Index(shop.users.ids))
    assert set(f["category"]) == set(list(_CATEGORIES)[:8]) == set(uf["cluster"])
    assert (f["price"] > 0).all() and (f["launched"] == START).all()
    # successors stay inside their category and are other items (categories have 50 items)
    succ = shop.items.index(f["successor"].to_numpy())
    assert (f["category"].to_numpy()[succ] == f["category"].to_numpy()).all()
    assert (succ != np.arange(shop.n_items)).all()
    no_text = make_shop(n_users=20, n_items=30, with_text=False)
    assert no_text.item_features is not None and "title" not in no_text.item_features


def test_titles_come_from_their_category_vocabulary(shop: Interactions):
    f = shop.item_features
    assert f is not None
    for title, category in zip(f["title"], f["category"], strict=True):
        words = _CATEGORIES[category].split(", ")
        _, rest = title.split(" ", 1)  # after the adjective
        assert any(rest.startswith(w + " ") and rest[len(w) + 1 :] in words for w in words), title
    # distinct categories share no title word: a bag of words separates them
    vocab = [set(v.split(", ")) for v in _CATEGORIES.values()]
    assert sum(len(v) for v in vocab) == len(set().union(*vocab))


def test_many_clusters_get_made_up_categories():
    data = make_shop(n_users=100, n_items=60, n_clusters=20, seed=1)
    f = data.item_features
    assert f is not None and f["category"].nunique() == 20
    made_up = f[f["category"] == "category19"]
    assert len(made_up) == 3 and made_up["title"].str.contains("category19-item").all()


def test_users_mostly_buy_their_cluster(shop: Interactions):
    user_cluster, item_cluster, _ = _truth(shop)
    # own cluster with prob 0.8, else a uniform cluster out of 8 (successors stay in cluster)
    assert np.mean(user_cluster == item_cluster) == pytest.approx(0.8 + 0.2 / 8, abs=0.02)
    loose = make_shop(n_users=1000, n_items=400, cluster_strength=0.0, seed=7)
    uc, ic, _ = _truth(loose)
    assert np.mean(uc == ic) == pytest.approx(1 / 8, abs=0.02)


@pytest.mark.parametrize("strength", [0.0, 0.5, 0.9])
def test_successor_transitions_at_seq_strength(strength: float):
    data = make_shop(n_users=500, n_items=400, seq_strength=strength, seed=2)
    rate = _successor_rate(data)
    # plus the chance that a fresh draw happens to be the successor (a few percent)
    assert strength <= rate <= strength + 0.06 * (1 - strength) + 0.01


def test_popularity_skew_concentrates_each_category():
    def top_share(skew: float) -> float:
        # no successor links: they add in-degree popularity on top of the planted one
        data = make_shop(n_users=1000, n_items=400, popularity_skew=skew, seq_strength=0, seed=3)
        _, item_cluster, _ = _truth(data)
        counts = pd.Series(data.item).groupby(item_cluster).value_counts()
        return float((counts.groupby(level=0).max() / counts.groupby(level=0).sum()).mean())

    # uniform over 50 items: the top item has ~1/50 plus noise; Zipf 1.5: 1/H(50, 1.5) ~ 0.4
    assert top_share(0.0) < 0.04
    assert top_share(1.5) > 0.3


def test_ratings_follow_cluster_match(shop: Interactions):
    user_cluster, item_cluster, _ = _truth(shop)
    match = user_cluster == item_cluster
    assert set(np.unique(shop.value)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert shop.value[match].mean() == pytest.approx(4.0, abs=0.15)
    assert shop.value[~match].mean() == pytest.approx(2.5, abs=0.15)


def test_timestamps_increase_inside_the_year(shop: Interactions):
    t = shop.time
    assert (t == np.floor(t)).all() and t.min() >= START and t.max() < START + SPAN
    same_user = shop.user[1:] == shop.user[:-1]
    assert (np.diff(t)[same_user] >= 0).all()
    # re-sorting (as from_frame does) changes nothing: the log was built in (user, time) order
    again = Interactions.from_frame(shop.to_frame())
    np.testing.assert_array_equal(again.items.ids[again.item], shop.items.ids[shop.item])


def test_same_seed_same_log_other_seed_other_log():
    a, b = (make_shop(n_users=200, n_items=100, cold_item_fraction=0.1, seed=5) for _ in range(2))
    for col in ("user", "item", "value", "time"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col))
    assert a.item_features is not None and a.item_features.equals(b.item_features)
    c = make_shop(n_users=200, n_items=100, cold_item_fraction=0.1, seed=6)
    assert not np.array_equal(a.item, c.item)


def test_late_items_are_only_bought_late():
    data = make_shop(n_users=2000, n_items=200, cold_item_fraction=0.2, seed=4)
    f = data.item_features
    assert f is not None
    launch = START + LAUNCH_AT * SPAN
    late = f["launched"].to_numpy() == launch
    assert late.sum() == 40 and (f["launched"].to_numpy()[~late] == START).all()
    on_late = late[data.item]
    assert on_late.any() and (data.time[on_late] >= launch).all()
    # late items get a fair share of the late events (they compete from launch on)
    assert on_late.sum() > 0.1 * (data.time >= launch).sum()
    # a temporal split at the launch makes all of them cold; their events are all test
    s = global_temporal(data, test_from=launch)
    late_sold = np.unique(data.item[on_late])
    assert not np.isin(s.train.item, late_sold).any()
    assert s.info["test_items_without_train"] >= len(late_sold)
    # and they are ordinary catalog items otherwise: a cold-item split runs as usual
    assert cold_items(data, fraction=0.1).info["cold_items"] == 20


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_users": 0}, r"n_users must be an integer >= 1, got 0"),
        ({"n_events": 5}, r"n_events must be an integer >= 1000, got 5"),
        ({"n_items": 5}, r"n_clusters must be at most n_items=5, got 8"),
        ({"popularity_skew": -1}, r"popularity_skew must be a finite number >= 0, got -1"),
        ({"seq_strength": 1.5}, r"seq_strength must be a number in \[0, 1\], got 1.5"),
        ({"cold_item_fraction": 1.0}, r"cold_item_fraction must be a number in \[0, 1\), got 1.0"),
        ({"seed": "x"}, r"seed must be an integer >= 0, got 'x'"),
        ({"with_text": "yes"}, r"with_text must be True or False, got 'yes'"),
        ({"cluster_strength": float("nan")}, r"cluster_strength must be a number in \[0, 1\]"),
    ],
)
def test_bad_parameters(params: dict, match: str):
    with pytest.raises(ConfigError, match=match):
        make_shop(**params)
