"""Metric functions: pure functions over hit matrices and recommendation lists (numpy; one
numba kernel for intra-list diversity over sparse vectors).

Two families:

* **Accuracy at K** over a ``hits`` matrix, shape (n_users, K) bool (``hits[u, r]``: the
  item at rank ``r + 1`` of user ``u``'s list is relevant) and ``n_relevant``, shape
  (n_users,) int (the size of each user's relevant set). They return one value per user
  and follow trec_eval with binary relevance (cross-checked against ``pytrec_eval`` in the
  tests): ``ndcg`` = ``ndcg_cut_K``, ``recall`` = ``recall_K``, ``precision`` = ``P_K``,
  ``average_precision`` = ``map_cut_K``, ``mrr`` = ``recip_rank`` of the top-K run.
  A user with ``n_relevant == 0`` gets NaN where the value divides by it (trec_eval skips
  such queries); callers evaluate only users with relevant items.
* **Beyond accuracy** over a recommendation ``index`` matrix, shape (n_users, K) int, item
  indices best first with ``-1`` padding (as in :class:`recstack.models.Recommendations`):
  catalog coverage, Gini of exposure, novelty, intra-list diversity, average popularity.

Examples
--------
>>> hits = np.array([[False, True, False], [True, False, False]])
>>> ndcg(hits, np.array([1, 2])).round(4).tolist()
[0.6309, 0.6131]
>>> mrr(hits).tolist()
[0.5, 1.0]
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import scipy.sparse as sp

from recstack.errors import DataError
from recstack.ranking.rerank import unit_rows

#: gathered values per chunk of :func:`ild` with dense vectors (bounds its memory)
_ILD_CHUNK_VALUES = 1 << 22


# ---------------------------------------------------------------------------- accuracy at K
def _check(hits: np.ndarray, n_relevant: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    hits = np.asarray(hits)
    if hits.ndim != 2 or hits.dtype != bool:
        raise DataError(f"hits must be a 2-D bool array, got {hits.dtype} of shape {hits.shape}")
    if n_relevant is None:
        return (hits,)
    n_rel = np.asarray(n_relevant)
    if n_rel.shape != (len(hits),):
        raise DataError(f"n_relevant must have shape ({len(hits)},), got {n_rel.shape}")
    n_hits = hits.sum(axis=1)
    if np.any(n_hits > n_rel):
        row = int(np.flatnonzero(n_hits > n_rel)[0])
        raise DataError(f"row {row} has {n_hits[row]} hits but only {n_rel[row]} relevant items")
    return hits, n_rel.astype(np.float64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with NaN where ``den == 0`` (and no warning)."""
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def discounts(k: int) -> np.ndarray:
    """DCG discounts ``1 / log2(rank + 1)`` for ranks 1..k, shape (k,) float64."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def ndcg(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """NDCG@K: DCG over the ideal DCG of ``min(n_relevant, K)`` hits at the top, shape (n,)."""
    hits, n_rel = _check(hits, n_relevant)
    k = hits.shape[1]
    w = discounts(k)
    dcg = hits @ w
    ideal = np.concatenate([[0.0], np.cumsum(w)])[np.minimum(n_rel, k).astype(np.int64)]
    return _ratio(dcg, ideal)


def recall(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """Recall@K: hits over the number of relevant items, shape (n,)."""
    hits, n_rel = _check(hits, n_relevant)
    return _ratio(hits.sum(axis=1).astype(np.float64), n_rel)


def precision(hits: np.ndarray) -> np.ndarray:
    """Precision@K: hits over K (a list shorter than K still divides by K), shape (n,)."""
    (hits,) = _check(hits)
    return hits.sum(axis=1) / max(1, hits.shape[1])


def f1(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """F1@K: harmonic mean of precision@K and recall@K, 0 when both are 0, shape (n,)."""
    p, r = precision(hits), recall(hits, n_relevant)
    out = np.where(np.isnan(r), np.nan, 0.0)
    both = p + r > 0
    out[both] = 2 * p[both] * r[both] / (p[both] + r[both])
    return out


def hit_rate(hits: np.ndarray) -> np.ndarray:
    """HR@K: 1.0 when any of the top K is relevant, else 0.0, shape (n,)."""
    (hits,) = _check(hits)
    return np.asarray(hits.any(axis=1), dtype=np.float64)


def mrr(hits: np.ndarray) -> np.ndarray:
    """MRR@K: 1 / rank of the first hit, 0 without a hit in the top K, shape (n,)."""
    (hits,) = _check(hits)
    first = np.argmax(hits, axis=1) + 1.0
    return np.where(hits.any(axis=1), 1.0 / first, 0.0)


def average_precision(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """AP@K (trec_eval ``map_cut_K``): sum of precision at the hit ranks over
    ``n_relevant`` (not ``min(n_relevant, K)``), shape (n,)."""
    hits, n_rel = _check(hits, n_relevant)
    ranks = np.arange(1, hits.shape[1] + 1, dtype=np.float64)
    prec_at_hit = np.where(hits, np.cumsum(hits, axis=1) / ranks, 0.0)
    return _ratio(prec_at_hit.sum(axis=1), n_rel)


# ---------------------------------------------------------------------------- rating error
def _pair(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64).ravel()
    true = np.asarray(true, dtype=np.float64).ravel()
    if pred.shape != true.shape:
        raise DataError(f"{len(pred)} predictions for {len(true)} true ratings")
    if len(pred) == 0:
        raise DataError("no ratings to compare")
    return pred, true


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    """Root mean squared error between predicted and true ratings (any matching shapes)."""
    p, t = _pair(pred, true)
    return float(np.sqrt(np.mean((p - t) ** 2)))


def mae(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute error between predicted and true ratings (any matching shapes)."""
    p, t = _pair(pred, true)
    return float(np.mean(np.abs(p - t)))


# ---------------------------------------------------------------------------- beyond accuracy
def _check_index(index: np.ndarray, n_items: int) -> np.ndarray:
    index = np.asarray(index)
    if index.ndim != 2 or index.dtype.kind not in "iu":
        raise DataError(f"index must be a 2-D integer array, got {index.dtype} {index.shape}")
    if index.size and (index.min() < -1 or index.max() >= n_items):
        raise DataError(f"index holds values outside [-1, {n_items}) (-1 is padding)")
    return index


def exposure(index: np.ndarray, n_items: int) -> np.ndarray:
    """How many lists recommend each item, shape (n_items,) int64 (padding ignored)."""
    index = _check_index(index, n_items)
    return np.bincount(index[index >= 0], minlength=n_items)


def coverage(index: np.ndarray, n_items: int) -> float:
    """Catalog coverage: distinct recommended items over ``n_items``."""
    return float(np.count_nonzero(exposure(index, n_items)) / max(1, n_items))


def gini(index: np.ndarray, n_items: int) -> float:
    """Gini index of item exposure over the whole catalog (never-recommended items count
    with exposure 0): 0 when every item is recommended equally often, towards 1 when a
    few items take all the slots. 0 for an empty matrix."""
    x = np.sort(exposure(index, n_items)).astype(np.float64)
    total = x.sum()
    if total == 0:
        return 0.0
    n = len(x)
    weights = 2 * np.arange(1, n + 1) - n - 1
    return float(weights @ x / (n * total))


def _list_mean(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Row means of ``values`` over ``valid`` slots; NaN for an empty list."""
    return _ratio(np.where(valid, values, 0.0).sum(axis=1), valid.sum(axis=1).astype(np.float64))


def self_information(popularity: np.ndarray, n_users: int) -> np.ndarray:
    """``-log2(p_i)`` with ``p_i = popularity_i / n_users`` (the fraction of training users
    who interacted with item i), shape (n_items,) float64.

    An item no training user saw gets ``p = 1 / (n_users + 1)``: rarer than an item seen
    once, but finite.
    """
    pop = np.asarray(popularity, dtype=np.float64)
    if n_users <= 0:
        raise DataError(f"n_users must be positive, got {n_users}")
    p = np.where(pop > 0, pop / n_users, 1.0 / (n_users + 1))
    return -np.log2(p)


def novelty(index: np.ndarray, popularity: np.ndarray, n_users: int) -> np.ndarray:
    """Mean self-information of each list's items (see :func:`self_information`), shape
    (n,) float64; NaN for an empty list."""
    info = self_information(popularity, n_users)
    index = _check_index(index, len(info))
    valid = index >= 0
    return _list_mean(info[np.where(valid, index, 0)], valid)


def arp(index: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    """Average recommendation popularity: mean ``popularity`` (training user count) of
    each list's items, shape (n,) float64; NaN for an empty list."""
    pop = np.asarray(popularity, dtype=np.float64)
    index = _check_index(index, len(pop))
    valid = index >= 0
    return _list_mean(pop[np.where(valid, index, 0)], valid)


@numba.njit(parallel=True, cache=True, nogil=True)
def _sparse_prefix_sum_sq(
    index: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    dim: int,
    n_chunks: int,
    out: np.ndarray,
) -> None:
    """``out[r, s] = ||sum of the sparse rows index[r, :s + 1]||^2`` (padding -1 skipped).

    Accumulates each list's sum in a dense float32 scratch vector (one per chunk of
    lists, small enough to stay in cache), updating the squared norm as entries grow, then
    zeroes the entries it touched: the cost is the listed vectors' non-zeros.
    """
    n, k = index.shape
    for c in numba.prange(n_chunks):
        acc = np.zeros(dim, dtype=np.float32)
        for r in range(c * n // n_chunks, (c + 1) * n // n_chunks):
            total = 0.0
            for s in range(k):
                i = index[r, s]
                if i >= 0:
                    for p in range(indptr[i], indptr[i + 1]):
                        u, w = indices[p], data[p]
                        a = acc[u]
                        total += w * (2.0 * a + w)
                        acc[u] = a + w
                out[r, s] = total
            for s in range(k):
                i = index[r, s]
                if i >= 0:
                    for p in range(indptr[i], indptr[i + 1]):
                        acc[indices[p]] = 0.0


def ild(index: np.ndarray, item_vectors: Any) -> np.ndarray:
    """Intra-list diversity: mean pairwise cosine distance ``1 - cos`` between each list's
    items, shape (n,) float64; NaN for a list with fewer than two items.

    ``item_vectors`` is (n_items, d), dense or sparse (e.g. multi-hot genres, or the
    item-user columns of the training matrix). An all-zero vector has cosine 0 with every
    item (distance 1). Computed without forming pairs: for unit vectors ``v_1..v_k``,
    ``sum_{a<b} cos(v_a, v_b) = (||sum v||^2 - sum ||v||^2) / 2``; for sparse vectors the
    cost is the number of non-zeros of the listed items' vectors.
    """
    index = np.asarray(index)
    return ild_prefixes(index, item_vectors, [index.shape[1] if index.ndim == 2 else 0])[:, 0]


def ild_prefixes(index: np.ndarray, item_vectors: Any, ks: list[int]) -> np.ndarray:
    """:func:`ild` of the top ``k`` of each list for each ``k`` in ``ks`` (1 <= k <= K),
    in one pass, shape (n, len(ks)) float64."""
    unit = unit_rows(item_vectors)
    n_items, dim = unit.shape
    index = _check_index(index, n_items)
    n, k_max = index.shape
    cols = np.asarray(ks, dtype=np.int64) - 1
    if cols.size and (cols.min() < 0 or cols.max() >= k_max):
        raise DataError(f"ks must lie in [1, {k_max}], got {list(ks)}")
    valid = index >= 0
    pos = np.where(valid, index, n_items)  # row n_items stands for padding
    sum_sq = np.zeros((n, k_max))
    if sp.issparse(unit):
        sq_norms = np.asarray(unit.multiply(unit).sum(axis=1)).ravel()
        if n and k_max:
            _sparse_prefix_sum_sq(
                np.ascontiguousarray(index), unit.indptr, unit.indices,
                unit.data.astype(np.float32), dim, min(n, 4 * numba.get_num_threads()), sum_sq,
            )  # fmt: skip
    else:
        sq_norms = np.einsum("ij,ij->i", unit, unit)
        padded = np.vstack([unit, np.zeros((1, dim))])
        wanted = set(cols.tolist())
        step = max(1, _ILD_CHUNK_VALUES // max(1, dim))
        for start in range(0, n, step):
            rows = pos[start : start + step]
            total = np.zeros((len(rows), dim))  # running sum of the first s + 1 vectors
            for slot in range(k_max):
                total += padded[rows[:, slot]]
                if slot in wanted:
                    sum_sq[start : start + len(rows), slot] = np.einsum("ij,ij->i", total, total)
    self_sq = np.cumsum(np.append(sq_norms, 0.0)[pos], axis=1)
    count = np.cumsum(valid, axis=1).astype(np.float64)
    pairs = count * (count - 1) / 2
    return 1.0 - _ratio((sum_sq[:, cols] - self_sq[:, cols]) / 2, pairs[:, cols])
