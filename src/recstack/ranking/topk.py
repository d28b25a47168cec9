"""Top-K selection over score matrices, with exclusions, in one (parallel) pass.

``np.argpartition`` costs several times a 64-dim matmul per score; the numba kernel below
keeps a size-K heap per row and scans each score once, so selecting the top K is cheaper
than computing the scores (the evaluation-overhead benchmark measures it).
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

from recstack.errors import ConfigError

NEG_INF = np.float32(-np.inf)


@numba.njit(inline="always")
def _worse(v_a: float, i_a: int, v_b: float, i_b: int) -> bool:
    """Entry a ranks below entry b: lower score, or equal score and a larger index."""
    return v_a < v_b or (v_a == v_b and i_a > i_b)


@numba.njit(inline="always")
def _sift_down(hv: np.ndarray, hi: np.ndarray, k: int) -> None:
    """Restore the min-heap (worst entry at the root) after the root was replaced."""
    pos = 0
    while True:
        left = 2 * pos + 1
        if left >= k:
            return
        child = left
        right = left + 1
        if right < k and _worse(hv[right], hi[right], hv[left], hi[left]):
            child = right
        if _worse(hv[child], hi[child], hv[pos], hi[pos]):
            hv[pos], hv[child] = hv[child], hv[pos]
            hi[pos], hi[child] = hi[child], hi[pos]
            pos = child
        else:
            return


@numba.njit(cache=True, nogil=True)
def _topk_row(
    row: np.ndarray,
    excluded: np.ndarray,
    k: int,
    out_idx: np.ndarray,
    out_val: np.ndarray,
) -> None:
    """Top ``k`` of one score row (overwritten with -inf at ``excluded``), best first."""
    for p in range(len(excluded)):
        row[excluded[p]] = -np.inf
    hv = np.empty(k, dtype=np.float32)
    hi = np.empty(k, dtype=np.int64)
    count = 0
    for j in range(len(row)):
        v = row[j]
        if not v > -np.inf:  # excluded, -inf or NaN: never recommended
            continue
        if count < k:
            # sift up into the min-heap
            pos = count
            hv[pos] = v
            hi[pos] = j
            count += 1
            while pos > 0:
                parent = (pos - 1) // 2
                if _worse(hv[pos], hi[pos], hv[parent], hi[parent]):
                    hv[pos], hv[parent] = hv[parent], hv[pos]
                    hi[pos], hi[parent] = hi[parent], hi[pos]
                    pos = parent
                else:
                    break
        elif v > hv[0]:  # equal scores keep the earlier (smaller) index
            hv[0] = v
            hi[0] = j
            _sift_down(hv, hi, k)
    # heap -> best-first list: pop the worst to the back
    for slot in range(count - 1, -1, -1):
        out_val[slot] = hv[0]
        out_idx[slot] = hi[0]
        hv[0] = hv[slot]
        hi[0] = hi[slot]
        _sift_down(hv, hi, slot)
    for slot in range(count, k):
        out_val[slot] = -np.inf
        out_idx[slot] = -1


@numba.njit(parallel=True, cache=True, nogil=True)
def _topk_parallel(
    scores: np.ndarray,
    ex_indptr: np.ndarray,
    ex_indices: np.ndarray,
    k: int,
    out_idx: np.ndarray,
    out_val: np.ndarray,
) -> None:
    for r in numba.prange(scores.shape[0]):
        excluded = ex_indices[ex_indptr[r] : ex_indptr[r + 1]]
        _topk_row(scores[r], excluded, k, out_idx[r], out_val[r])


@numba.njit(cache=True, nogil=True)
def _topk_serial(
    scores: np.ndarray,
    ex_indptr: np.ndarray,
    ex_indices: np.ndarray,
    k: int,
    out_idx: np.ndarray,
    out_val: np.ndarray,
) -> None:
    for r in range(scores.shape[0]):
        excluded = ex_indices[ex_indptr[r] : ex_indptr[r + 1]]
        _topk_row(scores[r], excluded, k, out_idx[r], out_val[r])


#: below this many scores a thread launch costs more than it saves (one user, small catalogs)
PARALLEL_MIN_SCORES = 1 << 16


def topk(
    scores: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None = None,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best items of each row, best first.

    Parameters
    ----------
    scores : (n, n_items) float32
        Scores; a writable float32 C-contiguous array is **overwritten** with ``-inf``
        where excluded or not allowed (callers pass a scratch batch); other inputs are
        copied. Items scored ``-inf`` or NaN are never returned.
    k : int
        List length; rows with fewer eligible items (``k > n_items`` included) are padded
        with index ``-1`` and score ``-inf``.
    exclude : (n, n_items) sparse, optional
        Items to exclude per row (its structure is used, not its values), e.g. the history.
    allowed : (n_items,) bool, optional
        Candidate items; the others are excluded for every row.

    Returns
    -------
    index : (n, k) int32
        Item indices; equal scores are ordered by increasing index.
    value : (n, k) float32
        Their scores.
    """
    if not isinstance(k, int | np.integer) or isinstance(k, bool) or k <= 0:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    k = int(k)
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    if not scores.flags.writeable:  # e.g. np.broadcast_to: the kernel writes exclusions
        scores = scores.copy()
    if scores.ndim != 2:
        raise ConfigError(f"scores must be a 2-D (n, n_items) array, got shape {scores.shape}")
    n, m = scores.shape
    if allowed is not None:
        allowed = np.asarray(allowed, dtype=bool)
        if allowed.shape != (m,):
            raise ConfigError(f"allowed must have shape ({m},), got {allowed.shape}")
        scores[:, ~allowed] = NEG_INF
    if exclude is None:
        ex_indptr = np.zeros(n + 1, dtype=np.int64)
        ex_indices = np.zeros(0, dtype=np.int32)
    else:
        exclude = sp.csr_matrix(exclude)
        if exclude.shape != (n, m):
            raise ConfigError(f"exclude must have shape {(n, m)}, got {exclude.shape}")
        ex_indptr, ex_indices = exclude.indptr.astype(np.int64), exclude.indices
    out_idx = np.empty((n, k), dtype=np.int64)
    out_val = np.empty((n, k), dtype=np.float32)
    if n:
        parallel = n > 1 and n * m >= PARALLEL_MIN_SCORES
        kernel = _topk_parallel if parallel else _topk_serial
        kernel(scores, ex_indptr, ex_indices, k, out_idx, out_val)
    return out_idx.astype(np.int32), out_val
