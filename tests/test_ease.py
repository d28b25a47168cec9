"""EASE: conformance, the closed form against a naive float64 solve, structure, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conformance import RecommenderConformance, checkerboard_data, checkerboard_top1
from recstack.data import Histories, IdMap, Interactions, leave_last_out, make_shop
from recstack.errors import ConfigError
from recstack.evaluation import evaluate
from recstack.models import Popularity, Recommender
from recstack.models.ease import EASE, ease_memory_gb


class TestEASE(RecommenderConformance):
    def make_model(self) -> Recommender:
        return EASE(l2=10.0)


def _naive_weights(x: np.ndarray, l2: float) -> np.ndarray:
    """Steck's closed form in float64, written the obvious way."""
    p = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    b = np.eye(x.shape[1]) - p @ np.diag(1.0 / np.diag(p))
    np.fill_diagonal(b, 0.0)  # already 0 up to rounding
    return b


def _dense_log(seed: int = 0, n_users: int = 40, n_items: int = 70) -> Interactions:
    """Ratings 1-5 on about half the pairs; n_items > n_users, so l2 is what makes G
    invertible; item 69 has no user at all."""
    rng = np.random.default_rng(seed)
    u, i = np.nonzero(rng.random((n_users, n_items - 1)) < 0.5)
    df = pd.DataFrame({"user_id": u, "item_id": i, "rating": rng.integers(1, 6, len(u))})
    return Interactions.from_frame(
        df, users=IdMap(np.arange(n_users), "user"), items=IdMap(np.arange(n_items), "item")
    )


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("l2", [0.5, 30.0])
def test_matches_naive_closed_form(binary: bool, l2: float) -> None:
    data = _dense_log()
    x = data.matrix.toarray().astype(np.float64)
    if binary:
        x = (x > 0).astype(np.float64)
    model = EASE(l2=l2, binary=binary).fit(data)
    expected = _naive_weights(x, l2)
    assert model.weights_.dtype == np.float32 and model.weights_.flags.c_contiguous
    # float32 solves are accurate to about cond(G + l2 I) x float32 epsilon
    cond = np.linalg.cond(x.T @ x + l2 * np.eye(x.shape[1]))
    tol = 4 * cond * np.finfo(np.float32).eps
    assert tol < 0.05  # the check still has teeth
    scale = np.abs(expected).max()
    np.testing.assert_allclose(model.weights_, expected, rtol=0, atol=tol * scale)
    assert np.all(np.diag(model.weights_) == 0)
    scores = model.score(data.histories())
    np.testing.assert_allclose(scores, x @ expected, rtol=0, atol=tol * np.abs(x @ expected).max())


def test_contributions_sum_to_scores_and_count_repeats_once() -> None:
    data = _dense_log(seed=1)
    model = EASE(l2=5.0, binary=False).fit(data)
    # row 0 repeats item 3 (values 2 then 4: the last one counts), row 2 is empty
    hist = Histories.from_lists([[3, 7, 3, 11], [5], []], data.n_items, [[2, 1, 4, 3], [5], []])
    targets = np.array([20, 6, 9])
    parts = model.contributions(hist, targets)
    assert parts.shape == (len(hist.items),) and parts.dtype == np.float32
    w = model.weights_
    np.testing.assert_allclose(
        parts, [0.0, 1 * w[7, 20], 4 * w[3, 20], 3 * w[11, 20], 5 * w[5, 6]], rtol=1e-6
    )
    scores = model.score(hist)
    sums = np.bincount(hist.rows, weights=parts, minlength=len(hist))
    np.testing.assert_allclose(sums, scores[np.arange(3), targets], rtol=1e-5, atol=1e-7)
    with pytest.raises(ConfigError, match="one item per history"):
        model.contributions(hist, targets[:2])


def test_similar_items_rank_by_weights() -> None:
    data = _dense_log(seed=2)
    model = EASE(l2=5.0).fit(data)
    query = 4
    sims = model.similar_items([data.items.ids[query]], k=6)
    row = model.weights_[query].astype(np.float64)
    row[query] = -np.inf
    expected = np.lexsort((np.arange(len(row)), -row))[:6]
    np.testing.assert_array_equal(sims.index[0], expected)
    np.testing.assert_allclose(sims.scores[0], row[expected], rtol=1e-6)


def test_checkerboard() -> None:
    data = checkerboard_data()
    assert checkerboard_top1(EASE(l2=1.0).fit(data), data) == 1.0


def test_planted_clusters_recovered() -> None:
    data = make_shop(n_users=600, n_items=200, seq_strength=0.0, seed=0)
    split = leave_last_out(data)
    model = EASE(l2=50.0).fit(split.train)
    ndcg = evaluate(model, split, on="valid", progress=False).metrics["ndcg@10"]
    pop = evaluate(Popularity().fit(split.train), split, on="valid", progress=False)
    assert ndcg > 0.25 and ndcg > 3 * pop.metrics["ndcg@10"]
    # the top-10 of a user come mostly from their taste cluster (82% of the training
    # events do; 1 in 8 at random)
    recs = model.recommend(data.users.ids, k=10)
    assert data.item_features is not None and data.user_features is not None
    category = data.item_features["category"].to_numpy()[recs.index]
    cluster = data.user_features["cluster"].to_numpy()[:, None]
    assert np.mean(category == cluster) > 0.7


def test_memory_estimate_and_error() -> None:
    assert ease_memory_gb(2**14) == pytest.approx(2.0)  # 2 x 16384^2 x 4 bytes
    data = _dense_log()  # 70 items: 39,200 bytes
    with pytest.raises(ConfigError, match=r"needs about 0\.0 GB for 70 items.*itemknn"):
        EASE(max_memory_gb=1e-6).fit(data)
    big = Interactions.from_frame(
        pd.DataFrame({"user_id": [0], "item_id": [0]}), items=IdMap(np.arange(200_000), "item")
    )
    # fails before allocating anything (the weights alone would take 149 GB)
    with pytest.raises(ConfigError, match=r"needs about 298\.0 GB for 200,000 items"):
        EASE().fit(big)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"l2": 0.0}, "l2 must be a positive number, got 0.0"),
        ({"l2": -3}, "l2 must be a positive number, got -3"),
        ({"l2": float("nan")}, "l2 must be a positive number, got nan"),
        ({"l2": "100"}, "l2 must be a positive number, got '100'"),
        ({"max_memory_gb": 0}, "max_memory_gb must be a positive number, got 0"),
        ({"binary": "yes"}, "binary must be True or False, got 'yes'"),
    ],
)
def test_bad_parameters(params: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EASE(**params).fit(_dense_log())  # type: ignore[arg-type]


def test_ml100k_peer_split_refit_quality() -> None:
    from conftest import PEER_SPLIT
    from recstack.data import Split, load_dataset

    if not (PEER_SPLIT / "train.tsv").is_file():
        pytest.skip(f"peer split not found at {PEER_SPLIT}")
    split = load_dataset(PEER_SPLIT)
    assert isinstance(split, Split)
    refit = Split(split.test_history(), None, split.test)
    ndcg = evaluate(EASE().fit(refit.train), refit, progress=False).metrics["ndcg@10"]
    # the peers' numpy EASE refit on train + valid: 0.0722919825715723 (".0723")
    assert ndcg >= 0.0722919


def test_docstring_examples() -> None:
    import doctest

    import recstack.models.ease as module

    result = doctest.testmod(module, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0


def test_half_life_weighs_recent_history_items_more() -> None:
    data = _dense_log(seed=1)
    model = EASE(l2=5.0, binary=False, half_life=2.0).fit(data)
    hist = Histories.from_lists([[3, 7, 3, 11], [5], []], data.n_items, [[2, 1, 4, 3], [5], []])
    targets = np.array([20, 6, 9])
    w = model.weights_
    # positions from the end: 11 -> 0, 3 (its last event) -> 1, 7 -> 2
    d = [2 ** (-p / 2) for p in (2, 1, 0)]
    expected = [0.0, 1 * d[0] * w[7, 20], 4 * d[1] * w[3, 20], 3 * d[2] * w[11, 20], 5 * w[5, 6]]
    parts = model.contributions(hist, targets)
    np.testing.assert_allclose(parts, expected, rtol=1e-5)
    sums = np.bincount(hist.rows, weights=parts, minlength=len(hist))
    np.testing.assert_allclose(sums, model.score(hist)[np.arange(3), targets], rtol=1e-5, atol=1e-7)
    for bad in (0.0, -1.0, "2", True):
        with pytest.raises(ConfigError, match="half_life"):
            EASE(half_life=bad).fit(data)  # type: ignore[arg-type]
