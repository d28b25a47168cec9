"""Cold-start evaluation: the random baselines' closed forms against enumeration, the
cold-item and cold-user tables against direct computations, saved cold splits keeping
their cold items, and `recstack compare --cold-start`."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from recstack.cli import app
from recstack.data import Histories, Interactions, cold_items, leave_last_out, load_dataset
from recstack.data.split_io import load_split, save_split
from recstack.errors import ConfigError, DataError
from recstack.evaluation import metrics as M
from recstack.evaluation.coldstart import (
    RANDOM_AMONG_COLD,
    cold_item_mask,
    cold_item_table,
    cold_user_summary,
    cold_user_table,
    expected_random_metrics,
    last_events,
    random_among_cold,
)
from recstack.models import ContentKNN, ItemKNN, Popularity, Random
from test_content import category_data


@pytest.fixture(autouse=True)
def cache_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSTACK_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def shop() -> Interactions:
    """Category data with every item's text, cold ones included, as one log."""
    return category_data(n_warm=25, n_cold=0, users_per=30, seed=5)[0]


@pytest.mark.parametrize(("n", "r", "n_rel", "k"), [(6, 2, 2, 3), (6, 2, 3, 3), (5, 1, 1, 7)])
def test_expected_random_metrics_by_enumeration(n: int, r: int, n_rel: int, k: int) -> None:
    hits_all = []
    for perm in itertools.permutations(range(n)):
        hits_all.append(np.array(perm[:k]) < r)  # items 0 .. r-1 are the relevant candidates
    hits = np.zeros((len(hits_all), k), dtype=bool)
    for row, h in enumerate(hits_all):
        hits[row, : len(h)] = h
    want_hr = M.hit_rate(hits).mean()
    want_ndcg = M.ndcg(hits, np.full(len(hits), n_rel)).mean()
    got = expected_random_metrics(np.array([n]), np.array([r]), np.array([n_rel]), k)
    assert got[f"hr@{k}"][0] == pytest.approx(want_hr, abs=1e-12)
    assert got[f"ndcg@{k}"][0] == pytest.approx(want_ndcg, abs=1e-12)


def test_cold_item_table(shop: Interactions) -> None:
    models = {"popularity": Popularity(), "content-knn": ContentKNN(encoder="tfidf")}
    table = cold_item_table(models, shop, fraction=0.2, seed=1, ks=(5, 10))
    split = cold_items(shop, fraction=0.2, seed=1)
    cold = cold_item_mask(split)
    assert table.attrs["n_cold"] == int(cold.sum()) == split.info["cold_items"]
    assert list(table.index) == ["random", RANDOM_AMONG_COLD, "popularity", "content-knn"]
    assert not models["popularity"].is_fitted  # templates are copied, not fitted

    # the baselines, user by user from their definition
    hist = split.test_history()
    users = np.unique(split.test.user)
    n_cold = int(cold.sum())
    expect = {"random": [], RANDOM_AMONG_COLD: []}
    for u in users:
        rel = np.unique(split.test.item[split.test.user == u])
        seen = np.unique(hist.item[hist.user == u])
        n_all = shop.n_items - len(seen)
        for name, (n, r) in {
            "random": (n_all, len(rel)),
            RANDOM_AMONG_COLD: (n_cold, len(rel)),
        }.items():
            expect[name].append(1 - np.prod([(n - r - j) / (n - j) for j in range(min(10, n))]))
    for name, values in expect.items():
        assert table.at[name, "hr@10"] == pytest.approx(np.mean(values), abs=1e-9)
        assert table.at[name, "hr@10 among cold"] == pytest.approx(
            np.mean(expect[RANDOM_AMONG_COLD])
        )
    assert random_among_cold(split, 10)["hr@10"] == pytest.approx(
        np.mean(expect[RANDOM_AMONG_COLD])
    )

    # popularity cannot place a cold item; text can
    assert table.at["popularity", "hr@10"] == 0 and table.at["popularity", "cold_share@10"] == 0
    row = table.loc["content-knn"]
    assert row["hr@5 among cold"] > table.at[RANDOM_AMONG_COLD, "hr@5 among cold"] + 0.3
    assert row["hr@10"] > table.at["random", "hr@10"]
    # the restricted ranking by hand: cold items by score, ties in the seeded random order
    model = ContentKNN(encoder="tfidf").fit(split.train)
    ids = shop.users.ids[users]
    hist = split.train.histories(users)
    scores = model.score(hist)[:, cold]
    tiebreak = Random(seed=1).fit(split.train).score(hist)[:, cold]  # seed: the split's
    cold_idx = np.flatnonzero(cold)
    hits = []
    for r, u in enumerate(users):
        ranked = sorted(range(len(cold_idx)), key=lambda j: (scores[r, j], tiebreak[r, j]))
        top = cold_idx[ranked[::-1][:10]]
        hits.append(np.isin(top, split.test.item[split.test.user == u]).any())
    assert row["hr@10 among cold"] == pytest.approx(np.mean(hits), abs=1e-12)
    # a model blind to new items ranks them at random, whatever their index
    blind = table.at["popularity", "hr@10 among cold"]
    assert abs(blind - table.at[RANDOM_AMONG_COLD, "hr@10 among cold"]) < 0.1
    full = model.recommend(ids, k=10)
    assert row["cold_share@10"] == pytest.approx(cold[full.index].mean(), abs=1e-12)
    assert (table["n_users"] == len(users)).all()


def test_cold_user_table_matches_direct_scoring(shop: Interactions) -> None:
    split = leave_last_out(shop, n_valid=0)
    model = ItemKNN().fit(split.train)
    table = cold_user_table(model, split, ns=(1, 3), ks=10)
    assert list(table.index) == [1, 3]
    hist = split.test_history()
    eligible = np.flatnonzero(hist.user_lengths >= 3)
    test_item = {int(u): int(i) for u, i in zip(split.test.user, split.test.item, strict=True)}
    users = [u for u in eligible if u in test_item]
    for n in (1, 3):
        lists = [hist.item[hist.indptr[u] : hist.indptr[u + 1]][-n:] for u in users]
        recs = model.recommend(histories=Histories.from_lists(lists, shop.n_items), k=10)
        hits = recs.index == np.array([test_item[u] for u in users])[:, None]
        assert table.at[n, "hr@10"] == pytest.approx(M.hit_rate(hits).mean(), abs=1e-12)
        assert table.at[n, "ndcg@10"] == pytest.approx(
            M.ndcg(hits, np.ones(len(users))).mean(), abs=1e-12
        )
        assert table.at[n, "n_users"] == len(users)
    summary = cold_user_summary({"itemknn": model}, split, ns=(1, 3), ks=10)
    assert summary.at["itemknn", "hr@10 n=3"] == table.at[3, "hr@10"]
    assert list(summary.columns) == [
        "hr@10 n=1",
        "ndcg@10 n=1",
        "hr@10 n=3",
        "ndcg@10 n=3",
        "n_users",
    ]


def test_last_events_and_errors(shop: Interactions) -> None:
    short = last_events(shop, 2)
    assert short.user_lengths.max() == 2
    for u in range(3):
        np.testing.assert_array_equal(
            short.item[short.indptr[u] : short.indptr[u + 1]],
            shop.item[shop.indptr[u] : shop.indptr[u + 1]][-2:],
        )
    with pytest.raises(ConfigError, match="n must be a positive integer"):
        last_events(shop, 0)
    split = leave_last_out(shop, n_valid=0)
    model = Popularity().fit(split.train)
    with pytest.raises(DataError, match="100 or more history events"):
        cold_user_table(model, split, ns=(100,))
    with pytest.raises(ConfigError, match="ns must be positive"):
        cold_user_table(model, split, ns=(0, 1))


def test_ml100k_cold_split_saved_and_loaded(ml100k_dir: Path, tmp_path: Path) -> None:
    data = load_dataset(ml100k_dir)
    assert isinstance(data, Interactions)
    split = cold_items(data, fraction=0.1, seed=0)
    held = np.unique(split.test.item)
    assert len(held) == split.info["cold_items"] == 168
    assert not np.isin(split.train.item, held).any()  # no held-out item event in train
    assert split.valid is None or not np.isin(split.valid.item, held).any()
    back = load_split(save_split(split, tmp_path / "split"))
    assert back.train.items == data.items  # the held-out items stay in the catalog
    assert not np.isin(back.train.item, held).any()
    pd.testing.assert_frame_equal(
        back.train.item_features.loc[data.items.ids[held]].astype(str),
        data.item_features.loc[data.items.ids[held]].astype(str),
        check_names=False,
    )


def test_split_dir_without_meta_keeps_items_without_events(tmp_path: Path) -> None:
    d = tmp_path / "s"
    d.mkdir()
    pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "a"]}).to_csv(
        d / "train.csv", index=False
    )
    pd.DataFrame({"user_id": ["u2"], "item_id": ["c"]}).to_csv(d / "test.csv", index=False)
    items = pd.DataFrame({"item_id": ["a", "b", "c", "new"], "title": ["x y", "x z", "q w", "q"]})
    items.to_csv(d / "items.csv", index=False)
    split = load_split(d)
    assert split.train.items.ids.tolist() == ["a", "b", "c", "new"]
    assert split.train.item_features["title"].tolist() == ["x y", "x z", "q w", "q"]


def test_compare_cold_start_section(tmp_path: Path) -> None:
    split = leave_last_out(category_data(n_warm=25, n_cold=0, seed=2, events=(7, 9))[0])
    save_split(split, tmp_path / "split")
    res = CliRunner().invoke(
        app,
        ["compare", str(tmp_path / "split"), "--models", "popularity,itemknn", "--cold-start",
         "--report", str(tmp_path / "rep"), "--k", "10"],
        catch_exceptions=False,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "Cold items" in res.output and "Cold users" in res.output
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "<h2>Cold start</h2>" in html and "random among cold" in html
    assert "<h2>All metrics</h2>" in html  # the rest of the report is still there
    payload = json.loads((tmp_path / "rep" / "results.json").read_text())
    tables = list(payload["cold_start"].values())
    assert [r["model"] for r in tables[0]] == ["random", RANDOM_AMONG_COLD, "popularity", "itemknn"]
    assert [r["model"] for r in tables[1]] == ["popularity", "itemknn"]
    assert set(payload["models"]) == {"popularity", "itemknn"}
