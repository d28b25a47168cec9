"""Leave-one-out of :class:`~recstack.models.UserKNN` without re-scoring the catalog.

UserKNN scores a history by its ``neighbors`` most similar stored users (see
:mod:`recstack.models.knn`): ``sim(h, v) = <h, v> s_v / (|h|^(2 alpha) d_v + shrink)``
with the history's weights ``h`` (BM25/TF-IDF: an item factor times the history's IDF,
which depends on its length only), and the score of ``t`` is ``sum_v sim(h, v) x_vt``
over the kept users. Without history item ``j`` every variant has one item less, so all
the variants of a history share one set of weights ``h'`` (the IDF of ``m - 1`` items),
and, for each stored user ``v``:

- ``<h' - h'_j, v> = <h', v> - h'_j v_j``: one dot product per user for the whole
  history, corrected by item ``j``'s users only;
- the number of history items ``v`` holds drops by one when ``v`` holds ``j`` (a user
  whose items all lie in the history is never a neighbour, see :class:`UserKNN`);
- ``|h' - h'_j|^2`` is one number per variant.

Each variant's neighbours are then picked among the users the history touches as
:func:`recstack.models.knn.top_neighbors` picks them (the same float32 weights, formula and
ties; a dot product differs from the model's only in the order of its float64 sum), and
only the ``K`` targets are scored, in the model's float32 and order: the drops are those
of re-scoring, to float rounding. Users are visited by decreasing upper bound of their
similarity over all variants (with non-negative weights, dropping an item can only lower
a dot product, and no variant's norm is below the smallest one), so a variant stops
reading once no remaining user can enter its top list.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import numba
import numpy as np
import scipy.sparse as sp

from recstack.data import Histories
from recstack.explain.attribution import Attribution
from recstack.models.knn import _push, _squared_norms, _term_weights

if TYPE_CHECKING:
    from recstack.models.knn import UserKNN

#: blocks of interleaved rows per thread (rows differ in cost); each block owns scratch of
#: about ``(40 + 4 K)`` bytes per stored user
_BLOCKS_PER_THREAD = 2


@numba.njit(cache=True, nogil=True)
def _reduced_square_sums(indptr: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``out[e]``: the sum of squared ``weights`` of entry ``e``'s row without ``e``,
    (nnz,) float64, added left to right as ``np.bincount`` adds a whole row."""
    out = np.zeros(len(weights))
    for r in range(len(indptr) - 1):
        for e in range(indptr[r], indptr[r + 1]):
            s = 0.0
            for p in range(indptr[r], indptr[r + 1]):
                if p != e:
                    w = np.float64(weights[p])
                    s += w * w
            out[e] = s
    return out


@numba.njit(inline="always")
def _select(
    touched: np.ndarray,
    n_touched: int,
    acc: np.ndarray,
    delta: np.ndarray,
    cnt: np.ndarray,
    hit: np.ndarray,
    bound: np.ndarray,
    prune: bool,
    row_den: float,
    col_den: np.ndarray,
    col_scale: np.ndarray,
    col_len: np.ndarray,
    shrink: float,
    hv: np.ndarray,
    hi: np.ndarray,
) -> int:
    """The best ``len(hv)`` users of one history variant into the heap ``hv, hi`` (as
    ``knn._top_rows``: similarity > 0, ties to the smaller user, a user whose items all lie
    in the variant skipped); returns how many. ``touched`` lists the candidates by
    decreasing ``bound`` when ``prune``."""
    n = len(hv)
    count = 0
    for t in range(n_touched):
        c = touched[t]
        if prune and count == n and bound[c] < hv[0]:
            break  # no later user can reach the heap
        v = acc[c]
        k = cnt[c]
        if hit[c]:
            v -= delta[c]
            k -= 1
        if k == 0 or k == col_len[c] or v == 0.0:
            continue
        s = v * (1.0 * col_scale[c]) / (row_den * col_den[c] + shrink)
        if s > 0.0 and (count < n or not s < hv[0]):
            count = _push(hv, hi, count, s, c)
    return count


@numba.njit(inline="always")
def _target_scores(
    hv: np.ndarray, hi: np.ndarray, count: int, xt: np.ndarray, out: np.ndarray
) -> None:
    """``out[c]`` = the float32 score ``sum_v float32(sim_v) x[v, target c]`` of the heap's
    ``count`` users, added by increasing user index as the model's sparse product does."""
    order = np.argsort(hi[:count])
    for c in range(out.shape[0]):
        s = np.float32(0.0)
        for q in order:
            s += np.float32(hv[q]) * xt[hi[q], c]
        out[c] = s


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _userknn_loo_rows(
    indptr: np.ndarray,
    indices: np.ndarray,
    full: np.ndarray,
    reduced: np.ndarray,
    full_den: np.ndarray,
    reduced_den: np.ndarray,
    b_indptr: np.ndarray,
    b_indices: np.ndarray,
    b_data: np.ndarray,
    col_den: np.ndarray,
    col_scale: np.ndarray,
    col_len: np.ndarray,
    shrink: float,
    n_keep: int,
    x_indptr: np.ndarray,
    x_indices: np.ndarray,
    x_data: np.ndarray,
    targets: np.ndarray,
    base: np.ndarray,
    left_out: np.ndarray,
    first: int,
    step: int,
) -> None:
    """Rows ``first, first + step, ...``: ``base[r]`` the targets' scores of history ``r``,
    ``left_out[e]`` their scores without entry ``e`` (module docstring).

    ``full`` / ``reduced`` (nnz,) float32 are the entries' search weights at the row's
    length and at one less, ``full_den`` (n,) / ``reduced_den`` (nnz,) the matching
    denominator factors; ``b_*`` the item-major stored rows (search side), ``x_*`` the
    item-major ``user_items_`` (the targets' values).
    """
    n_cols = len(col_den)
    n_targets = targets.shape[1]
    acc_full = np.zeros(n_cols)
    acc = np.zeros(n_cols)
    cnt = np.zeros(n_cols, dtype=np.int64)
    seen = np.zeros(n_cols, dtype=np.bool_)
    delta = np.zeros(n_cols)
    hit = np.zeros(n_cols, dtype=np.bool_)
    bound = np.zeros(n_cols)
    xt = np.zeros((n_cols, n_targets), dtype=np.float32)
    touched = np.empty(n_cols, dtype=np.int64)
    hv = np.empty(n_keep)
    hi = np.empty(n_keep, dtype=np.int64)
    scores = np.empty(n_targets, dtype=np.float32)
    no = np.zeros(n_cols, dtype=np.bool_)
    for r in range(first, len(indptr) - 1, step):
        lo, up = indptr[r], indptr[r + 1]
        if lo == up:  # an empty history has no neighbour: it scores 0
            continue
        m = 0
        prune = True
        for p in range(lo, up):
            wf, wr = np.float64(full[p]), np.float64(reduced[p])
            if wr < 0.0:
                prune = False
            for q in range(b_indptr[indices[p]], b_indptr[indices[p] + 1]):
                c = b_indices[q]
                acc_full[c] += wf * b_data[q]
                acc[c] += wr * b_data[q]
                cnt[c] += 1
                if b_data[q] < 0.0:
                    prune = False
                if not seen[c]:
                    seen[c] = True
                    touched[m] = c
                    m += 1
        for k in range(n_targets):
            t = targets[r, k]
            for q in range(x_indptr[t], x_indptr[t + 1]):
                xt[x_indices[q], k] = x_data[q]
        count = _select(
            touched, m, acc_full, delta, cnt, no, bound, False, full_den[r], col_den,
            col_scale, col_len, shrink, hv, hi,
        )  # fmt: skip
        _target_scores(hv, hi, count, xt, scores)
        base[r] = scores
        if prune:  # visit users by decreasing bound: a variant's similarity is at most it
            den_min = reduced_den[lo:up].min()
            for t in range(m):
                c = touched[t]
                bound[c] = acc[c] * (1.0 * col_scale[c]) / (den_min * col_den[c] + shrink)
            order = np.argsort(-bound[touched[:m]], kind="mergesort")
            touched[:m] = touched[:m][order]
        for e in range(lo, up):
            j = indices[e]
            w = np.float64(reduced[e])
            for q in range(b_indptr[j], b_indptr[j + 1]):
                delta[b_indices[q]] = w * b_data[q]
                hit[b_indices[q]] = True
            count = _select(
                touched, m, acc, delta, cnt, hit, bound, prune, reduced_den[e], col_den,
                col_scale, col_len, shrink, hv, hi,
            )  # fmt: skip
            _target_scores(hv, hi, count, xt, scores)
            left_out[e] = scores
            for q in range(b_indptr[j], b_indptr[j + 1]):
                delta[b_indices[q]] = 0.0
                hit[b_indices[q]] = False
        for k in range(n_targets):
            t = targets[r, k]
            for q in range(x_indptr[t], x_indptr[t + 1]):
                xt[x_indices[q], k] = 0.0
        for t in range(m):
            c = touched[t]
            acc_full[c] = acc[c] = bound[c] = 0.0
            cnt[c] = 0
            seen[c] = False


@numba.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def _userknn_loo(
    indptr: np.ndarray,
    indices: np.ndarray,
    full: np.ndarray,
    reduced: np.ndarray,
    full_den: np.ndarray,
    reduced_den: np.ndarray,
    b_indptr: np.ndarray,
    b_indices: np.ndarray,
    b_data: np.ndarray,
    col_den: np.ndarray,
    col_scale: np.ndarray,
    col_len: np.ndarray,
    shrink: float,
    n_keep: int,
    x_indptr: np.ndarray,
    x_indices: np.ndarray,
    x_data: np.ndarray,
    targets: np.ndarray,
    base: np.ndarray,
    left_out: np.ndarray,
    n_blocks: int,
) -> None:
    """:func:`_userknn_loo_rows` in ``n_blocks`` blocks of interleaved rows, in parallel."""
    for blk in numba.prange(n_blocks):
        _userknn_loo_rows(
            indptr, indices, full, reduced, full_den, reduced_den, b_indptr, b_indices,
            b_data, col_den, col_scale, col_len, shrink, n_keep, x_indptr, x_indices, x_data,
            targets, base, left_out, blk, n_blocks,
        )  # fmt: skip


def _search_weights(model: UserKNN, x: sp.csr_matrix, lengths: np.ndarray) -> np.ndarray:
    """The float32 weights :meth:`UserKNN.neighbors_of` gives the entries of ``x`` (the
    history as the model reads it) when each row has ``lengths`` items: ``weight_rows``'s
    term weight times the IDF of that length."""
    if model.weighting == "none":
        return x.data.astype(np.float32)
    tf = _term_weights(
        x.data.astype(np.float64), x.indices, model.weighting, float(model.bm25_k1),
        float(model.bm25_b), model._item_sums,
    )  # fmt: skip
    idf = np.log(x.shape[1]) - np.log1p(lengths)  # knn.row_idf at these lengths
    return (tf * np.repeat(idf, np.diff(x.indptr))).astype(np.float32)


#: ``user_items_`` item-major, per model, with the matrix it was built from
_BY_ITEM: weakref.WeakKeyDictionary[UserKNN, tuple[sp.csr_matrix, sp.csr_matrix]] = (
    weakref.WeakKeyDictionary()
)


def _items_by_user(model: UserKNN) -> sp.csr_matrix:
    """``user_items_.T`` as (n_items, n_users) float32 CSR, cached until the model is refit."""
    x = model.user_items_
    cached = _BY_ITEM.get(model)
    if cached is not None and cached[0] is x:
        return cached[1]
    xt = sp.csr_matrix(x.T, dtype=np.float32)
    _BY_ITEM[model] = (x, xt)
    return xt


def userknn_leave_one_out(model: UserKNN, histories: Histories, targets: np.ndarray) -> Attribution:
    """:func:`~recstack.explain.loo.leave_one_out` of :class:`~recstack.models.UserKNN`:
    every variant's neighbours from one pass over the users the history touches, and the
    ``K`` targets' scores only (module docstring)."""
    x = model._values(histories.to_csr())
    indptr = x.indptr.astype(np.int64)
    lengths = np.diff(indptr)
    # the variants' weights (an empty row has none: its length stays 0)
    full, reduced = (_search_weights(model, x, n) for n in (lengths, np.maximum(lengths - 1, 0)))
    full_den = model._den(_squared_norms(sp.csr_matrix((full, x.indices, indptr), x.shape), 1),
                          target=True)  # fmt: skip
    reduced_den = model._den(_reduced_square_sums(indptr, reduced), target=True)
    if model._g is not None:  # binary: the stored side is a structure, the history holds g
        g = model._g[x.indices].astype(np.float32)
        full, reduced = full * g, reduced * g
    b = model._search_t
    n_users = b.shape[1]
    col_scale = np.ones(n_users) if model._user_scale is None else model._user_scale
    xt = _items_by_user(model)
    targets = np.ascontiguousarray(targets, dtype=np.int64)
    n = len(histories)
    base = np.zeros(targets.shape)
    left_out = np.zeros((x.nnz, targets.shape[1]))
    n_blocks = max(1, min(n, _BLOCKS_PER_THREAD * numba.get_num_threads()))
    _userknn_loo(
        indptr, x.indices.astype(np.int64), full, reduced, np.asarray(full_den, np.float64),
        np.asarray(reduced_den, np.float64), b.indptr.astype(np.int64),
        b.indices.astype(np.int64), b.data.astype(np.float32),
        np.asarray(model._source_den, np.float64), np.asarray(col_scale, np.float64),
        np.asarray(model._user_len, np.int64), float(model.shrink),
        max(1, min(model._n(n_users), n_users)), xt.indptr.astype(np.int64),
        xt.indices.astype(np.int64), xt.data, targets, base, left_out, n_blocks,
    )  # fmt: skip
    rows = np.repeat(np.arange(n), lengths)
    return Attribution(
        indptr, x.indices.astype(np.int32), base[rows] - left_out, base, targets,
        "leave-one-out", False,
    )  # fmt: skip
