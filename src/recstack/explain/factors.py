"""The Hu-Koren-Volinsky explanation of implicit ALS (Hu, Koren & Volinsky, ICDM 2008, sec. 5).

ALS folds a history in as ``x_u = W_u Y^T C_u p_u`` with ``W_u = (Y^T C_u Y + lambda I)^-1``,
so the score of target ``t`` is ``x_u . y_t = sum_j c_uj p_uj (y_j^T W_u y_t)``: an exact
sum of one term per history item ``j``, each the item's confidence times a user-specific
item-item similarity. One ``k x k`` solve per history serves all its ``K`` targets.
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


@numba.njit(cache=True, nogil=True)
def _hkv_terms(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    alpha: float,
    factors: np.ndarray,
    gram: np.ndarray,
    targets: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out[e, k] = c_e p_e y_e^T W_u y_t`` for entry ``e`` of row ``u`` and
    ``t = targets[u, k]``, with ``c = 1 + alpha r``, ``p = [r > 0]``; ``gram`` is
    ``Y^T Y + lambda I`` (float64). The system is built and factored as ALS's exact fold-in
    does (its kernels, no BLAS: a BLAS thread pool on a busy machine costs 20x here), once
    per row; rows one after another (explanations ride along a recommendation call)."""
    k = factors.shape[1]
    a = np.empty((k, k), dtype=np.float64)
    b = np.empty(k, dtype=np.float64)
    w = np.empty(K._max_row_length(indptr, 0, len(indptr) - 1), dtype=np.float64)
    for u in range(len(indptr) - 1):
        lo, hi = indptr[u], indptr[u + 1]
        if hi == lo:
            continue
        K._build_system(lo, hi, indices, data, alpha, factors, gram, a, b, w)
        K._cholesky(a)
        for c in range(targets.shape[1]):
            y_t = factors[targets[u, c]]
            for f in range(k):
                b[f] = y_t[f]
            K._cho_solve(a, b)  # b = W_u y_t
            for e in range(lo, hi):
                r = np.float64(data[e])
                if r > 0.0:
                    y = factors[indices[e]]
                    s = 0.0
                    for f in range(k):
                        s += y[f] * b[f]
                    out[e, c] = (1.0 + alpha * r) * s


def als_attribution(model: ALS, histories: Histories, targets: np.ndarray) -> Attribution:
    """ALS: the Hu-Koren-Volinsky terms ``c_uj p_uj y_j^T W_u y_t`` (exact: they sum to the
    folded-in score ``x_u . y_t``; :meth:`ALS.explain_weights` computes the same terms for
    one target per history)."""
    x = histories.to_csr()
    if x.nnz and x.data.min() < 0:
        raise DataError(f"ALS: history values must be >= 0, got {float(x.data.min())}")
    y = np.ascontiguousarray(model.item_factors_, dtype=np.float32)
    terms = np.zeros((x.nnz, targets.shape[1]))
    _hkv_terms(
        x.indptr.astype(np.int64),
        x.indices.astype(np.int64),
        x.data.astype(np.float32),
        float(model.alpha),
        y,
        _gram(model),
        targets.astype(np.int64),
        terms,
    )
    indptr = x.indptr.astype(np.int64)
    scores = row_sums(indptr, terms)
    return Attribution(indptr, x.indices.astype(np.int32), terms, scores, targets, "hkv", True)


#: ``Y^T Y + lambda I`` of each explained model, with the factors it was computed from
_GRAMS: weakref.WeakKeyDictionary[ALS, tuple[np.ndarray, float, np.ndarray]] = (
    weakref.WeakKeyDictionary()
)


def _gram(model: ALS) -> np.ndarray:
    """``Y^T Y + lambda I`` (k, k) float64, cached per model until it is refit."""
    y, reg = model.item_factors_, float(model.regularization)
    cached = _GRAMS.get(model)
    if cached is not None and cached[0] is y and cached[1] == reg:
        return cached[2]
    gram = K.gram(y, reg)
    _GRAMS[model] = (y, reg, gram)
    return gram
