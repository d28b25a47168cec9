"""EASE: the embarrassingly shallow autoencoder (Steck 2019), a closed-form item-item model.

Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019. With the item Gram
matrix ``G = X^T X`` and ``P = (G + l2 I)^-1``, the item-item weights are
``B = I - P diag(1 / diag(P))`` (so ``diag(B) = 0``) and a history ``x`` scores ``x B``.

The fit works in float32 and in place on one dense ``n_items x n_items`` array: the Gram
matrix is written into it by a parallel kernel straight from the sparse data, LAPACK
inverts it through its Cholesky factor (``spotrf``/``spotri``, no copy), and a tiled pass
turns the inverse's triangle into ``B``. Peak memory is about that one array and the
finiteness check's byte mask; the catalog size that fits is checked before allocating.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, ClassVar

import numba
import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack

from recstack.data import Histories, Interactions, UnknownPolicy
from recstack.data.idmap import as_id_array
from recstack.errors import ConfigError, ModelFitError
from recstack.models.base import Recommendations, Recommender
from recstack.ranking import topk

#: bytes per catalog item squared: the float32 weights plus working space (check mask, copies)
_BYTES_PER_CELL = 2 * 4
#: side of the square tiles the inverse is symmetrized and scaled in (cache-sized)
_TILE = 64


def ease_memory_gb(n_items: int) -> float:
    """Memory EASE needs to fit ``n_items`` items, in GiB (the dense weights plus working
    space, about ``2 * n_items**2 * 4`` bytes)."""
    return _BYTES_PER_CELL * float(n_items) ** 2 / 2**30


@numba.njit(parallel=True, cache=True, nogil=True)
def _gram(
    r_indptr: np.ndarray,
    r_indices: np.ndarray,
    r_data: np.ndarray,
    c_indptr: np.ndarray,
    c_indices: np.ndarray,
    c_data: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out = X^T X`` into a dense zeroed (n_items, n_items) array, one item row per task.

    ``r_*`` is X as CSR (users x items), ``c_*`` as CSC: row ``i`` of the Gram matrix sums,
    over the users of item ``i``, ``x_ui`` times the user's row.
    """
    for i in numba.prange(out.shape[0]):
        row = out[i]
        for p in range(c_indptr[i], c_indptr[i + 1]):
            u = c_indices[p]
            w = c_data[p]
            for q in range(r_indptr[u], r_indptr[u + 1]):
                row[r_indices[q]] += w * r_data[q]


@numba.njit(cache=True, nogil=True)
def _weights_from_upper(p: np.ndarray, tile: int) -> None:
    """``p`` holds ``P`` in its upper triangle (``i <= j``); overwrite it with the full ``B``:
    ``B_ij = -P_ij / P_jj`` off the diagonal, 0 on it.

    Tile by tile, so the mirrored writes stay in cache. Serial on purpose: it runs right
    after LAPACK, whose BLAS threads keep spinning for a while, and a parallel kernel would
    fight them for the cores; memory-bound, it costs little next to the n^3 inverse.
    """
    n = p.shape[0]
    diag = np.empty(n, dtype=p.dtype)
    for i in range(n):
        diag[i] = p[i, i]
    for i0 in range(0, n, tile):
        for j0 in range(i0, n, tile):
            for i in range(i0, min(i0 + tile, n)):
                for j in range(max(j0, i + 1), min(j0 + tile, n)):
                    v = p[i, j]
                    p[i, j] = -v / diag[j]
                    p[j, i] = -v / diag[i]  # the lower triangle is never read
    for i in range(n):
        p[i, i] = 0.0


class EASE(Recommender):
    """Embarrassingly shallow autoencoder (Steck 2019): closed-form item-item weights.

    A history ``x`` (a row over the catalog) scores ``x @ weights_``, where the weights
    minimize ``||X - X B||^2 + l2 ||B||^2`` subject to ``diag(B) = 0``. Each score is an
    exact sum over the history's items (:meth:`contributions`), which explanations use.

    Parameters
    ----------
    l2 : float > 0
        L2 regularization (Steck's lambda). Tuned on ML-100K validation (the shared peer
        protocol): 100.
    binary : bool
        Use 1.0 for every (user, item) pair, so ratings count as implicit positives (the
        shared protocol); ``False`` uses the event values (e.g. ratings).
    half_life : float or None
        Recency of the history at scoring time, in events: the ``p``-th last event
        (``p = 0`` the latest) weighs ``0.5 ** (p / half_life)`` (see
        :meth:`Histories.decayed`); ``None`` weighs the whole history the same. ``B`` is
        learned the same way either way.
    max_memory_gb : float > 0
        Refuse catalogs whose dense ``n_items x n_items`` fit would need more memory
        (:func:`ease_memory_gb`), with an error saying what it would need.

    Attributes
    ----------
    weights_ : (n_items, n_items) float32
        ``B``: ``weights_[j, i]`` is what history item ``j`` adds to item ``i``'s score;
        the diagonal is 0.

    Examples
    --------
    >>> import pandas as pd
    >>> from recstack.data import Interactions
    >>> log = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": ["a", "b", "a", "b", "a"]})
    >>> model = EASE(l2=1.0).fit(Interactions.from_frame(log))
    >>> model.recommend(histories=[["a"]], k=1).item_ids.tolist()
    [['b']]
    """

    name = "ease"
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {
        "l2": ("float", 1.0, 10_000.0, "log"),
        "half_life": ("categorical", [None, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]),
    }

    def __init__(
        self,
        l2: float = 100.0,
        binary: bool = True,
        half_life: float | None = None,
        max_memory_gb: float = 8.0,
    ) -> None:
        self.l2 = l2
        self.binary = binary
        self.half_life = half_life
        self.max_memory_gb = max_memory_gb

    def _validate_params(self) -> None:
        for key in ("l2", "max_memory_gb"):
            v = getattr(self, key)
            if not isinstance(v, numbers.Real) or isinstance(v, bool) or not 0 < float(v) < np.inf:
                raise ConfigError(f"{key} must be a positive number, got {v!r}")
        if not isinstance(self.binary, bool | np.bool_):
            raise ConfigError(f"binary must be True or False, got {self.binary!r}")
        h = self.half_life
        if h is not None and (not isinstance(h, numbers.Real) or isinstance(h, bool) or not h > 0):
            raise ConfigError(f"half_life must be a positive number or None, got {h!r}")

    def _matrix(self, m: sp.csr_matrix) -> sp.csr_matrix:
        """``m`` as float32 CSR, with 1.0 values when ``binary``."""
        m = sp.csr_matrix(m, dtype=np.float32, copy=True)
        if self.binary:
            m.data[:] = 1.0
        return m

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        n = train.n_items
        need = ease_memory_gb(n)
        if need > self.max_memory_gb:
            raise ConfigError(
                f"EASE needs about {need:.1f} GB for {n:,} items (a dense {n:,} x {n:,} float32 "
                f"matrix and working space), over max_memory_gb={self.max_memory_gb}; raise "
                "max_memory_gb if the machine has the memory, or use ItemKNN (sparse "
                "similarities, model 'itemknn'), or shrink the catalog (drop rare items, e.g. "
                "recstack.data.kcore)"
            )
        x = self._matrix(train.matrix)
        xc = x.tocsc()
        g = np.zeros((n, n), dtype=np.float32)
        _gram(x.indptr, x.indices, x.data, xc.indptr, xc.indices, xc.data, g)
        g[np.diag_indices(n)] += np.float32(self.l2)
        # g is symmetric, so its F-ordered view g.T is the same matrix: LAPACK works in
        # place; its lower triangle is g's upper one (row i, columns j >= i)
        factor, info = lapack.spotrf(g.T, lower=1, overwrite_a=1, clean=0)
        if info == 0:
            inverse, info = lapack.spotri(factor, lower=1, overwrite_c=1)
        if info != 0:
            raise ModelFitError(
                f"EASE: the regularized Gram matrix is not positive definite in float32 "
                f"(LAPACK info {info}); raise l2 (now {self.l2})"
            )
        p = np.ascontiguousarray(inverse.T)  # no copy when LAPACK worked in place
        _weights_from_upper(p, _TILE)
        self.weights_ = p

    def _history_matrix(self, histories: Histories) -> sp.csr_matrix:
        """The (n, n_items) float32 ``x`` of each history: values or ones, times recency."""
        if self.half_life is None:
            return self._matrix(histories.to_csr())
        return histories.decayed(self.half_life, ones=self.binary).to_csr()

    def _score(self, histories: Histories) -> np.ndarray:
        x = self._history_matrix(histories)
        return np.asarray(x @ self.weights_, dtype=np.float32)

    def contributions(self, histories: Histories, items: np.ndarray | Sequence[int]) -> np.ndarray:
        """Exact share of each history event in the score of one item per history.

        Parameters
        ----------
        histories : Histories
            ``n`` histories.
        items : (n,) int
            Internal index of the scored item of each row.

        Returns
        -------
        (nnz,) float32
            Aligned with ``histories.items``: ``x_j * weights_[j, items[r]]`` for the event
            of item ``j`` in row ``r``; a repeated item counts once, at its last event (as
            in :meth:`Histories.to_csr`), the earlier ones get 0. Each row sums to
            ``score(histories)[r, items[r]]``.
        """
        self._check_fitted()
        items = np.asarray(items, dtype=np.int64)
        if items.shape != (len(histories),):
            raise ConfigError(
                f"items needs one item per history ({len(histories)}), got {items.shape}"
            )
        rows = histories.rows
        key = rows.astype(np.int64) * self.n_items + histories.items
        _, rev_first = np.unique(key[::-1], return_index=True)
        last = np.zeros(len(key), dtype=bool)
        last[len(key) - 1 - rev_first] = True
        if self.half_life is not None:
            x = histories.decayed(self.half_life, ones=self.binary).values
        elif self.binary:
            x = np.ones(len(key), np.float32)
        else:
            x = histories.values.astype(np.float32)
        return np.where(last, x * self.weights_[histories.items, items[rows]], 0).astype(np.float32)

    def similar_items(
        self, items: Sequence[object] | np.ndarray, k: int = 10, unknown: UnknownPolicy = "raise"
    ) -> Recommendations:
        """The ``k`` items a history holding only the query item scores highest: the
        largest entries of the query's row of ``weights_`` (the item itself excluded)."""
        self._check_fitted()
        queries = as_id_array(items)
        idx = self.items_.index(queries, unknown=unknown)
        q = np.maximum(idx, 0)
        scores = self.weights_[q]  # fancy indexing: a copy that top-K may overwrite
        self_mask = sp.csr_matrix(
            (np.ones(len(q), np.float32), (np.arange(len(q)), q)), shape=scores.shape
        )
        index, top = topk(scores, k, exclude=self_mask)
        index[idx < 0], top[idx < 0] = -1, -np.inf  # an unknown query item gets no list
        return Recommendations(queries, index, top, self.items_, idx >= 0)
