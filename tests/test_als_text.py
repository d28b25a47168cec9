"""ALSText: the conformance suite, the ridge text-to-factor map's closed form, cold items
ranked from their text (listed in the item table, and added by add_items), save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conformance import planted_data
from recstack.data import Histories, Interactions
from recstack.errors import ConfigError
from recstack.models import Recommender
from recstack.models.als_text import ALSText
from test_content import TextConformance, category_data, with_text

pytest.importorskip("sklearn")

FAST = {"encoder": "tfidf", "factors": 8, "iterations": 10, "regularization": 0.5}


@pytest.fixture(autouse=True)
def cache_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSTACK_CACHE", str(tmp_path / "cache"))


class TestALSText(TextConformance):
    def make_model(self) -> Recommender:
        return ALSText(solver="cholesky", **FAST)


@pytest.fixture(scope="module")
def fitted() -> tuple[ALSText, pd.DataFrame, dict[str, str]]:
    data, cold, category = category_data(n_warm=6, n_cold=3, users_per=12)
    with_cold = Interactions.from_frame(
        data.to_frame(), item_features=pd.concat([data.item_features, cold])
    )
    return ALSText(**FAST).fit(with_cold), cold, category


def test_text_map_is_the_ridge_solution(fitted: tuple) -> None:
    model = fitted[0]
    warm = model.has_events_ & model.has_text_
    t, y = model.text_vectors_[warm].astype(np.float64), model.item_factors_[warm]
    w = model.text_map_.astype(np.float64)
    # the normal equations of min |T W - Y|^2 + reg |W|^2
    np.testing.assert_allclose(
        (t.T @ t + model.text_reg * np.eye(t.shape[1])) @ w, t.T @ y, rtol=1e-3, atol=1e-5
    )
    cold = ~model.has_events_
    assert cold.sum() == 12
    np.testing.assert_allclose(
        model.item_factors_[cold], model.text_vectors_[cold] @ model.text_map_, rtol=1e-5
    )


def test_cold_items_are_ranked_from_their_text(fitted: tuple) -> None:
    model, cold, category = fitted
    users = model.users_.ids
    among = model.recommend(users, k=3, items=cold.index.to_numpy())
    hits = [
        np.mean([category[i] == user.split("-")[0] for i in row])
        for user, row in zip(users, among.item_ids, strict=True)
    ]
    assert np.mean(hits) > 0.9  # four categories: random among the cold items gives 1/4


def test_add_items_and_save_load(fitted: tuple, tmp_path: Path) -> None:
    model = fitted[0]
    users = model.users_.ids
    before = model.score(model.user_histories(users))
    factors_before = model.item_factors_.copy()
    model.add_items(pd.DataFrame({"description": ["rocket galaxy orbit"]}, index=["new"]))
    after = model.score(model.user_histories(users))
    space = np.array([u.startswith("space") for u in users])
    # the new item is a space item: it ranks higher for space fans than for the others
    assert after[space, -1].mean() > after[~space, -1].mean()
    # known items keep their factors (scores move only through the fold-in's Gram)
    assert after.shape == (len(users), before.shape[1] + 1)
    np.testing.assert_array_equal(model.item_factors_[:-1], factors_before)
    hist = Histories.from_ids(model.items_, [["new"], list(model.items_.ids[:3])])
    loaded = Recommender.load(model.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.score(hist), model.score(hist), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [0.0, -1.0, "x", True])
def test_bad_text_reg(bad: object) -> None:
    data = with_text(planted_data(), 4)
    with pytest.raises(ConfigError, match="text_reg must be a positive number"):
        ALSText(**{**FAST, "text_reg": bad}).fit(data)
