"""Faithfulness is measured, not assumed: the deletion test.

For each explained (history, item) pair, remove the history item the explanation ranks
first and re-score; then remove a random *other* history item instead. A faithful
explanation's top item moves the score more: the recommended item's score drops more
without it than without the random item (Samek et al., "Evaluating the visualization of
what a deep neural network has learned", 2017, in its simplest form).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recstack.data import Histories
from recstack.explain.attribution import Attribution, target_scores, top_entries, without_items
from recstack.explain.core import attribute
from recstack.models.base import Recommender, batch_rows


@dataclass(frozen=True)
class DeletionTest:
    """Outcome of :func:`deletion_test` over the tested pairs.

    Attributes
    ----------
    top_drop : (pairs,) float64
        Score drop of the explained item when the explanation's top history item is removed.
    random_drop : (pairs,) float64
        The same when a random other history item is removed.
    """

    top_drop: np.ndarray
    random_drop: np.ndarray

    @property
    def pairs(self) -> int:
        return len(self.top_drop)

    @property
    def faithful(self) -> np.ndarray:
        """Per pair: the top item's removal drops the score strictly more, (pairs,) bool."""
        return self.top_drop > self.random_drop

    @property
    def rate(self) -> float:
        """Share of faithful pairs (NaN when no pair was tested)."""
        return float(self.faithful.mean()) if self.pairs else float("nan")


def deletion_test(
    model: Recommender,
    histories: Histories,
    targets: np.ndarray,
    attribution: Attribution | None = None,
    *,
    method: str = "auto",
    seed: int = 0,
) -> DeletionTest:
    """Deletion test of the explanations of ``targets`` (n, K) for ``histories``.

    A pair is tested when its explanation names a history item (its top term is
    positive) and the history has another distinct item to compare with; the others
    (e.g. popularity's, which names none) are left out.

    Parameters
    ----------
    attribution : Attribution, optional
        The explanations to test (default: ``attribute(model, histories, targets, method)``).
    seed : int
        Seed of the random other items.
    """
    targets = np.asarray(targets, dtype=np.int64)
    if targets.ndim == 1:
        targets = targets[:, None]
    attr = attribute(model, histories, targets, method) if attribution is None else attribution
    top = top_entries(attr.indptr, attr.terms)  # (n, K)
    n_distinct = np.diff(attr.indptr)
    row, col = np.nonzero(top >= 0)
    top_e = top[row, col]
    ok = (n_distinct[row] >= 2) & (attr.terms[top_e, col] > 0)
    row, col, top_e = row[ok], col[ok], top_e[ok]
    # a uniform other entry of the row: draw among m - 1, skip over the top one
    rng = np.random.default_rng(seed)
    local_top = top_e - attr.indptr[row]
    draw = (rng.random(len(row)) * (n_distinct[row] - 1)).astype(np.int64)
    other_e = attr.indptr[row] + draw + (draw >= local_top)
    base = target_scores(model, histories, targets)[row, col]
    dropped = np.concatenate([attr.items[top_e], attr.items[other_e]])
    after = _scores_without(
        model, histories, np.tile(row, 2), dropped, np.tile(targets[row, col], 2)
    )
    return DeletionTest(base - after[: len(row)], base - after[len(row) :])


def _scores_without(
    model: Recommender,
    histories: Histories,
    rows: np.ndarray,
    items: np.ndarray,
    target: np.ndarray,
) -> np.ndarray:
    """Score of ``target[c]`` for history ``rows[c]`` without item ``items[c]``, (c,) float64."""
    out = np.empty(len(rows))
    step = batch_rows(model.n_items)
    for s in range(0, len(rows), step):
        part = slice(s, s + step)
        reduced = without_items(histories, rows[part], items[part])
        out[part] = target_scores(model, reduced, target[part, None])[:, 0]
    return out
