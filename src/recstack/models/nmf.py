"""NMF: non-negative factors ``X ~ W H`` of the sparse interaction matrix, by coordinate descent.

Lee and Seung, "Learning the parts of objects by non-negative matrix factorization",
Nature 1999 (the model); Cichocki and Phan, "Fast local algorithms for large scale
nonnegative matrix and tensor factorizations", IEICE 2009, and Hsieh and Dhillon, KDD 2011
(the cyclic coordinate descent that scikit-learn's ``cd`` solver also uses).

The objective is over the *full* matrix, zeros included (as scikit-learn's NMF on sparse
input)::

    0.5 ||X - W H||_F^2 + l1 (|W|_1 + |H|_1) + 0.5 l2 (||W||_F^2 + ||H||_F^2)

yet nothing of size users x items is ever formed: the updates need only ``X H^T``,
``X^T W`` (sparse times dense) and the k x k Grams, and the loss uses
``||X - W H||^2 = ||X||^2 - 2 <X H^T, W> + <W^T W, H H^T>``. Each coordinate step is an
exact minimization, so the loss never increases.
"""

from __future__ import annotations

import numbers
from typing import Any, ClassVar

import numba
import numpy as np
import scipy.sparse as sp

from recstack.data import Histories, Interactions
from recstack.errors import ConfigError
from recstack.models.base import Recommender


@numba.njit(parallel=True, cache=True, nogil=True, fastmath=True)
def _cd_rows(
    w: np.ndarray, gram: np.ndarray, xh: np.ndarray, l1: float, l2: float, sweeps: int
) -> None:
    """Cyclic coordinate descent on the rows of ``w`` (in place), one row per task.

    Each row ``w_i`` minimizes ``0.5 w G w^T - xh_i . w + l1 |w|_1 + 0.5 l2 ||w||^2`` over
    ``w >= 0``, with ``G = gram``; rows are independent, so the parallel order gives what
    the sequential one does. ``sweeps`` passes over the coordinates.
    """
    n, k = w.shape
    for i in numba.prange(n):
        row = w[i]
        for _ in range(sweeps):
            for t in range(k):
                hess = gram[t, t] + l2
                if hess <= 0.0:  # a dead component: the loss does not depend on it
                    continue
                grad = l1 + l2 * row[t] - xh[i, t]
                for r in range(k):
                    grad += gram[t, r] * row[r]
                row[t] = max(0.0, row[t] - grad / hess)


@numba.njit(parallel=True, cache=True, nogil=True)
def _spmm(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, dense: np.ndarray
) -> np.ndarray:
    """CSR (m, n) times dense (n, k), one output row per task, shape (m, k) float64."""
    m, k = len(indptr) - 1, dense.shape[1]
    out = np.zeros((m, k))
    for i in numba.prange(m):
        row = out[i]
        for p in range(indptr[i], indptr[i + 1]):
            v = data[p]
            src = dense[indices[p]]
            for t in range(k):
                row[t] += v * src[t]
    return out


@numba.njit(parallel=True, cache=True, nogil=True, fastmath=True)
def _gram_chunks(a: np.ndarray, chunks: int) -> np.ndarray:
    """``a^T a`` for a tall (n, k) ``a``, summed over ``chunks`` row chunks in parallel."""
    n, k = a.shape
    partial = np.zeros((chunks, k, k))
    for c in numba.prange(chunks):
        acc = partial[c]
        for i in range(c * n // chunks, (c + 1) * n // chunks):
            row = a[i]
            for s in range(k):
                v = row[s]
                for t in range(k):  # the full row (not half): contiguous, SIMD
                    acc[s, t] += v * row[t]
    return partial.sum(axis=0)


def _gram(a: np.ndarray) -> np.ndarray:
    """``a^T a``, (k, k) float64, for a tall (n, k) float64 ``a``. The chunks do not depend
    on the thread count, so neither does the rounding."""
    return _gram_chunks(a, max(1, min(len(a) // 256, 64)))


def nmf_loss(
    x_sq: float, w: np.ndarray, xh_w: float, wtw: np.ndarray, hht: np.ndarray, ht: np.ndarray,
    l1: float, l2: float,
) -> float:  # fmt: skip
    """The objective from its cheap parts: ``x_sq = ||X||^2``, ``xh_w = <X, W H>``,
    ``wtw = W^T W``, ``hht = H H^T`` (``ht`` is ``H^T``)."""
    fit = 0.5 * (x_sq - 2.0 * xh_w + float(np.sum(wtw * hht)))
    reg = l1 * (float(w.sum()) + float(ht.sum()))
    reg += 0.5 * l2 * (float(np.trace(wtw)) + float(np.trace(hht)))
    return fit + reg


def nmf_cd(
    x: sp.csr_matrix, w: np.ndarray, ht: np.ndarray, iterations: int, l1: float, l2: float
) -> list[float]:
    """Alternate one coordinate-descent sweep over ``W``, then over ``H`` (in place).

    Parameters
    ----------
    x : (m, n) sparse CSR
        The data.
    w : (m, k) float64, C-contiguous, non-negative
        ``W``, updated in place.
    ht : (n, k) float64, C-contiguous, non-negative
        ``H^T``, updated in place.
    iterations : int
        Alternations.
    l1, l2 : float >= 0
        Regularization of the objective (module docstring).

    Returns
    -------
    list of float
        The objective before the first iteration and after each one (``iterations + 1``
        values, non-increasing).
    """
    # numba kernels rather than BLAS for these thin products: BLAS threads started right
    # after a numba parallel region fight its threads for the cores
    xt = x.T.tocsr()
    x_sq = float(np.dot(x.data, x.data))
    wtw, hht = _gram(w), _gram(ht)
    xtw = _spmm(xt.indptr, xt.indices, xt.data, w)
    losses = [nmf_loss(x_sq, w, float(np.sum(ht * xtw)), wtw, hht, ht, l1, l2)]
    for _ in range(iterations):
        _cd_rows(w, hht, _spmm(x.indptr, x.indices, x.data, ht), l1, l2, 1)
        wtw = _gram(w)
        xtw = _spmm(xt.indptr, xt.indices, xt.data, w)
        _cd_rows(ht, wtw, xtw, l1, l2, 1)
        hht = _gram(ht)
        # <X, W H> = <X^T W, H^T> with this W and the new H: no extra product with X
        losses.append(nmf_loss(x_sq, w, float(np.sum(ht * xtw)), wtw, hht, ht, l1, l2))
    return losses


class NMF(Recommender):
    """Non-negative matrix factorization ``X ~ W H`` by coordinate descent.

    Scores a history ``h`` by ``w H``, where ``w >= 0`` is folded in: ``fold_in_sweeps``
    coordinate-descent sweeps of the same objective with ``H`` fixed, from ``w = 0``,
    for the whole batch at once.

    Parameters
    ----------
    factors : int > 0
        Rank ``k``.
    iterations : int > 0
        Alternating sweeps over ``W`` and ``H`` in training.
    l1, l2 : float >= 0
        L1 and L2 regularization of both factors (the objective in the module docstring).
        ``factors``, ``l1`` and ``l2`` were tuned on ML-100K validation (the shared peer
        protocol): 64, 0.5 and 2.
    fold_in_sweeps : int > 0
        Coordinate-descent sweeps when folding a history in.
    binary : bool
        Use 1.0 for every (user, item) pair (ratings as implicit positives, the shared
        protocol); ``False`` factorizes the event values.
    seed : int
        Seed of the random initialization (scikit-learn's ``init="random"`` scale).

    Attributes
    ----------
    item_factors_ : (n_items, k) float32
        ``H^T``, non-negative.
    loss_history_ : (iterations + 1,) float64
        The training objective before the first iteration and after each one.

    Examples
    --------
    >>> import pandas as pd
    >>> from recstack.data import Interactions
    >>> log = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": ["a", "b", "a", "b", "a"]})
    >>> model = NMF(factors=1).fit(Interactions.from_frame(log))
    >>> model.recommend(histories=[["a"]], k=1).item_ids.tolist()
    [['b']]
    """

    name = "nmf"
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {
        "factors": ("int", 8, 256, "log"),
        "l1": ("float", 1e-3, 10.0, "log"),
        "l2": ("float", 1e-3, 50.0, "log"),
    }

    def __init__(
        self,
        factors: int = 64,
        iterations: int = 50,
        l1: float = 0.5,
        l2: float = 2.0,
        fold_in_sweeps: int = 20,
        binary: bool = True,
        seed: int = 0,
    ) -> None:
        self.factors = factors
        self.iterations = iterations
        self.l1 = l1
        self.l2 = l2
        self.fold_in_sweeps = fold_in_sweeps
        self.binary = binary
        self.seed = seed

    def _validate_params(self) -> None:
        for key in ("factors", "iterations", "fold_in_sweeps"):
            v = getattr(self, key)
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{key} must be a positive integer, got {v!r}")
        for key in ("l1", "l2"):
            v = getattr(self, key)
            if not isinstance(v, numbers.Real) or isinstance(v, bool) or not 0 <= float(v) < np.inf:
                raise ConfigError(f"{key} must be a non-negative number, got {v!r}")
        if not isinstance(self.seed, numbers.Integral) or isinstance(self.seed, bool):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        if not isinstance(self.binary, bool | np.bool_):
            raise ConfigError(f"binary must be True or False, got {self.binary!r}")

    def _matrix(self, m: sp.csr_matrix) -> sp.csr_matrix:
        """``m`` as float64 CSR, with 1.0 values when ``binary``."""
        m = sp.csr_matrix(m, dtype=np.float64, copy=True)
        if self.binary:
            m.data[:] = 1.0
        return m

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        x = self._matrix(train.matrix)
        m, n = x.shape
        k = int(self.factors)
        rng = np.random.default_rng(int(self.seed))
        # scikit-learn's random init: |N(0, 1)| scaled so W H has the data's mean
        scale = np.sqrt(x.sum() / (m * n) / k)
        w = np.abs(scale * rng.standard_normal((m, k)))
        ht = np.abs(scale * rng.standard_normal((n, k)))
        losses = nmf_cd(x, w, ht, int(self.iterations), float(self.l1), float(self.l2))
        self.item_factors_ = ht.astype(np.float32)
        self.loss_history_ = np.asarray(losses, dtype=np.float64)
        self._after_load()

    def _after_load(self) -> None:
        # fold-in works on the stored (float32) factors, so a loaded model scores the same
        self._factors = self.item_factors_.astype(np.float64)
        self._item_gram = _gram(self._factors)

    def fold_in(self, histories: Histories) -> np.ndarray:
        """Non-negative user factors ``w`` of each history, shape (n, k) float32."""
        self._check_fitted()
        x = self._matrix(histories.to_csr())
        xh = _spmm(x.indptr, x.indices, x.data, self._factors)
        w = np.zeros_like(xh)
        sweeps = int(self.fold_in_sweeps)
        _cd_rows(w, self._item_gram, xh, float(self.l1), float(self.l2), sweeps)
        return w.astype(np.float32)

    def _score(self, histories: Histories) -> np.ndarray:
        return self.fold_in(histories) @ self.item_factors_.T

    def retrieval_items(self) -> np.ndarray:
        return self.item_factors_

    def retrieval_queries(self, histories: Histories) -> np.ndarray:
        return self.fold_in(histories)

    def item_vectors(self) -> np.ndarray:
        return self.item_factors_
