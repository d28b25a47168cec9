"""Calibrated re-ranking (Steck 2018): the miscalibration KL against a hand-checked case
and a brute-force loop, the greedy against a brute-force greedy, and the trade-off."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recstack.data import Histories
from recstack.errors import ConfigError, DataError
from recstack.ranking import Calibrated, miscalibration, topk
from recstack.ranking.calibration import ALPHA, item_distributions, user_distributions
from recstack.ranking.rerank import gather


def _kl_reference(items: list[int], history: list[int], cats: np.ndarray, alpha: float) -> float:
    """C_KL written from the paper's definitions, one user at a time."""
    dist = cats / np.maximum(cats.sum(axis=1, keepdims=True), 1e-300)
    labeled = [i for i in history if cats[i].sum() > 0]
    if not labeled:
        return float("nan")
    p = dist[labeled].mean(axis=0)
    listed = [i for i in items if i >= 0 and cats[i].sum() > 0]
    q = dist[listed].mean(axis=0) if listed else np.zeros(cats.shape[1])
    q_tilde = (1 - alpha) * q + alpha * p
    on = p > 0
    return float(np.sum(p[on] * np.log(p[on] / q_tilde[on])))


@pytest.fixture
def data() -> tuple[np.ndarray, Histories, np.ndarray, np.ndarray]:
    """40 items with weighted categories (some none), 6 users (one without a categorized
    history, one empty), 15 candidates each."""
    rng = np.random.default_rng(11)
    cats = (rng.random((40, 5)) < 0.35) * rng.integers(1, 3, size=(40, 5)).astype(float)
    cats[:4] = 0.0
    hist = [rng.choice(40, size=rng.integers(1, 12)).tolist() for _ in range(4)]
    hist += [[0, 1, 2], []]  # items 0-3 have no category
    histories = Histories.from_lists(hist, 40)
    cand = np.stack([rng.permutation(40)[:15] for _ in range(6)])
    scores = rng.normal(size=(6, 15))
    return cats, histories, cand, scores


def test_miscalibration_by_hand() -> None:
    """History: one Action film, one Action+Comedy film -> p = (3/4, 1/4). A list of one
    Comedy film: q = (0, 1), q~ = (0.0075, 0.9925)."""
    cats = np.array([[1, 0], [1, 1], [0, 1]])
    h = Histories.from_lists([[0, 1]], 3)
    p, q = np.array([0.75, 0.25]), np.array([0.0, 1.0])
    q_tilde = 0.99 * q + 0.01 * p
    expected = float(np.sum(p * np.log(p / q_tilde)))
    assert miscalibration(np.array([[2, -1]]), h, cats)[0] == pytest.approx(expected, rel=1e-12)
    assert miscalibration(np.array([[1, 0]]), h, cats)[0] == pytest.approx(0.0, abs=1e-12)
    # a list without a categorized item: q = 0, KL = log(1 / alpha)
    assert miscalibration(np.array([[-1]]), h, cats)[0] == pytest.approx(np.log(1 / ALPHA))


def test_miscalibration_matches_brute_force(
    data: tuple[np.ndarray, Histories, np.ndarray, np.ndarray],
) -> None:
    cats, histories, cand, _ = data
    lists = cand[:, :7].copy()
    lists[1, 5:] = -1
    got = miscalibration(lists, histories, sp.csr_matrix(cats), alpha=0.05)
    for r in range(len(lists)):
        history = histories.items[histories.indptr[r] : histories.indptr[r + 1]].tolist()
        expected = _kl_reference(lists[r].tolist(), history, cats, 0.05)
        np.testing.assert_allclose(got[r], expected, rtol=1e-10, atol=1e-12)
    assert np.isnan(got[4]) and np.isnan(got[5])  # no categorized history


def test_distributions() -> None:
    cats = np.array([[2.0, 2.0], [0.0, 0.0], [0.0, 3.0]])
    dist = item_distributions(cats)
    np.testing.assert_allclose(dist.toarray(), [[0.5, 0.5], [0, 0], [0, 1]])
    p = user_distributions(Histories.from_lists([[0, 2, 2], [1]], 3), dist)
    np.testing.assert_allclose(p.toarray(), [[1 / 6, 5 / 6], [0, 0]])  # repeats count
    with pytest.raises(DataError, match="non-negative"):
        item_distributions(-cats)


@pytest.mark.parametrize("lam", [0.2, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("alpha", [ALPHA, 0.3])
@pytest.mark.parametrize("discount", [True, False])
def test_greedy_matches_brute_force(
    data: tuple[np.ndarray, Histories, np.ndarray, np.ndarray],
    lam: float,
    alpha: float,
    discount: bool,
) -> None:
    """Step s (0-based) lists the candidate maximizing (1 - lam) w_s rel - lam
    C_KL(list + candidate), w_s = 1 / log2(s + 2) with the DCG discount and 1 without
    (Steck's objective), with C_KL from the brute-force definition."""
    cats, histories, cand, scores = data
    rr = Calibrated(lam, alpha, discount=discount).fit(categories=cats)
    got = rr.rerank(cand, scores, 6, histories)
    for r in range(len(cand)):
        rel = (scores[r] - scores[r].min()) / (scores[r].max() - scores[r].min())
        history = histories.items[histories.indptr[r] : histories.indptr[r + 1]].tolist()
        chosen: list[int] = []
        for s in range(6):
            weight = 1 / np.log2(s + 2) if discount else 1.0
            objective = np.full(len(cand[r]), -np.inf)
            for c in set(range(len(cand[r]))) - set(chosen):
                kl = _kl_reference(cand[r, [*chosen, c]].tolist(), history, cats, alpha)
                objective[c] = (1 - lam) * weight * rel[c] - lam * np.nan_to_num(kl)
            chosen.append(int(np.argmax(objective)))
        assert got[r].tolist() == chosen


def test_discount_changes_the_lists(
    data: tuple[np.ndarray, Histories, np.ndarray, np.ndarray],
) -> None:
    """The two objectives are different re-rankers (the parametrized test above would pass
    for both if the flag were ignored), and the spec records the non-default one."""
    cats, histories, cand, scores = data
    lists = [
        Calibrated(0.2, discount=d).fit(categories=cats).rerank(cand, scores, 6, histories)
        for d in (True, False)
    ]
    assert not np.array_equal(*lists)
    assert Calibrated(0.2, discount=False).spec == "calibrate:0.2,discount=false"
    assert Calibrated(0.2).spec == "calibrate:0.2"


def test_kl_falls_as_lambda_grows(
    data: tuple[np.ndarray, Histories, np.ndarray, np.ndarray],
) -> None:
    """Mean miscalibration of the re-ranked top 10 from 40 candidates decreases along the
    sweep; lam = 0 is the plain ranking."""
    cats, _, _, _ = data
    rng = np.random.default_rng(2)
    histories = Histories.from_lists([rng.choice(40, size=8).tolist() for _ in range(50)], 40)
    scores = rng.normal(size=(50, 40)).astype(np.float32)
    plain, _ = topk(scores.copy(), 10)
    means = []
    for lam in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        rr = Calibrated(lam).fit(categories=cats)
        idx, _ = rr.select(scores.copy(), 10, candidates=40, histories=histories)
        if lam == 0.0:
            np.testing.assert_array_equal(idx, plain)
        means.append(np.nanmean(miscalibration(idx, histories, cats)))
    assert np.all(np.diff(means) < 0), means


def test_calibration_needs_histories() -> None:
    rr = Calibrated(0.5).fit(categories=np.eye(3))
    with pytest.raises(ConfigError, match=r"calibrate:0\.5 needs the users' histories"):
        rr.rerank(np.array([[0, 1]]), np.array([[1.0, 0.5]]), 1)
    with pytest.raises(ConfigError, match=r"alpha must be a number in \(0, 1\)"):
        Calibrated(0.5, alpha=0.0)
    with pytest.raises(DataError, match="histories refer to 4 items, the categories to 3"):
        rr.rerank(np.array([[0, 1]]), np.array([[1.0, 0.5]]), 1, Histories.from_lists([[0]], 4))


def test_reranked_items_are_the_candidates(
    data: tuple[np.ndarray, Histories, np.ndarray, np.ndarray],
) -> None:
    cats, histories, cand, scores = data
    pos = Calibrated(0.7).fit(categories=cats).rerank(cand, scores, 10, histories)
    items = gather(cand, pos, -1)
    for r in range(len(cand)):
        assert len(set(items[r].tolist())) == 10 and set(items[r]) <= set(cand[r])
