"""Calibrated recommendations (Steck, "Calibrated Recommendations", RecSys 2018).

A list is calibrated when its category (genre) distribution matches that of the user's
history. With ``p(g|i)`` an item's categories normalized to sum 1 (a film with three
genres counts a third to each):

- ``p(g|u)``: the mean of ``p(g|i)`` over the user's history events (events of items
  without a category are left out);
- ``q(g|u)``: the mean of ``p(g|i)`` over the listed items that have a category;
- miscalibration ``C_KL = KL(p || q~) = sum_g p(g|u) log(p(g|u) / q~(g|u))`` with
  ``q~ = (1 - alpha) q + alpha p``, which keeps it finite (``alpha = 0.01`` as in the paper).

:class:`Calibrated` greedily builds the list maximizing ``(1 - lam) * sum rel - lam *
C_KL`` (the paper's objective; ``rel`` is the min-max scaled score of
:mod:`recstack.ranking.rerank`), by default with each listed item's ``rel`` weighted by the
DCG discount of its position, and :func:`miscalibration` measures ``C_KL`` of any lists with
the same definitions.
"""

from __future__ import annotations

import numbers
from typing import Any

import numba
import numpy as np
import scipy.sparse as sp

from recstack.data import Histories
from recstack.errors import ConfigError, DataError
from recstack.ranking.rerank import Reranker, category_matrix

#: Steck's smoothing of the list distribution towards the user's
ALPHA = 0.01


def item_distributions(categories: Any) -> sp.csr_matrix:
    """``p(g|i)``: each item's categories normalized to sum 1 (items without a category
    keep an empty row), CSR float64 (n_items, n_categories) with sorted indices."""
    return _normalized(category_matrix(categories))


def user_distributions(histories: Histories, item_dist: sp.csr_matrix) -> sp.csr_matrix:
    """``p(g|u)`` of each history row: the mean of its events' item distributions, CSR
    float64 (n, n_categories) with sorted indices; an empty row for a history without a
    categorized item."""
    n = len(histories)
    if histories.n_items != item_dist.shape[0]:
        raise DataError(
            f"histories refer to {histories.n_items} items, the categories to {item_dist.shape[0]}"
        )
    counts = sp.csr_matrix(
        (np.ones(len(histories.items)), (histories.rows, histories.items)),
        shape=(n, histories.n_items),
    )  # repeated events of an item add up
    return _normalized(sp.csr_matrix(counts @ item_dist))


def _normalized(m: sp.csr_matrix) -> sp.csr_matrix:
    """Rows scaled to sum 1 (empty rows stay empty), sorted indices."""
    total = np.asarray(m.sum(axis=1)).ravel()
    inv = np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)
    out = sp.csr_matrix(sp.diags(inv) @ m)
    out.sum_duplicates()
    out.sort_indices()
    return out


def miscalibration(
    index: np.ndarray,
    histories: Histories,
    categories: Any,
    alpha: float = ALPHA,
) -> np.ndarray:
    """``C_KL`` of each list against its user's history, shape (n,) float64.

    Parameters
    ----------
    index : (n, K) int
        Lists of item indices, ``-1`` padding.
    histories : Histories
        One row per list: what ``p(g|u)`` is taken from.
    categories : (n_items, n_categories) array or sparse, or :func:`item_distributions`
        Item categories (multi-hot genres, or weights).
    alpha : float
        Smoothing of the list distribution towards the user's.

    Returns
    -------
    (n,) float64
        NaN for a user whose history has no categorized item (nothing to calibrate to);
        ``log(1 / alpha)`` for a list without a categorized item.

    Examples
    --------
    >>> h = Histories.from_lists([[0, 1]], n_items=3)
    >>> genres = np.array([[1, 0], [0, 1], [0, 1]])
    >>> miscalibration(np.array([[0, 2]]), h, genres).round(6).tolist()  # 50/50 both
    [0.0]
    """
    dist = item_distributions(categories)
    return kl_to_users(index, user_distributions(histories, dist), dist, alpha)


def kl_to_users(
    index: np.ndarray, user_dist: sp.csr_matrix, item_dist: sp.csr_matrix, alpha: float = ALPHA
) -> np.ndarray:
    """:func:`miscalibration` from the distributions (:func:`user_distributions`, one row per
    list, and :func:`item_distributions`): several cut-offs share them."""
    index = np.asarray(index)
    n, n_cat = len(index), item_dist.shape[1]
    if index.ndim != 2 or n != user_dist.shape[0]:
        raise DataError(
            f"index must be (n, K) with one row per history, got {index.shape} for "
            f"{user_dist.shape[0]} histories"
        )
    p = user_dist.tocoo()
    valid = index >= 0
    rows = np.repeat(np.arange(n), valid.sum(axis=1))
    lists = sp.csr_matrix((np.ones(len(rows)), (rows, index[valid])), shape=(n, item_dist.shape[0]))
    q = sp.csr_matrix(lists @ item_dist)  # summed distributions of the listed items
    q.sum_duplicates()
    q.sort_indices()
    n_listed = lists @ (np.diff(item_dist.indptr) > 0).astype(np.float64)  # with a category
    # q at the support of p: CSR keys (row, column) are sorted, so a binary search finds them
    q_keys = np.repeat(np.arange(n, dtype=np.int64), np.diff(q.indptr)) * n_cat + q.indices
    p_keys = p.row.astype(np.int64) * n_cat + p.col
    pos = np.searchsorted(q_keys, p_keys)
    found = pos < len(q_keys)
    found[found] = q_keys[pos[found]] == p_keys[found]
    q_at = np.zeros(len(p_keys))
    q_at[found] = q.data[pos[found]] / n_listed[p.row[found]]
    terms = p.data * np.log(p.data / ((1 - alpha) * q_at + alpha * p.data))
    kl = np.bincount(p.row, weights=terms, minlength=n)
    has_p = np.bincount(p.row, minlength=n) > 0
    return np.where(has_p, kl, np.nan)


@numba.njit(cache=True, nogil=True)
def _calibrate_row(
    cand: np.ndarray,
    rel: np.ndarray,
    k: int,
    lam: float,
    alpha: float,
    discount: bool,
    c_indptr: np.ndarray,
    c_indices: np.ndarray,
    c_data: np.ndarray,
    n_cat: int,
    history: np.ndarray,
    out: np.ndarray,
) -> None:
    """Greedy calibration of one row: step ``s`` lists the candidate maximizing
    ``(1 - lam) w_s rel - lam C_KL(list + candidate)``, ``w_s = 1 / log2(s + 2)`` with
    ``discount`` and 1 without; ``K * N * |support of p|`` terms.

    ``c_*`` is :func:`item_distributions` (CSR, ``n_cat`` columns); ``history`` the
    user's item indices, whose mean distribution is ``p``.
    """
    # p(g|u) on its support: slot[g] is g's position there, -1 off it
    acc = np.zeros(n_cat)
    for i in history:
        for q in range(c_indptr[i], c_indptr[i + 1]):
            acc[c_indices[q]] += c_data[q]
    slot = np.full(n_cat, -1, dtype=np.int64)
    m = 0
    for g in range(n_cat):
        if acc[g] > 0:
            slot[g] = m
            m += 1
    p = np.empty(m)
    total = acc.sum()
    for g in range(n_cat):
        if slot[g] >= 0:
            p[slot[g]] = acc[g] / total
    n = len(cand)
    taken = np.zeros(n, dtype=np.bool_)
    q_sum = np.zeros(m)  # summed distributions of the listed items, on the support of p
    n_listed = 0  # listed items with a category
    add = np.zeros(m)  # a candidate's distribution on the support of p
    for s in range(k):
        best, best_v = -1, -np.inf
        weight = (1.0 - lam) / np.log2(s + 2.0) if discount else 1.0 - lam
        for c in range(n):
            if taken[c] or not rel[c] > -np.inf:
                continue
            lo, hi = c_indptr[cand[c]], c_indptr[cand[c] + 1]
            for q in range(lo, hi):
                if slot[c_indices[q]] >= 0:
                    add[slot[c_indices[q]]] = c_data[q]
            counted = n_listed + (1 if hi > lo else 0)
            kl = 0.0
            for g in range(m):
                q_g = (q_sum[g] + add[g]) / counted if counted > 0 else 0.0
                kl += p[g] * np.log(p[g] / ((1.0 - alpha) * q_g + alpha * p[g]))
            for q in range(lo, hi):
                if slot[c_indices[q]] >= 0:
                    add[slot[c_indices[q]]] = 0.0
            v = weight * rel[c] - lam * kl
            if v > best_v:
                best, best_v = c, v
        if best < 0:
            return
        out[s] = best
        taken[best] = True
        lo, hi = c_indptr[cand[best]], c_indptr[cand[best] + 1]
        n_listed += 1 if hi > lo else 0
        for q in range(lo, hi):
            if slot[c_indices[q]] >= 0:
                q_sum[slot[c_indices[q]]] += c_data[q]


@numba.njit(parallel=True, cache=True, nogil=True)
def _calibrate_batch(
    cand: np.ndarray,
    rel: np.ndarray,
    k: int,
    lam: float,
    alpha: float,
    discount: bool,
    c_indptr: np.ndarray,
    c_indices: np.ndarray,
    c_data: np.ndarray,
    n_cat: int,
    h_indptr: np.ndarray,
    h_items: np.ndarray,
    out: np.ndarray,
) -> None:
    for r in numba.prange(cand.shape[0]):
        history = h_items[h_indptr[r] : h_indptr[r + 1]]
        _calibrate_row(
            cand[r], rel[r], k, lam, alpha, discount, c_indptr, c_indices, c_data, n_cat,
            history, out[r],
        )  # fmt: skip


class Calibrated(Reranker):
    """Calibrated re-ranking (Steck 2018): lists whose genre mix matches the history's.

    Greedily maximizes ``(1 - lam) * sum_{r} w_r rel_{i_r} - lam * C_KL(p(.|u),
    q(.|list))`` over the list ``i_1, i_2, ...`` (see the module docstring), filling one
    position ``r`` after the other. Steck's objective has ``w_r = 1``; with ``discount``
    (the default) ``w_r = 1 / log2(r + 1)``, the DCG discount, so the relevance term is the
    list's DCG, what NDCG@K measures. The greedy then keeps the most relevant items at the
    top and calibrates mostly with the lower positions, where a displaced relevant item
    costs less: on ML-100K with EASE this halves the KL at a smaller NDCG@10 cost than the
    uniform weights (``benchmarks/results/rerank.md``). ``lam = 0`` is the plain ranking.
    Needs the users' histories in :meth:`rerank`.

    Parameters
    ----------
    lam : float in [0, 1]
        Weight of calibration against relevance (the default was chosen on ML-100K
        validation for EASE: the weakest value reaching -50% KL within 5% of NDCG@10, on
        the mean of 3 rolling origins, ``benchmarks/bench_rerank.py``).
    alpha : float in (0, 1)
        Smoothing of the list distribution towards the user's (keeps the KL finite).
    discount : bool
        Weight each position's relevance by the DCG discount (``False``: Steck's uniform
        weights).
    """

    name = "calibrate"
    param = "lam"
    needs = "categories"
    options = ("alpha", "discount")
    sweep = (0.0, 0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)

    def __init__(self, lam: float = 0.35, alpha: float = ALPHA, discount: bool = True) -> None:
        self.lam = self._checked(lam)
        if not isinstance(alpha, numbers.Real) or isinstance(alpha, bool) or not 0 < alpha < 1:
            raise ConfigError(f"calibrate: alpha must be a number in (0, 1), got {alpha!r}")
        if not isinstance(discount, bool | np.bool_):
            raise ConfigError(f"calibrate: discount must be True or False, got {discount!r}")
        self.alpha: float = alpha
        self.discount: bool = bool(discount)

    def _fit(self, given: Any) -> None:
        self.item_dist_ = item_distributions(given)
        self.n_items_ = self.item_dist_.shape[0]

    def _rerank(
        self,
        cand: np.ndarray,
        rel: np.ndarray,
        k: int,
        histories: Histories | None,
        out: np.ndarray,
    ) -> None:
        if histories is None:
            raise ConfigError(f"{self.spec} needs the users' histories: rerank(..., histories=)")
        if histories.n_items != self.n_items:
            raise DataError(
                f"histories refer to {histories.n_items} items, the categories to {self.n_items}"
            )
        d = self.item_dist_
        params = (
            float(self.lam), float(self.alpha), bool(self.discount), d.indptr.astype(np.int64),
            d.indices, d.data, d.shape[1],
        )  # fmt: skip
        h_indptr = histories.indptr.astype(np.int64)
        if len(cand) == 1:  # one request: a thread launch costs more than the work
            history = histories.items[h_indptr[0] : h_indptr[1]]
            _calibrate_row(cand[0], rel[0], k, *params, history, out[0])
        else:
            _calibrate_batch(cand, rel, k, *params, h_indptr, histories.items, out)
