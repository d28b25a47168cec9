"""Exact decompositions of the factor models whose fold-in is (piecewise) linear in the history.

ALS, the Hu-Koren-Volinsky explanation (Hu, Koren & Volinsky, ICDM 2008, sec. 5): ALS folds
a history in as ``x_u = W_u Y^T C_u p_u`` with ``W_u = (Y^T C_u Y + lambda I)^-1``, so the
score of target ``t`` is ``x_u . y_t = sum_j c_uj p_uj (y_j^T W_u y_t)``: an exact sum of
one term per history item ``j``, each the item's confidence times a user-specific item-item
similarity. One factorization per history serves all its ``K`` targets: of its ``k x k``
system, or, for a history of ``m`` items well below ``k``, of the ``m x m`` system that
Woodbury's identity gives with ``Y (Y^T Y + lambda I)^-1`` (computed once per model,
``n_items x k`` float64).

NMF: the fold-in runs cyclic coordinate descent from ``w = 0`` on
``0.5 w G w - u . w + 0.5 l2 |w|^2`` over ``w >= 0``, with ``u = sum_j x_j h_j - l1``
(:class:`~recstack.models.NMF`). Each step sets one coordinate to an affine function of
``w`` and ``u`` or clips it to 0, so the ``w`` it returns is ``J u`` for the matrix ``J``
of the steps it took (with the clipped ones as they fell): replaying the fold-in while
carrying ``J`` gives the score ``h_t . w = sum_j x_j h_t^T J (h_j - l1 / sum(x))``, one
exact term per history item, the L1 penalty shared in proportion to the items' values
(equally on binary data). Converged, ``J`` is ``(G_AA + l2 I)^-1`` on the active factors
``A``, and a term is the item's leave-one-out drop as long as its removal keeps ``A``.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import numba
import numpy as np

from recstack.data import Histories
from recstack.errors import DataError
from recstack.explain.attribution import Attribution, row_sums
from recstack.models import _als_kernels as K

if TYPE_CHECKING:
    from recstack.models.als import ALS
    from recstack.models.nmf import NMF


@numba.njit(cache=True, nogil=True, fastmath=True)
def _hkv_woodbury(
    lo: int,
    hi: int,
    indices: np.ndarray,
    data: np.ndarray,
    alpha: float,
    factors: np.ndarray,
    solved: np.ndarray,
    targets: np.ndarray,
    out: np.ndarray,
    bb: np.ndarray,
    s: np.ndarray,
    pos: np.ndarray,
) -> None:
    """The terms of one row by its ``m x m`` system (``alpha > 0``): with the row's ``m``
    positive entries ``A``, ``D = diag(alpha r_A)``, ``P = Y G^-1`` (``solved``) and
    ``B = D^-1 + Y_A P_A^T``, Woodbury's identity gives ``Y_A W_u y_t = D^-1 B^-1 P_A y_t``:
    a term is ``c_j / (alpha r_j) (B^-1 P_A y_t)_j``. ``bb, s, pos`` are scratch."""
    k = factors.shape[1]
    m = 0
    for e in range(lo, hi):
        if data[e] > 0.0:
            pos[m] = e
            m += 1
    if m == 0:
        return
    for i in range(m):  # lower triangle of B
        y = factors[indices[pos[i]]]
        for j in range(i + 1):
            p = solved[indices[pos[j]]]
            acc = 0.0
            for f in range(k):
                acc += y[f] * p[f]
            bb[i, j] = acc
        bb[i, i] += 1.0 / (alpha * np.float64(data[pos[i]]))
    ell = bb[:m, :m]
    K._cholesky(ell)
    for c in range(len(targets)):
        y_t = factors[targets[c]]
        for i in range(m):
            p = solved[indices[pos[i]]]
            acc = 0.0
            for f in range(k):
                acc += p[f] * y_t[f]
            s[i] = acc
        K._cho_solve(ell, s[:m])
        for i in range(m):
            d = alpha * np.float64(data[pos[i]])
            out[pos[i], c] = (1.0 + d) / d * s[i]


@numba.njit(parallel=True, cache=True, nogil=True)
def _hkv_terms(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    alpha: float,
    factors: np.ndarray,
    gram: np.ndarray,
    solved: np.ndarray,
    small: np.ndarray,
    targets: np.ndarray,
    out: np.ndarray,
    bounds: np.ndarray,
) -> None:
    """``out[e, k] = c_e p_e y_e^T W_u y_t`` for entry ``e`` of row ``u`` and
    ``t = targets[u, k]``, with ``c = 1 + alpha r``, ``p = [r > 0]``; ``gram`` is
    ``Y^T Y + lambda I`` and ``solved`` ``Y gram^-1`` (float64). A row goes through its
    ``m x m`` system (:func:`_hkv_woodbury`) where ``small`` says so, else through its
    ``k x k`` one (ALS's :func:`~recstack.models._als_kernels.hkv_row`); the row chunks
    ``bounds`` in parallel (no BLAS: a BLAS thread pool on a busy machine costs 20x here)."""
    k = factors.shape[1]
    for ch in numba.prange(len(bounds) - 1):
        longest = K._max_row_length(indptr, bounds[ch], bounds[ch + 1])
        a = np.empty((k, k))
        b = np.empty(k)
        w = np.empty(longest)
        bb = np.empty((min(longest, k), min(longest, k)))
        s = np.empty(longest)
        pos = np.empty(longest, dtype=np.int64)
        for u in range(bounds[ch], bounds[ch + 1]):
            lo, hi = indptr[u], indptr[u + 1]
            if hi == lo:
                continue
            if small[u]:
                _hkv_woodbury(lo, hi, indices, data, alpha, factors, solved, targets[u], out,
                              bb, s, pos)  # fmt: skip
            else:
                K.hkv_row(lo, hi, indices, data, alpha, factors, gram, targets[u], out,
                          a, b, w)  # fmt: skip


@numba.njit(parallel=True, cache=True, nogil=True, fastmath=True)
def _solve_items(factors: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """``Y gram^-1`` (n_items, k) float64, one Cholesky solve per item."""
    ell = gram.copy()
    K._cholesky(ell)
    out = np.empty((factors.shape[0], factors.shape[1]))
    for i in numba.prange(factors.shape[0]):
        for f in range(factors.shape[1]):
            out[i, f] = factors[i, f]
        K._cho_solve(ell, out[i])
    return out


def woodbury_rows(lengths: np.ndarray, k: int, n_targets: int, alpha: float) -> np.ndarray:
    """Which rows of ``lengths`` items cost less through their ``m x m`` system than through
    the ``k x k`` one (multiply-adds of the system, its factorization and the solves; the
    terms cost the same), (n,) bool; none when ``alpha = 0`` (``D`` is not invertible)."""
    m = lengths.astype(np.float64)
    direct = m * k * k / 2 + k**3 / 6 + n_targets * k * k
    small = m * m * k / 2 + m**3 / 6 + n_targets * m * (k + m)
    return (small < direct) & (m <= k) & (alpha > 0)


def als_attribution(model: ALS, histories: Histories, targets: np.ndarray) -> Attribution:
    """ALS: the Hu-Koren-Volinsky terms ``c_uj p_uj y_j^T W_u y_t`` (exact: they sum to the
    folded-in score ``x_u . y_t``; :meth:`ALS.explain_weights` computes the same terms for
    one target per history)."""
    x = histories.to_csr()
    if x.nnz and x.data.min() < 0:
        raise DataError(f"ALS: history values must be >= 0, got {float(x.data.min())}")
    y = np.ascontiguousarray(model.item_factors_, dtype=np.float32)
    gram, solved = _gram(model)
    indptr = x.indptr.astype(np.int64)
    terms = np.zeros((x.nnz, targets.shape[1]))
    k = y.shape[1]
    small = woodbury_rows(np.diff(indptr), k, targets.shape[1], float(model.alpha))
    _hkv_terms(
        indptr, x.indices.astype(np.int64), x.data.astype(np.float32), float(model.alpha), y,
        gram, solved, small, targets.astype(np.int64), terms, K.work_chunks(indptr, k / 2),
    )  # fmt: skip
    scores = row_sums(indptr, terms)
    return Attribution(indptr, x.indices.astype(np.int32), terms, scores, targets, "hkv", True)


#: ``(Y^T Y + lambda I, Y (Y^T Y + lambda I)^-1)`` of each explained model, with the
#: factors and regularization they were computed from
_GRAMS: weakref.WeakKeyDictionary[ALS, tuple[np.ndarray, float, np.ndarray, np.ndarray]] = (
    weakref.WeakKeyDictionary()
)


def _gram(model: ALS) -> tuple[np.ndarray, np.ndarray]:
    """``G = Y^T Y + lambda I`` (k, k) and ``Y G^-1`` (n_items, k), float64, cached per
    model until it is refit."""
    y, reg = model.item_factors_, float(model.regularization)
    cached = _GRAMS.get(model)
    if cached is not None and cached[0] is y and cached[1] == reg:
        return cached[2], cached[3]
    gram = K.gram(y, reg)
    solved = _solve_items(np.ascontiguousarray(y, dtype=np.float32), gram)
    _GRAMS[model] = (y, reg, gram, solved)
    return gram, solved


# ---------------------------------------------------------------------------- NMF
@numba.njit(cache=True, fastmath=True, nogil=True)
def _nmf_row(
    lo: int,
    hi: int,
    indices: np.ndarray,
    data: np.ndarray,
    h: np.ndarray,
    gram: np.ndarray,
    l1: float,
    l2: float,
    sweeps: int,
    targets: np.ndarray,
    terms: np.ndarray,
    scores: np.ndarray,
) -> None:
    """The NMF terms of one history (entries ``lo:hi``) for ``targets`` (K,) into
    ``terms[lo:hi]`` and the folded-in scores into ``scores`` (module docstring)."""
    k = h.shape[1]
    xh = np.zeros(k)
    total = 0.0
    for e in range(lo, hi):  # as the fold-in's product x H, entry by entry
        total += data[e]
        for f in range(k):
            xh[f] += data[e] * h[indices[e], f]
    # the fold-in (models.nmf._cd_rows), carrying J = dw/du over the columns it touched
    w = np.zeros(k)
    jac = np.zeros((k, k))
    live = np.zeros(k, dtype=np.bool_)  # rows of J that are not 0
    cols = np.empty(k, dtype=np.int64)  # columns of J that may be non-zero
    n_cols = 0
    touched = np.zeros(k, dtype=np.bool_)
    row = np.empty(k)
    for _ in range(sweeps):
        for t in range(k):
            hess = gram[t, t] + l2
            if hess <= 0.0:
                continue
            grad = l1 + l2 * w[t] - xh[t]
            for r in range(k):
                grad += gram[t, r] * w[r]
            new = w[t] - grad / hess
            if new > 0.0:  # J[t] <- J[t] - (l2 J[t] + G[t] J - e_t) / hess
                if not touched[t]:
                    touched[t] = True
                    cols[n_cols] = t
                    n_cols += 1
                for q in range(n_cols):
                    row[cols[q]] = (1.0 - l2 / hess) * jac[t, cols[q]]
                for r in range(k):
                    if live[r]:
                        coef = gram[t, r] / hess
                        for q in range(n_cols):
                            row[cols[q]] -= coef * jac[r, cols[q]]
                row[t] += 1.0 / hess
                for q in range(n_cols):
                    jac[t, cols[q]] = row[cols[q]]
                live[t] = True
                w[t] = new
            else:
                if live[t]:
                    for q in range(n_cols):
                        jac[t, cols[q]] = 0.0
                    live[t] = False
                w[t] = 0.0
    shift = l1 / total if total != 0.0 else 0.0
    even = l1 / (hi - lo) if total == 0.0 else 0.0
    v = np.zeros(k)
    for c in range(len(targets)):
        h_t = h[targets[c]]
        s = 0.0
        for f in range(k):  # the model's score: float32 user factors
            s += np.float64(np.float32(w[f])) * h_t[f]
        scores[c] = s
        for q in range(n_cols):  # v = J^T h_t
            acc = 0.0
            for r in range(k):
                if live[r]:
                    acc += jac[r, cols[q]] * h_t[r]
            v[cols[q]] = acc
        v_sum = 0.0
        for q in range(n_cols):
            v_sum += v[cols[q]]
        for e in range(lo, hi):
            h_j = h[indices[e]]
            s = 0.0
            for q in range(n_cols):
                s += v[cols[q]] * h_j[cols[q]]
            terms[e, c] = data[e] * (s - shift * v_sum) - even * v_sum


@numba.njit(parallel=True, cache=True, nogil=True)
def _nmf_terms(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    h: np.ndarray,
    gram: np.ndarray,
    l1: float,
    l2: float,
    sweeps: int,
    targets: np.ndarray,
    terms: np.ndarray,
    scores: np.ndarray,
) -> None:
    """:func:`_nmf_row` for every row, rows in parallel."""
    for u in numba.prange(len(indptr) - 1):
        _nmf_row(
            indptr[u], indptr[u + 1], indices, data, h, gram, l1, l2, sweeps, targets[u],
            terms, scores[u],
        )  # fmt: skip


def nmf_attribution(model: NMF, histories: Histories, targets: np.ndarray) -> Attribution:
    """NMF: the terms ``x_j h_t^T J (h_j - l1 / sum(x))`` of the fold-in's own steps (exact:
    they sum to the score of the folded-in vector; module docstring)."""
    x = model._matrix(histories.to_csr())
    indptr = x.indptr.astype(np.int64)
    terms = np.zeros((x.nnz, targets.shape[1]))
    scores = np.zeros(targets.shape)
    _nmf_terms(
        indptr, x.indices.astype(np.int64), x.data, model._factors, model._item_gram,
        float(model.l1), float(model.l2), int(model.fold_in_sweeps), targets, terms, scores,
    )  # fmt: skip
    return Attribution(indptr, x.indices.astype(np.int32), terms, scores, targets, "exact", True)
