"""topk against a brute-force lexsort reference (ties, exclusions, candidates, padding)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from recstack.errors import ConfigError
from recstack.ranking import topk

#: few distinct values, so ties are common; NaN and -inf must never be returned
VALUES = [-np.inf, np.nan, -1.0, 0.0, 0.5, 1.0, 2.0, np.inf]


def reference(
    scores: np.ndarray, k: int, exclude: np.ndarray | None, allowed: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per row: eligible items sorted by (-score, index), the first k, padded with -1/-inf."""
    n = scores.shape[0]
    index = np.full((n, k), -1, dtype=np.int32)
    value = np.full((n, k), -np.inf, dtype=np.float32)
    for r in range(n):
        ok = scores[r] > -np.inf  # False for NaN and -inf
        if exclude is not None:
            ok &= ~exclude[r]
        if allowed is not None:
            ok &= allowed
        cand = np.flatnonzero(ok)
        order = cand[np.lexsort((cand, -scores[r, cand]))][:k]
        index[r, : len(order)] = order
        value[r, : len(order)] = scores[r, order]
    return index, value


@st.composite
def problems(draw: st.DrawFn) -> tuple:
    n = draw(st.integers(0, 6))
    m = draw(st.integers(0, 25))
    k = draw(st.integers(1, 30))
    scores = draw(hnp.arrays(np.float32, (n, m), elements=st.sampled_from(VALUES)))
    exclude = draw(st.none() | hnp.arrays(np.bool_, (n, m)))
    allowed = draw(st.none() | hnp.arrays(np.bool_, (m,)))
    return scores, k, exclude, allowed


@settings(max_examples=150, deadline=None)
@given(problems())
def test_topk_matches_lexsort_reference(problem: tuple) -> None:
    scores, k, exclude, allowed = problem
    want_idx, want_val = reference(scores, k, exclude, allowed)
    ex = None if exclude is None else sp.csr_matrix(exclude.astype(np.float32))
    idx, val = topk(scores.copy(), k, exclude=ex, allowed=allowed)
    assert idx.shape == val.shape == (scores.shape[0], k)
    assert idx.dtype == np.int32 and val.dtype == np.float32
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(val, want_val)


def test_topk_large_random_matches_argsort() -> None:
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((200, 3000)).astype(np.float32)
    scores[:, ::7] = np.round(scores[:, ::7])  # some ties
    exclude = sp.random(200, 3000, density=0.05, format="csr", random_state=1)
    idx, val = topk(scores.copy(), 50, exclude=exclude)
    want_idx, want_val = reference(scores, 50, exclude.toarray() != 0, None)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(val, want_val)


def test_k_beyond_items_pads() -> None:
    scores = np.array([[0.1, 0.3, 0.2]], dtype=np.float32)
    idx, val = topk(scores, 5)
    assert idx.tolist() == [[1, 2, 0, -1, -1]]
    np.testing.assert_array_equal(val, np.float32([[0.3, 0.2, 0.1, -np.inf, -np.inf]]))
    idx, _ = topk(np.zeros((2, 0), dtype=np.float32), 3)  # an empty catalog
    assert idx.tolist() == [[-1, -1, -1]] * 2


def test_exclusion_uses_structure_and_tolerates_duplicates() -> None:
    scores = np.array([[3.0, 2.0, 1.0]], dtype=np.float32)
    # an explicit zero still excludes (structure, not values); a duplicate entry is harmless
    ex = sp.csr_matrix((np.array([0.0, 1.0, 1.0]), np.array([0, 1, 1]), np.array([0, 3])), (1, 3))
    idx, _ = topk(scores, 3, exclude=ex)
    assert idx.tolist() == [[2, -1, -1]]


def test_scores_overwritten_in_place_only_when_float32() -> None:
    scores = np.array([[1.0, 2.0]], dtype=np.float32)
    topk(scores, 1, exclude=sp.csr_matrix(np.array([[0.0, 1.0]])))
    assert scores[0, 1] == -np.inf  # documented: float32 scores are scratch
    scores64 = np.array([[1.0, 2.0]])
    topk(scores64, 1, exclude=sp.csr_matrix(np.array([[0.0, 1.0]])))
    assert scores64.tolist() == [[1.0, 2.0]]
    frozen = np.broadcast_to(np.array([1.0, 2.0, 3.0], dtype=np.float32), (4, 3))
    idx, _ = topk(frozen, 2, allowed=np.array([True, True, False]))  # read-only input
    assert idx.tolist() == [[1, 0]] * 4


@pytest.mark.parametrize("k", [0, -1, 1.5, True, "3", None])
def test_bad_k(k: object) -> None:
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        topk(np.zeros((1, 3), np.float32), k)  # type: ignore[arg-type]


def test_bad_shapes() -> None:
    scores = np.zeros((2, 3), np.float32)
    with pytest.raises(ConfigError, match=r"allowed must have shape \(3,\)"):
        topk(scores, 1, allowed=np.ones(4, bool))
    with pytest.raises(ConfigError, match=r"exclude must have shape \(2, 3\)"):
        topk(scores, 1, exclude=sp.csr_matrix((2, 4)))
    with pytest.raises(ConfigError, match="2-D"):
        topk(np.zeros(3, np.float32), 1)
    assert topk(scores, np.int64(2))[0].shape == (2, 2)


def test_parallel_and_serial_kernels_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    # the package's ``topk`` attribute is the function, so fetch the module by name
    topk_module = importlib.import_module("recstack.ranking.topk")
    rng = np.random.default_rng(3)
    scores = rng.choice(np.float32(VALUES), size=(9, 40))
    exclude = sp.csr_matrix(rng.random((9, 40)) < 0.2)
    want = reference(scores, 12, exclude.toarray(), None)
    serial = topk(scores.copy(), 12, exclude=exclude)
    monkeypatch.setattr(topk_module, "PARALLEL_MIN_SCORES", 0)  # force the prange kernel
    parallel = topk(scores.copy(), 12, exclude=exclude)
    for got in (serial, parallel):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
