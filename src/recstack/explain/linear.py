"""Exact decompositions of the linear item-item models: ItemKNN, EASE and PureSVD.

Each scores a history as ``x @ B``: ``x`` is a row over the catalog (the history's items
with their values or ones, times the recency weights of ``half_life``: a repeated item
counts once, at its last event) and ``B`` an item-item matrix (ItemKNN's sparse similarity
``S``, EASE's weights, PureSVD's ``V V^T``). The score of target ``t`` is therefore exactly
``sum_j x_j B[j, t]``, one term per history item ``j``; the recency weights sit inside
``x_j``, so the decomposition stays exact with ``half_life``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from recstack.data import Histories
from recstack.explain.attribution import Attribution, entry_targets, row_sums

if TYPE_CHECKING:
    from recstack.models.ease import EASE
    from recstack.models.knn import ItemKNN
    from recstack.models.svd import PureSVD


def linear_input(histories: Histories, binary: bool, half_life: float | None) -> sp.csr_matrix:
    """The (n, n_items) float32 ``x`` a linear model reads from histories: the last value
    of each item (1.0 when ``binary``), times ``0.5 ** (p / half_life)`` for the item of
    the ``p``-th last event when ``half_life`` is set (EASE's and ItemKNN's recency)."""
    if half_life is not None:
        return histories.decayed(half_life, ones=binary).to_csr()
    x = histories.to_csr()
    if binary:
        x.data[:] = 1.0
    return x


def _exact(x: sp.csr_matrix, weights: np.ndarray, targets: np.ndarray) -> Attribution:
    """The attribution with ``terms = x_j * weights`` (nnz, K); scores are the row sums."""
    terms = x.data.astype(np.float64)[:, None] * weights
    indptr = x.indptr.astype(np.int64)
    scores = row_sums(indptr, terms)
    return Attribution(indptr, x.indices.astype(np.int32), terms, scores, targets, "exact", True)


def itemknn_attribution(model: ItemKNN, histories: Histories, targets: np.ndarray) -> Attribution:
    """ItemKNN: ``h_j S[j, t]`` (:meth:`ItemKNN.history_weights`, ``similarity_``)."""
    x = model.history_weights(histories)
    cols = entry_targets(x.indptr, targets)
    k = targets.shape[1]
    sim = np.asarray(model.similarity_[np.repeat(x.indices, k), cols.ravel()], np.float64)
    return _exact(x, sim.reshape(-1, k), targets)


def ease_attribution(model: EASE, histories: Histories, targets: np.ndarray) -> Attribution:
    """EASE: ``x_j B[j, t]`` with Steck's weights ``B`` (``weights_``)."""
    x = linear_input(histories, bool(model.binary), model.half_life)
    cols = entry_targets(x.indptr, targets)
    return _exact(x, model.weights_[x.indices[:, None], cols].astype(np.float64), targets)


def puresvd_attribution(model: PureSVD, histories: Histories, targets: np.ndarray) -> Attribution:
    """PureSVD: ``x_j v_j . v_t`` (the fold-in ``x V`` is linear in the history)."""
    x = linear_input(histories, bool(model.binary), None)
    v = model.item_factors_.astype(np.float64)
    cols = entry_targets(x.indptr, targets)
    return _exact(x, np.einsum("ef,ekf->ek", v[x.indices], v[cols]), targets)
