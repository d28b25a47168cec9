"""ALS (Hu, Koren & Volinsky 2008): the conformance suite, closed forms, solver agreement,
monotone objective, planted structure, a cross-check against implicit, ML-100K floor."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from conformance import RecommenderConformance, checkerboard_data, checkerboard_top1, planted_data
from conftest import PEER_SPLIT
from recstack.data import Histories, IdMap, Interactions
from recstack.data.splits import Split, leave_last_out
from recstack.data.synthetic import make_shop
from recstack.errors import ConfigError, DataError
from recstack.evaluation import evaluate
from recstack.models import Popularity, Recommender
from recstack.models import _als_kernels as K
from recstack.models.als import ALS, implicit_objective


class TestALS(RecommenderConformance):
    def make_model(self) -> Recommender:
        return ALS(factors=8, regularization=0.5, alpha=2.0, iterations=8, seed=1)


class TestALSCholesky(RecommenderConformance):
    def make_model(self) -> Recommender:
        return ALS(factors=6, regularization=1.0, alpha=0.5, iterations=5, solver="cholesky")


def rated_data(seed: int = 0) -> Interactions:
    """Planted data with ratings 0..5 (a 0 is observed without preference: p = 0, c = 1)."""
    frame = planted_data(seed=seed).to_frame()
    rng = np.random.default_rng(seed)
    frame["rating"] = rng.integers(0, 6, size=len(frame)).astype(float)
    return Interactions.from_frame(frame)


def dense_fold_in(model: ALS, row: np.ndarray) -> np.ndarray:
    """The closed form over *all* items, in float64: ``(Y^T C Y + lam I)^-1 Y^T C p``."""
    y = model.item_factors_.astype(np.float64)
    c = 1.0 + model.alpha * row
    p = (row > 0).astype(np.float64)
    a = y.T @ (c[:, None] * y) + model.regularization * np.eye(y.shape[1])
    return np.linalg.solve(a, y.T @ (c * p))


# --------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_fold_in_is_the_dense_closed_form(solver: str) -> None:
    data = rated_data()
    model = ALS(factors=6, regularization=0.7, alpha=1.5, iterations=4, solver=solver).fit(data)
    hist = data.histories()
    got = model.user_vectors(hist)
    dense = hist.to_csr().toarray()
    for u in range(0, data.n_users, 7):
        np.testing.assert_allclose(got[u], dense_fold_in(model, dense[u]), rtol=1e-4, atol=1e-5)
    # an empty history has no preference at all: x = 0, every score 0
    empty = Histories.from_lists([[]], data.n_items)
    np.testing.assert_array_equal(model.user_vectors(empty), 0.0)
    np.testing.assert_array_equal(model.score(empty), 0.0)


def test_fold_in_reproduces_trained_factors() -> None:
    data = rated_data(seed=1)
    hist = data.histories()
    # the exact solver ends each sweep with an exact user step: fold-in gives it back exactly
    exact = ALS(factors=8, regularization=0.3, alpha=2.0, iterations=6, solver="cholesky")
    exact.fit(data)
    np.testing.assert_allclose(exact.user_vectors(hist), exact.user_factors_, atol=1e-5)
    # CG warm-started over many sweeps converges to the same solution
    cg = ALS(factors=8, regularization=0.3, alpha=2.0, iterations=40, cg_steps=3).fit(data)
    folded = cg.user_vectors(hist)
    err = np.linalg.norm(folded - cg.user_factors_, axis=1)
    assert np.all(err <= 1e-3 * np.linalg.norm(folded, axis=1) + 1e-5), err.max()


def test_cg_half_step_converges_to_exact_solve() -> None:
    data = rated_data(seed=2)
    rng = np.random.default_rng(0)
    k, lam, alpha = 7, 0.4, 3.0
    y = rng.standard_normal((data.n_items, k)).astype(np.float32)
    m = data.matrix
    exact = np.zeros((data.n_users, k), np.float32)
    K.exact_half_step(
        m.indptr, m.indices, m.data, alpha, y, K.gram(y, lam), exact,
        K.work_chunks(m.indptr, 1.0),
    )  # fmt: skip
    cg = np.zeros((data.n_users, k), np.float32)
    bounds = K.work_chunks(m.indptr, 1.0)
    gram32 = K.gram(y, lam).astype(np.float32)
    # k steps from zero solve a k x k system in exact arithmetic; float32 needs a few more
    K.cg_half_step(m.indptr, m.indices, m.data, np.float32(alpha), y, gram32, cg, bounds, 2 * k)
    err = np.linalg.norm(cg - exact, axis=1)
    assert np.all(err <= 1e-4 * np.linalg.norm(exact, axis=1) + 1e-6), err.max()
    # and fewer steps are a partial solve that warm starts improve
    few = np.zeros_like(cg)
    K.cg_half_step(m.indptr, m.indices, m.data, np.float32(alpha), y, gram32, few, bounds, 2)
    err_2 = np.abs(few - exact).max()
    K.cg_half_step(m.indptr, m.indices, m.data, np.float32(alpha), y, gram32, few, bounds, 2)
    assert np.abs(few - exact).max() < err_2


def test_gram_matches_numpy() -> None:
    f = np.random.default_rng(3).standard_normal((1037, 9)).astype(np.float32)
    ref = f.astype(np.float64).T @ f + 2.5 * np.eye(9)
    np.testing.assert_allclose(K.gram(f, 2.5), ref, rtol=1e-12)


def test_objective_matches_brute_force() -> None:
    data = rated_data(seed=3)
    model = ALS(factors=5, regularization=0.8, alpha=1.7, iterations=3).fit(data)
    x = model.user_factors_.astype(np.float64)
    y = model.item_factors_.astype(np.float64)
    r = data.matrix.toarray().astype(np.float64)
    c, p = 1.0 + 1.7 * r, (r > 0).astype(np.float64)
    expected = np.sum(c * (p - x @ y.T) ** 2) + 0.8 * (np.sum(x**2) + np.sum(y**2))
    assert model.loss(data) == pytest.approx(expected, rel=1e-6)


# --------------------------------------------------------------------- optimization
@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_objective_decreases_every_iteration(solver: str) -> None:
    data = rated_data(seed=4)
    losses = [
        ALS(factors=8, regularization=0.2, alpha=2.0, iterations=n, solver=solver, seed=5)
        .fit(data)
        .loss(data)
        for n in range(1, 9)
    ]
    assert np.all(np.diff(losses) <= 1e-6 * np.abs(losses[:-1])), losses
    assert losses[-1] < 0.9 * losses[0]


def test_cg_and_cholesky_solvers_agree() -> None:
    data = rated_data(seed=5)
    params = dict(factors=8, regularization=0.5, alpha=2.0, iterations=30, seed=2)
    cg = ALS(**params, solver="cg").fit(data)  # type: ignore[arg-type]
    exact = ALS(**params, solver="cholesky").fit(data)  # type: ignore[arg-type]
    assert cg.loss(data) == pytest.approx(exact.loss(data), rel=2e-3)
    hist = data.histories()
    top_cg = cg.recommend(data.users.ids, k=5).index
    top_exact = exact.recommend(data.users.ids, k=5).index
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(top_cg, top_exact, strict=True)])
    assert overlap >= 0.9
    np.testing.assert_allclose(cg.score(hist), exact.score(hist), atol=0.05)


@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_user_without_events_has_zero_factors(solver: str) -> None:
    data = planted_data()
    users = IdMap(np.append(data.users.ids, "ghost"), "user")
    log = Interactions.from_frame(data.to_frame(), users=users, items=data.items)
    model = ALS(factors=4, iterations=3, solver=solver).fit(log)
    np.testing.assert_array_equal(model.user_factors_[-1], 0.0)
    assert np.all(np.abs(model.user_factors_[:-1]).sum(axis=1) > 0)


def test_seed_changes_init_and_fit_is_deterministic() -> None:
    data = planted_data()
    a = ALS(factors=4, iterations=2, seed=1).fit(data)
    b = ALS(factors=4, iterations=2, seed=1).fit(data)
    c = ALS(factors=4, iterations=2, seed=2).fit(data)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    assert not np.allclose(a.item_factors_, c.item_factors_)


# --------------------------------------------------------------------- explanations
def test_explain_weights_decompose_the_score() -> None:
    data = rated_data(seed=6)
    model = ALS(factors=6, regularization=0.5, alpha=2.0, iterations=5).fit(data)
    hist = data.histories(np.arange(10))
    targets = np.arange(10) * 3 % data.n_items
    terms = model.explain_weights(hist, targets)
    assert terms.shape == (10, data.n_items)
    scores = model.score(hist)[np.arange(10), targets]
    np.testing.assert_allclose(np.asarray(terms.sum(axis=1)).ravel(), scores, rtol=1e-4, atol=1e-5)
    # brute force for one row: c_j p_j y_j^T W_u y_t with W_u from the dense closed form
    y = model.item_factors_.astype(np.float64)
    row = hist.to_csr().toarray()[0]
    c = 1.0 + model.alpha * row
    w_u = np.linalg.inv(y.T @ (c[:, None] * y) + model.regularization * np.eye(6))
    expected = c * (row > 0) * (y @ (w_u @ y[targets[0]]))
    np.testing.assert_allclose(terms.toarray()[0], expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(DataError, match="2 items for 10 rows"):
        model.explain_weights(hist, targets[:2])


# --------------------------------------------------------------------- planted structure
@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_checkerboard(solver: str) -> None:
    data = checkerboard_data(50)
    model = ALS(factors=4, regularization=1.0, alpha=5.0, iterations=10, solver=solver)
    assert checkerboard_top1(model.fit(data), data) == 1.0


def test_planted_shop_structure() -> None:
    data = make_shop(n_users=600, n_items=240, n_clusters=6, seq_strength=0.0, seed=3)
    split = leave_last_out(data)
    model = ALS(factors=6, regularization=5.0, alpha=1.0, iterations=10).fit(split.train)
    # recommendations stay in the user's taste cluster
    assert data.item_features is not None and data.user_features is not None
    recs = model.recommend(data.users.ids, k=10)
    category = data.item_features["category"].to_numpy()[recs.index]
    cluster = data.user_features["cluster"].to_numpy()[:, None]
    assert np.mean(category == cluster) >= 0.9
    # similar items share the query's category
    sims = model.similar_items(data.items.ids, k=5)
    item_cat = data.item_features["category"].to_numpy()
    assert np.mean(item_cat[sims.index] == item_cat[:, None]) >= 0.95
    # and held-out events are found far better than by popularity
    ndcg = evaluate(model, split, progress=False).metrics["ndcg@10"]
    pop = evaluate(Popularity().fit(split.train), split, progress=False).metrics["ndcg@10"]
    assert ndcg >= 0.18 and ndcg >= 2 * pop, (ndcg, pop)


# --------------------------------------------------------------------- implicit
def _ndcg_at_10(scores: np.ndarray, seen: sp.csr_matrix, target: np.ndarray) -> float:
    scores = scores.copy()
    scores[seen.nonzero()] = -np.inf
    rank = (scores > scores[np.arange(len(target)), target][:, None]).sum(axis=1)
    return float(np.mean(np.where(rank < 10, 1.0 / np.log2(rank + 2.0), 0.0)))


def test_cross_check_with_implicit() -> None:
    implicit_als = pytest.importorskip("implicit.cpu.als")
    data = make_shop(n_users=400, n_items=150, n_clusters=5, seq_strength=0.0, seed=7)
    split = leave_last_out(data, n_valid=0)
    train = split.train
    alpha, lam, k, iters = 1.0, 5.0, 5, 20
    ours = ALS(factors=k, regularization=lam, alpha=alpha, iterations=iters, seed=0).fit(train)
    # implicit's confidence is its input times its alpha: feed 1 + alpha * r, alpha = 1
    conf = train.matrix.copy()
    conf.data = 1.0 + alpha * conf.data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # implicit's advice about BLAS threads
        peer = implicit_als.AlternatingLeastSquares(
            factors=k, regularization=lam, alpha=1.0, iterations=iters, random_state=0,
            num_threads=2, calculate_training_loss=False,
        )  # fmt: skip
        peer.fit(conf, show_progress=False)
    obj_ours = ours.loss(train)
    obj_peer = implicit_objective(train.matrix, peer.user_factors, peer.item_factors, alpha, lam)
    assert obj_ours == pytest.approx(obj_peer, rel=1e-3)
    # the same quality on the held-out last events
    target = np.full(train.n_users, -1)
    target[split.test.user] = split.test.item
    has = target >= 0
    seen = train.matrix[has]
    ndcg_ours = _ndcg_at_10(ours.score(train.histories())[has], seen, target[has])
    ndcg_peer = _ndcg_at_10((peer.user_factors @ peer.item_factors.T)[has], seen, target[has])
    assert ndcg_ours > 0.12
    assert abs(ndcg_ours - ndcg_peer) <= 0.01, (ndcg_ours, ndcg_peer)


# --------------------------------------------------------------------- ML-100K
def test_ml100k_quality_floor() -> None:
    if not (PEER_SPLIT / "train.tsv").is_file():
        pytest.skip(f"peer split not found at {PEER_SPLIT}")
    from recstack.data.readers import load_dataset

    split = load_dataset(PEER_SPLIT)
    assert isinstance(split, Split)
    model = ALS().fit(split.train, split.valid)  # the defaults, tuned on this validation
    assert evaluate(model, split, on="valid", progress=False).metrics["ndcg@10"] >= 0.084


# --------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        ("factors", -3, "factors must be a positive integer, got -3"),
        ("factors", 0, "factors must be a positive integer, got 0"),
        ("factors", 2.5, "factors must be a positive integer, got 2.5"),
        ("factors", True, "factors must be a positive integer, got True"),
        ("iterations", 0, "iterations must be a positive integer, got 0"),
        ("cg_steps", -1, "cg_steps must be a positive integer, got -1"),
        ("regularization", 0.0, "regularization must be a positive number, got 0.0"),
        ("regularization", -1, "regularization must be a positive number, got -1"),
        ("regularization", float("nan"), "regularization must be a positive number, got nan"),
        ("alpha", -0.5, r"alpha must be a number >= 0, got -0.5"),
        ("alpha", float("inf"), r"alpha must be a number >= 0, got inf"),
        ("alpha", "1", r"alpha must be a number >= 0, got '1'"),
        ("solver", "qr", r"solver must be one of \('cg', 'cholesky'\), got 'qr'"),
        ("seed", -1, "seed must be an integer >= 0, got -1"),
    ],
)
def test_bad_parameters(param: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ALS(**{param: value}).fit(planted_data())  # type: ignore[arg-type]


def test_negative_values_are_rejected() -> None:
    frame = pd.DataFrame({"user_id": [1, 1, 2], "item_id": ["a", "b", "a"], "rating": [1, -2, 3]})
    with pytest.raises(DataError, match=r"values must be >= 0.*got -2"):
        ALS(factors=2, iterations=1).fit(Interactions.from_frame(frame))
    model = ALS(factors=2, iterations=1).fit(planted_data())
    bad = Histories.from_lists([[0, 1]], model.n_items, values=[[1.0, -1.0]])
    with pytest.raises(DataError, match="histories values must be >= 0"):
        model.score(bad)
