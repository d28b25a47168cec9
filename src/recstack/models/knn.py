"""Neighbourhood collaborative filtering: item-based (:class:`ItemKNN`) and user-based
(:class:`UserKNN`) k-nearest neighbours.

Both weigh the interaction matrix (none, BM25 or TF-IDF, as implicit's ``bm25_weight`` and
``tfidf_weight``), compare rows by a cosine with Aiolli's asymmetry ``alpha`` and a
shrinkage term, and keep the ``neighbors`` most similar rows. The similarity of a *target*
``t`` to a *source* ``s`` (an item or user vector of weighted interactions) is::

    sim(t, s) = <t, s> / (|t| ** (2 alpha) * |s| ** (2 (1 - alpha)) + shrink)

``alpha = 0.5`` is the cosine; ``similarity="dot"`` drops the norms (``<t, s> / (1 + shrink)``).
Only positive similarities are kept.

The neighbours are found row by row with a sparse accumulator (Gustavson's sparse product,
as implicit's ``all_pairs_knn``): row ``r``'s dot products with every column touch only
the co-occurring columns, then a size-``neighbors`` heap keeps the best. No dense
``n x n`` matrix is ever formed; rows go in chunks so the top-N buffer stays bounded, and
in parallel (numba). On binary data every weight is a user factor times an item factor, so the
search reads only the matrix's structure (it is bound by memory reads) and applies the
factors apart.

References
----------
F. Aiolli, "Efficient top-N recommendation for very large scale binary rated datasets",
RecSys 2013 (asymmetric cosine). M. Deshpande, G. Karypis, "Item-based top-N
recommendation algorithms", ACM TOIS 22(1), 2004.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numba
import numpy as np
import scipy.sparse as sp

from recstack.data import Histories, Interactions, UnknownPolicy
from recstack.data.idmap import as_id_array
from recstack.errors import ConfigError
from recstack.models.base import Recommendations, Recommender
from recstack.ranking import topk
from recstack.ranking.topk import _sift_down, _worse

Weighting = Literal["none", "bm25", "tfidf"]
Similarity = Literal["cosine", "dot"]
WEIGHTINGS = ("none", "bm25", "tfidf")
SIMILARITIES = ("cosine", "dot")
#: top-N buffer entries (rows x neighbors) per chunk of rows in a neighbour search
CHUNK_ENTRIES = 1 << 22
#: below this much work (multiply-adds and scanned scores) a call runs on one thread: waking
#: the pool costs more than it saves (one user, small catalogs)
PARALLEL_MIN_WORK = 1 << 17
#: blocks per thread in a chunk: each block owns one accumulator, rows cost unevenly
_BLOCKS_PER_THREAD = 4


# ----------------------------------------------------------------------------- kernels
@numba.njit(inline="always")
def _push(hv: np.ndarray, hi: np.ndarray, count: int, s: float, c: int) -> int:
    """Offer entry (s, c) to the min-heap of capacity ``len(hv)`` holding ``count``."""
    if count < len(hv):  # sift up (worst entry at the root)
        pos = count
        hv[pos] = s
        hi[pos] = c
        while pos > 0:
            parent = (pos - 1) // 2
            if not _worse(hv[pos], hi[pos], hv[parent], hi[parent]):
                break
            hv[pos], hv[parent] = hv[parent], hv[pos]
            hi[pos], hi[parent] = hi[parent], hi[pos]
            pos = parent
        return count + 1
    if _worse(hv[0], hi[0], s, c):
        hv[0] = s
        hi[0] = c
        _sift_down(hv, hi, count)
    return count


# error_model="numpy": a zero norm divides to inf/NaN (then skipped) instead of raising
@numba.njit(cache=True, nogil=True, error_model="numpy")
def _top_rows(
    a_indptr: np.ndarray,
    a_indices: np.ndarray,
    a_data: np.ndarray,
    b_indptr: np.ndarray,
    b_indices: np.ndarray,
    b_data: np.ndarray,
    row_den: np.ndarray,
    col_den: np.ndarray,
    row_scale: np.ndarray,
    col_scale: np.ndarray,
    shrink: float,
    diag_offset: int,
    col_len: np.ndarray,
    out_idx: np.ndarray,
    out_val: np.ndarray,
    first: int,
    step: int,
) -> None:
    """Top-N columns of ``(A @ B)[r, c] row_scale[r] col_scale[c] / (row_den[r] col_den[c]
    + shrink)`` for rows ``first, first + step, ...``.

    ``a_indptr`` may be a slice of a larger CSR's (absolute offsets into ``a_indices``);
    ``row_den`` is aligned with it. An empty ``b_data`` means every value of ``B`` is 1.
    Column ``r + diag_offset`` is
    skipped when ``diag_offset >= 0`` (an item is not its own neighbour). With a non-empty
    ``col_len`` (row lengths of ``B.T``; sparse ``B`` only), a column whose every entry
    co-occurs with row ``r`` is skipped (a stored user whose items all lie in the
    history). ``out_idx[r]`` lists row ``r``'s columns best first (ties: smaller column),
    padded with -1 (value 0). A row meeting more entries than there are columns scans all
    columns instead of listing the ones it touched.
    """
    n_cols = len(col_den)
    n = out_idx.shape[1]
    cover = len(col_len) > 0
    weighted = len(b_data) > 0  # else every value of B is 1
    acc = np.zeros(n_cols, dtype=np.float64)
    cnt = np.zeros(n_cols if cover else 0, dtype=np.int32)
    mark = np.zeros(n_cols, dtype=np.int32)  # row + 1 of the last touch
    touched = np.empty(n_cols, dtype=np.int32)
    hv = np.empty(n, dtype=np.float64)
    hi = np.empty(n, dtype=np.int64)
    for r in range(first, len(a_indptr) - 1, step):
        count = 0
        work = 0
        for p in range(a_indptr[r], a_indptr[r + 1]):
            k = a_indices[p]
            work += b_indptr[k + 1] - b_indptr[k]
        full = work >= n_cols  # scanning the whole row costs less than tracking it
        m = 0
        for p in range(a_indptr[r], a_indptr[r + 1]):
            k = a_indices[p]
            w = np.float64(a_data[p])
            for q in range(b_indptr[k], b_indptr[k + 1]):
                c = b_indices[q]
                acc[c] += w * b_data[q] if weighted else w
                if cover:
                    cnt[c] += 1
                if not full and mark[c] != r + 1:
                    mark[c] = r + 1
                    touched[m] = c
                    m += 1
        for t in range(n_cols if full else m):
            c = t if full else touched[t]
            skip = c == r + diag_offset
            if cover:
                skip = skip or cnt[c] == col_len[c]
                cnt[c] = 0
            v = acc[c]
            if v == 0.0:
                continue
            acc[c] = 0.0
            s = v * (row_scale[r] * col_scale[c]) / (row_den[r] * col_den[c] + shrink)
            if s > 0.0 and not skip and (count < n or not s < hv[0]):
                count = _push(hv, hi, count, s, c)
        for slot in range(count - 1, -1, -1):  # pop the worst to the back
            out_val[r, slot] = hv[0]
            out_idx[r, slot] = hi[0]
            hv[0] = hv[slot]
            hi[0] = hi[slot]
            _sift_down(hv, hi, slot)
        out_idx[r, count:] = -1
        out_val[r, count:] = 0.0


@numba.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def _top_rows_parallel(
    a_indptr: np.ndarray,
    a_indices: np.ndarray,
    a_data: np.ndarray,
    b_indptr: np.ndarray,
    b_indices: np.ndarray,
    b_data: np.ndarray,
    row_den: np.ndarray,
    col_den: np.ndarray,
    row_scale: np.ndarray,
    col_scale: np.ndarray,
    shrink: float,
    diag_offset: int,
    col_len: np.ndarray,
    out_idx: np.ndarray,
    out_val: np.ndarray,
    n_blocks: int,
) -> None:
    """:func:`_top_rows` over all rows in ``n_blocks`` blocks, one accumulator each; a block
    takes every ``n_blocks``-th row, so heavy and light rows mix in every block."""
    for blk in numba.prange(n_blocks):
        _top_rows(
            a_indptr, a_indices, a_data, b_indptr, b_indices, b_data, row_den,
            col_den, row_scale, col_scale, shrink, diag_offset, col_len, out_idx, out_val,
            blk, n_blocks,
        )  # fmt: skip


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _spmm_rows(
    a_indptr: np.ndarray,
    a_indices: np.ndarray,
    a_data: np.ndarray,
    b_indptr: np.ndarray,
    b_indices: np.ndarray,
    b_data: np.ndarray,
    out: np.ndarray,
    start: int,
    stop: int,
) -> None:
    """Rows ``start <= r < stop`` of ``out = A @ B`` (CSR ``A``, ``B``; dense ``out``)."""
    for r in range(start, stop):
        row = out[r]
        row[:] = 0.0
        for p in range(a_indptr[r], a_indptr[r + 1]):
            k = a_indices[p]
            w = a_data[p]
            for q in range(b_indptr[k], b_indptr[k + 1]):
                row[b_indices[q]] += w * b_data[q]


@numba.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def _spmm_parallel(
    a_indptr: np.ndarray,
    a_indices: np.ndarray,
    a_data: np.ndarray,
    b_indptr: np.ndarray,
    b_indices: np.ndarray,
    b_data: np.ndarray,
    out: np.ndarray,
) -> None:
    for r in numba.prange(len(a_indptr) - 1):
        _spmm_rows(a_indptr, a_indices, a_data, b_indptr, b_indices, b_data, out, r, r + 1)


def _work(a: sp.csr_matrix, b: sp.csr_matrix) -> int:
    """Multiply-adds of the sparse product ``a @ b``."""
    return int(np.diff(b.indptr)[a.indices].sum())


def sparse_dense_product(a: sp.csr_matrix, b: sp.csr_matrix) -> np.ndarray:
    """``(a @ b)`` as a dense (n, d) float32 array, without a sparse intermediate."""
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.float32)
    args = (a.indptr, a.indices, a.data, b.indptr, b.indices, b.data.astype(np.float32), out)
    if a.shape[0] > 1 and _work(a, b) + out.size >= PARALLEL_MIN_WORK:
        _spmm_parallel(*args)
    else:
        _spmm_rows(*args, 0, a.shape[0])
    return out


def top_neighbors(
    a: sp.csr_matrix,
    b: sp.csr_matrix,
    n: int,
    *,
    row_den: np.ndarray,
    col_den: np.ndarray,
    shrink: float = 0.0,
    row_scale: np.ndarray | None = None,
    col_scale: np.ndarray | None = None,
    skip_diagonal: bool = False,
    col_len: np.ndarray | None = None,
) -> sp.csr_matrix:
    """The ``n`` best columns of each row of ``similarity[r, c] = (a @ b)[r, c]
    row_scale[r] col_scale[c] / (row_den[r] col_den[c] + shrink)``.

    Parameters
    ----------
    a : (n_rows, m) CSR
    b : (m, n_cols) CSR
        A ``b`` whose values are all 1 is read as its structure only.
    n : int
        Neighbours kept per row (positive similarities only, ties to the smaller column).
    row_den : (n_rows,) float
    col_den : (n_cols,) float
        Denominator factors (e.g. norms raised to the asymmetry exponents).
    shrink : float
        Added to every denominator.
    row_scale : (n_rows,) float, optional
    col_scale : (n_cols,) float, optional
        Factors of the products (ones by default).
    skip_diagonal : bool
        Leave out column ``r`` of row ``r`` (square products: an item and itself).
    col_len : (n_cols,) int, optional
        Number of stored entries of each column of ``b.T``; a column all of whose entries
        co-occur with the row is left out.

    Returns
    -------
    (n_rows, n_cols) CSR float32, at most ``n`` entries per row, sorted by column.
    """
    n_rows, n_cols = a.shape[0], b.shape[1]
    n = max(1, min(int(n), n_cols))
    chunk = max(1, CHUNK_ENTRIES // n)
    cl = np.zeros(0, np.int64) if col_len is None else np.asarray(col_len, np.int64)
    parallel = n_rows > 1 and _work(a, b) + n_rows * n_cols >= PARALLEL_MIN_WORK
    blocks_max = _BLOCKS_PER_THREAD * numba.get_num_threads()
    a_indptr = a.indptr.astype(np.int64)
    a_data = a.data.astype(np.float32)  # (float32 reads: the sparse search is memory-bound)
    b_indptr = b.indptr.astype(np.int64)
    b_data = _values_or_none(b)
    row_den = np.asarray(row_den, np.float64)
    col_den = np.asarray(col_den, np.float64)
    rs = np.ones(n_rows) if row_scale is None else np.asarray(row_scale, np.float64)
    cs = np.ones(n_cols) if col_scale is None else np.asarray(col_scale, np.float64)
    idx_parts, val_parts = [], []
    for start in range(0, n_rows, chunk):
        stop = min(n_rows, start + chunk)
        out_idx = np.empty((stop - start, n), dtype=np.int64)
        out_val = np.empty((stop - start, n), dtype=np.float64)
        args = (
            a_indptr[start : stop + 1],
            a.indices,
            a_data,
            b_indptr,
            b.indices,
            b_data,
            row_den[start:stop],
            col_den,
            rs[start:stop],
            cs,
            float(shrink),
            start if skip_diagonal else -n_rows - n_cols,  # no column equals r + offset
            cl,
            out_idx,
            out_val,
        )
        if parallel:
            _top_rows_parallel(*args, max(1, min(stop - start, blocks_max)))
        else:
            _top_rows(*args, 0, 1)
        idx_parts.append(out_idx)
        val_parts.append(out_val)
    idx = np.concatenate([np.zeros((0, n), np.int64), *idx_parts])
    val = np.concatenate([np.zeros((0, n)), *val_parts])
    return _lists_to_csr(idx, val, n_cols)


def gram_neighbors(
    x: sp.csr_matrix,
    n: int,
    *,
    row_den: np.ndarray,
    col_den: np.ndarray,
    shrink: float = 0.0,
    scale: np.ndarray | None = None,
    user_weights: np.ndarray | None = None,
) -> sp.csr_matrix:
    """The ``n`` best neighbours of each column (item) of a (n_users, n_items) ``x``:
    :func:`top_neighbors` of ``G[i, j] / (row_den[i] col_den[j] + shrink)``, the diagonal
    left out, for the Gram matrix ``G[i, j] = scale[i] scale[j] sum_u user_weights[u]
    x[u, i] x[u, j]`` (``scale`` and ``user_weights`` default to ones).

    A binary ``x`` is searched by its structure only, the weights applied apart.

    Returns
    -------
    (n_items, n_items) CSR float32, at most ``n`` entries per row, sorted by column.
    """
    x = sp.csr_matrix(x)
    a = x if user_weights is None else sp.csr_matrix(sp.diags(user_weights) @ x)
    return top_neighbors(
        sp.csr_matrix(a.T, dtype=np.float32),
        x,
        n,
        row_den=row_den,
        col_den=col_den,
        shrink=shrink,
        row_scale=scale,
        col_scale=scale,
        skip_diagonal=True,
    )


def _values_or_none(b: sp.csr_matrix) -> np.ndarray:
    """``b``'s values as float32, or an empty array when all are 1 (structure only)."""
    data = b.data.astype(np.float32)
    return data[:0] if np.all(data == 1.0) else data


def _lists_to_csr(idx: np.ndarray, val: np.ndarray, n_cols: int) -> sp.csr_matrix:
    """CSR float32 (columns sorted) from (n_rows, n) neighbour lists padded with -1."""
    order = np.argsort(np.where(idx >= 0, idx, n_cols), axis=1)  # padding last
    idx = np.take_along_axis(idx, order, axis=1)
    val = np.take_along_axis(val, order, axis=1)
    keep = idx >= 0
    indptr = np.zeros(len(idx) + 1, dtype=np.int64)
    np.cumsum(keep.sum(axis=1), out=indptr[1:])
    return sp.csr_matrix(
        (val[keep].astype(np.float32), idx[keep].astype(np.int32), indptr),
        shape=(len(idx), n_cols),
    )


# ----------------------------------------------------------------------------- weighting
def weight_rows(
    x: sp.csr_matrix, weighting: Weighting, k1: float, b: float, item_sums: np.ndarray
) -> sp.csr_matrix:
    """Weigh the rows (users or histories) of a (n, n_items) interaction matrix.

    As implicit's ``bm25_weight``/``tfidf_weight`` on the item x user matrix: items are the
    documents, users the terms. A row with ``n_u`` items gets ``idf = log(n_items) -
    log1p(n_u)``; BM25 turns a value ``v`` of item ``i`` into ``v (k1 + 1) / (k1 L_i + v)
    idf`` with ``L_i = (1 - b) + b s_i / mean(s)`` for the item sums ``s`` of the training
    matrix (``item_sums``); TF-IDF into ``sqrt(v) idf``. ``"none"`` returns ``x``.
    """
    if weighting == "none":
        return x
    tf = _term_weights(x.data.astype(np.float64), x.indices, weighting, k1, b, item_sums)
    data = tf * np.repeat(row_idf(x, weighting), np.diff(x.indptr))
    return sp.csr_matrix((data.astype(np.float32), x.indices, x.indptr), shape=x.shape)


def row_idf(x: sp.csr_matrix, weighting: Weighting) -> np.ndarray:
    """The rows' IDF factors of :func:`weight_rows`, shape (n,) float64 (ones for "none")."""
    lengths = np.diff(x.indptr)
    if weighting == "none":
        return np.ones(len(lengths))
    return np.log(x.shape[1]) - np.log1p(lengths)


def _term_weights(
    v: np.ndarray,
    items: np.ndarray,
    weighting: Weighting,
    k1: float,
    b: float,
    item_sums: np.ndarray,
) -> np.ndarray:
    """The value part of :func:`weight_rows` for values ``v`` of ``items`` (float64)."""
    if weighting == "tfidf":
        return np.sqrt(v)
    if weighting == "bm25":
        mean = float(item_sums.mean()) if item_sums.size else 1.0
        length = (1.0 - b) + b * item_sums[items] / (mean if mean > 0 else 1.0)
        return v * (k1 + 1.0) / (k1 * length + v)
    return v


def _squared_norms(x: sp.csr_matrix, axis: int) -> np.ndarray:
    """Squared L2 norms of the columns (``axis=0``) or rows (``axis=1``), float64."""
    sq = x.data.astype(np.float64) ** 2
    if axis == 0:
        return np.bincount(x.indices, weights=sq, minlength=x.shape[1])
    rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
    return np.bincount(rows, weights=sq, minlength=x.shape[0])


# ----------------------------------------------------------------------------- models
class _Neighbourhood(Recommender):
    """Shared parameter handling and weighting of :class:`ItemKNN` and :class:`UserKNN`."""

    neighbors: int | None
    similarity: Similarity
    alpha: float
    shrink: float
    weighting: Weighting
    bm25_k1: float
    bm25_b: float
    binary: bool

    def _validate_params(self) -> None:
        nb = self.neighbors
        if nb is not None and (
            not isinstance(nb, int | np.integer) or isinstance(nb, bool) or nb <= 0
        ):
            raise ConfigError(f"neighbors must be a positive integer or None, got {nb!r}")
        if self.similarity not in SIMILARITIES:
            raise ConfigError(
                f"similarity must be one of {', '.join(map(repr, SIMILARITIES))}, "
                f"got {self.similarity!r}"
            )
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(
                f"weighting must be one of {', '.join(map(repr, WEIGHTINGS))}, "
                f"got {self.weighting!r}"
            )
        _check_real("alpha", self.alpha, 0.0, 1.0)
        _check_real("shrink", self.shrink, 0.0, np.inf)
        _check_real("bm25_k1", self.bm25_k1, 0.0, np.inf)
        _check_real("bm25_b", self.bm25_b, 0.0, 1.0)
        if not isinstance(self.binary, bool | np.bool_):
            raise ConfigError(f"binary must be True or False, got {self.binary!r}")

    def _values(self, x: sp.csr_matrix) -> sp.csr_matrix:
        """The matrix as the model reads it: all ones when ``binary``, float32."""
        x = sp.csr_matrix(x, dtype=np.float32)
        if self.binary:
            x = sp.csr_matrix((np.ones(x.nnz, np.float32), x.indices, x.indptr), shape=x.shape)
        return x

    def _weigh(self, x: sp.csr_matrix, item_sums: np.ndarray) -> sp.csr_matrix:
        return weight_rows(x, self.weighting, self.bm25_k1, self.bm25_b, item_sums)

    def _item_factors(self, item_sums: np.ndarray) -> np.ndarray:
        """With ``binary``, a weight is ``row_idf[u] * g[i]``: the item factors ``g``."""
        ones = np.ones(len(item_sums))
        items = np.arange(len(item_sums))
        w, k1, b = self.weighting, self.bm25_k1, self.bm25_b
        return _term_weights(ones, items, w, k1, b, item_sums)

    def _den(self, sq_norms: np.ndarray, target: bool) -> np.ndarray:
        """Denominator factors from squared norms: ``|t|^(2 alpha)`` for targets,
        ``|s|^(2 (1 - alpha))`` for sources, ones for ``similarity="dot"``."""
        if self.similarity == "dot":
            return np.ones_like(sq_norms)
        return sq_norms ** (float(self.alpha) if target else 1.0 - float(self.alpha))

    def _n(self, n_cols: int) -> int:
        return n_cols if self.neighbors is None else int(self.neighbors)


class ItemKNN(_Neighbourhood):
    """Item-based k-nearest neighbours: a history scores ``h @ S``.

    ``S`` (``similarity_``, n_items x n_items sparse) holds, in row ``i``, item ``i``'s
    ``neighbors`` most similar target items ``j`` (Deshpande & Karypis; implicit): item
    ``j``'s score is ``sum_i h_i S[i, j]``, an exact sum of one contribution per history
    item (the explanation), and each history item votes for its own neighbours. ``S`` has
    no diagonal. (Pruning the columns instead, each target's neighbourhood as RecBole's
    ItemKNN does, scored the same on ML-100K validation on average over a grid.)

    The defaults are the best on ML-100K validation NDCG@10 (``benchmarks/bench_knn.py``).

    Parameters
    ----------
    neighbors : int or None
        Neighbours kept per item, the entries of a row of ``S`` (``None``: all items
        with a positive similarity).
    similarity : {"cosine", "dot"}
        ``"cosine"`` uses ``alpha`` and the norms; ``"dot"`` the plain dot product
        (implicit's BM25Recommender is ``weighting="bm25", similarity="dot"``).
    alpha : float in [0, 1]
        Asymmetry (Aiolli 2013): the target's norm counts with ``2 alpha``, the history
        item's with ``2 (1 - alpha)``; 0.5 is the cosine. On binary data ``alpha = 1``
        gives ``P(history item | target)``, ``alpha = 0`` ``P(target | history item)``.
    shrink : float >= 0
        Added to the denominator: pulls similarities resting on few users towards 0.
    weighting : {"none", "bm25", "tfidf"}
        Weighting of the user x item matrix before comparing items (see
        :func:`weight_rows`).
    bm25_k1, bm25_b : float
        BM25's saturation ``k1 >= 0`` and length normalization ``b`` in [0, 1].
    binary : bool
        Read every event as 1.0 (implicit feedback); ``False`` uses the values (ratings),
        also in the history.
    half_life : float or None
        Recency of the history, in events: the item of the ``p``-th last event (``p = 0``
        the latest) weighs ``0.5 ** (p / half_life)`` in ``h`` (a repeated item counts at
        its latest event). ``None``: every history item weighs the same. Next-item data
        (the leave-last-out protocol) favours a short half-life; the similarity is learned
        the same way either way.

    Examples
    --------
    >>> import pandas as pd
    >>> from recstack.data import Interactions
    >>> log = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": list("ababc")})
    >>> model = ItemKNN(neighbors=5).fit(Interactions.from_frame(log))
    >>> model.recommend(histories=[["a"]], k=1).item_ids.tolist()
    [['b']]
    """

    name = "itemknn"
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {
        "neighbors": ("int", 5, 200, "log"),
        "alpha": ("float", 0.0, 1.0),
        "shrink": ("float", 0.0, 100.0),
        "weighting": ("categorical", ["none", "bm25", "tfidf"]),
        "bm25_k1": ("float", 0.1, 3.0),
        "bm25_b": ("float", 0.0, 1.0),
        "half_life": ("categorical", [None, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]),
    }

    def __init__(
        self,
        neighbors: int | None = 5,
        similarity: Similarity = "cosine",
        alpha: float = 0.2,
        shrink: float = 0.0,
        weighting: Weighting = "bm25",
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
        binary: bool = True,
        half_life: float | None = None,
    ) -> None:
        self.neighbors = neighbors
        self.similarity = similarity
        self.alpha = alpha
        self.shrink = shrink
        self.weighting = weighting
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.binary = binary
        self.half_life = half_life

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self.similarity_ = self.build_similarity(train.matrix)

    def build_similarity(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        """The (n_items, n_items) float32 CSR ``S`` of a (n_users, n_items) matrix."""
        x = self._values(matrix)
        item_sums = np.asarray(x.sum(axis=0), dtype=np.float64).ravel()
        xw = self._weigh(x, item_sums)
        sq = _squared_norms(xw, axis=0)
        scale = user_weights = None
        if self.binary:
            # every weight is f[u] g[i], so <i, j> = g[i] g[j] sum_u f[u]^2 over their users:
            # the search reads only the structure of x (it is memory-bound)
            xw = x
            if self.weighting != "none":
                scale = self._item_factors(item_sums)
                user_weights = row_idf(x, self.weighting) ** 2
        return gram_neighbors(
            xw,
            self._n(x.shape[1]),
            row_den=self._den(sq, target=False),  # row i: history item i, its top N kept
            col_den=self._den(sq, target=True),
            shrink=float(self.shrink),
            scale=scale,
            user_weights=user_weights,
        )

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.half_life is not None:
            _check_real("half_life", self.half_life, 0.0, np.inf)
            if not self.half_life > 0:
                raise ConfigError(f"half_life must be positive or None, got {self.half_life!r}")

    def history_weights(self, histories: Histories) -> sp.csr_matrix:
        """The (n, n_items) float32 ``h`` of each history (values or ones, times recency)."""
        if self.half_life is None:
            return self._values(histories.to_csr())
        return histories.decayed(self.half_life, ones=self.binary).to_csr()

    def _score(self, histories: Histories) -> np.ndarray:
        return sparse_dense_product(self.history_weights(histories), self.similarity_)

    def similar_items(
        self, items: Sequence[object] | np.ndarray, k: int = 10, unknown: UnknownPolicy = "raise"
    ) -> Recommendations:
        """The ``k`` items scored highest for a history of the query item alone: row ``q``
        of ``S`` (the query excluded; items without similarity score 0, by index)."""
        self._check_fitted()
        queries = as_id_array(items)
        idx = self.items_.index(queries, unknown=unknown)
        q = np.maximum(idx, 0)
        scores = self.similarity_[q].toarray().astype(np.float32)
        self_mask = sp.csr_matrix(
            (np.ones(len(q), np.float32), (np.arange(len(q)), q)), shape=scores.shape
        )
        index, top = topk(scores, k, exclude=self_mask)
        index[idx < 0], top[idx < 0] = -1, -np.inf  # an unknown query item gets no list
        return Recommendations(queries, index, top, self.items_, idx >= 0)


class UserKNN(_Neighbourhood):
    """User-based k-nearest neighbours: a history is scored by its most similar training
    users, ``score_j = sum_v sim(h, v) x_vj`` over the ``neighbors`` best users ``v``.

    The history (a known user's, a new user's or a session) is compared with the stored
    training rows (``user_items_``) as a target with ``alpha``; a new history is weighted
    like a training row (its own IDF, the training items' BM25 lengths).

    A stored user whose items all lie in the history is never a neighbour: it has nothing
    to add beyond the history (its items are excluded from the ranking). This is what
    keeps a known user from being their own nearest neighbour when scored from their
    training history (RecBole-style models keep that copy and so lose one neighbour slot
    to it), while the scores still depend only on the history, as the contract requires:
    a known user and a new user with the same history get the same list.

    The defaults are the best on ML-100K validation NDCG@10 (``benchmarks/bench_knn.py``).

    Parameters
    ----------
    neighbors : int or None
        Training users kept per history (``None``: all with a positive similarity).
    similarity, alpha, shrink, weighting, bm25_k1, bm25_b, binary
        As for :class:`ItemKNN`, with users in place of items: ``alpha`` weighs the
        history's norm, ``1 - alpha`` the stored user's.

    Examples
    --------
    >>> import pandas as pd
    >>> from recstack.data import Interactions
    >>> log = pd.DataFrame({"user_id": [1, 1, 2, 2, 2, 3], "item_id": list("ababcc")})
    >>> model = UserKNN(neighbors=5).fit(Interactions.from_frame(log))
    >>> model.recommend(histories=[["a"]], k=2).item_ids.tolist()
    [['b', 'c']]
    """

    name = "userknn"
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {
        "neighbors": ("int", 5, 400, "log"),
        "alpha": ("float", 0.0, 1.0),
        "shrink": ("float", 0.0, 100.0),
        "weighting": ("categorical", ["none", "bm25", "tfidf"]),
        "bm25_k1": ("float", 0.1, 3.0),
        "bm25_b": ("float", 0.0, 1.0),
    }

    def __init__(
        self,
        neighbors: int | None = 10,
        similarity: Similarity = "cosine",
        alpha: float = 0.5,
        shrink: float = 10.0,
        weighting: Weighting = "bm25",
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
        binary: bool = True,
    ) -> None:
        self.neighbors = neighbors
        self.similarity = similarity
        self.alpha = alpha
        self.shrink = shrink
        self.weighting = weighting
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.binary = binary

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self.user_items_ = self._values(train.matrix)
        self._prepare()

    def _after_load(self) -> None:
        self._prepare()

    def _prepare(self) -> None:
        """The stored rows for the neighbour search (item-major) and their norms."""
        x = self.user_items_
        self._item_sums = np.asarray(x.sum(axis=0), dtype=np.float64).ravel()
        xw = self._weigh(x, self._item_sums)
        self._source_den = self._den(_squared_norms(xw, axis=1), target=False)
        self._user_len = np.diff(x.indptr).astype(np.int64)
        if self.binary:  # weights f[v] g[i]: search the structure, scale by f and g apart
            self._search_t = sp.csr_matrix(x.T)  # (n_items, n_users), all ones
            self._user_scale: np.ndarray | None = row_idf(x, self.weighting)
            self._g: np.ndarray | None = self._item_factors(self._item_sums)
        else:
            self._search_t = sp.csr_matrix(xw.T)
            self._user_scale = self._g = None

    def neighbors_of(self, histories: Histories) -> sp.csr_matrix:
        """The training users kept for each history and their similarities, a
        (n, n_users) float32 CSR: the scores are ``neighbors_of(h) @ user_items_``."""
        self._check_fitted()
        hw = self._weigh(self._values(histories.to_csr()), self._item_sums)
        row_den = self._den(_squared_norms(hw, axis=1), target=True)
        if self._g is not None:
            hw.data *= self._g[hw.indices].astype(np.float32)
        return top_neighbors(
            hw,
            self._search_t,
            self._n(self.user_items_.shape[0]),
            row_den=row_den,
            col_den=self._source_den,
            shrink=float(self.shrink),
            col_len=self._user_len,
            col_scale=self._user_scale,
        )

    def _score(self, histories: Histories) -> np.ndarray:
        return sparse_dense_product(self.neighbors_of(histories), self.user_items_)


def _check_real(name: str, value: object, lo: float, hi: float) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not lo <= float(value) <= hi:  # type: ignore[arg-type]  # NaN fails too
        bounds = f"in [{lo:g}, {hi:g}]" if np.isfinite(hi) else f">= {lo:g}"
        raise ConfigError(f"{name} must be a number {bounds}, got {value!r}")
