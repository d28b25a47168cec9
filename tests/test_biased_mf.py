"""BiasedMF: the conformance suite, closed forms, fold-in, rating accuracy and top-K on
planted low-rank ratings, the evaluator's RMSE/MAE, an ML-100K floor, bad parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conformance import RecommenderConformance
from recstack.data import Histories, IdMap, Interactions
from recstack.data.readers import load_dataset
from recstack.data.splits import Split
from recstack.errors import ConfigError, DataError, ModelFitError
from recstack.evaluation import evaluate
from recstack.models import Recommender, create_model
from recstack.models import biased_mf as bmf
from recstack.models.biased_mf import BiasedMF


class TestBiasedMFALS(RecommenderConformance):
    def make_model(self) -> Recommender:
        return BiasedMF(factors=4, iterations=5)


class TestBiasedMFSGD(RecommenderConformance):
    def make_model(self) -> Recommender:
        return BiasedMF(factors=4, method="sgd", iterations=10)


class TestBiasedMFBiasesOnly(RecommenderConformance):
    def make_model(self) -> Recommender:
        return BiasedMF(factors=0, iterations=3)


# ---------------------------------------------------------------------------- data
def planted_ratings(
    n_users: int = 300,
    n_items: int = 200,
    rank: int = 3,
    density: float = 0.25,
    noise: float = 0.1,
    seed: int = 0,
) -> tuple[Interactions, np.ndarray]:
    """Ratings ``3.5 + b_u + b_i + p_u . q_i + noise`` on a random ``density`` share of the
    cells; returns the data (IDs = indices) and the noise-free (n_users, n_items) truth."""
    rng = np.random.default_rng(seed)
    p = rng.normal(0, 0.6, (n_users, rank))
    q = rng.normal(0, 0.6, (n_items, rank))
    truth = 3.5 + rng.normal(0, 0.3, (n_users, 1)) + rng.normal(0, 0.3, n_items) + p @ q.T
    u, i = np.nonzero(rng.random((n_users, n_items)) < density)
    df = pd.DataFrame(
        {"user_id": u, "item_id": i, "rating": truth[u, i] + rng.normal(0, noise, len(u))}
    )
    data = Interactions.from_frame(
        df,
        rating_col="rating",
        users=IdMap(np.arange(n_users), "user"),
        items=IdMap(np.arange(n_items), "item"),
    )
    return data, truth


def random_split(data: Interactions, test: float = 0.2, seed: int = 0) -> Split:
    """A seeded random split of all events (not per user), one ID space."""
    mask = np.zeros(data.n_events, dtype=bool)
    mask[np.random.default_rng(seed).permutation(data.n_events)[: round(test * data.n_events)]] = 1
    return Split(data.select(~mask), None, data.select(mask))


def rmse(model: BiasedMF, split: Split) -> float:
    test = split.test
    pred = model.predict(split.train.histories(test.user), test.item)
    return float(np.sqrt(np.mean((pred - test.value) ** 2)))


@pytest.fixture(scope="module")
def planted() -> tuple[Split, np.ndarray]:
    data, truth = planted_ratings()
    return random_split(data), truth


# ---------------------------------------------------------------------------- accuracy
@pytest.mark.parametrize("method", ["als", "sgd"])
def test_beats_biases_on_planted_low_rank(planted: tuple[Split, np.ndarray], method: str) -> None:
    split, _ = planted
    mf = BiasedMF(factors=3, method=method, reg=0.02, iterations=None if method == "sgd" else 15)
    mf_rmse = rmse(mf.fit(split.train), split)
    bias_rmse = rmse(BiasedMF(factors=0).fit(split.train), split)
    # a bias-only baseline computed here: damped item means, then damped user residual means
    train, test = split.train, split.test
    mu = train.value.mean()
    b_i = np.bincount(train.item, train.value - mu, train.n_items) / (
        np.bincount(train.item, minlength=train.n_items) + 5
    )
    b_u = np.bincount(train.user, train.value - mu - b_i[train.item], train.n_users) / (
        np.bincount(train.user, minlength=train.n_users) + 5
    )
    ref_rmse = np.sqrt(np.mean((mu + b_u[test.user] + b_i[test.item] - test.value) ** 2))
    assert abs(bias_rmse - ref_rmse) < 0.03 * ref_rmse  # two bias-only baselines agree
    assert mf_rmse < 0.4 * min(bias_rmse, ref_rmse), (mf_rmse, bias_rmse, ref_rmse)
    assert mf_rmse < 0.2  # the noise is 0.1: the planted rank-3 structure is recovered


def test_top_k_finds_the_highest_true_ratings(planted: tuple[Split, np.ndarray]) -> None:
    split, truth = planted
    model = BiasedMF(factors=3, reg=0.02).fit(split.train)
    recs = model.recommend(split.train.users.ids, k=10)
    seen = split.train.matrix.toarray() > 0
    oracle = np.argsort(-np.where(seen, -np.inf, truth), axis=1, kind="stable")[:, :20]
    hits = [len(set(r) & set(o)) for r, o in zip(recs.index.tolist(), oracle.tolist(), strict=True)]
    assert np.mean(hits) / 10 > 0.9  # recommended items are in the true unseen top 20
    # biases alone recommend the same high-bias items to everybody: far worse
    flat = BiasedMF(factors=0).fit(split.train).recommend(split.train.users.ids, k=10)
    flat_hits = [
        len(set(r) & set(o)) for r, o in zip(flat.index.tolist(), oracle.tolist(), strict=True)
    ]
    assert np.mean(flat_hits) / 10 < 0.6


def test_ml100k_rating_floor(ml100k_dir: Path) -> None:
    data = load_dataset(ml100k_dir)
    assert isinstance(data, Interactions)
    split = random_split(data)
    mf_rmse = rmse(BiasedMF().fit(split.train), split)
    bias_rmse = rmse(BiasedMF(factors=0).fit(split.train), split)
    # Surprise's SVD with its defaults: about 0.935 on this split (benchmarks/bench_biased_mf.py)
    assert mf_rmse < 0.92, mf_rmse
    assert mf_rmse < bias_rmse - 0.02, (mf_rmse, bias_rmse)


# ---------------------------------------------------------------------------- closed forms
TINY = pd.DataFrame(
    {
        "user_id": [0, 0, 0, 1, 1, 2, 2],
        "item_id": [0, 1, 2, 0, 1, 1, 2],
        "rating": [5.0, 3.0, 4.0, 4.0, 1.0, 2.0, 5.0],
    }
)


def test_biases_only_one_sweep_closed_form() -> None:
    data = Interactions.from_frame(TINY, rating_col="rating")
    lam = 0.5
    model = BiasedMF(factors=0, bias_reg=lam, iterations=1).fit(data)
    u, i, r = TINY["user_id"].to_numpy(), TINY["item_id"].to_numpy(), TINY["rating"].to_numpy()
    mu = r.mean()
    # items first (user biases 0): b_i = sum(r - mu) / (n_i (1 + lam)), then the users
    b_i = np.bincount(i, r - mu) / (np.bincount(i) * (1 + lam))
    b_u = np.bincount(u, r - mu - b_i[i]) / (np.bincount(u) * (1 + lam))
    assert model.global_mean_ == pytest.approx(mu)
    np.testing.assert_allclose(model.item_bias_, b_i, rtol=1e-6)
    np.testing.assert_allclose(model.user_bias_, b_u, rtol=1e-6)


def test_biases_only_converge_to_the_joint_ridge_solution() -> None:
    data = Interactions.from_frame(TINY, rating_col="rating")
    lam = 0.3
    model = BiasedMF(factors=0, bias_reg=lam, iterations=100).fit(data)
    u, i, r = TINY["user_id"].to_numpy(), TINY["item_id"].to_numpy(), TINY["rating"].to_numpy()
    x = np.hstack([np.eye(3)[u], np.eye(3)[i]])  # one-hot users | items
    ridge = np.diag(lam * np.concatenate([np.bincount(u), np.bincount(i)]))
    beta = np.linalg.solve(x.T @ x + ridge, x.T @ (r - r.mean()))
    np.testing.assert_allclose(model.user_bias_, beta[:3], atol=1e-5)
    np.testing.assert_allclose(model.item_bias_, beta[3:], atol=1e-5)


def test_user_solve_is_the_ridge_least_squares() -> None:
    """One user's fold-in equals numpy's solve of the regularized normal equations."""
    data, _ = planted_ratings(n_users=40, n_items=30, density=0.5)
    model = BiasedMF(factors=4, reg=0.07, bias_reg=0.03, iterations=3).fit(data)
    hist = Histories.from_lists([[3, 7, 11, 20, 25]], model.n_items, [[4.0, 2.5, 5.0, 1.0, 3.0]])
    bias, factors = model.fold_in(hist)
    items = hist.items
    z = np.hstack([np.ones((5, 1)), model.item_factors_[items].astype(np.float64)])
    y = hist.values - model.global_mean_ - model.item_bias_[items]
    penalty = 5 * np.diag([0.03, 0.07, 0.07, 0.07, 0.07])
    x = np.linalg.solve(z.T @ z + penalty, z.T @ y)
    np.testing.assert_allclose(bias, x[:1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(factors[0], x[1:], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- fold-in
@pytest.mark.parametrize("method", ["als", "sgd"])
def test_fold_in_reproduces_trained_users(planted: tuple[Split, np.ndarray], method: str) -> None:
    train = planted[0].train
    model = BiasedMF(factors=5, method=method, iterations=4).fit(train)
    bias, factors = model.fold_in(train.histories())
    np.testing.assert_array_equal(bias, model.user_bias_)
    np.testing.assert_array_equal(factors, model.user_factors_)
    # so predictions from the history equal those of the stored parameters
    users, items = train.user[:500], train.item[:500]
    stored = (
        model.global_mean_
        + model.user_bias_[users]
        + model.item_bias_[items]
        + np.einsum("nf,nf->n", model.user_factors_[users], model.item_factors_[items])
    )
    unclipped = BiasedMF(**{**model.get_params(), "clip": False}).fit(train)
    np.testing.assert_allclose(unclipped.predict(train.histories(users), items), stored, rtol=1e-5)


def test_new_user_with_ratings_equals_known_user(planted: tuple[Split, np.ndarray]) -> None:
    train = planted[0].train
    model = BiasedMF(factors=3, clip=False).fit(train)
    known = train.histories([7])
    new = Histories(known.indptr, known.items, known.values, known.times, known.n_items)
    np.testing.assert_array_equal(model.score(new), model.score(known))
    empty = Histories.from_lists([[]], model.n_items)
    expected = model.global_mean_ + model.item_bias_
    np.testing.assert_allclose(model.score(empty)[0], expected, rtol=1e-6)
    items = np.arange(model.n_items)
    rep = empty.select(np.zeros(model.n_items, dtype=np.int64))
    np.testing.assert_allclose(model.predict(rep, items), expected, rtol=1e-6)


def test_score_is_the_unclipped_prediction(planted: tuple[Split, np.ndarray]) -> None:
    train = planted[0].train
    model = BiasedMF(factors=3, clip=False).fit(train)
    hist = train.histories(np.arange(5))
    rows = np.repeat(np.arange(5), model.n_items)
    items = np.tile(np.arange(model.n_items), 5)
    pred = model.predict(hist.select(rows), items).reshape(5, -1)
    np.testing.assert_allclose(model.score(hist), pred, rtol=1e-5, atol=1e-5)


def test_predict_clips_to_the_training_range(planted: tuple[Split, np.ndarray]) -> None:
    train = planted[0].train
    train = train.with_values(np.clip(train.value, 2.5, 4.5).astype(np.float32))
    model = BiasedMF(factors=3).fit(train)
    hist = train.histories(np.repeat(np.arange(20), model.n_items))
    pred = model.predict(hist, np.tile(np.arange(model.n_items), 20))
    raw = model.score(train.histories(np.arange(20))).ravel()
    lo, hi = train.value.min(), train.value.max()
    assert raw.min() < lo or raw.max() > hi  # the test would be vacuous otherwise
    np.testing.assert_allclose(pred, np.clip(raw, lo, hi), rtol=1e-5)


def test_predict_folds_each_distinct_history_once(
    planted: tuple[Split, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    train = planted[0].train
    model = BiasedMF(factors=3).fit(train)
    users = np.array([4, 2, 4, 4, 9, 2])
    items = np.array([0, 1, 2, 3, 4, 5])
    hist = train.histories(users)
    one_by_one = np.concatenate(
        [model.predict(hist.select([r]), items[r : r + 1]) for r in range(len(users))]
    )
    solved: list[int] = []
    fold = model._fold_in
    monkeypatch.setattr(model, "_fold_in", lambda rows: solved.append(rows.shape[0]) or fold(rows))
    np.testing.assert_allclose(model.predict(hist, items), one_by_one, rtol=1e-6)
    assert solved == [3]


def test_distinct_rows_matches_brute_force(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    lists = [rng.choice(6, size=int(rng.integers(0, 4)), replace=False) for _ in range(40)]
    values = [rng.integers(1, 3, len(x)).astype(float) for x in lists]
    m = Histories.from_lists(lists, 6, values).to_csr()
    first, inverse = bmf._distinct_rows(m)
    dense = m.toarray()
    _, ref_inverse = np.unique(dense, axis=0, return_inverse=True)
    assert len(first) == len(np.unique(dense, axis=0))
    np.testing.assert_array_equal(dense[first[inverse]], dense)
    # same partition as numpy's (labels may differ)
    pairs = set(zip(inverse.ravel().tolist(), ref_inverse.ravel().tolist(), strict=True))
    assert len(pairs) == len(first)
    # a hash collision (here: every hash equal) is caught: every row is then its own
    monkeypatch.setattr(bmf, "_mix64", lambda x: np.zeros_like(x))
    first, inverse = bmf._distinct_rows(m)
    np.testing.assert_array_equal(first, np.arange(40))
    np.testing.assert_array_equal(inverse, np.arange(40))


# ---------------------------------------------------------------------------- evaluator
def test_evaluator_reports_rmse_and_mae(planted: tuple[Split, np.ndarray]) -> None:
    split = planted[0]
    model = BiasedMF(factors=3, reg=0.02).fit(split.train)
    metrics = evaluate(model, split, progress=False).metrics
    test = split.test
    pred = model.predict(split.train.histories(test.user), test.item)
    assert metrics["rmse"] == pytest.approx(np.sqrt(np.mean((pred - test.value) ** 2)))
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(pred - test.value)))
    assert metrics["rmse"] < 0.2 and "ndcg@10" in metrics


def test_registry_and_save_keep_predictions(
    planted: tuple[Split, np.ndarray], tmp_path: Path
) -> None:
    train = planted[0].train
    model = create_model("biased-mf", factors=3, method="sgd").fit(train)
    assert isinstance(model, BiasedMF)
    loaded = Recommender.load(model.save(tmp_path / "m"))
    assert isinstance(loaded, BiasedMF)
    hist, items = train.histories([0, 1, 2]), np.array([5, 6, 7])
    np.testing.assert_array_equal(loaded.predict(hist, items), model.predict(hist, items))


def test_predict_input_errors(planted: tuple[Split, np.ndarray]) -> None:
    train = planted[0].train
    model = BiasedMF(factors=2, iterations=1).fit(train)
    hist = train.histories([0, 1])
    with pytest.raises(DataError, match="2 histories need 2 items"):
        model.predict(hist, np.array([1, 2, 3]))
    with pytest.raises(DataError, match=r"integers in \[0, 200\)"):
        model.predict(hist, np.array([1, 200]))
    with pytest.raises(DataError, match="integers"):
        model.predict(hist, np.array([1.0, 2.0]))
    with pytest.raises(DataError, match="201 items"):
        model.predict(Histories.from_lists([[0], [1]], 201), np.array([1, 2]))


# ---------------------------------------------------------------------------- parameters
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"factors": -3}, "factors must be a non-negative integer, got -3"),
        ({"factors": 2.5}, "factors must be a non-negative integer, got 2.5"),
        ({"method": "newton"}, "method must be one of 'als', 'sgd', got 'newton'"),
        ({"iterations": 0}, "iterations must be a positive integer or None, got 0"),
        ({"reg": 0.0}, "reg must be a positive number, got 0.0"),
        ({"reg": float("nan")}, "reg must be a positive number, got nan"),
        ({"bias_reg": -0.1}, "bias_reg must be a non-negative number, got -0.1"),
        ({"learning_rate": -1}, "learning_rate must be a positive number, got -1"),
        ({"init_std": 0}, "init_std must be a positive number, got 0"),
        ({"seed": "x"}, "seed must be an integer, got 'x'"),
        ({"clip": "yes"}, "clip must be True or False, got 'yes'"),
    ],
)
def test_bad_parameters(params: dict[str, object], message: str) -> None:
    data = Interactions.from_frame(TINY, rating_col="rating")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        BiasedMF(**params).fit(data)  # type: ignore[arg-type]


def test_diverging_sgd_is_a_fit_error(planted: tuple[Split, np.ndarray]) -> None:
    model = BiasedMF(factors=3, method="sgd", learning_rate=50.0, iterations=3)
    with pytest.raises(ModelFitError, match="non-finite"):
        model.fit(planted[0].train)
    assert not model.is_fitted
