"""ItemKNN and UserKNN: the conformance suite, brute-force similarity references (every
option), chunked == unchunked, planted structure, implicit as a peer, bad parameters."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from conformance import RecommenderConformance, checkerboard_data, checkerboard_top1
from conftest import PEER_SPLIT
from recstack.data import Histories, IdMap, Interactions
from recstack.data.synthetic import make_shop
from recstack.errors import ConfigError
from recstack.models import Popularity, Recommender, knn
from recstack.models.knn import ItemKNN, UserKNN, top_neighbors, weight_rows


class TestItemKNN(RecommenderConformance):
    def make_model(self) -> Recommender:
        return ItemKNN(neighbors=10, alpha=0.4, shrink=2.0, weighting="bm25")


class TestItemKNNDefaults(RecommenderConformance):
    def make_model(self) -> Recommender:
        return ItemKNN()


class TestUserKNN(RecommenderConformance):
    def make_model(self) -> Recommender:
        return UserKNN(neighbors=8, alpha=0.6, shrink=1.0, weighting="tfidf")


class TestUserKNNDefaults(RecommenderConformance):
    def make_model(self) -> Recommender:
        return UserKNN()


# --------------------------------------------------------------------- references
def _random_matrix(n_users: int, n_items: int, density: float, seed: int) -> sp.csr_matrix:
    """Ratings 1..5 on a random pattern; every user and item has at least one event."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    mask[rng.integers(0, n_users, n_items), np.arange(n_items)] = True
    dense = np.where(mask, rng.integers(1, 6, (n_users, n_items)), 0).astype(np.float32)
    return sp.csr_matrix(dense)


def _interactions(x: sp.csr_matrix) -> Interactions:
    coo = x.tocoo()
    frame = pd.DataFrame({"user_id": coo.row, "item_id": coo.col, "rating": coo.data})
    return Interactions.from_frame(
        frame,
        rating_col="rating",
        users=IdMap(np.arange(x.shape[0]), "user"),
        items=IdMap(np.arange(x.shape[1]), "item"),
    )


def _ref_weights(
    x: np.ndarray, weighting: str, k1: float, b: float, sums: np.ndarray
) -> np.ndarray:
    """Dense (n, n_items) weighting, written from the formulas (users are the terms)."""
    if weighting == "none":
        return x
    nz = x != 0
    idf = np.log(x.shape[1]) - np.log1p(nz.sum(axis=1, keepdims=True))
    if weighting == "tfidf":
        return np.where(nz, np.sqrt(x) * idf, 0.0)
    length = (1 - b) + b * sums / sums.mean()
    return np.where(nz, x * (k1 + 1) / (k1 * length + x) * idf, 0.0)


def _assert_top(got: np.ndarray, sim: np.ndarray, n: int, rtol: float = 2e-6) -> None:
    """``got`` keeps, per row, a best-``n`` set of the positive entries of ``sim`` with
    their values (entries equal up to rounding may swap at the cut)."""
    assert got.shape == sim.shape
    for r in range(len(sim)):
        kept = np.flatnonzero(got[r])
        assert len(kept) == min(n, int((sim[r] > 0).sum())), r
        np.testing.assert_allclose(got[r, kept], sim[r, kept], rtol=rtol, atol=1e-7)
        left = np.delete(sim[r], kept)
        if len(kept) and len(left):
            assert got[r, kept].min() >= left.max() * (1 - 1e-5), r


def _ref_item_similarity(x: sp.csr_matrix, p: dict[str, Any]) -> np.ndarray:
    """Brute-force similarities from the dense Gram matrix (row: history item, column:
    target), no diagonal, before pruning."""
    d = x.toarray().astype(np.float64)
    if p["binary"]:
        d = (d != 0).astype(np.float64)
    w = _ref_weights(d, p["weighting"], p["bm25_k1"], p["bm25_b"], d.sum(axis=0))
    gram = w.T @ w
    sq = np.diag(gram).copy()
    if p["similarity"] == "dot":
        den = np.ones_like(gram)
    else:
        den = sq[:, None] ** (1 - p["alpha"]) * sq[None, :] ** p["alpha"]
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = gram / (den + p["shrink"])
    np.fill_diagonal(sim, 0.0)
    return np.nan_to_num(sim)


#: the options each brute-force case changes (None: the class defaults)
BASE = {
    "neighbors": 4,
    "similarity": "cosine",
    "alpha": 0.5,
    "shrink": 0.0,
    "weighting": "none",
    "bm25_k1": 1.2,
    "bm25_b": 0.75,
    "binary": True,
}
ITEM_OPTIONS: list[dict[str, Any] | None] = [
    None,
    {},
    {"alpha": 0.0},
    {"alpha": 1.0},
    {"alpha": 0.3, "shrink": 5.0},
    {"weighting": "bm25", "bm25_k1": 0.5, "bm25_b": 1.0},
    {"weighting": "bm25", "alpha": 0.8, "shrink": 1.0, "binary": False},
    {"weighting": "tfidf", "binary": False},
    {"weighting": "tfidf", "alpha": 0.2, "neighbors": None},
    {"similarity": "dot", "weighting": "bm25"},
    {"similarity": "dot", "shrink": 3.0, "binary": False, "neighbors": 1},
]


def _params(cls: type[Recommender], opts: dict[str, Any] | None) -> dict[str, Any]:
    return cls.param_defaults() if opts is None else {**BASE, **opts}


#: a small dense-ish matrix (rows scan every column) and a larger sparse one (the
#: accumulator lists the few columns a row touches)
SHAPES = {"dense": (40, 25, 0.2), "sparse": (300, 160, 0.012)}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("opts", ITEM_OPTIONS, ids=str)
def test_item_similarity_equals_brute_force(opts: dict[str, Any] | None, shape: str) -> None:
    x = _random_matrix(*SHAPES[shape], seed=1)
    n_items = x.shape[1]
    p = _params(ItemKNN, opts)
    sim = _ref_item_similarity(x, p)
    model = ItemKNN(**p).fit(_interactions(x))
    got = model.similarity_
    assert got.dtype == np.float32 and got.shape == (n_items, n_items)
    assert got.has_sorted_indices
    _assert_top(got.toarray(), sim, p["neighbors"] or n_items)
    # the scores are h @ S: one exact contribution per history item
    hist = Histories.from_lists([[0, 3, 7], [5], []], n_items, values=[[2, 1, 5], [3], []])
    h = hist.to_csr().toarray()
    h = (h != 0).astype(np.float64) if p["binary"] else h
    np.testing.assert_allclose(
        model.score(hist), h @ got.toarray().astype(np.float64), rtol=2e-6, atol=1e-6
    )


def test_ties_go_to_the_smaller_index() -> None:
    # checkerboard: every pair of same-parity items has the same similarity
    model = ItemKNN(neighbors=3, alpha=0.5, weighting="none").fit(checkerboard_data(12))
    s = model.similarity_
    for i in range(12):
        same = [j for j in range(12) if j % 2 == i % 2 and j != i]
        assert s[i].indices.tolist() == same[:3]
        np.testing.assert_allclose(s[i].data, 4 / 5)  # 4 co-users of 5 each


@pytest.mark.parametrize("cls", [ItemKNN, UserKNN])
@pytest.mark.parametrize("shrink", [0.0, 1.0])
def test_items_without_users(cls: type[Recommender], shrink: float) -> None:
    """An item nobody used (zero norm) has no similarity and scores 0, without NaN."""
    x = _random_matrix(30, 12, 0.3, seed=7).tolil()
    x[:, 5] = 0
    data = _interactions(sp.csr_matrix(x))
    x = data.matrix
    assert x[:, 5].nnz == 0 and data.n_items == 12
    for n in (3, None):
        model = cls(neighbors=n, shrink=shrink, weighting="bm25").fit(data)
        scores = model.score(Histories.from_lists([[5], [0, 5], []], 12))
        assert np.isfinite(scores).all()
        np.testing.assert_array_equal(scores[[0, 2]], 0.0)
        assert scores[1, 5] == 0.0 and scores[1].max() > 0
        if cls is ItemKNN:
            s = model.similarity_.toarray()
            assert not s[5].any() and not s[:, 5].any()


def test_weight_rows_matches_implicit() -> None:
    nn = pytest.importorskip("implicit.nearest_neighbours")
    x = _random_matrix(30, 20, 0.3, seed=2)
    sums = np.asarray(x.sum(axis=0)).ravel()
    bm25 = weight_rows(x, "bm25", 0.8, 0.6, sums).toarray()
    np.testing.assert_allclose(bm25, nn.bm25_weight(x.T, K1=0.8, B=0.6).T.toarray(), rtol=1e-5)
    tfidf = weight_rows(x, "tfidf", 1.2, 0.75, sums).toarray()
    np.testing.assert_allclose(tfidf, nn.tfidf_weight(x.T).T.toarray(), rtol=1e-5)
    assert weight_rows(x, "none", 1.2, 0.75, sums) is x


@pytest.mark.filterwarnings("ignore:Method expects CSR input")
def test_cosine_matches_implicit() -> None:
    """implicit's CosineRecommender keeps the item itself among its K: K = N + 1."""
    nn = pytest.importorskip("implicit.nearest_neighbours")
    x = _random_matrix(60, 30, 0.25, seed=3)  # ratings: no tied cosines
    data = _interactions(x)
    ours = ItemKNN(neighbors=6, alpha=0.5, weighting="none", binary=False).fit(data)
    peer = nn.CosineRecommender(K=7, num_threads=1)
    peer.fit(x.astype(np.float64), show_progress=False)
    theirs = peer.similarity.toarray()
    np.fill_diagonal(theirs, 0.0)
    np.testing.assert_allclose(ours.similarity_.toarray(), theirs, rtol=1e-5, atol=1e-6)
    hist = data.histories()
    np.testing.assert_allclose(
        ours.score(hist), hist.to_csr().toarray() @ theirs, rtol=1e-5, atol=1e-5
    )


def test_chunked_and_parallel_equal_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    x = _random_matrix(50, 33, 0.2, seed=4)
    data = _interactions(x)
    for opts in ({}, {"weighting": "bm25", "alpha": 0.3, "shrink": 2.0}):
        whole = ItemKNN(neighbors=5, **opts).fit(data).similarity_
        users = UserKNN(neighbors=5, **opts).fit(data).score(data.histories())
        with monkeypatch.context() as m:
            m.setattr(knn, "CHUNK_ENTRIES", 3 * 5)  # 3 rows a chunk, 11 chunks
            m.setattr(knn, "PARALLEL_MIN_WORK", 0)  # every chunk on the thread pool
            chunked = ItemKNN(neighbors=5, **opts).fit(data).similarity_
            chunked_users = UserKNN(neighbors=5, **opts).fit(data).score(data.histories())
        np.testing.assert_array_equal(chunked.indptr, whole.indptr)
        np.testing.assert_array_equal(chunked.indices, whole.indices)
        np.testing.assert_array_equal(chunked.data, whole.data)
        np.testing.assert_array_equal(chunked_users, users)


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_top_neighbors_equals_brute_force(binary: bool, shape: str) -> None:
    """The general search: scales, denominators, shrink, diagonal; binary ``b`` is read as
    its structure only."""
    x = _random_matrix(*SHAPES[shape], seed=5)
    if binary:
        x.data[:] = 1.0
    xt = sp.csr_matrix(x.T)
    m = x.shape[1]
    rng = np.random.default_rng(0)
    row_den, col_den = rng.uniform(0.5, 2.0, m), rng.uniform(0.5, 2.0, m)
    row_scale, col_scale = rng.uniform(0.5, 2.0, m), rng.uniform(0.5, 2.0, m)
    got = top_neighbors(
        xt,
        x,
        7,
        row_den=row_den,
        col_den=col_den,
        shrink=0.5,
        row_scale=row_scale,
        col_scale=col_scale,
        skip_diagonal=True,
    )
    sim = (xt @ x).toarray() * np.outer(row_scale, col_scale) / (np.outer(row_den, col_den) + 0.5)
    np.fill_diagonal(sim, 0.0)
    _assert_top(got.toarray(), sim, 7)


# --------------------------------------------------------------------- UserKNN
def _ref_user_similarity(x: sp.csr_matrix, hist: Histories, p: dict[str, Any]) -> np.ndarray:
    """Brute force: weighted histories vs weighted stored rows, the stored rows inside the
    history left out (similarity 0), before pruning."""
    d = x.toarray().astype(np.float64)
    h = hist.to_csr().toarray().astype(np.float64)
    if p["binary"]:
        d, h = (d != 0).astype(np.float64), (h != 0).astype(np.float64)
    sums = d.sum(axis=0)
    args = (p["weighting"], p["bm25_k1"], p["bm25_b"], sums)
    dw, hw = _ref_weights(d, *args), _ref_weights(h, *args)
    dot = hw @ dw.T
    if p["similarity"] == "dot":
        den = np.ones_like(dot)
    else:
        a = p["alpha"]
        den = (hw**2).sum(1)[:, None] ** a * (dw**2).sum(1)[None, :] ** (1 - a)
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = np.nan_to_num(dot / (den + p["shrink"]))
    inside = ((d != 0)[None, :, :] <= (h != 0)[:, None, :]).all(axis=2)  # stored row in h
    sim[inside] = 0.0
    return sim


USER_OPTIONS: list[dict[str, Any] | None] = [
    None,
    {},
    {"alpha": 0.0, "shrink": 2.0},
    {"alpha": 0.9, "neighbors": 1},
    {"weighting": "bm25", "alpha": 0.3, "binary": False},
    {"weighting": "tfidf", "neighbors": None},
    {"weighting": "tfidf", "alpha": 0.3, "shrink": 0.5},
    {"similarity": "dot", "weighting": "bm25", "bm25_k1": 2.0, "bm25_b": 0.3},
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("opts", USER_OPTIONS, ids=str)
def test_user_scores_equal_brute_force(opts: dict[str, Any] | None, shape: str) -> None:
    x = _random_matrix(*SHAPES[shape], seed=6)
    n_items = x.shape[1]
    p = _params(UserKNN, opts)
    data = _interactions(x)
    model = UserKNN(**p).fit(data)
    # training users, plus new histories: a subset of a user's items, and fresh mixtures
    hist = data.histories()
    new = Histories.from_lists([[0, 1, 2, 3], [19], [4, 9, 14, 15, 16], []], n_items)
    for h in (hist, new):
        nbrs = model.neighbors_of(h)
        _assert_top(nbrs.toarray(), _ref_user_similarity(x, h, p), p["neighbors"] or x.shape[0])
        values = (x != 0).astype(np.float64) if p["binary"] else x
        np.testing.assert_allclose(model.score(h), (nbrs @ values).toarray(), rtol=1e-6)


def test_user_is_not_their_own_neighbour() -> None:
    # users 0 and 1 are identical; user 2 has one more item; user 3 shares one item
    rows = [[0, 1, 2], [0, 1, 2], [0, 1, 2, 3], [2, 4]]
    x = sp.csr_matrix(
        (np.ones(12, np.float32), np.concatenate(rows), np.cumsum([0, *map(len, rows)])),
        shape=(4, 5),
    )
    model = UserKNN(neighbors=1, alpha=0.5, shrink=0.0, weighting="none").fit(_interactions(x))
    scores = model.score(model.user_histories(["0"]))
    # the copies of the history (users 0 and 1) add nothing; user 2 is the neighbour
    sim = 3 / np.sqrt(3 * 4)
    np.testing.assert_allclose(scores[0], sim * np.array([1, 1, 1, 1, 0]), rtol=1e-6)
    assert model.recommend(["0"], k=1).item_ids[0, 0] == "3"


# --------------------------------------------------------------------- structure
@pytest.mark.parametrize("cls", [ItemKNN, UserKNN])
def test_checkerboard(cls: type[Recommender]) -> None:
    # all same-parity items (users) are equally similar: keep them all (24 of them), else
    # the ties go to the smaller indices and the largest items get no vote
    data = checkerboard_data(50)
    assert checkerboard_top1(cls(neighbors=24).fit(data), data) == 1.0


@pytest.mark.parametrize(
    "model",
    [ItemKNN(neighbors=20, alpha=0.5, weighting="none"), UserKNN(neighbors=50, weighting="none")],
    ids=str,
)
def test_planted_clusters(model: Recommender) -> None:
    data = make_shop(600, 200, 12_000, n_clusters=5, seq_strength=0.0, with_text=False, seed=1)
    users = data.users.ids[:200]
    cluster = data.user_features["cluster"].loc[users].to_numpy()
    category = data.item_features["category"].to_numpy()

    def in_cluster(model: Recommender) -> float:
        recs = model.recommend(users, k=10)
        return float(np.mean(category[recs.index] == cluster[:, None]))

    # cluster_strength 0.8: ~80% of a user's fresh draws are in the cluster, the rest in a
    # random cluster by popularity (a strongly asymmetric alpha would follow those heads)
    assert in_cluster(model.fit(data)) >= 0.9
    assert in_cluster(Popularity().fit(data)) < 0.1


def test_similar_items_is_a_row_of_s() -> None:
    data = make_shop(300, 60, 6000, n_clusters=3, seq_strength=0.0, with_text=False, seed=2)
    model = ItemKNN(neighbors=8).fit(data)
    sims = model.similar_items(data.items.ids[:5], k=8)
    s = model.similarity_.toarray()
    for q in range(5):
        expected = np.lexsort((np.arange(s.shape[1]), -s[q]))[:8]
        np.testing.assert_array_equal(sims.index[q], expected)
        np.testing.assert_allclose(sims.scores[q], s[q, expected], rtol=1e-6)
    # same category as the query, mostly
    category = data.item_features["category"].to_numpy()
    assert np.mean(category[sims.index] == category[:5, None]) >= 0.8
    # a history of the query alone ranks the same items
    alone = model.recommend(histories=[[data.items.ids[0]]], k=8)
    np.testing.assert_array_equal(alone.index[0], sims.index[0])


def test_ml100k_quality_floor() -> None:
    if not (PEER_SPLIT / "train.tsv").is_file():
        pytest.skip(f"peer split not found at {PEER_SPLIT}")
    from recstack.data.readers import load_dataset
    from recstack.evaluation import evaluate

    split = load_dataset(PEER_SPLIT)
    # the defaults reach .080 and .079; Popularity .045
    for model, floor in ((ItemKNN(), 0.077), (UserKNN(), 0.075)):
        ndcg = evaluate(model.fit(split.train), split, on="valid", progress=False)
        assert ndcg.metrics["ndcg@10"] >= floor, type(model).__name__


# --------------------------------------------------------------------- parameters
BAD = [
    ("neighbors", -3, "neighbors must be a positive integer or None, got -3"),
    ("neighbors", 0, "neighbors .* got 0"),
    ("neighbors", 2.5, "neighbors .* got 2.5"),
    ("alpha", 1.5, r"alpha must be a number in \[0, 1\], got 1.5"),
    ("alpha", -0.1, r"alpha .* got -0.1"),
    ("alpha", float("nan"), "alpha .* got nan"),
    ("shrink", -1.0, "shrink must be a number >= 0, got -1.0"),
    ("weighting", "bm52", "weighting must be one of 'none', 'bm25', 'tfidf', got 'bm52'"),
    ("similarity", "pearson", "similarity must be one of 'cosine', 'dot', got 'pearson'"),
    ("bm25_k1", -1, "bm25_k1 .* got -1"),
    ("bm25_b", 2.0, r"bm25_b must be a number in \[0, 1\], got 2.0"),
    ("binary", "yes", "binary must be True or False, got 'yes'"),
]


@pytest.mark.parametrize("cls", [ItemKNN, UserKNN])
@pytest.mark.parametrize(("param", "value", "message"), BAD)
def test_bad_params(cls: type[Recommender], param: str, value: object, message: str) -> None:
    data = checkerboard_data(6)
    with pytest.raises(ConfigError, match=message):
        cls(**{param: value}).fit(data)


class TestItemKNNRecency(RecommenderConformance):
    def make_model(self) -> Recommender:
        return ItemKNN(neighbors=10, half_life=2.0)


def test_item_knn_half_life_scores_the_decayed_history() -> None:
    data = make_shop(n_users=200, n_items=60, n_events=3000, seed=3)
    plain = ItemKNN(neighbors=20).fit(data)
    model = ItemKNN(neighbors=20, half_life=3.0).fit(data)
    hist = Histories.from_lists([[4, 9, 4, 17], [], [30]], data.n_items)
    # the last event of each item counts: item 4 at position 1 from the end, 9 at 2, 17 at 0
    h = np.zeros((3, data.n_items))
    h[0, [4, 9, 17]] = [2 ** (-1 / 3), 2 ** (-2 / 3), 1.0]
    h[2, 30] = 1.0
    s = plain.similarity_.toarray()
    np.testing.assert_allclose(model.score(hist), h @ s, rtol=1e-5, atol=1e-7)
    with pytest.raises(ConfigError, match="half_life"):
        ItemKNN(half_life=0.0).fit(data)
