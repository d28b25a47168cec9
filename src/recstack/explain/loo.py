"""Leave-one-out attribution: the score drop when one history item is removed.

It needs nothing but :meth:`Recommender.score`, so it explains every model (neighbours,
factor models with an iterative fold-in, networks, random): each history is re-scored once
without each of its distinct items, all of them batched, and the drop of each target's
score is that item's term. The re-scored histories of a row serve all its ``K`` targets.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recstack.data import Histories
from recstack.explain.attribution import Attribution, target_scores, without_items
from recstack.models.base import Recommender, batch_rows


def leave_one_out(
    model: Recommender, histories: Histories, targets: np.ndarray, *, window: int | None = None
) -> Attribution:
    """Score drops ``score(h)[t] - score(h without j)[t]`` for each distinct history item
    ``j`` (all of its events removed) and target ``t``.

    Parameters
    ----------
    model : Recommender
        A fitted model.
    histories : Histories
        ``n`` histories.
    targets : (n, K) int
        Internal indices of the explained items of each history.
    window : int, optional
        The model reads only the latest ``window`` events of a history (a sequential
        model's ``max_len``): an item absent from them cannot change the score, so it gets
        0 without being re-scored (exactly what re-scoring would give).

    Returns
    -------
    Attribution
        ``method="leave-one-out"``, not exact: the drops need not sum to the score.
    """
    targets = np.asarray(targets, dtype=np.int64)
    x = histories.to_csr()
    indptr = x.indptr.astype(np.int64)
    rows = np.repeat(np.arange(len(histories)), np.diff(indptr))
    base = target_scores(model, histories, targets)
    candidates = np.arange(x.nnz)
    if window is not None:
        candidates = np.flatnonzero(_in_window(histories, x, window))
    terms = np.zeros((x.nnz, targets.shape[1]))
    step = batch_rows(model.n_items)
    for start in range(0, len(candidates), step):
        chunk = candidates[start : start + step]
        reduced = without_items(histories, rows[chunk], x.indices[chunk])
        terms[chunk] = base[rows[chunk]] - target_scores(model, reduced, targets[rows[chunk]])
    return Attribution(
        indptr, x.indices.astype(np.int32), terms, base, targets, "leave-one-out", False
    )


def events_from_end(histories: Histories) -> np.ndarray:
    """(nnz,) int64: how far each event is from its history's end (1 = the latest)."""
    return np.repeat(histories.indptr[1:], histories.lengths) - np.arange(len(histories.items))


def _in_window(histories: Histories, x: sp.csr_matrix, window: int) -> np.ndarray:
    """Which entries of ``x = histories.to_csr()`` have an event among the latest
    ``window`` of their row, (nnz,) bool."""
    recent = events_from_end(histories) <= window
    n_items = histories.n_items
    recent_keys = histories.rows[recent].astype(np.int64) * n_items + histories.items[recent]
    keys = np.repeat(np.arange(len(histories), dtype=np.int64), np.diff(x.indptr)) * n_items
    keys += x.indices
    return np.isin(keys, recent_keys)
