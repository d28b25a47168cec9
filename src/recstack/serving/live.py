"""A served model and the live histories that update it without retraining.

History in, scores out: a known user is scored from their stored training history
followed by the clicks and conversions received while serving (:class:`LiveHistories`),
so the next list reflects an event at once. A user with neither (or an anonymous
history of unknown items only) gets the most popular items, flagged as a fallback.

Everything a request needs is precomputed when a model is loaded (ID lookups as dicts,
the popularity order, a warm-up call that compiles the kernels), so the per-request work
is one scoring call and one top-K pass. The scoring path is a :class:`Ranker`: the exact
one scores the whole catalog; an approximate index can take its place for large catalogs.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recstack.data import Histories
from recstack.errors import ConfigError
from recstack.models.base import Recommender
from recstack.ranking import topk
from recstack.ranking.rerank import ItemSimilarity, Reranker, parse_rerank, unit_rows
from recstack.serving.batching import MAX_BATCH, MicroBatcher
from recstack.serving.rankers import ExactRanker, Ranker, RankRequest, index_ranker, rank_batch
from recstack.serving.store import HISTORY_TYPES, Event, EventStore, StoredEvent

#: the most events of a history (stored + live) a request scores: the latest are kept
MAX_HISTORY = 10_000
#: re-rankers kept fitted per model (by spec)
RERANKER_CACHE = 32
#: when syncing from the store, events this many sequence numbers back are read again:
#: concurrent writers may commit a lower number after a higher one was read
SYNC_OVERLAP = 10_000


# ---------------------------------------------------------------------------- live events
class LiveHistories:
    """Clicks and conversions received while serving, per user (external IDs, arrival
    order), shared by every variant. Thread-safe.

    Each event is applied once, by ``event_id`` (a retried batch, or an event read back
    from the store that this process applied when it was posted, changes nothing).
    A user keeps at most ``max_length`` live events, the latest.
    """

    def __init__(self, max_length: int = MAX_HISTORY) -> None:
        self.max_length = max_length
        self._items: dict[str, list[str]] = {}
        self._times: dict[str, list[float]] = {}
        self._applied: set[str] = set()
        self._lock = threading.Lock()
        #: highest store sequence number read (see :meth:`sync`)
        self.cursor = 0

    def add(self, events: Iterable[Event | StoredEvent]) -> int:
        """Apply the clicks and conversions not applied before; returns how many."""
        n = 0
        with self._lock:
            for e in events:
                if e.type not in HISTORY_TYPES or e.event_id in self._applied:
                    continue
                self._applied.add(e.event_id)
                items = self._items.setdefault(e.user_id, [])
                times = self._times.setdefault(e.user_id, [])
                items.append(e.item_id)
                times.append(float(e.timestamp))
                if len(items) > self.max_length:
                    del items[: len(items) - self.max_length]
                    del times[: len(times) - self.max_length]
                n += 1
        return n

    def get(self, user_id: str) -> tuple[list[str], list[float]]:
        """Copies of ``user_id``'s live item IDs and times (empty lists when none)."""
        with self._lock:
            return list(self._items.get(user_id, ())), list(self._times.get(user_id, ()))

    def sync(self, store: EventStore, since: float | None = None) -> int:
        """Apply the events stored since the last call (by any process); returns how many
        were new here. The first call replays the whole store (from ``since``)."""
        rows = store.user_events(since=since, after_seq=max(0, self.cursor - SYNC_OVERLAP))
        n = self.add(rows)
        if rows:
            self.cursor = max(self.cursor, max(r.seq for r in rows))
        return n

    @property
    def n_users(self) -> int:
        return len(self._items)

    @property
    def n_events(self) -> int:
        return len(self._applied)


# ---------------------------------------------------------------------------- served model
@dataclass(frozen=True)
class Served:
    """One answered list: external item IDs, scores, explanations when asked for."""

    items: list[str]
    scores: list[float]
    fallback: bool
    explanations: list[dict[str, Any]] | None = None
    #: history item IDs the model does not know (left out of the history)
    unknown_items: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class _Plan:
    """A request's steps before and after ranking."""

    hist: Histories
    k: int
    n: int  # candidates ranked (more than k for a re-ranker)
    exclude: np.ndarray  # item indices never returned
    allowed: np.ndarray | None  # (n_items,) bool: the only items returned (a category)
    request: RankRequest | None  # None: an empty history, answered by popularity
    reranker: Reranker | None
    unknown: tuple[str, ...]


class ServedModel:
    """A loaded :class:`Recommender` ready for requests.

    Parameters
    ----------
    model : Recommender
        A fitted model.
    path : Path, optional
        The directory it was loaded from (shown by ``/health``).
    ranker : Ranker, optional
        The scoring path (default: :class:`ExactRanker`).
    candidates : int
        Items a re-ranker chooses from (at least ``k``).
    max_batch : int
        The most concurrent requests :meth:`recommend_async` scores in one call; 1 scores
        each request alone, inline on the event loop.
    on_batch : callable, optional
        Called with the size of each micro-batch.
    """

    def __init__(
        self,
        model: Recommender,
        path: Path | None = None,
        ranker: Ranker | None = None,
        candidates: int = 100,
        max_batch: int = MAX_BATCH,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        model._check_fitted()
        self.model = model
        self.path = path
        self.ranker: Ranker = ranker or ExactRanker(model)
        #: None for ``max_batch=1``: each request is then scored alone, on the event loop
        #: (no thread hop; the cheapest for fast models under light load)
        self.batcher = MicroBatcher(self.ranker, max_batch, on_batch) if max_batch > 1 else None
        self.candidates = candidates
        #: unix time the model was made ready (a reload changes it)
        self.loaded_at = time.time()
        self.n_items = model.n_items
        self.item_ids: list[str] = model.items_.ids.tolist()
        self._item_pos = {item: i for i, item in enumerate(self.item_ids)}
        self._user_pos = {user: u for u, user in enumerate(model.users_.ids.tolist())}
        hist = model.history_
        self._hist = (hist.indptr, hist.items, hist.values, hist.times)
        # the fallback: distinct users per item in the stored history, most first (ties by
        # index, as top-K orders them), as the model's own recommend ranks an empty history
        x = hist.to_csr()
        self.popularity = model.item_popularity()
        self._pop_order = np.argsort(-self.popularity, kind="stable").astype(np.int32)
        self._pop_rank = np.empty(self.n_items, dtype=np.int64)
        self._pop_rank[self._pop_order] = np.arange(1, self.n_items + 1)
        self._user_item = x  # for item similarities of models without item vectors
        self._rerankers: dict[str, Reranker] = {}
        self._category_masks: dict[str, np.ndarray] = {}
        self._similarity: ItemSimilarity | None = None
        self._item_unit: sp.csr_matrix | None = None
        self._lock = threading.Lock()
        #: whether :meth:`warm_up` switched the model to a faster inference form
        self.optimized = False
        self._native_similar = (
            type(model).similar_items is not Recommender.similar_items
            or model.item_vectors() is not None
        )

    @classmethod
    def load(
        cls, path: str | Path, candidates: int = 100, ann_from: int = 100_000, **options: Any
    ) -> ServedModel:
        """Load a saved model and warm it up (one scoring call compiles its kernels).

        A model with a dot-product form and at least ``ann_from`` items is served through
        an approximate item index (:func:`index_ranker`). ``options`` go to the
        constructor (``max_batch``, ``on_batch``)."""
        path = Path(path)
        model = Recommender.load(path)
        ranker = index_ranker(model, path, ann_from)
        served = cls(model, path, ranker=ranker, candidates=candidates, **options)
        served.warm_up()
        return served

    def warm_up(self) -> None:
        """Switch the model to its inference form (:meth:`Recommender.optimize_inference`)
        and answer one request, so the first real one does not pay for compilation."""
        self.optimized = self.model.optimize_inference()
        if self.n_items:
            self.recommend(None, [self.item_ids[int(self._pop_order[0])]], k=1)

    # ------------------------------------------------------------------ histories
    def history(
        self,
        user_id: str | None,
        items: Sequence[str] = (),
        times: Sequence[float] | None = None,
    ) -> tuple[Histories, list[str]]:
        """The history to score: ``user_id``'s stored history (none for an unknown or
        absent user) followed by external ``items`` (live events, or a posted history) at
        ``times`` (default: after the stored events, one second apart). Unknown item IDs
        are left out and returned; the latest :data:`MAX_HISTORY` events are kept."""
        u = self._user_pos.get(user_id, -1) if user_id is not None else -1
        pos = [self._item_pos.get(i, -1) for i in items]
        unknown = [i for i, p in zip(items, pos, strict=True) if p < 0]
        extra = np.array([p for p in pos if p >= 0], dtype=np.int32)
        indptr, h_items, h_values, h_times = self._hist
        a, b = (int(indptr[u]), int(indptr[u + 1])) if u >= 0 else (0, 0)
        if times is None:
            start = float(h_times[b - 1]) + 1.0 if b > a else 0.0
            x_times = start + np.arange(len(extra), dtype=np.float64)
        else:
            x_times = np.asarray(times, dtype=np.float64)[[p >= 0 for p in pos]]
        all_items = np.concatenate([h_items[a:b], extra])[-MAX_HISTORY:]
        values = np.concatenate([h_values[a:b], np.ones(len(extra), np.float32)])[-MAX_HISTORY:]
        all_times = np.concatenate([h_times[a:b], x_times])[-MAX_HISTORY:]
        hist = Histories(
            np.array([0, len(all_items)], dtype=np.int64),
            all_items,
            values,
            all_times,
            self.n_items,
            np.array([u], dtype=np.int32),
        )
        return hist, unknown

    # ------------------------------------------------------------------ recommending
    def recommend(
        self,
        user_id: str | None,
        items: Sequence[str] = (),
        times: Sequence[float] | None = None,
        *,
        k: int = 10,
        exclude_seen: bool = True,
        explain: bool = False,
        rerank: str | None = None,
        exclude_items: Sequence[str] = (),
        category: str | None = None,
    ) -> Served:
        """The top ``k`` for ``user_id``'s stored history followed by ``items`` (see
        :meth:`history`); the popularity order when that history is empty. Filters:
        ``exclude_items`` are never returned (unknown IDs are ignored), and with
        ``category`` only items of that category (:meth:`category_mask`) are.

        Raises
        ------
        ConfigError
            A bad re-ranker spec, or one that needs item categories the model lacks; an
            unknown category.
        """
        plan = self._plan(user_id, items, times, k, exclude_seen, rerank, exclude_items, category)
        ranked = rank_batch(self.ranker, [plan.request]) if plan.request else [self._popular(plan)]
        return self._finish(plan, *ranked[0], explain)

    async def recommend_async(
        self,
        user_id: str | None,
        items: Sequence[str] = (),
        times: Sequence[float] | None = None,
        *,
        k: int = 10,
        exclude_seen: bool = True,
        explain: bool = False,
        rerank: str | None = None,
        exclude_items: Sequence[str] = (),
        category: str | None = None,
    ) -> Served:
        """:meth:`recommend` from a coroutine: the scoring is micro-batched with concurrent
        requests (:class:`MicroBatcher`) and runs, like explanations and re-ranking, in a
        worker thread; the event loop only does the cheap steps. Without a batcher
        (``max_batch=1``) the scoring runs inline."""
        plan = self._plan(user_id, items, times, k, exclude_seen, rerank, exclude_items, category)
        if plan.request is None:
            index, scores = self._popular(plan)
        else:
            index, scores = (
                await self.batcher.rank(plan.request)
                if self.batcher is not None
                else rank_batch(self.ranker, [plan.request])[0]
            )
        if explain or plan.reranker is not None:
            loop = asyncio.get_running_loop()
            call = partial(self._finish, plan, index, scores, explain)
            return await loop.run_in_executor(None, call)
        return self._finish(plan, index, scores, explain)

    def _plan(
        self,
        user_id: str | None,
        items: Sequence[str],
        times: Sequence[float] | None,
        k: int,
        exclude_seen: bool,
        rerank: str | None,
        exclude_items: Sequence[str],
        category: str | None,
    ) -> _Plan:
        reranker = self.reranker(rerank) if rerank else None
        allowed = self.category_mask(category) if category else None
        hist, unknown = self.history(user_id, items, times)
        n = max(k, self.candidates) if reranker is not None else k
        listed = [self._item_pos[i] for i in exclude_items if i in self._item_pos]
        seen = hist.items if exclude_seen else hist.items[:0]
        exclude = np.concatenate([seen, np.array(listed, dtype=np.int32)])
        request = RankRequest(hist, n, exclude, allowed) if len(hist.items) else None
        return _Plan(hist, k, n, exclude, allowed, request, reranker, tuple(unknown))

    def _popular(self, plan: _Plan) -> tuple[np.ndarray, np.ndarray]:
        """The fallback: the most popular items that pass the plan's filters."""
        order = self._pop_order
        if plan.allowed is not None or len(plan.exclude):
            keep = np.ones(self.n_items, bool) if plan.allowed is None else plan.allowed.copy()
            keep[plan.exclude] = False
            order = order[keep[order]]
        index = order[: plan.n]
        return index, self.popularity[index]

    def category_mask(self, category: str) -> np.ndarray:
        """(n_items,) bool: the items whose genre-like feature (:data:`GENRE_COLUMNS`)
        lists ``category`` (case-insensitive). Built once per category and shared, so
        concurrent requests with one filter are ranked in one call.

        Raises
        ------
        ConfigError
            The model's item features have no genre-like column, or no item is of
            ``category``.
        """
        key = category.strip().lower()
        with self._lock:
            mask = self._category_masks.get(key)
        if mask is not None:
            return mask
        feats = self.model.item_features_
        col = genre_column(feats)
        if feats is None or col is None:
            raise ConfigError(
                "the model's item features have no category column "
                f"({', '.join(GENRE_COLUMNS)}): a category filter needs one"
            )
        names = [[g.lower() for g in _genre_names(cell)] for cell in feats[col]]
        mask = np.array([key in cell for cell in names], dtype=bool)
        if not mask.any():
            known = sorted({g for cell in names for g in cell})
            shown = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
            raise ConfigError(f"no item has category {category!r} (categories: {shown})")
        with self._lock:
            self._category_masks[key] = mask
        return mask

    def _finish(self, plan: _Plan, index: np.ndarray, scores: np.ndarray, explain: bool) -> Served:
        """Re-rank, cut to ``k``, explain: the answer from a ranked candidate list."""
        hist, k, fallback = plan.hist, plan.k, plan.request is None
        if plan.reranker is not None:
            pos = plan.reranker.rerank(index[None, :], scores[None, :], k, histories=hist)[0]
            pos = pos[pos >= 0]
            index, scores = index[pos], scores[pos]
        keep = index >= 0
        index, scores = index[keep][:k], scores[keep][:k]
        explanations = None
        if explain:
            explanations = (
                [self._popularity_note(int(i)) for i in index]
                if fallback
                else self._explain(hist, index, scores)
            )
        # JSON has no infinity: a model's +inf score is shown as the largest float32
        finite = np.minimum(scores.astype(np.float64), np.finfo(np.float32).max)
        return Served(
            [self.item_ids[i] for i in index.tolist()],
            finite.tolist(),
            fallback,
            explanations,
            plan.unknown,
        )

    def _explain(self, hist: Histories, index: np.ndarray, scores: np.ndarray) -> list[Any]:
        from recstack.explain import explain

        if len(index) == 0:
            return []
        why = explain(self.model, hist, index[None, :], scores=scores[None, :])[0]
        return [w.to_dict() for w in why]

    def _popularity_note(self, item: int) -> dict[str, Any]:
        users = int(self.popularity[item])
        rank = int(self._pop_rank[item])
        text = f"popular with {users:,} users (#{rank:,} of {self.n_items:,} items)"
        return {"text": text, "items": []}

    # ------------------------------------------------------------------ re-ranking
    def reranker(self, spec: str) -> Reranker:
        """The fitted re-ranker of ``spec`` (cached): item similarities from genre-like item
        features, else from co-occurrence in the stored history, as the evaluation uses."""
        with self._lock:
            cached = self._rerankers.get(spec)
        if cached is not None:
            return cached
        rr = parse_rerank(spec)
        if rr.needs == "vectors":
            rr.fit(item_vectors=self._item_similarity())
        else:
            cats = self._categories()
            if cats is None:
                raise ConfigError(
                    f"re-ranker {rr.spec} needs item categories, but the model's item "
                    "features have no genre-like column"
                )
            rr.fit(categories=cats)
        with self._lock:
            if len(self._rerankers) >= RERANKER_CACHE:
                self._rerankers.pop(next(iter(self._rerankers)))
            self._rerankers[spec] = rr
        return rr

    def _categories(self) -> sp.csr_matrix | None:
        from recstack.evaluation.evaluator import item_feature_vectors

        feats = self.model.item_features_
        return None if feats is None else item_feature_vectors(feats)

    def _item_similarity(self) -> ItemSimilarity:
        if self._similarity is None:
            cats = self._categories()
            vectors = cats if cats is not None else sp.csr_matrix(self._user_item.T.astype(bool))
            self._similarity = ItemSimilarity(vectors)
        return self._similarity

    # ------------------------------------------------------------------ similar items
    def similar(self, item_id: str, k: int = 10) -> tuple[list[str], list[float]] | None:
        """The ``k`` items most similar to ``item_id`` (the model's own similarity, else
        the cosine of item columns of the stored history); None for an unknown item."""
        q = self._item_pos.get(item_id)
        if q is None:
            return None
        if self._native_similar:
            recs = self.model.similar_items([item_id], k=k)
            index, scores = recs.index[0], recs.scores[0]
        else:
            unit = self._item_unit_rows()
            row = (unit[q] @ unit.T).toarray().astype(np.float32)
            mask = sp.csr_matrix(([1.0], [q], [0, 1]), shape=(1, self.n_items))
            idx, top = topk(row, k, exclude=mask)
            index, scores = idx[0], top[0]
        keep = index >= 0
        return [self.item_ids[i] for i in index[keep].tolist()], scores[keep].tolist()

    def _item_unit_rows(self) -> sp.csr_matrix:
        if self._item_unit is None:
            self._item_unit = sp.csr_matrix(unit_rows(self._user_item.T.astype(np.float32)))
        return self._item_unit

    def describe(self) -> dict[str, Any]:
        """What ``/health`` shows of this model."""
        return {
            "model": self.model.name,
            "model_dir": None if self.path is None else str(self.path),
            "n_items": self.n_items,
            "n_users": len(self._user_pos),
            "loaded_at": self.loaded_at,
            "optimized": self.optimized,
        }


# ---------------------------------------------------------------------------- catalog
#: item feature columns holding categories (genres), in order of preference
GENRE_COLUMNS = ("genres", "genre", "class", "category", "categories")
#: title matches a search collects before ordering them (bounds one search's cost)
SEARCH_SCAN = 2_000
#: user ID prefix matches ordered shortest first ("1", "2", "10" before "100") up to this
#: many; a larger range (a one-character prefix of a big user base) is taken in text order
USER_SCAN = 10_000


class Catalog:
    """What the web page shows and searches of a served model: item titles and genres,
    user IDs and their stored histories.

    Built once per loaded model (a reload serves a new model, hence a new catalog), so a
    title search scans one lower-cased string (C speed) and a user search is a binary
    search, whatever the catalog size.

    Parameters
    ----------
    served : ServedModel
        Its model's item features give titles (:data:`recstack.explain.text.TITLE_COLUMNS`)
        and genres (:data:`GENRE_COLUMNS`); without them items are shown and searched by ID.
    """

    def __init__(self, served: ServedModel) -> None:
        from recstack.explain.text import item_labels, title_column

        model = served.model
        self.item_ids = served.item_ids
        self._item_pos = served._item_pos
        self._user_pos = served._user_pos
        self._hist = served._hist
        self._popularity = served.popularity
        feats = model.item_features_
        #: (n_items,) display titles (natural article order; the ID where empty), or None
        self.titles: list[str] | None = (
            item_labels(model).tolist() if title_column(feats) is not None else None
        )
        # genre cells, split when an item is shown (a search shows a few of a large catalog)
        self._genres: np.ndarray | None = None
        col = genre_column(feats)
        if feats is not None and col is not None:
            self._genres = feats[col].to_numpy(dtype=object)
        # one searchable string: lower-cased titles (else IDs), one per line
        shown = self.titles if self.titles is not None else self.item_ids
        lower = [t.lower().replace("\n", " ") for t in shown]
        self._text = "\n".join(lower)
        #: (n_items + 1,) offset of each item's line in the string
        self._starts = np.concatenate([[0], np.cumsum([len(t) + 1 for t in lower])])
        users = model.users_.ids.astype(np.dtypes.StringDType())
        order = np.argsort(users, kind="stable")
        self._users = users[order]  # sorted: a prefix is a contiguous range
        self._user_events = np.diff(served._hist[0])[order]

    def describe(self, index: Sequence[int]) -> list[dict[str, Any]]:
        """``{"item", "title", "genres"}`` of catalog items (internal indices)."""
        return [
            {
                "item": self.item_ids[i],
                "title": None if self.titles is None else self.titles[i],
                "genres": [] if self._genres is None else _genre_names(self._genres[i]),
            }
            for i in index
        ]

    @property
    def has_genres(self) -> bool:
        """The items have a genre-like feature (one of :data:`GENRE_COLUMNS`)."""
        return self._genres is not None

    def lookup(self, item_ids: Sequence[str]) -> list[dict[str, Any]]:
        """:meth:`describe` of the known items among external ``item_ids``, in order;
        an unknown ID is shown with no title and no genres."""
        pos = [self._item_pos.get(i, -1) for i in item_ids]
        return [
            self.describe([p])[0] if p >= 0 else {"item": i, "title": None, "genres": []}
            for i, p in zip(item_ids, pos, strict=True)
        ]

    def search_items(self, query: str, limit: int) -> list[dict[str, Any]]:
        """Items whose title (ID without titles) contains ``query``, case-insensitive:
        titles starting with it first, then the most popular; an empty query lists the
        most popular items. At most :data:`SEARCH_SCAN` matches are ranked."""
        q = " ".join(query.lower().split())  # no newline can match across titles
        if not q:
            return self.describe(np.argsort(-self._popularity, kind="stable")[:limit].tolist())
        found: list[int] = []
        prefix: list[bool] = []
        text, starts = self._text, self._starts
        pos = text.find(q)
        while pos >= 0 and len(found) < SEARCH_SCAN:
            i = int(np.searchsorted(starts, pos, side="right")) - 1
            found.append(i)
            prefix.append(pos == starts[i])
            pos = text.find(q, int(starts[i + 1]))  # next title: one match per item
        idx = np.array(found, dtype=np.int64)
        order = np.lexsort((idx, -self._popularity[idx], ~np.array(prefix, dtype=bool)))
        return self.describe(idx[order][:limit].tolist())

    def search_users(self, prefix: str, limit: int) -> list[dict[str, Any]]:
        """``{"user", "n_events"}`` of the users whose ID starts with ``prefix``
        (case-sensitive, as IDs are): shortest IDs first, then in text order."""
        lo = int(np.searchsorted(self._users, prefix, side="left"))
        hi = int(np.searchsorted(self._users, prefix + "\U0010ffff", side="left"))
        if hi - lo <= USER_SCAN:
            ids = self._users[lo:hi]
            pick = lo + np.lexsort((ids, np.strings.str_len(ids)))[:limit]
        else:
            pick = np.arange(lo, lo + limit)
        return [
            {"user": str(u), "n_events": int(n)}
            for u, n in zip(self._users[pick], self._user_events[pick], strict=True)
        ]

    def stored_history(self, user_id: str) -> tuple[list[str], list[float]]:
        """``user_id``'s training events (item IDs, times), oldest first; empty lists
        for a user the model does not know."""
        u = self._user_pos.get(user_id)
        if u is None:
            return [], []
        indptr, items, _, times = self._hist
        a, b = int(indptr[u]), int(indptr[u + 1])
        return [self.item_ids[i] for i in items[a:b].tolist()], times[a:b].tolist()


def genre_column(features: pd.DataFrame | None) -> str | None:
    """The first of :data:`GENRE_COLUMNS` among the item features, or None."""
    if features is None:
        return None
    return next((c for c in GENRE_COLUMNS if c in features), None)


def _genre_names(cell: Any) -> list[str]:
    """The genre names of one feature cell: a list as it is, a text split at ``|`` when it
    has one (``Action|Sci-Fi``), else at spaces (``Action Sci-Fi``); none when missing."""
    if isinstance(cell, list | tuple | np.ndarray):
        return [str(g) for g in cell]
    if cell is None or pd.isna(cell):
        return []
    text = str(cell)
    return [g.strip() for g in text.split("|") if g.strip()] if "|" in text else text.split()
