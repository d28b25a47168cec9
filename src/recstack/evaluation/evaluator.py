"""The batched full-ranking evaluator.

:func:`evaluate` follows the protocol of DESIGN.md: every test user is scored from their
history over the whole catalog, the history's items are excluded from the ranking, and the
top ``max(ks)`` list is compared with the user's held-out items (binary relevance).
Scores are computed ``batch_size`` users at a time and dropped once their top-K list, hits
and AUC are taken, so memory stays at one batch of scores whatever the number of users.

Ties
----
Equal scores are ordered by increasing item index, the rule of
:func:`recstack.ranking.topk` (which ``Recommender.recommend`` uses), so lists and
metrics are deterministic and match what the model recommends. The peers' evaluator
(``shared/peers/scripts/common.py``) reports the expectation under random tie-breaking
instead; the two differ only for users whose relevant item ties with others across the
cut-off (a model with many equal scores, like popularity, has a few). The AUC counts ties
as 1/2 and needs no tie rule.

Rating predictors
-----------------
A model with a method ``predict(histories, items) -> np.ndarray`` also gets RMSE and MAE:
``histories`` is a :class:`~recstack.data.Histories` batch of ``n`` rows and ``items`` a
(n,) int array of internal item indices; it returns the (n,) predicted ratings of
``items[r]`` for history row ``r``. The evaluator calls it with one row per held-out event
(the user's scoring history repeated) and compares with the events' values.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from recstack.data import Histories, Interactions
from recstack.data.splits import Split
from recstack.errors import ConfigError, DataError, NotFittedError
from recstack.evaluation import metrics as M
from recstack.models.base import Recommendations, Recommender, batch_rows
from recstack.ranking.calibration import item_distributions, kl_to_users, user_distributions
from recstack.ranking.rerank import (
    ItemSimilarity,
    Reranker,
    check_candidates,
    gather,
    parse_rerank,
)

#: share of the catalog (most popular in training first) forming the "head" segment
HEAD_SHARE = 0.2
#: (event, item) pairs handed to ``predict`` at once
_PREDICT_BATCH = 1 << 14


@dataclass(frozen=True, eq=False)
class EvaluationResult:
    """What :func:`evaluate` measured.

    Attributes
    ----------
    metrics : dict[str, float]
        Averages over the evaluated users (``ndcg@10``, ``hr@10``, ..., ``auc``) and the
        list-set metrics (``coverage@10``, ``gini@10``); ``rmse``/``mae`` for rating
        predictors. NaN where undefined for every user.
    per_user : DataFrame
        One row per evaluated user (index: external user ID, ``user_id``), one column per
        per-user metric key; paired tests (:mod:`recstack.evaluation.compare`) use it.
    recs : Recommendations
        The top ``max(ks)`` lists (external IDs, scores) of the evaluated users.
    segments : DataFrame
        Accuracy by segment (index ``segment``): users by quartile of their scoring history
        length (``group == "activity"``, the sparse-data view), and by the popularity of the
        relevant items (``group == "popularity"``: ``head`` = the top 20% of items by
        training user count, ``tail`` = the rest; a user's relevant set is restricted to the
        segment's items and users without any are left out). Columns ``group``,
        ``ndcg@k``, ``hr@k``, ``recall@k`` for each k, ``n_users``.
    n_users, n_items : int
        Evaluated users; catalog size.
    eval_seconds : float
        Wall time of the evaluation (scoring included).
    ks : tuple[int, ...]
        The cut-offs.
    on : str
        ``"test"`` or ``"valid"``.
    n_skipped : int
        Users with held-out events that were all in their history (never rankable), left out.
    hits : (n_users, max(ks)) bool
        ``hits[u, r]``: the item at rank ``r + 1`` of user ``u``'s list is relevant (rows in
        ``per_user`` order), for any metric at any K <= max(ks) (see :mod:`.metrics`).
    n_relevant : (n_users,) int64
        Size of each user's relevant set.
    rerank : str
        The re-ranker's spec (``"mmr:0.3"``) when the lists were re-ranked, else ``""``.
    candidates : int
        How many of the best-scored items the re-ranker chose from (0 without one).
    rerank_seconds : float
        Wall time spent re-ranking (part of ``eval_seconds``).
    """

    metrics: dict[str, float]
    per_user: pd.DataFrame = field(repr=False)
    recs: Recommendations = field(repr=False)
    segments: pd.DataFrame = field(repr=False)
    n_users: int
    n_items: int
    eval_seconds: float
    ks: tuple[int, ...] = (10, 20)
    on: str = "test"
    n_skipped: int = 0
    hits: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=bool), repr=False)
    n_relevant: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)
    rerank: str = ""
    candidates: int = 0
    rerank_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary: ``{"metrics", "n_users", "n_items", "eval_seconds"}``,
        and ``"rerank": {"spec", "candidates", "seconds"}`` for re-ranked lists."""
        out: dict[str, Any] = {
            "metrics": {k: float(v) for k, v in self.metrics.items()},
            "n_users": int(self.n_users),
            "n_items": int(self.n_items),
            "eval_seconds": float(self.eval_seconds),
        }
        if self.rerank:
            out["rerank"] = {
                "spec": self.rerank,
                "candidates": int(self.candidates),
                "seconds": float(self.rerank_seconds),
            }
        return out


# ---------------------------------------------------------------------------- kernels
#: relevant items per row up to which the AUC makes one branch-free pass per item
_AUC_PASSES = 16
#: below this many scores a thread launch costs more than it saves
_PARALLEL_MIN_SCORES = 1 << 16
#: scores per block of the top-K scan (a block where none beats the heap's worst is skipped)
_BLOCK = 32


@numba.njit(inline="always")
def _wins(v: Any, rel: np.ndarray) -> float:
    """How many of the sorted relevant scores ``rel`` beat score ``v`` (ties count 1/2);
    NaN counts as -inf."""
    if v != v:
        v = -np.inf
    left = np.searchsorted(rel, v, side="left")
    right = np.searchsorted(rel, v, side="right")
    return (len(rel) - right) + 0.5 * (right - left)


@numba.njit(inline="always")
def _beats(s: Any, below: int, equal: int, nan: int) -> float:
    """Pairs won by relevant score ``s`` from its counts of lower, equal and NaN scores
    (NaN counts as -inf, ties 1/2)."""
    return below + 0.5 * equal + nan * (1.0 if s > -np.inf else 0.5)


@numba.njit(inline="always")
def _count_pass(row: np.ndarray, s: Any) -> float:
    """Pairs won by relevant score ``s`` against every entry of ``row`` (branch-free)."""
    below = 0
    equal = 0
    nan = 0
    for j in range(len(row)):
        v = row[j]
        below += v < s
        equal += v == s
        nan += v != v
    return _beats(s, below, equal, nan)


@numba.njit(inline="always")
def _worse(v_a: float, i_a: int, v_b: float, i_b: int) -> bool:
    """Entry a ranks below entry b: lower score, or equal score and a larger index
    (the tie rule of :func:`recstack.ranking.topk`)."""
    return v_a < v_b or (v_a == v_b and i_a > i_b)


@numba.njit(inline="always")
def _sift_down(hv: np.ndarray, hi: np.ndarray, size: int) -> None:
    """Restore the min-heap (worst entry at the root) after the root was replaced."""
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= size:
            return
        if child + 1 < size and _worse(hv[child + 1], hi[child + 1], hv[child], hi[child]):
            child += 1
        if not _worse(hv[child], hi[child], hv[pos], hi[pos]):
            return
        hv[pos], hv[child] = hv[child], hv[pos]
        hi[pos], hi[child] = hi[child], hi[pos]
        pos = child


@numba.njit(cache=True, nogil=True)
def _rank_row(
    row: np.ndarray,
    excluded: np.ndarray,
    relevant: np.ndarray,
    out_idx: np.ndarray,
    out_val: np.ndarray,
    out_hit: np.ndarray,
) -> float:
    """Top-K (``K = len(out_idx)``), hits and AUC of one score row in one pass over it.

    ``row`` is overwritten with -inf at ``excluded`` first. The selection is that of
    :func:`recstack.ranking.topk` (equal scores by increasing index; -inf and NaN never
    listed), scanned in blocks: a block where no score beats the heap's worst (a
    vectorized count) is skipped. With one relevant item (leave-one-out) the same pass counts
    the scores below/equal to it for the AUC; with more, one counting pass per relevant
    item follows (or a binary search per score past ``_AUC_PASSES``). ``excluded`` and
    ``relevant`` are sorted, duplicate-free and disjoint. Returns the AUC over
    (relevant, non-relevant non-excluded) pairs, NaN without a pair.
    """
    neg_inf = np.float32(-np.inf)  # float32 throughout: a float64 literal halves the SIMD width
    for p in range(len(excluded)):
        row[excluded[p]] = neg_inf
    k, m, n_rel = len(out_idx), len(row), len(relevant)
    rel = np.empty(n_rel, dtype=np.float32)
    for p in range(n_rel):
        v = row[relevant[p]]
        rel[p] = v if v == v else neg_inf
    rel.sort()
    s = rel[0] if n_rel == 1 else np.float32(np.nan)  # NaN: nothing to count in the scan
    above = 0  # scores > s
    at_least = 0  # scores >= s (NaN is neither)
    hv = np.empty(k, dtype=np.float32)
    hi = np.empty(k, dtype=np.int64)
    count = 0
    thr = neg_inf  # what a score must beat to enter (the heap's worst once it is full)
    for j in range(0, m, _BLOCK):
        end = min(j + _BLOCK, m)
        # branch-free integer reductions (they vectorize; a float max would not, for NaN)
        enter = 0
        if end - j == _BLOCK:
            for t in range(_BLOCK):
                v = row[j + t]
                enter += v > thr
                above += v > s
                at_least += v >= s
        else:
            for t in range(j, end):
                v = row[t]
                enter += v > thr
                above += v > s
                at_least += v >= s
        if enter == 0:  # nothing beats the heap's worst (an equal later score ranks below)
            continue
        for t in range(j, end):
            v = row[t]
            if not v > thr:  # also: excluded, -inf and NaN are never listed
                continue
            if count < k:  # sift up into the min-heap
                pos = count
                hv[pos], hi[pos] = v, t
                count += 1
                while pos > 0:
                    parent = (pos - 1) // 2
                    if not _worse(hv[pos], hi[pos], hv[parent], hi[parent]):
                        break
                    hv[pos], hv[parent] = hv[parent], hv[pos]
                    hi[pos], hi[parent] = hi[parent], hi[pos]
                    pos = parent
            else:
                hv[0], hi[0] = v, t
                _sift_down(hv, hi, k)
            if count == k:
                thr = hv[0]
    for slot in range(count - 1, -1, -1):  # pop the worst to the back: best first
        out_val[slot], out_idx[slot] = hv[0], hi[0]
        hv[0], hi[0] = hv[slot], hi[slot]
        _sift_down(hv, hi, slot)
        q = np.searchsorted(relevant, out_idx[slot])
        out_hit[slot] = q < n_rel and relevant[q] == out_idx[slot]
    for slot in range(count, k):
        out_val[slot], out_idx[slot], out_hit[slot] = neg_inf, -1, False

    n_neg = m - len(excluded) - n_rel
    if n_rel == 0 or n_neg <= 0:
        return np.nan
    if n_rel == 1:  # from the scan's counts: below + NaN = m - at_least; NaN ties -inf
        total = (m - at_least) + 0.5 * (at_least - above) if s > neg_inf else 0.5 * (m - above)
    elif n_rel <= _AUC_PASSES:
        total = 0.0
        for p in range(n_rel):
            total += _count_pass(row, rel[p])
    else:
        total = 0.0
        for j in range(m):
            total += _wins(row[j], rel)
    # counted against every entry: take off the excluded ones (now -inf) and the relevant
    # items themselves (their pairs among themselves sum to R^2 / 2)
    total -= len(excluded) * _wins(neg_inf, rel) + 0.5 * n_rel * n_rel
    return total / (n_rel * n_neg)


@numba.njit(parallel=True, cache=True, nogil=True)
def _rank_parallel(
    scores: np.ndarray,
    ex_ptr: np.ndarray,
    ex_idx: np.ndarray,
    rel_ptr: np.ndarray,
    rel_idx: np.ndarray,
    idx: np.ndarray,
    val: np.ndarray,
    hit: np.ndarray,
    auc: np.ndarray,
) -> None:
    for r in numba.prange(scores.shape[0]):
        auc[r] = _rank_row(
            scores[r], ex_idx[ex_ptr[r] : ex_ptr[r + 1]], rel_idx[rel_ptr[r] : rel_ptr[r + 1]],
            idx[r], val[r], hit[r],
        )  # fmt: skip


@numba.njit(cache=True, nogil=True)
def _rank_serial(
    scores: np.ndarray,
    ex_ptr: np.ndarray,
    ex_idx: np.ndarray,
    rel_ptr: np.ndarray,
    rel_idx: np.ndarray,
    idx: np.ndarray,
    val: np.ndarray,
    hit: np.ndarray,
    auc: np.ndarray,
) -> None:
    for r in range(scores.shape[0]):
        auc[r] = _rank_row(
            scores[r], ex_idx[ex_ptr[r] : ex_ptr[r + 1]], rel_idx[rel_ptr[r] : rel_ptr[r + 1]],
            idx[r], val[r], hit[r],
        )  # fmt: skip


def _rows(matrix: sp.csr_matrix, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR structure ``(indptr, indices)`` of rows ``start:stop``, without scipy's copies."""
    lo, hi = matrix.indptr[start], matrix.indptr[stop]
    return matrix.indptr[start : stop + 1] - lo, matrix.indices[lo:hi]


def _rank(
    scores: np.ndarray,
    exclude: tuple[np.ndarray, np.ndarray],
    relevant: tuple[np.ndarray, np.ndarray],
    k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top-``k`` index (n, k) int32, scores (n, k) float32, hits (n, k) bool and AUC (n,)
    of a score batch (n, n_items), masked in place. ``exclude`` and ``relevant``: CSR
    structures ``(indptr, indices)`` with sorted, duplicate-free, mutually disjoint rows."""
    n, m = scores.shape
    k = min(k, m)
    idx = np.empty((n, k), dtype=np.int64)
    val = np.empty((n, k), dtype=np.float32)
    hit = np.empty((n, k), dtype=np.bool_)
    auc = np.empty(n)
    if n:
        kernel = _rank_parallel if n > 1 and n * m >= _PARALLEL_MIN_SCORES else _rank_serial
        kernel(scores, *exclude, *relevant, idx, val, hit, auc)
    return idx.astype(np.int32), val, hit, auc


def auc(
    scores: np.ndarray, relevant: sp.csr_matrix, exclude: sp.csr_matrix | None = None
) -> np.ndarray:
    """Per-row AUC of ``scores`` (n, n_items): the probability that a relevant item outscores
    a non-relevant, non-excluded one (ties 1/2; NaN scores count as -inf), shape (n,).

    ``relevant`` and ``exclude`` are (n, n_items) sparse (structure used); relevant items
    that are also excluded are dropped. NaN for a row without relevant or negative items.
    """
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    n, m = scores.shape
    rel = sp.csr_matrix(relevant, dtype=np.float32, shape=(n, m))
    ex = sp.csr_matrix((n, m), dtype=np.float32) if exclude is None else sp.csr_matrix(exclude)
    rel.sum_duplicates()
    ex.sum_duplicates()
    if ex.shape != (n, m):
        raise DataError(f"exclude must have shape {(n, m)}, got {ex.shape}")
    rel = sp.csr_matrix(rel - rel.multiply(ex.astype(bool)))
    rel.eliminate_zeros()
    return _rank(scores.copy(), (ex.indptr, ex.indices), (rel.indptr, rel.indices), 1)[3]


# ---------------------------------------------------------------------------- item vectors
def item_feature_vectors(
    features: pd.DataFrame, columns: list[str] | None = None
) -> sp.csr_matrix | None:
    """Multi-hot item vectors (n_items, n_tokens) from categorical feature columns.

    A cell holds one token, space-separated tokens (``"Action Comedy"``) or a list.
    ``columns=None`` picks the genre-like columns: non-numeric, with at most
    ``sqrt(n_items)`` distinct tokens (titles and IDs have far more). None when no
    column qualifies.
    """
    n = len(features)
    tokens = []
    for col in features.columns if columns is None else columns:
        if col not in features.columns:
            raise ConfigError(f"no item feature column {col!r}; columns: {list(features.columns)}")
        s = features[col]
        if columns is None and pd.api.types.is_numeric_dtype(s):
            continue
        vals = s.reset_index(drop=True).dropna().astype(object)
        split = vals.map(
            lambda v: v if isinstance(v, list | tuple | np.ndarray) else str(v).split()
        )
        flat = split.explode().dropna()
        codes, uniq = pd.factorize(flat.astype(str))
        if columns is None and len(uniq) > max(1.0, np.sqrt(n)):
            continue
        tokens.append((flat.index.to_numpy(), codes, len(uniq)))
    if not tokens:
        return None
    offsets = np.cumsum([0] + [t[2] for t in tokens])
    rows = np.concatenate([t[0] for t in tokens])
    cols = np.concatenate([t[1] + off for t, off in zip(tokens, offsets[:-1], strict=True)])
    out = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, int(offsets[-1])))
    out.data[:] = 1.0  # a token repeated in one cell counts once
    return out


def _default_categories(train: Interactions) -> sp.csr_matrix | None:
    """Multi-hot genre-like item features, or None when the data has none."""
    if train.item_features is None:
        return None
    return item_feature_vectors(train.item_features)


def _default_item_vectors(
    train: Interactions, categories: sp.csr_matrix | None
) -> np.ndarray | sp.csr_matrix:
    """The genre-like ``categories`` when the data has them, else the training matrix's
    item-user columns."""
    if categories is not None:
        return categories
    return sp.csr_matrix(train.matrix.T.astype(bool).astype(np.float32))


def _fit_rerankers(
    rerankers: Mapping[str, Reranker | str | None],
    vectors: np.ndarray | sp.csr_matrix,
    categories: sp.csr_matrix | None,
    n_items: int,
) -> dict[str, Reranker | None]:
    """Parse specs and fit copies of the unfitted re-rankers (one similarity for all)."""
    out: dict[str, Reranker | None] = {}
    similarity: ItemSimilarity | None = None
    for name, rr in rerankers.items():
        rr = parse_rerank(rr) if isinstance(rr, str) else rr
        if rr is not None and not rr.is_fitted:
            if rr.needs == "vectors":
                similarity = similarity or ItemSimilarity(vectors)
                rr = copy.copy(rr).fit(item_vectors=similarity)
            elif categories is None:
                raise ConfigError(
                    f"re-ranker {rr.spec} needs item categories, but the data has no genre-like "
                    "item feature column; fit it with categories=... and pass it fitted"
                )
            else:
                rr = copy.copy(rr).fit(categories=categories)
        if rr is not None and rr.n_items != n_items:
            raise DataError(f"re-ranker {rr.spec} was fitted on {rr.n_items} items, not {n_items}")
        out[name] = rr
    return out


# ---------------------------------------------------------------------------- evaluation
def _check_ks(ks: Any) -> tuple[int, ...]:
    ks = (ks,) if isinstance(ks, int | np.integer) else tuple(ks)
    if not ks or any(
        not isinstance(k, int | np.integer) or isinstance(k, bool) or k <= 0 for k in ks
    ):
        raise ConfigError(f"ks must be positive integers, got {ks!r}")
    return tuple(sorted({int(k) for k in ks}))


def _relevant(target: Interactions, history: Interactions) -> sp.csr_matrix:
    """Binary (n_users, n_items) relevant sets: held-out items not in the history."""
    tm = target.matrix.tocoo()
    hm = history.matrix
    n_items = target.n_items
    t_keys = tm.row.astype(np.int64) * n_items + tm.col
    h_keys = np.repeat(np.arange(hm.shape[0], dtype=np.int64), np.diff(hm.indptr)) * n_items
    h_keys += hm.indices
    keep = ~_member(h_keys, t_keys)
    out = sp.csr_matrix(
        (np.ones(keep.sum(), dtype=np.float32), (tm.row[keep], tm.col[keep])),
        shape=target.matrix.shape,
    )
    out.sort_indices()
    return out


def _member(sorted_keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``query`` values present in the sorted array ``sorted_keys`` (any shape)."""
    if len(sorted_keys) == 0:
        return np.zeros(query.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, query), len(sorted_keys) - 1)
    return sorted_keys[pos] == query


def _accuracy(hits: np.ndarray, n_rel: np.ndarray, k: int) -> dict[str, np.ndarray]:
    h = hits[:, :k]
    return {
        f"ndcg@{k}": M.ndcg(h, n_rel),
        f"hr@{k}": M.hit_rate(h),
        f"recall@{k}": M.recall(h, n_rel),
        f"precision@{k}": M.precision(h),
        f"f1@{k}": M.f1(h, n_rel),
        f"map@{k}": M.average_precision(h, n_rel),
        f"mrr@{k}": M.mrr(h),
    }


def _mean(x: np.ndarray) -> float:
    """Mean over the defined (non-NaN) values; NaN when there are none."""
    ok = ~np.isnan(x)
    return float(x[ok].mean()) if ok.any() else float("nan")


def evaluate(
    model: Recommender,
    split: Split,
    *,
    ks: tuple[int, ...] | list[int] | int = (10, 20),
    on: str = "test",
    batch_size: int | None = None,
    progress: bool = True,
    item_vectors: np.ndarray | sp.csr_matrix | None = None,
    reranker: Reranker | str | None = None,
    candidates: int = 100,
) -> EvaluationResult:
    """Full-ranking evaluation of a fitted ``model`` on ``split``.

    Parameters
    ----------
    model : Recommender
        Fitted on ``split.train`` (same ID space).
    split : Split
        ``on="test"``: users with a test event, scored from :meth:`Split.test_history`
        (train + valid); ``on="valid"``: users with a validation event, scored from train.
    ks : ints
        Cut-offs; lists of ``max(ks)`` items are kept.
    batch_size : int, optional
        Users scored at once; default :func:`recstack.models.base.batch_rows` (about 32M
        scores per batch). Results do not depend on it, except with an MMR re-ranker's
        coverage swaps, which spread the lists of one batch (all of ML-100K's users).
    progress : bool
        A progress bar when there is more than one batch.
    item_vectors : (n_items, d) array or sparse, optional
        Item representation for intra-list diversity (and the similarity of an unfitted
        MMR/DPP re-ranker, so the two agree); default: multi-hot genre-like columns of the
        item features (:func:`item_feature_vectors`), else the item-user columns of the
        training matrix.
    reranker : Reranker or spec, optional
        Re-rank the top ``candidates`` of each user to ``max(ks)`` items
        (:mod:`recstack.ranking.rerank`; a spec like ``"mmr:0.3"`` is parsed). Every
        metric but the AUC (a property of the scores) then describes the re-ranked lists.
        An unfitted re-ranker is fitted (a copy) with ``item_vectors`` or with the
        genre-like item features (calibration, caps).
    candidates : int
        N, the candidates per user a re-ranker chooses from (>= ``max(ks)``).

    Notes
    -----
    The relevant set of a user is their held-out items minus their history (excluded from
    the ranking, they could never be hit); a user left with none is skipped and counted in
    ``n_skipped``. Novelty and ARP use training popularity (distinct users per item);
    novelty's never-seen floor is in :func:`recstack.evaluation.metrics.self_information`.
    With genre-like item features, ``miscalibration@k`` is the KL divergence of the list's
    genre distribution from the scoring history's (:func:`recstack.ranking.miscalibration`,
    Steck 2018).
    """
    return evaluate_rerankers(
        model,
        split,
        {"": reranker},
        ks=ks,
        on=on,
        batch_size=batch_size,
        progress=progress,
        item_vectors=item_vectors,
        candidates=candidates,
    )[""]


def evaluate_rerankers(
    model: Recommender,
    split: Split,
    rerankers: Mapping[str, Reranker | str | None],
    *,
    ks: tuple[int, ...] | list[int] | int = (10, 20),
    on: str = "test",
    batch_size: int | None = None,
    progress: bool = True,
    item_vectors: np.ndarray | sp.csr_matrix | None = None,
    candidates: int = 100,
) -> dict[str, EvaluationResult]:
    """:func:`evaluate` under several re-rankers (``None``: the plain ranking) at the cost
    of scoring once: one result per name of ``rerankers``. Parameters as in
    :func:`evaluate`; the sweeps of :func:`rerank_sweep` use it."""
    t0 = time.perf_counter()
    ks = _check_ks(ks)
    k_max = ks[-1]
    if on == "test":
        history, target = split.test_history(), split.test
    elif on == "valid":
        if split.valid is None:
            raise ConfigError("evaluate(on='valid'): the split has no validation part")
        history, target = split.train, split.valid
    else:
        raise ConfigError(f"on must be 'test' or 'valid', got {on!r}")
    if not model.is_fitted:
        raise NotFittedError(f"{type(model).__name__} is not fitted: call fit() first")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size <= 0):
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not rerankers:
        raise ConfigError("evaluate_rerankers: no re-rankers given (None is the plain ranking)")
    train, n_items = split.train, split.train.n_items
    cats = _default_categories(train)
    vecs = _default_item_vectors(train, cats) if item_vectors is None else item_vectors
    if vecs.shape[0] != n_items:
        raise DataError(f"item_vectors has {vecs.shape[0]} rows for {n_items} items")
    fitted = _fit_rerankers(rerankers, vecs, cats, n_items)
    reranked = any(rr is not None for rr in fitted.values())
    n_cand = check_candidates(candidates, k_max) if reranked else k_max

    relevant = _relevant(target, history)
    n_rel_all = np.diff(relevant.indptr)
    users = np.flatnonzero(n_rel_all > 0).astype(np.int32)
    n_skipped = int(np.count_nonzero(np.diff(target.matrix.indptr) > 0)) - len(users)
    if len(users) == 0:
        raise DataError(f"evaluate: no user has a rankable {on} event")
    rel = relevant[users]
    n_rel = n_rel_all[users]
    hist = history.histories(users)
    seen = history.matrix[users]  # the exclusions: each row's history items, sorted

    step = batch_size or batch_rows(n_items)
    n = len(users)
    lists = {
        name: (
            np.full((n, k_max), -1, dtype=np.int32),
            np.full((n, k_max), -np.inf, dtype=np.float32),
            np.zeros((n, k_max), dtype=bool),
        )
        for name in fitted
    }
    rerank_seconds = dict.fromkeys(fitted, 0.0)
    auc_u = np.empty(n)
    batches = range(0, n, step)
    bar = tqdm(
        batches,
        desc=f"evaluating {type(model).__name__}",
        unit="batch",
        disable=not progress or len(batches) <= 1,
        leave=False,
    )
    for start in bar:
        stop = min(start + step, n)
        h = hist.select(slice(start, stop))
        scores = np.ascontiguousarray(model.score(h), dtype=np.float32)
        if not scores.flags.writeable:  # the kernel masks the history in place
            scores = scores.copy()
        ex, r = _rows(seen, start, stop), _rows(rel, start, stop)
        idx, val, hit, auc_u[start:stop] = _rank(scores, ex, r, n_cand)
        del scores
        for name, rr in fitted.items():
            index, top, hits = lists[name]
            if rr is None:
                kk = min(k_max, idx.shape[1])  # k_max, or the catalog size if smaller
                index[start:stop, :kk], top[start:stop, :kk] = idx[:, :kk], val[:, :kk]
                hits[start:stop, :kk] = hit[:, :kk]
                continue
            t1 = time.perf_counter()
            pos = rr.rerank(idx, val, k_max, histories=h)
            rerank_seconds[name] += time.perf_counter() - t1
            index[start:stop] = gather(idx, pos, -1)
            top[start:stop] = gather(val, pos, -np.inf)
            hits[start:stop] = gather(hit, pos, False)
    shared = time.perf_counter() - t0 - sum(rerank_seconds.values())

    pop = train.item_user_counts
    n_train_users = max(1, int(np.count_nonzero(train.user_lengths)))
    user_ids = history.users.ids[users]
    errors = (
        _rating_errors(model, history, target) if callable(getattr(model, "predict", None)) else {}
    )
    results = {}
    for name, (index, top, hits) in lists.items():
        t1 = time.perf_counter()
        metrics, per_user = _list_metrics(
            index, hits, n_rel, ks, vecs, pop, n_train_users, cats, hist
        )
        per_user["auc"] = auc_u
        metrics["auc"] = _mean(auc_u)
        metrics.update(errors)
        seg = _segments(hits, n_rel, index, rel, hist.lengths, pop, ks)
        recs = Recommendations(user_ids, index, top, train.items, np.ones(n, dtype=bool))
        frame = pd.DataFrame(per_user, index=pd.Index(user_ids, name="user_id"))
        rr = fitted[name]
        results[name] = EvaluationResult(
            metrics=metrics,
            per_user=frame,
            recs=recs,
            segments=seg,
            n_users=n,
            n_items=n_items,
            eval_seconds=shared + rerank_seconds[name] + time.perf_counter() - t1,
            ks=ks,
            on=on,
            n_skipped=n_skipped,
            hits=hits,
            n_relevant=n_rel.astype(np.int64),
            rerank="" if rr is None else rr.spec,
            candidates=0 if rr is None else n_cand,
            rerank_seconds=rerank_seconds[name],
        )
    return results


def rerank_sweep(
    model: Recommender,
    split: Split,
    reranker: Reranker | str,
    values: Sequence[float] | None = None,
    *,
    ks: tuple[int, ...] | list[int] | int = (10,),
    on: str = "test",
    candidates: int = 100,
    item_vectors: np.ndarray | sp.csr_matrix | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Metrics of ``reranker`` at each value of its trade-off parameter (a lambda sweep),
    scoring the users once.

    ``values`` defaults to the class's ``sweep`` (from the plain ranking to the strongest
    re-ranking) plus the re-ranker's own value. Returns a DataFrame with one row per
    value (index named after the parameter, e.g. ``lam``, in sweep order) and one column
    per metric of :func:`evaluate`, plus ``rerank_ms_per_user``; ``attrs`` holds
    ``reranker`` (the name), ``param``, ``value`` (the re-ranker's own) and ``k`` (the
    first cut-off).
    """
    rr = parse_rerank(reranker) if isinstance(reranker, str) else reranker
    points = list(type(rr).sweep if values is None else values)
    if values is None:
        points.append(rr.value)
    points = list(dict.fromkeys(float(v) for v in points))  # in order, each once
    if not points:
        raise ConfigError(f"rerank_sweep: no values to sweep {rr.name}'s {rr.param} over")
    variants = {f"{rr.name}:{v:g}": rr.with_value(v) for v in points}
    results = evaluate_rerankers(
        model, split, variants, ks=ks, on=on, candidates=candidates,
        item_vectors=item_vectors, progress=progress,
    )  # fmt: skip
    table = pd.DataFrame(
        [
            {**r.metrics, "rerank_ms_per_user": 1000 * r.rerank_seconds / max(1, r.n_users)}
            for r in results.values()
        ],
        index=pd.Index(points, name=rr.param),
    )
    table.attrs.update(reranker=rr.name, param=rr.param, value=rr.value, k=_check_ks(ks)[0])
    return table


def _list_metrics(
    index: np.ndarray,
    hits: np.ndarray,
    n_rel: np.ndarray,
    ks: tuple[int, ...],
    vecs: np.ndarray | sp.csr_matrix,
    pop: np.ndarray,
    n_train_users: int,
    cats: sp.csr_matrix | None,
    hist: Histories,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Means and per-user values of every metric of the lists at each cut-off."""
    n_items = len(pop)
    per_user: dict[str, np.ndarray] = {}
    metrics: dict[str, float] = {}
    ild = M.ild_prefixes(index, vecs, list(ks))  # every k in one pass
    # the genre distributions of the items and of the users' histories (miscalibration)
    dists = None
    if cats is not None:
        item_dist = item_distributions(cats)
        dists = (user_distributions(hist, item_dist), item_dist)
    for col, k in enumerate(ks):
        lists = index[:, :k]
        acc = _accuracy(hits, n_rel, k)
        per_user.update(acc)
        metrics.update({key: _mean(v) for key, v in acc.items()})
        metrics[f"coverage@{k}"] = M.coverage(lists, n_items)
        metrics[f"gini@{k}"] = M.gini(lists, n_items)
        beyond = [
            (f"novelty@{k}", M.novelty(lists, pop, n_train_users)),
            (f"ild@{k}", ild[:, col]),
            (f"arp@{k}", M.arp(lists, pop)),
        ]
        if dists is not None:
            beyond.append((f"miscalibration@{k}", kl_to_users(lists, *dists)))
        for key, v in beyond:
            per_user[key] = v
            metrics[key] = _mean(v)
    return metrics, per_user


def _rating_errors(model: Any, history: Interactions, target: Interactions) -> dict[str, float]:
    """RMSE and MAE of ``model.predict`` over every held-out event (see the module doc)."""
    preds = []
    for start in range(0, target.n_events, _PREDICT_BATCH):
        users = target.user[start : start + _PREDICT_BATCH]
        items = target.item[start : start + _PREDICT_BATCH]
        h: Histories = history.histories(users)
        p = np.asarray(model.predict(h, items), dtype=np.float64).ravel()
        if p.shape != items.shape:
            raise DataError(
                f"{type(model).__name__}.predict returned {p.shape[0]} values for "
                f"{len(items)} (history, item) pairs"
            )
        preds.append(p)
    pred = np.concatenate(preds)
    return {"rmse": M.rmse(pred, target.value), "mae": M.mae(pred, target.value)}


def _segments(
    hits: np.ndarray,
    n_rel: np.ndarray,
    index: np.ndarray,
    rel: sp.csr_matrix,
    lengths: np.ndarray,
    pop: np.ndarray,
    ks: tuple[int, ...],
) -> pd.DataFrame:
    """Accuracy by user activity quartile and by relevant-item popularity (head/tail)."""
    rows: list[dict[str, Any]] = []
    labels: list[str] = []

    def add(group: str, label: str, h: np.ndarray, nr: np.ndarray) -> None:
        row: dict[str, Any] = {"group": group}
        for k in ks:
            row[f"ndcg@{k}"] = _mean(M.ndcg(h[:, :k], nr))
            row[f"hr@{k}"] = _mean(M.hit_rate(h[:, :k]))
            row[f"recall@{k}"] = _mean(M.recall(h[:, :k], nr))
        row["n_users"] = len(nr)
        rows.append(row)
        labels.append(label)

    # quartiles of history length; equal quantiles merge (qcut needs two distinct values)
    codes = (
        np.asarray(pd.qcut(lengths, 4, labels=False, duplicates="drop"), dtype=np.int64)
        if len(np.unique(lengths)) > 1
        else np.zeros(len(lengths), dtype=np.int64)
    )
    for q in np.unique(codes):
        sel = codes == q
        lo, hi = lengths[sel].min(), lengths[sel].max()
        add("activity", f"history {lo}-{hi}", hits[sel], n_rel[sel])

    n_items = len(pop)
    n_head = int(np.ceil(HEAD_SHARE * n_items))
    head = np.zeros(n_items, dtype=bool)
    head[np.argsort(-pop, kind="stable")[:n_head]] = True  # ties: smaller index first
    rel_rows = np.repeat(np.arange(len(n_rel)), n_rel)
    in_head = np.bincount(rel_rows, weights=head[rel.indices], minlength=len(n_rel))
    hit_head = hits & head[np.maximum(index, 0)]
    for label, h, nr in (
        (f"head (top {HEAD_SHARE:.0%} items)", hit_head, in_head),
        ("tail", hits & ~hit_head, n_rel - in_head),
    ):
        sel = nr > 0
        add("popularity", label, h[sel], nr[sel].astype(np.int64))
    return pd.DataFrame(rows, index=pd.Index(labels, name="segment"))
