"""Numba kernels of implicit-feedback ALS (Hu, Koren & Volinsky 2008).

One half-step solves, for every row ``u`` of a sparse matrix ``R`` (users for the user step,
items for the item step), the regularized weighted least squares

    x_u = argmin  sum_i c_ui (p_ui - x . y_i)^2 + lam ||x||^2
        = (Y^T C_u Y + lam I)^-1 Y^T C_u p_u,

with confidence ``c_ui = 1 + alpha r_ui`` and preference ``p_ui = [r_ui > 0]``. Unobserved
pairs have ``c = 1, p = 0``, so ``Y^T C_u Y = Y^T Y + sum_{i in R_u} alpha r_ui y_i y_i^T``:
the dense part ``G = Y^T Y + lam I`` is shared, and each row only touches its observed items.

Two solvers: conjugate gradient warm-started from the previous ``x_u`` with a few steps (the
approach of Takacs et al. 2011, as in implicit), in float32; and the exact solve (Cholesky of
the k x k system accumulated in float64), used by the ``"cholesky"`` solver, by fold-in and by
the explanation weights. Rows are processed in chunks of about equal work, in parallel.
"""

from __future__ import annotations

import numba
import numpy as np

#: chunks per thread: the dynamic schedule hands them out as threads free up
_CHUNKS_PER_THREAD = 16


def work_chunks(indptr: np.ndarray, fixed_cost: float) -> np.ndarray:
    """Boundaries of row chunks of about equal work, shape (n_chunks + 1,) int64.

    A row's work is its number of entries plus ``fixed_cost`` (the dense k x k part,
    expressed in entries).
    """
    n = len(indptr) - 1
    n_chunks = max(1, min(n, _CHUNKS_PER_THREAD * numba.get_num_threads()))
    work = np.diff(indptr).astype(np.float64) + fixed_cost
    cum = np.concatenate([[0.0], np.cumsum(work)])
    bounds = np.searchsorted(cum, np.linspace(0.0, cum[-1], n_chunks + 1), side="left")
    bounds[0], bounds[-1] = 0, n
    return np.unique(bounds).astype(np.int64)


def gram(factors: np.ndarray, regularization: float) -> np.ndarray:
    """``F^T F + regularization I`` of ``factors`` (n, k) float32, shape (k, k) float64.

    Computed by numba threads rather than BLAS: a BLAS threadpool that wakes up between
    numba parallel regions fights it for the cores.
    """
    k = factors.shape[1]
    n_parts = max(1, min(len(factors) // 256, 16))  # fixed: same sums on any machine
    parts = np.zeros((n_parts, k, k), dtype=np.float64)
    gram_parts(factors, parts)
    lower = parts.sum(axis=0)
    out = lower + np.tril(lower, -1).T
    out[np.diag_indices_from(out)] += regularization
    return out


@numba.njit(inline="always")
def _dot(a: np.ndarray, b: np.ndarray) -> np.float32:
    s = np.float32(0.0)
    for f in range(a.shape[0]):
        s += a[f] * b[f]
    return s


@numba.njit(inline="always")
def _gram_times(gram: np.ndarray, v: np.ndarray, out: np.ndarray, sign: np.float32) -> None:
    """``out = sign * gram @ v`` (gram symmetric, row-major)."""
    for a in range(gram.shape[0]):
        out[a] = sign * _dot(gram[a], v)


@numba.njit(inline="always")
def _term(
    r: np.float32, alpha: np.float32, s: np.float32, sign: np.float32, with_b: bool
) -> np.float32:
    """``[with_b] c p + sign * alpha r s`` for an entry of value ``r`` (``s = y . v``)."""
    b = (np.float32(1.0) + alpha * r) if (with_b and r > np.float32(0.0)) else np.float32(0.0)
    return b + sign * alpha * r * s


@numba.njit(inline="always")
def _add_rows(
    lo: int,
    hi: int,
    indices: np.ndarray,
    data: np.ndarray,
    alpha: np.float32,
    other: np.ndarray,
    v: np.ndarray,
    out: np.ndarray,
    sign: np.float32,
    with_b: bool,
) -> None:
    """``out += sum_e ([with_b] c_e p_e + sign * alpha r_e (y_e . v)) y_e`` over entries
    ``lo:hi``, ``y_e = other[indices[e]]``.

    Four rows at a time: their (often cache-missing) loads overlap, and ``out`` is updated
    once per four rows; twice as fast as row by row on large data.
    """
    k = out.shape[0]
    e = lo
    while e + 4 <= hi:
        y0, y1 = other[indices[e]], other[indices[e + 1]]
        y2, y3 = other[indices[e + 2]], other[indices[e + 3]]
        s0 = s1 = s2 = s3 = np.float32(0.0)
        for f in range(k):
            vf = v[f]
            s0 += y0[f] * vf
            s1 += y1[f] * vf
            s2 += y2[f] * vf
            s3 += y3[f] * vf
        t0 = _term(data[e], alpha, s0, sign, with_b)
        t1 = _term(data[e + 1], alpha, s1, sign, with_b)
        t2 = _term(data[e + 2], alpha, s2, sign, with_b)
        t3 = _term(data[e + 3], alpha, s3, sign, with_b)
        for f in range(k):
            out[f] += t0 * y0[f] + t1 * y1[f] + t2 * y2[f] + t3 * y3[f]
        e += 4
    while e < hi:
        y = other[indices[e]]
        t = _term(data[e], alpha, _dot(y, v), sign, with_b)
        for f in range(k):
            out[f] += t * y[f]
        e += 1


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def cg_half_step(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    alpha: np.float32,
    other: np.ndarray,
    gram: np.ndarray,
    factors: np.ndarray,
    bounds: np.ndarray,
    cg_steps: int,
) -> None:
    """Update ``factors`` (n, k) float32 in place by ``cg_steps`` CG steps per row.

    ``indptr/indices/data`` are the CSR rows of ``R`` (float32 ``r``), ``other`` (m, k) the
    fixed factors, ``gram`` = ``other^T other + lam I`` (k, k) float32, ``bounds`` the row
    chunks of :func:`work_chunks`.
    """
    k = factors.shape[1]
    one = np.float32(1.0)
    zero = np.float32(0.0)
    for c in numba.prange(len(bounds) - 1):
        r = np.empty(k, dtype=np.float32)  # residual b - A x
        p = np.empty(k, dtype=np.float32)  # search direction
        ap = np.empty(k, dtype=np.float32)
        for u in range(bounds[c], bounds[c + 1]):
            x = factors[u]
            if indptr[u] == indptr[u + 1]:
                x[:] = zero  # no preference at all: the solution is exactly 0
                continue
            # r = Y^T C_u p_u - (G + sum alpha r y y^T) x, only observed items touched
            lo, hi = indptr[u], indptr[u + 1]
            _gram_times(gram, x, r, -one)
            _add_rows(lo, hi, indices, data, alpha, other, x, r, -one, True)
            rs_old = _dot(r, r)
            if rs_old < 1e-20:
                continue
            p[:] = r
            for _ in range(cg_steps):
                _gram_times(gram, p, ap, one)  # ap = (G + sum alpha r y y^T) p
                _add_rows(lo, hi, indices, data, alpha, other, p, ap, one, False)
                step = rs_old / _dot(p, ap)
                for f in range(k):
                    x[f] += step * p[f]
                    r[f] -= step * ap[f]
                rs_new = _dot(r, r)
                if rs_new < 1e-20:
                    break
                beta = rs_new / rs_old
                for f in range(k):
                    p[f] = r[f] + beta * p[f]
                rs_old = rs_new


@numba.njit(cache=True, fastmath=True, nogil=True)
def _rank_update(
    acc: np.ndarray, rows: np.ndarray, idx: np.ndarray, w: np.ndarray, lo: int, hi: int
) -> None:
    """Lower triangle of ``acc += sum_e w[e] rows[idx[e]] rows[idx[e]]^T`` for e in [lo, hi).

    Four rows at a time, so ``acc`` is read and written once per four rank-1 updates.
    """
    k = acc.shape[0]
    e = lo
    while e + 4 <= hi:
        y0, y1, y2, y3 = rows[idx[e]], rows[idx[e + 1]], rows[idx[e + 2]], rows[idx[e + 3]]
        w0, w1, w2, w3 = w[e], w[e + 1], w[e + 2], w[e + 3]
        for i in range(k):
            a0, a1, a2, a3 = w0 * y0[i], w1 * y1[i], w2 * y2[i], w3 * y3[i]
            row = acc[i]
            for j in range(i + 1):
                row[j] += a0 * y0[j] + a1 * y1[j] + a2 * y2[j] + a3 * y3[j]
        e += 4
    while e < hi:
        y0, w0 = rows[idx[e]], w[e]
        for i in range(k):
            a0 = w0 * y0[i]
            row = acc[i]
            for j in range(i + 1):
                row[j] += a0 * y0[j]
        e += 1


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def gram_parts(factors: np.ndarray, parts: np.ndarray) -> None:
    """``parts[c]`` (zeroed, (n_parts, k, k)) += lower triangle of chunk ``c``'s ``F^T F``;
    the chunks split the rows of ``factors`` (n, k) evenly."""
    n = factors.shape[0]
    n_parts = parts.shape[0]
    idx = np.arange(n)
    w = np.ones(n, dtype=np.float64)
    for c in numba.prange(n_parts):
        _rank_update(parts[c], factors, idx, w, c * n // n_parts, (c + 1) * n // n_parts)


@numba.njit(cache=True, fastmath=True, nogil=True)
def _build_system(
    lo: int,
    hi: int,
    indices: np.ndarray,
    data: np.ndarray,
    alpha: float,
    other: np.ndarray,
    gram: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    w: np.ndarray,
) -> None:
    """Lower triangle of ``a = G + sum alpha r y y^T`` and ``b = sum c p y`` (float64);
    ``w`` is scratch of at least ``hi - lo`` float64."""
    k = a.shape[0]
    for i in range(k):
        b[i] = 0.0
        for j in range(i + 1):
            a[i, j] = gram[i, j]
    for e in range(lo, hi):
        r = np.float64(data[e])
        w[e - lo] = alpha * r
        if r > 0.0:
            y = other[indices[e]]
            coef = 1.0 + alpha * r
            for i in range(k):
                b[i] += coef * y[i]
    _rank_update(a, other, indices[lo:hi], w, 0, hi - lo)


@numba.njit(cache=True, fastmath=True, nogil=True)
def _max_row_length(indptr: np.ndarray, lo: int, hi: int) -> int:
    longest = 0
    for u in range(lo, hi):
        longest = max(longest, indptr[u + 1] - indptr[u])
    return longest


@numba.njit(cache=True, fastmath=True, nogil=True)
def _cholesky(a: np.ndarray) -> None:
    """In place: the lower triangle of ``a`` (symmetric positive definite) becomes L."""
    k = a.shape[0]
    for j in range(k):
        s = a[j, j]
        for m in range(j):
            s -= a[j, m] * a[j, m]
        d = np.sqrt(s)
        a[j, j] = d
        for i in range(j + 1, k):
            s = a[i, j]
            for m in range(j):
                s -= a[i, m] * a[j, m]
            a[i, j] = s / d


@numba.njit(cache=True, fastmath=True, nogil=True)
def _cho_solve(ell: np.ndarray, b: np.ndarray) -> None:
    """In place ``b <- (L L^T)^-1 b`` given the lower factor ``L``."""
    k = ell.shape[0]
    for i in range(k):
        s = b[i]
        for m in range(i):
            s -= ell[i, m] * b[m]
        b[i] = s / ell[i, i]
    for i in range(k - 1, -1, -1):
        s = b[i]
        for m in range(i + 1, k):
            s -= ell[m, i] * b[m]
        b[i] = s / ell[i, i]


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def exact_half_step(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    alpha: float,
    other: np.ndarray,
    gram: np.ndarray,
    factors: np.ndarray,
    bounds: np.ndarray,
) -> None:
    """Set ``factors[u]`` (n, k) float32 to the exact solution of row ``u``'s system.

    As :func:`cg_half_step`, with ``gram`` = ``other^T other + lam I`` in float64.
    """
    k = factors.shape[1]
    for c in numba.prange(len(bounds) - 1):
        a = np.empty((k, k), dtype=np.float64)
        b = np.empty(k, dtype=np.float64)
        w = np.empty(_max_row_length(indptr, bounds[c], bounds[c + 1]), dtype=np.float64)
        for u in range(bounds[c], bounds[c + 1]):
            _build_system(indptr[u], indptr[u + 1], indices, data, alpha, other, gram, a, b, w)
            _cholesky(a)
            _cho_solve(a, b)
            for f in range(k):
                factors[u, f] = b[f]


@numba.njit(cache=True, nogil=True, fastmath=True)
def hkv_row(
    lo: int,
    hi: int,
    indices: np.ndarray,
    data: np.ndarray,
    alpha: float,
    other: np.ndarray,
    gram: np.ndarray,
    targets: np.ndarray,
    out: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    w: np.ndarray,
) -> None:
    """Hu et al. section 5 for the row of entries ``lo:hi``: ``out[e, c] = c_e p_e y_e^T
    W_u y_t`` for ``t = targets[c]``, with ``W_u = (Y^T C_u Y + lam I)^-1`` built and
    factored once as the exact fold-in does; entries with ``r <= 0`` are left as they
    are. ``a (k, k), b (k,), w (>= hi - lo,)`` are scratch."""
    k = other.shape[1]
    _build_system(lo, hi, indices, data, alpha, other, gram, a, b, w)
    _cholesky(a)
    for c in range(len(targets)):
        y_t = other[targets[c]]
        for f in range(k):
            b[f] = y_t[f]
        _cho_solve(a, b)  # b = W_u y_t
        for e in range(lo, hi):
            r = np.float64(data[e])
            if r > 0.0:
                y = other[indices[e]]
                s = 0.0
                for f in range(k):
                    s += y[f] * b[f]
                out[e, c] = (1.0 + alpha * r) * s


@numba.njit(fastmath=True, cache=True, nogil=True)
def explain_solve(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    alpha: float,
    other: np.ndarray,
    gram: np.ndarray,
    targets: np.ndarray,
) -> np.ndarray:
    """Contribution of each entry of row ``u`` to the score of item ``targets[u]``
    (:func:`hkv_row`): ``score_ut = sum_j c_uj p_uj (y_j^T W_u y_t)``; returns the terms,
    aligned with ``data`` (float64). One row at a time (explanations are asked for a few
    recommendations).
    """
    k = other.shape[1]
    n = len(indptr) - 1
    out = np.zeros((len(data), 1), dtype=np.float64)
    a = np.empty((k, k), dtype=np.float64)
    b = np.empty(k, dtype=np.float64)
    w = np.empty(_max_row_length(indptr, 0, n), dtype=np.float64)
    for u in range(n):
        hkv_row(indptr[u], indptr[u + 1], indices, data, alpha, other, gram, targets[u : u + 1],
                out, a, b, w)  # fmt: skip
    return out[:, 0]


@numba.njit(fastmath=True, cache=True, nogil=True)
def observed_loss(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    alpha: float,
    x: np.ndarray,
    y: np.ndarray,
) -> float:
    """``sum over observed (u, i) of c (p - s)^2 - s^2`` with ``s = x_u . y_i`` (float64):
    the correction of the observed pairs to the all-pairs sum of ``s^2``."""
    k = x.shape[1]
    total = 0.0
    for u in range(len(indptr) - 1):
        for e in range(indptr[u], indptr[u + 1]):
            yi = y[indices[e]]
            s = 0.0
            for f in range(k):
                s += np.float64(x[u, f]) * yi[f]
            r = np.float64(data[e])
            p = 1.0 if r > 0.0 else 0.0
            total += (1.0 + alpha * r) * (p - s) ** 2 - s * s
    return total
