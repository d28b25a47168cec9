"""``Attribution``: what each history item adds to the scores of a history's target items.

Every explainer (exact decompositions, Hu-Koren-Volinsky, leave-one-out, attention,
popularity) returns one, for a batch of ``n`` histories with ``K`` target items each, over
the *distinct* items of each history (a repeated item is one entry: models read a history
as its last value per item, :meth:`Histories.to_csr`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recstack.data import Histories
from recstack.models.base import Recommender, batch_rows


@dataclass(frozen=True)
class Attribution:
    """Per-history-item contributions to the scores of target items.

    Attributes
    ----------
    indptr : (n + 1,) int64
        Row ``r``'s distinct history items are entries ``indptr[r]:indptr[r + 1]``.
    items : (nnz,) int32
        Internal item index of each entry (sorted within a row).
    terms : (nnz, K) float64
        ``terms[e, k]``: what entry ``e``'s item contributes to the score of its row's
        ``k``-th target, in score units. For an exact decomposition (``exact``) a row's
        terms sum to the target's score; for leave-one-out a term is the score drop when
        the item is removed from the history; for attention, the attention weight.
    scores : (n, K) float64
        The model's score of each target.
    targets : (n, K) int64
        Internal index of each target item.
    method : str
        How the terms were obtained: ``"exact"``, ``"hkv"``, ``"leave-one-out"``,
        ``"influence"`` (an estimate of the leave-one-out drop), ``"attention"``,
        ``"popularity"``, ``"content"``...
    exact : bool
        The terms of a row sum to ``scores`` (up to float rounding).
    notes : (n, K) object or None
        A short phrase per target that the item list does not say (``"popular with 583
        users (#1 of 1,682 items)"``, ``"shared: Comedy"``); ``None`` or ``""``
        when there is nothing to add.
    """

    indptr: np.ndarray
    items: np.ndarray
    terms: np.ndarray
    scores: np.ndarray
    targets: np.ndarray
    method: str
    exact: bool
    notes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @property
    def rows(self) -> np.ndarray:
        """Row of each entry, shape (nnz,) int64."""
        return np.repeat(np.arange(len(self)), np.diff(self.indptr))

    def shares(self) -> np.ndarray:
        """Each entry's signed share of its target's attribution, shape (nnz, K) float64.

        ``share = term / sum of |term|`` over the row's history items, so the absolute
        shares of a row sum to 1 (all 0 when every term is 0). For an exact decomposition
        the shares sum to ``score / sum |term|``: 1 when no item pulls the score down.
        """
        den = row_sums(self.indptr, np.abs(self.terms))[self.rows]
        return np.divide(self.terms, den, out=np.zeros_like(self.terms), where=den > 0)

    @classmethod
    def concat(cls, parts: Sequence[Attribution]) -> Attribution:
        """The row-wise concatenation of attributions with the same method and ``K``."""
        first = parts[0]
        offsets = np.cumsum([0] + [p.indptr[-1] for p in parts[:-1]])
        indptr = np.concatenate(
            [[0]] + [p.indptr[1:] + o for p, o in zip(parts, offsets, strict=True)]
        )
        notes = None
        if any(p.notes is not None for p in parts):
            notes = np.concatenate([_notes_of(p) for p in parts])
        return cls(
            indptr.astype(np.int64),
            np.concatenate([p.items for p in parts]),
            np.concatenate([p.terms for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.targets for p in parts]),
            first.method,
            first.exact,
            notes,
        )


def _notes_of(part: Attribution) -> np.ndarray:
    if part.notes is not None:
        return part.notes
    return np.full(part.targets.shape, "", dtype=object)


def row_sums(indptr: np.ndarray, terms: np.ndarray) -> np.ndarray:
    """Per-row sums of entry values, (n, K) float64, for a CSR ``indptr`` over ``n`` rows and
    ``terms`` (nnz, K)."""
    nnz = int(indptr[-1])
    rows = sp.csr_matrix((np.ones(nnz), np.arange(nnz), indptr), shape=(len(indptr) - 1, nnz))
    return np.asarray(rows @ terms, dtype=np.float64)


def top_entries(indptr: np.ndarray, terms: np.ndarray) -> np.ndarray:
    """Entry with the largest term of each row and target, (n, K) int64 (``-1`` for an
    empty row; ties go to the first entry)."""
    n, k = len(indptr) - 1, terms.shape[1]
    rows = np.repeat(np.arange(n), np.diff(indptr))
    nonempty = np.flatnonzero(np.diff(indptr) > 0)
    out = np.full((n, k), -1, dtype=np.int64)
    for col in range(k):  # K columns, each one vectorized sort
        order = np.lexsort((-terms[:, col], rows))  # by row, then largest term first
        out[nonempty, col] = order[indptr[nonempty]]
    return out


def entry_targets(indptr: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The targets of each entry's row, (nnz, K), for a CSR ``indptr`` over ``n`` rows and
    ``targets`` (n, K)."""
    return targets[np.repeat(np.arange(len(targets)), np.diff(indptr))]


def target_scores(model: Recommender, histories: Histories, targets: np.ndarray) -> np.ndarray:
    """``model.score(histories)`` at the targets, (n, K) float64, in memory-bounded batches."""
    out = np.empty(targets.shape, dtype=np.float64)
    step = batch_rows(model.n_items)
    for start in range(0, len(histories), step):
        rows = slice(start, start + step)
        scores = model.score(histories.select(rows))
        out[rows] = np.take_along_axis(scores, targets[rows], axis=1)
    return out


def without_items(histories: Histories, rows: np.ndarray, items: np.ndarray) -> Histories:
    """For each ``c``, history ``rows[c]`` with every event of item ``items[c]`` removed
    (the other events keep their order, values and times)."""
    rows = np.asarray(rows, dtype=np.int64)
    starts, lengths = histories.indptr[rows], histories.lengths[rows]
    total = int(lengths.sum())
    owner = np.repeat(np.arange(len(rows)), lengths)
    # positions of the copied events: start of the owner's row + offset inside it
    pos = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(total)
    keep = histories.items[pos] != np.asarray(items)[owner]
    pos, owner = pos[keep], owner[keep]
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner, minlength=len(rows)), out=indptr[1:])
    users = None if histories.users is None else histories.users[rows]
    return Histories(
        indptr,
        histories.items[pos],
        histories.values[pos],
        histories.times[pos],
        histories.n_items,
        users,
    )
