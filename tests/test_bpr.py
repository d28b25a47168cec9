"""BPR (Rendle et al. 2009): the conformance suite, the negative samplers, training and
fold-in progress measured by AUC, planted structure, ML-100K floor, parameter errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

from conformance import RecommenderConformance, checkerboard_data, checkerboard_top1, planted_data
from conftest import PEER_SPLIT
from recstack.data import Histories
from recstack.data.splits import Split, leave_last_out
from recstack.data.synthetic import make_shop
from recstack.errors import ConfigError
from recstack.evaluation import evaluate
from recstack.models import Popularity, Recommender
from recstack.models import bpr as B
from recstack.models.bpr import BPR

FAST = dict(factors=8, learning_rate=0.05, iterations=30, fold_in_iterations=10, num_threads=1)


class TestBPR(RecommenderConformance):
    def make_model(self) -> Recommender:
        return BPR(**FAST)  # type: ignore[arg-type]


class TestBPRPopularitySampling(RecommenderConformance):
    def make_model(self) -> Recommender:
        return BPR(**FAST, negative_sampling="popularity", popularity_beta=0.75, seed=3)  # type: ignore[arg-type]


def auc(scores: np.ndarray, positives: sp.csr_matrix) -> np.ndarray:
    """Per-row AUC of ``scores`` (n, n_items): positives against every other item (ties 1/2)."""
    pos = positives.toarray() > 0
    ranks = stats.rankdata(scores, axis=1)  # average ranks: ties count one half
    n_pos = pos.sum(axis=1)
    n_neg = pos.shape[1] - n_pos
    return (np.where(pos, ranks, 0).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


# --------------------------------------------------------------------- samplers
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 1.7])
def test_alias_table_is_exact(beta: float) -> None:
    counts = np.random.default_rng(1).integers(0, 40, size=57).astype(np.float64)
    weights = np.where(counts > 0, counts**beta, 0.0)
    prob, alias = B._alias_table(weights)
    n = len(weights)
    # column j keeps itself with prob[j] and hands the rest to alias[j]
    implied = prob / n + np.bincount(alias, weights=(1.0 - prob) / n, minlength=n)
    np.testing.assert_allclose(implied, weights / weights.sum(), atol=1e-12)


@pytest.mark.parametrize("beta", [0.5, 1.0])
def test_popularity_sampler_frequencies(beta: float) -> None:
    counts = np.array([0, 1, 2, 5, 10, 20, 40, 80, 3, 0, 7, 150], dtype=np.float64)
    weights = np.where(counts > 0, counts**beta, 0.0)
    prob, alias = B._alias_table(weights)
    draws = B._draw_negatives(200_000, len(counts), prob, alias, 7)
    observed = np.bincount(draws, minlength=len(counts))
    assert observed[counts == 0].sum() == 0  # items without users are never negatives
    used = counts > 0
    expected = weights[used] / weights.sum() * len(draws)
    assert stats.chisquare(observed[used], expected).pvalue > 1e-3
    # the test has power: the other exponent is rejected
    other = np.where(used, counts ** (1.5 - beta), 0.0)[used]
    assert stats.chisquare(observed[used], other / other.sum() * len(draws)).pvalue < 1e-9


def test_uniform_sampler_frequencies() -> None:
    empty_f, empty_i = np.zeros(0), np.zeros(0, np.int32)
    draws = B._draw_negatives(100_000, 13, empty_f, empty_i, 3)
    observed = np.bincount(draws, minlength=13)
    assert len(observed) == 13
    assert stats.chisquare(observed).pvalue > 1e-3


def test_model_sampler_follows_popularity() -> None:
    data = planted_data(seed=5)
    model = BPR(**FAST, negative_sampling="popularity", popularity_beta=2.0).fit(data)  # type: ignore[arg-type]
    n_users = np.bincount(data.matrix.indices, minlength=data.n_items).astype(np.float64)
    draws = B._draw_negatives(100_000, data.n_items, model._prob, model._alias, 1)
    expected = n_users**2 / np.sum(n_users**2) * len(draws)
    assert stats.chisquare(np.bincount(draws, minlength=data.n_items), expected).pvalue > 1e-3


# --------------------------------------------------------------------- training
def test_training_auc_rises_over_iterations() -> None:
    data = planted_data(n_users=80, n_items=48, seed=2)
    aucs = []
    for n in (1, 3, 10, 40):
        m = BPR(factors=8, learning_rate=0.05, iterations=n, num_threads=1, seed=4).fit(data)
        aucs.append(auc(m.user_factors_ @ m.item_factors_.T, data.matrix).mean())
    assert np.all(np.diff(aucs) > 0), aucs
    assert aucs[0] < 0.7 and aucs[-1] > 0.9, aucs
    # the sampled per-iteration AUC the kernel counts rises too
    assert m.train_auc_.shape == (40,) and m.train_auc_[-5:].mean() > m.train_auc_[:5].mean()


def test_single_thread_is_reproducible_and_threads_learn_alike() -> None:
    data = planted_data(seed=6)
    a = BPR(**FAST, seed=9).fit(data)  # type: ignore[arg-type]
    b = BPR(**FAST, seed=9).fit(data)  # type: ignore[arg-type]
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    c = BPR(**FAST, seed=10).fit(data)  # type: ignore[arg-type]
    assert not np.array_equal(a.item_factors_, c.item_factors_)
    # Hogwild on two threads draws the same triples; races only perturb the result slightly
    two = BPR(**{**FAST, "num_threads": 2}, seed=9).fit(data)  # type: ignore[arg-type]
    auc_1 = auc(a.user_factors_ @ a.item_factors_.T, data.matrix).mean()
    auc_2 = auc(two.user_factors_ @ two.item_factors_.T, data.matrix).mean()
    assert auc_2 == pytest.approx(auc_1, abs=0.02)


def test_verify_negative_redraws_positives() -> None:
    # user 0 used every item but the last; user 1 used the even items
    n = 40
    rows = [np.arange(n - 1), np.arange(0, n, 2)]
    pos = sp.csr_matrix(
        (
            np.ones(sum(map(len, rows))),
            (np.repeat([0, 1], [len(r) for r in rows]), np.hstack(rows)),
        ),
        shape=(2, n),
    )
    draws = B._draw_verified(pos.indptr, pos.indices, 1, 20_000, n, 11)
    assert np.all(draws % 2 == 1)  # never a positive, and (with 2^-32 odds) never skipped
    assert stats.chisquare(np.bincount(draws, minlength=n)[1::2]).pvalue > 1e-3
    # after 32 positive draws in a row a triple is skipped (-1): (39/40)^32 of the time
    draws = B._draw_verified(pos.indptr, pos.indices, 0, 20_000, n, 12)
    assert set(np.unique(draws).tolist()) == {-1, n - 1}
    assert np.mean(draws == -1) == pytest.approx((39 / 40) ** 32, abs=0.015)


# --------------------------------------------------------------------- fold-in
def test_fold_in_raises_auc_from_random_start() -> None:
    data = make_shop(n_users=300, n_items=120, seed=1, with_text=False)
    model = BPR(factors=16, learning_rate=0.05, iterations=30, num_threads=1).fit(data)
    hist = data.histories()
    pos = hist.to_csr()
    rng = np.random.default_rng(0)
    random_start = rng.uniform(-0.5, 0.5, size=(len(hist), 17)).astype(np.float32) / 16
    random_start[:, -1] = 1.0
    before = auc(random_start @ model.item_factors_.T, pos)
    after = auc(model.user_vectors(hist) @ model.item_factors_.T, pos)
    assert before.mean() < 0.7
    assert after.mean() > 0.85 and np.mean(after > before) > 0.95
    # as good on its training users as the trained vectors
    trained = auc(model.user_factors_ @ model.item_factors_.T, pos)
    assert after.mean() > trained.mean() - 0.02


def test_fold_in_is_per_history() -> None:
    data = planted_data(seed=7)
    model = BPR(**FAST).fit(data)  # type: ignore[arg-type]
    hist = data.histories(np.arange(6))
    vecs = model.user_vectors(hist)
    # the same items in another order (and repeated) give the same vector
    rows = [hist.items[hist.indptr[r] : hist.indptr[r + 1]] for r in range(6)]
    shuffled = Histories.from_lists([np.r_[r[::-1], r[:1]] for r in rows], data.n_items)
    np.testing.assert_array_equal(model.user_vectors(shuffled), vecs)
    # an empty history scores by the item biases alone
    empty = Histories.from_lists([[]], data.n_items)
    np.testing.assert_array_equal(model.score(empty)[0], model.item_factors_[:, -1])
    # a new seed changes the fold-in
    model.seed = 123
    assert not np.array_equal(model.user_vectors(hist), vecs)


def test_fold_in_moves_smoothly_with_the_history() -> None:
    """The fold-in's negatives are keyed by (seed, pass, item), not by the whole history:
    removing one item changes its own steps, not every draw, so the score changes it
    causes are signal rather than sampling noise, and two seeds agree on them: 0.94 here,
    where a stream seeded by the whole history (as before) gave 0.56 (0.06 on ML-100K)."""
    data = make_shop(n_users=300, n_items=120, seed=1, with_text=False)
    model = BPR(factors=16, learning_rate=0.05, iterations=30, num_threads=1).fit(data)
    rows = [data.histories([u]).items for u in range(8)]
    drops = []
    for seed in (0, 1):
        model.seed = seed
        per_seed = []
        for items in rows:
            items = np.unique(items)
            without = [np.delete(items, e) for e in range(len(items))]
            scores = model.score(Histories.from_lists([items, *without], data.n_items))
            per_seed.append(scores[0] - scores[1:])  # (m, n_items): each item's removal
        drops.append(np.concatenate(per_seed))
    assert np.corrcoef(drops[0].ravel(), drops[1].ravel())[0, 1] > 0.8


def test_fold_in_memo_returns_what_a_fresh_fold_in_gives() -> None:
    """The last batch is remembered (explanations fold the recommended histories in again);
    a hit must equal a fresh fold-in, and a new history, seed or fit must miss."""
    data = planted_data(seed=7)
    model = BPR(**FAST).fit(data)  # type: ignore[arg-type]
    hist = data.histories(np.arange(6))
    first = model.user_vectors(hist)
    first[:] = 0.0  # the caller's copy: the memo must not see this
    again = model.user_vectors(hist)
    fresh = BPR(**FAST).fit(data).user_vectors(hist)  # type: ignore[arg-type]
    np.testing.assert_array_equal(again, fresh)
    other = data.histories(np.arange(1, 7))
    np.testing.assert_array_equal(model.user_vectors(other)[:5], again[1:])
    model.seed = 5
    assert not np.array_equal(model.user_vectors(hist), again)
    model.seed = 0
    model.fit(data.select(np.arange(data.n_events - 3)))  # new item factors
    assert not np.array_equal(model.user_vectors(hist), again)


# --------------------------------------------------------------------- structure
def test_checkerboard() -> None:
    data = checkerboard_data(50)
    model = BPR(factors=8, learning_rate=0.05, iterations=50, num_threads=1).fit(data)
    assert checkerboard_top1(model, data) == 1.0


def test_planted_clusters_on_make_shop() -> None:
    data = make_shop(n_users=600, n_items=200, seed=3, with_text=False, seq_strength=0.0)
    split = leave_last_out(data)
    model = BPR(factors=16, learning_rate=0.05, iterations=30, num_threads=1).fit(split.train)
    ndcg = evaluate(model, split, progress=False).metrics["ndcg@10"]
    pop = evaluate(Popularity().fit(split.train), split, progress=False).metrics["ndcg@10"]
    assert ndcg > 1.3 * pop and ndcg > 0.15, (ndcg, pop)
    # the top-10 stays in the user's taste cluster
    recs = model.recommend(data.users.ids, k=10)
    assert data.item_features is not None and data.user_features is not None
    category = data.item_features["category"].to_numpy()
    cluster = data.user_features["cluster"].to_numpy()
    in_cluster = category[recs.index] == cluster[:, None]
    assert in_cluster.mean() > 0.6  # Popularity: 0.01


def test_ml100k_validation_floor() -> None:
    if not (PEER_SPLIT / "train.tsv").is_file():
        pytest.skip(f"peer split not found at {PEER_SPLIT}")
    from recstack.data.readers import load_dataset

    split = load_dataset(PEER_SPLIT)
    assert isinstance(split, Split)
    model = BPR(factors=32, iterations=20, fold_in_iterations=30, num_threads=2)
    ndcg = evaluate(model.fit(split.train), split, on="valid", progress=False).metrics["ndcg@10"]
    pop = evaluate(Popularity().fit(split.train), split, on="valid", progress=False)
    # measured .055 (the tuned defaults: .074; implicit's tuned BPR: .062)
    assert ndcg > 0.048 and ndcg > 1.2 * pop.metrics["ndcg@10"], (ndcg, pop.metrics)


# --------------------------------------------------------------------- parameters
@pytest.mark.parametrize(
    ("param", "value", "match"),
    [
        ("factors", -3, "factors must be a positive integer, got -3"),
        ("factors", 2.5, "factors must be a positive integer, got 2.5"),
        ("learning_rate", 0.0, "learning_rate must be a positive finite number, got 0.0"),
        ("learning_rate", float("nan"), "learning_rate must be .* got nan"),
        ("regularization", -0.1, "regularization must be a non-negative .* got -0.1"),
        ("iterations", 0, "iterations must be a positive integer, got 0"),
        ("negative_sampling", "hard", "negative_sampling must be one of .* got 'hard'"),
        ("popularity_beta", -1, "popularity_beta must be a non-negative .* got -1"),
        ("verify_negative", "yes", "verify_negative must be a bool, got 'yes'"),
        ("fold_in_iterations", 0, "fold_in_iterations must be a positive integer, got 0"),
        ("fold_in_learning_rate", -1.0, "fold_in_learning_rate must be a positive .* got -1.0"),
        ("num_threads", -1, "num_threads must be an integer >= 0, got -1"),
        ("seed", "0", "seed must be an integer, got '0'"),
    ],
)
def test_bad_parameters(param: str, value: object, match: str) -> None:
    data = planted_data()
    with pytest.raises(ConfigError, match=match):
        BPR(**{param: value}).fit(data)  # type: ignore[arg-type]
