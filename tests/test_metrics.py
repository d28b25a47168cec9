"""Metric functions against trec_eval (pytrec_eval) and brute-force loops."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recstack.errors import DataError
from recstack.evaluation import metrics as M

pytrec_eval = pytest.importorskip("pytrec_eval")


@st.composite
def ranked_runs(draw: st.DrawFn) -> tuple[int, list[list[int]], list[set[int]]]:
    """K, each user's top list (1..K distinct items; shorter lists are padded), and each
    user's relevant set (1+ items, hit or not)."""
    n_items = draw(st.integers(5, 30))
    k = draw(st.integers(1, 10))
    n_users = draw(st.integers(1, 8))
    items = st.integers(0, n_items - 1)
    lists = [
        draw(st.lists(items, min_size=1, max_size=min(k, n_items), unique=True))
        for _ in range(n_users)
    ]
    relevant = [draw(st.sets(items, min_size=1, max_size=8)) for _ in range(n_users)]
    return k, lists, relevant


def _hits(k: int, lists: list[list[int]], relevant: list[set[int]]) -> np.ndarray:
    hits = np.zeros((len(lists), k), dtype=bool)
    for u, (lst, rel) in enumerate(zip(lists, relevant, strict=True)):
        hits[u, : len(lst)] = [i in rel for i in lst]
    return hits


@settings(max_examples=150, deadline=None)
@given(ranked_runs())
def test_accuracy_metrics_match_trec_eval(run: tuple[int, list[list[int]], list[set[int]]]) -> None:
    k, lists, relevant = run
    qrel = {str(u): {f"d{i}": 1 for i in rel} for u, rel in enumerate(relevant)}
    # the run holds only the top K (distinct decreasing scores), so recip_rank is MRR@K
    trec_run = {
        str(u): {f"d{i}": float(k - r) for r, i in enumerate(lst)} for u, lst in enumerate(lists)
    }
    measures = {f"ndcg_cut.{k}", f"map_cut.{k}", f"P.{k}", f"recall.{k}", "recip_rank",
                f"success.{k}", "set_F"}  # fmt: skip
    ref = pytrec_eval.RelevanceEvaluator(qrel, measures).evaluate(trec_run)
    hits = _hits(k, lists, relevant)
    n_rel = np.array([len(r) for r in relevant])
    ours = {
        f"ndcg_cut_{k}": M.ndcg(hits, n_rel),
        f"map_cut_{k}": M.average_precision(hits, n_rel),
        f"P_{k}": M.precision(hits),
        f"recall_{k}": M.recall(hits, n_rel),
        "recip_rank": M.mrr(hits),
        f"success_{k}": M.hit_rate(hits),
    }
    f1 = M.f1(hits, n_rel)
    for u in range(len(lists)):
        for key, values in ours.items():
            assert values[u] == pytest.approx(ref[str(u)][key], abs=1e-6), (key, u)
        if len(lists[u]) == k:  # set_F divides by the list length, F1@K by K
            assert f1[u] == pytest.approx(ref[str(u)]["set_F"], abs=1e-6)


def test_closed_forms() -> None:
    hits = np.array([[False, True, False, True], [False, False, False, False]])
    n_rel = np.array([3, 2])
    w2, w4 = 1 / math.log2(3), 1 / math.log2(5)
    np.testing.assert_allclose(M.ndcg(hits, n_rel), [(w2 + w4) / (1 + w2 + 1 / 2), 0.0])
    np.testing.assert_allclose(M.average_precision(hits, n_rel), [(1 / 2 + 2 / 4) / 3, 0.0])
    np.testing.assert_allclose(M.recall(hits, n_rel), [2 / 3, 0.0])
    np.testing.assert_allclose(M.precision(hits), [0.5, 0.0])
    np.testing.assert_allclose(M.f1(hits, n_rel), [2 * 0.5 * (2 / 3) / (0.5 + 2 / 3), 0.0])
    np.testing.assert_allclose(M.mrr(hits), [0.5, 0.0])
    np.testing.assert_allclose(M.hit_rate(hits), [1.0, 0.0])


def test_no_relevant_items_is_undefined_not_zero() -> None:
    hits = np.zeros((1, 3), dtype=bool)
    n_rel = np.array([0])
    assert np.isnan(M.ndcg(hits, n_rel)[0]) and np.isnan(M.recall(hits, n_rel)[0])
    assert np.isnan(M.average_precision(hits, n_rel)[0]) and np.isnan(M.f1(hits, n_rel)[0])
    assert M.precision(hits)[0] == 0.0


def test_bad_inputs() -> None:
    with pytest.raises(DataError, match="2-D bool"):
        M.ndcg(np.ones((2, 3)), np.array([1, 1]))
    with pytest.raises(DataError, match="row 0 has 2 hits but only 1 relevant"):
        M.recall(np.array([[True, True]]), np.array([1]))
    with pytest.raises(DataError, match="outside"):
        M.coverage(np.array([[0, 7]]), 5)
    with pytest.raises(DataError, match="3 predictions for 2"):
        M.rmse(np.zeros(3), np.zeros(2))


def test_rmse_mae() -> None:
    pred, true = np.array([1.0, 2.0, 4.0]), np.array([1.0, 4.0, 3.0])
    assert M.rmse(pred, true) == pytest.approx(math.sqrt(5 / 3))
    assert M.mae(pred, true) == pytest.approx(1.0)


# ---------------------------------------------------------------------------- beyond accuracy
@st.composite
def rec_lists(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    """An (n, K) index matrix of distinct items per row, -1 padding at the end."""
    n_items = draw(st.integers(2, 15))
    k = draw(st.integers(1, min(6, n_items)))
    n = draw(st.integers(1, 6))
    index = np.full((n, k), -1, dtype=np.int32)
    for u in range(n):
        lst = draw(st.lists(st.integers(0, n_items - 1), max_size=k, unique=True))
        index[u, : len(lst)] = lst
    return index, n_items


def _lists(index: np.ndarray) -> list[list[int]]:
    return [[int(i) for i in row if i >= 0] for row in index]


@settings(max_examples=100, deadline=None)
@given(rec_lists())
def test_coverage_and_gini_brute_force(case: tuple[np.ndarray, int]) -> None:
    index, n_items = case
    lists = _lists(index)
    assert M.coverage(index, n_items) == pytest.approx(
        len({i for lst in lists for i in lst}) / n_items
    )
    counts = [sum(lst.count(i) for lst in lists) for i in range(n_items)]
    total = sum(counts)
    # Gini as the mean absolute difference over twice the mean (a different formula)
    mad = sum(abs(a - b) for a in counts for b in counts) / n_items**2
    ref = 0.0 if total == 0 else mad / (2 * total / n_items)
    assert M.gini(index, n_items) == pytest.approx(ref, abs=1e-12)


def test_gini_extremes() -> None:
    assert M.gini(np.array([[0, 1], [2, 3]]), 4) == 0.0
    # one item takes every slot of a 4-item catalog: (n - 1) / n
    assert M.gini(np.array([[0], [0], [0]]), 4) == pytest.approx(0.75)


@settings(max_examples=100, deadline=None)
@given(rec_lists(), st.integers(0, 10_000))
def test_novelty_and_arp_brute_force(case: tuple[np.ndarray, int], seed: int) -> None:
    index, n_items = case
    rng = np.random.default_rng(seed)
    n_users = 20
    pop = rng.integers(0, n_users + 1, size=n_items)
    nov, avg = M.novelty(index, pop, n_users), M.arp(index, pop)
    for u, lst in enumerate(_lists(index)):
        if not lst:
            assert np.isnan(nov[u]) and np.isnan(avg[u])
            continue
        info = [-math.log2(pop[i] / n_users if pop[i] else 1 / (n_users + 1)) for i in lst]
        assert nov[u] == pytest.approx(sum(info) / len(lst))
        assert avg[u] == pytest.approx(sum(pop[i] for i in lst) / len(lst))


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return 0.0 if na == 0 or nb == 0 else float(a @ b / (na * nb))


@settings(max_examples=100, deadline=None)
@given(rec_lists(), st.integers(0, 10_000), st.booleans())
def test_ild_brute_force(case: tuple[np.ndarray, int], seed: int, sparse: bool) -> None:
    index, n_items = case
    rng = np.random.default_rng(seed)
    vecs = (rng.random((n_items, 5)) < 0.4).astype(np.float64)  # multi-hot, some all-zero
    got = M.ild(index, sp.csr_matrix(vecs) if sparse else vecs)
    for u, lst in enumerate(_lists(index)):
        if len(lst) < 2:
            assert np.isnan(got[u])
            continue
        dist = [1 - _cos(vecs[a], vecs[b]) for a, b in itertools.combinations(lst, 2)]
        # the sparse kernel accumulates in float32
        assert got[u] == pytest.approx(sum(dist) / len(dist), abs=1e-6 if sparse else 1e-12)


def test_ild_prefixes_and_chunks_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    index = np.argsort(rng.random((50, 30)), axis=1)[:, :8].astype(np.int32)
    index[3, 5:] = -1
    vecs = rng.standard_normal((30, 4))
    ks = [1, 2, 5, 8]
    each = np.column_stack([M.ild(index[:, :k], vecs) for k in ks])
    np.testing.assert_allclose(M.ild_prefixes(index, vecs, ks), each)
    np.testing.assert_allclose(M.ild_prefixes(index, sp.csr_matrix(vecs), ks), each, atol=1e-6)
    monkeypatch.setattr(M, "_ILD_CHUNK_VALUES", 1)
    np.testing.assert_allclose(M.ild_prefixes(index, vecs, ks), each)
    with pytest.raises(DataError, match=r"ks must lie in \[1, 8\]"):
        M.ild_prefixes(index, vecs, [9])
    np.testing.assert_allclose(M.ild(index[:0], sp.csr_matrix(vecs)), np.zeros(0))
