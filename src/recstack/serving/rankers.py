"""The scoring paths of the service: exact (score every item) or through an item index.

A :class:`Ranker` answers a batch of histories at once; :func:`rank_batch` stacks single
requests into such a batch (the micro-batcher's unit of work).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from recstack.data import Histories
from recstack.errors import DataError
from recstack.models.base import Recommender
from recstack.ranking import ItemIndex, topk


class Ranker(Protocol):
    """The scoring path of a batch of histories: each row's best ``n`` items.

    ``exclude`` is a (len(hist), n_items) CSR matrix of the items each row must never
    return (its history, when seen items are excluded); ``allowed``, when given, the
    (n_items,) bool mask of the only items any row may return (a category filter). The
    exact ranker scores the whole catalog; an index over the model's item vectors can
    answer the same call approximately."""

    def rank(
        self,
        hist: Histories,
        n: int,
        exclude: sp.csr_matrix,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(index, scores)``, each shape (len(hist), n), best first; index ``-1`` pads."""
        ...


class ExactRanker:
    """Scores every catalog item with the model and keeps the top ``n`` (numba heap)."""

    def __init__(self, model: Recommender) -> None:
        self.model = model

    def rank(
        self,
        hist: Histories,
        n: int,
        exclude: sp.csr_matrix,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        return topk(self.model.score(hist), n, exclude=exclude, allowed=allowed)


class IndexRanker:
    """Searches an :class:`~recstack.ranking.ItemIndex` over the model's dot-product form
    (large catalogs): one query vector per history instead of the whole catalog's scores.
    Excluded items are left out inside the search."""

    def __init__(self, model: Recommender, index: ItemIndex) -> None:
        self.model = model
        self.index = index

    def rank(
        self,
        hist: Histories,
        n: int,
        exclude: sp.csr_matrix,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = self.model.retrieval_queries(hist)
        return self.index.search(queries, n, exclude=exclude, allowed=allowed)


@dataclass(frozen=True, eq=False)
class RankRequest:
    """One history to rank: its best ``n`` items, never one of ``exclude``, only items of
    ``allowed`` when given (a shared mask: requests with the same filter pass the same
    array, and are ranked in one call)."""

    hist: Histories  # one row
    n: int
    exclude: np.ndarray  # internal item indices
    allowed: np.ndarray | None = None  # (n_items,) bool


def rank_batch(
    ranker: Ranker, requests: Sequence[RankRequest]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Answer several :class:`RankRequest` with one call to ``ranker`` per distinct
    ``allowed`` mask (one scoring pass over the stacked histories when none filters);
    each answer is ``(index, scores)`` of shape (its n,)."""
    groups: dict[int, list[int]] = {}
    for i, r in enumerate(requests):
        groups.setdefault(id(r.allowed), []).append(i)
    answers: list[tuple[np.ndarray, np.ndarray]] = [None] * len(requests)  # type: ignore[list-item]
    for rows in groups.values():
        group = [requests[i] for i in rows]
        hist = Histories.stack([r.hist for r in group])
        excluded = [np.unique(r.exclude) for r in group]
        indptr = np.zeros(len(group) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in excluded], out=indptr[1:])
        cols = np.concatenate(excluded).astype(np.int32)
        exclude = sp.csr_matrix(
            (np.ones(len(cols), np.float32), cols, indptr), shape=(len(group), hist.n_items)
        )
        n = max(r.n for r in group)
        index, scores = ranker.rank(hist, n, exclude, group[0].allowed)
        for row, (i, r) in enumerate(zip(rows, group, strict=True)):
            answers[i] = (index[row, : r.n], scores[row, : r.n])
    return answers


#: the file beside a saved model that caches its item index (faiss's binary format)
INDEX_FILE = "items.faiss"


def index_ranker(model: Recommender, path: Path | None, ann_from: int) -> IndexRanker | None:
    """An :class:`IndexRanker` for a model with a dot-product form and at least
    ``ann_from`` items, else None. The index is read from ``path / INDEX_FILE`` when it
    is there for the same catalog size, and built (then written there) otherwise."""
    items = model.retrieval_items()
    if items is None or model.n_items < ann_from:
        return None
    file = path / INDEX_FILE if path is not None else None
    index = None
    if file is not None and file.is_file():
        try:
            index = ItemIndex.load(file, items)
        except DataError:  # another catalog: rebuild
            index = None
    if index is None:
        index = ItemIndex(items, kind="ivf")
        if file is not None:
            with contextlib.suppress(OSError):  # a read-only model directory: no cache
                index.save(file)
    return IndexRanker(model, index)
