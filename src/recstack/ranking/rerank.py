"""Re-rankers: turn each user's top-N candidates into a top-K list that trades a little
relevance for diversity, calibration, catalog coverage or category limits.

Every re-ranker takes candidate item indices with their model scores, shape (n, N), and
returns, per row, the positions of the ``K`` chosen candidates in the order they are
listed. Relevance is the candidate score min-max scaled to [0, 1] within each row, so a
trade-off parameter means the same for every model whatever the scale of its scores.

- :class:`MMR`, maximal marginal relevance (Carbonell & Goldstein 1998): pick the
  candidate maximizing ``lam * rel - (1 - lam) * max cos(item, picked)``;
  :class:`MeanMMR` penalizes the mean cosine instead (what intra-list diversity averages);
  both can also trade lists' last slots for catalog coverage across a batch (``coverage``).
- :class:`DPP`, greedy MAP inference of a determinantal point process with the
  incremental Cholesky update of Chen, Zhang & Zhou, "Fast Greedy MAP Inference for
  Determinantal Point Process to Improve Recommendation Diversity", NeurIPS 2018.
- :class:`CategoryCap`: at most ``cap`` items of any one category.
- :class:`~recstack.ranking.calibration.Calibrated` (Steck 2018), in its own module.

Item similarity is the cosine of item vectors (:class:`ItemSimilarity`: factors, text
embeddings, or sparse multi-hot genres), the one :func:`recstack.evaluation.metrics.ild`
measures diversity with. Kernels run one user per thread (numba); a re-ranker works on a
batch of users as on one.

Examples
--------
>>> import numpy as np
>>> genres = np.array([[1, 0], [1, 0], [0, 1]])  # items 0 and 1 share a genre
>>> mmr = parse_rerank("mmr:0.5").fit(item_vectors=genres)
>>> cand, scores = np.array([[0, 1, 2]]), np.array([[3.0, 2.9, 1.0]])
>>> mmr.rerank(cand, scores, k=2).tolist()  # positions in ``cand``: item 2 moves up
[[0, 2]]
"""

from __future__ import annotations

import copy
import difflib
import inspect
import numbers
from collections.abc import Sequence
from typing import Any, ClassVar, Self, cast

import numba
import numpy as np
import scipy.sparse as sp

from recstack.data import Histories
from recstack.errors import ConfigError, DataError, NotFittedError
from recstack.ranking.topk import topk


# ---------------------------------------------------------------------------- similarity
class ItemSimilarity:
    """Cosine similarity between catalog items, from vectors scaled to unit length once.

    Parameters
    ----------
    vectors : (n_items, d) array or sparse matrix
        Dense factors or text embeddings, or sparse features (multi-hot genres, TF-IDF,
        item-user columns), kept sparse: the kernels scatter the listed item's vector into
        a dense scratch row and gather each candidate's non-zeros (MMR over ML-100K's
        item-user columns runs 3.8x faster than over the same vectors densified). An
        item with an all-zero vector has cosine 0 with every other item.

    Examples
    --------
    >>> sim = ItemSimilarity(np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]))
    >>> sim.pairwise([0], [1, 2]).round(4).tolist()
    [[0.7071, 0.0]]
    """

    def __init__(self, vectors: Any) -> None:
        self._store(unit_rows(vectors))

    @classmethod
    def mixture(cls, parts: Sequence[tuple[Any, float]]) -> ItemSimilarity:
        """The weighted sum ``sum_k w_k cos_k(i, j)`` of the cosines of several vector sets,
        e.g. genres and item-user columns (``w_k >= 0``, summing to 1).

        Stored as the concatenation of each set's unit rows scaled by ``sqrt(w_k)`` (not
        normalized again), whose dot products are exactly that sum: the kernels need no
        change. An item with an all-zero vector in one set gets 0 from that set's term.

        Examples
        --------
        >>> genres, columns = np.array([[1, 0], [1, 0]]), np.array([[1, 0], [0, 1]])
        >>> ItemSimilarity.mixture([(genres, 0.7), (columns, 0.3)]).pairwise([0], [1])
        array([[0.7]])
        """
        weights = np.array([w for _, w in parts], dtype=np.float64)
        if (
            len(parts) == 0
            or not np.all(np.isfinite(weights))
            or weights.min() < 0
            or not np.isclose(weights.sum(), 1.0)
        ):
            raise ConfigError(
                f"mixture weights must be non-negative and sum to 1, got {weights.tolist()}"
            )
        units = [unit_rows(v) for v, _ in parts]
        if len({u.shape[0] for u in units}) > 1:
            raise DataError(f"mixture parts have {[u.shape[0] for u in units]} rows, not one count")
        scaled = [np.sqrt(w) * u for u, w in zip(units, weights, strict=True)]
        out = cls.__new__(cls)
        if any(sp.issparse(u) for u in scaled):
            out._store(sp.csr_matrix(sp.hstack([sp.csr_matrix(u) for u in scaled])))
        else:
            out._store(np.hstack(scaled))
        return out

    def _store(self, unit: np.ndarray | sp.csr_matrix) -> None:
        """Keep ``unit`` (rows already scaled) in the form the kernels read."""
        self.is_dense = not sp.issparse(unit)
        # what the kernels read: dense unit rows, or (when sparse) CSR unit rows
        self.dense: np.ndarray = np.zeros((0, 0), dtype=np.float32)
        self.indptr: np.ndarray = np.zeros(1, dtype=np.int64)
        self.indices: np.ndarray = np.zeros(0, dtype=np.int32)
        self.data: np.ndarray = np.zeros(0, dtype=np.float32)
        if self.is_dense:
            self.dense = np.ascontiguousarray(unit, dtype=np.float32)
        else:
            m = sp.csr_matrix(unit, dtype=np.float32)
            m.sort_indices()
            self.indptr = m.indptr.astype(np.int64)
            self.indices, self.data = m.indices, m.data
        self.n_items, self.dim = unit.shape

    def kernel_args(self) -> tuple[bool, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        """What the numba kernels read: ``(is_dense, dense, indptr, indices, data, dim)``."""
        return self.is_dense, self.dense, self.indptr, self.indices, self.data, self.dim

    def pairwise(self, a: Any, b: Any) -> np.ndarray:
        """Cosines between items ``a`` and items ``b`` (internal indices), shape
        (len(a), len(b)) float64."""
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        if self.is_dense:
            return self.dense[a].astype(np.float64) @ self.dense[b].astype(np.float64).T
        m = sp.csr_matrix((self.data, self.indices, self.indptr), shape=(self.n_items, self.dim))
        return np.asarray((m[a] @ m[b].T).toarray(), dtype=np.float64)


def unit_rows(vectors: Any) -> np.ndarray | sp.csr_matrix:
    """Rows of dense or sparse (n_items, d) vectors scaled to unit length (zero rows stay
    zero), float64; sparse input stays sparse (CSR, sorted indices).

    Raises
    ------
    DataError
        Vectors that are not 2-D or hold NaN or infinite values.
    """
    if not sp.issparse(vectors):
        dense = np.asarray(vectors, dtype=np.float64)
        if dense.ndim != 2:
            raise DataError(f"item vectors must be 2-D (n_items, d), got shape {dense.shape}")
        _check_finite(dense)
        return dense * _inverse(np.linalg.norm(dense, axis=1))[:, None]
    m = sp.csr_matrix(cast(Any, vectors), dtype=np.float64)
    m.sum_duplicates()
    _check_finite(m.data)
    norm = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    unit = sp.csr_matrix(sp.diags(_inverse(norm)) @ m)
    unit.sort_indices()
    return unit


def _check_finite(values: np.ndarray) -> None:
    if not np.all(np.isfinite(values)):
        raise DataError("item vectors hold NaN or infinite values")


def _inverse(norm: np.ndarray) -> np.ndarray:
    """``1 / norm`` with 0 for zero norms."""
    return np.divide(1.0, norm, out=np.zeros_like(norm, dtype=np.float64), where=norm > 0)


@numba.njit(inline="always")
def _cosines_to(
    item: int,
    cand: np.ndarray,
    taken: np.ndarray,
    rel: np.ndarray,
    is_dense: bool,
    dense: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    scratch: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out[c] = cos(item, cand[c])`` for the open candidates (not taken, valid).

    Sparse rows: ``item``'s vector is scattered into the zeroed dense ``scratch`` once, so
    each candidate costs its own non-zeros (no merge), then the scratch is zeroed again.
    """
    if is_dense:
        for c in range(len(cand)):
            if not taken[c] and rel[c] > -np.inf:
                s = 0.0
                for t in range(dense.shape[1]):
                    s += dense[item, t] * dense[cand[c], t]
                out[c] = s
        return
    for p in range(indptr[item], indptr[item + 1]):
        scratch[indices[p]] = data[p]
    for c in range(len(cand)):
        if not taken[c] and rel[c] > -np.inf:
            s = 0.0
            for p in range(indptr[cand[c]], indptr[cand[c] + 1]):
                s += data[p] * scratch[indices[p]]
            out[c] = s
    for p in range(indptr[item], indptr[item + 1]):
        scratch[indices[p]] = 0.0


# ---------------------------------------------------------------------------- base class
class Reranker:
    """Base class: re-orders each row's top-N candidates into a top-K list.

    Subclasses set ``name`` (the spec name, ``"mmr"``), ``param`` (the one trade-off
    parameter a spec sets, ``"lam"``), ``needs`` (``"vectors"`` or ``"categories"``) and
    ``sweep`` (parameter values for trade-off curves, from the plain ranking towards the
    strongest re-ranking), and implement ``_fit`` and ``_rerank``.

    Use: ``fit`` once per catalog (item vectors or categories), then :meth:`rerank`
    (candidates and scores in, positions out) or :meth:`select` (full score rows in, item
    indices out) per batch of users.
    """

    name: ClassVar[str] = ""
    param: ClassVar[str] = ""
    needs: ClassVar[str] = "vectors"
    sweep: ClassVar[tuple[float, ...]] = ()
    #: further constructor parameters a spec may set after the value: "mmr:0.5,coverage=0.1"
    options: ClassVar[tuple[str, ...]] = ()

    @property
    def value(self) -> float:
        """The trade-off parameter's value."""
        return float(getattr(self, self.param))

    def _changed_options(self) -> list[tuple[str, Any]]:
        """``(name, value)`` of the options that differ from their defaults."""
        defaults = inspect.signature(type(self).__init__).parameters
        return [
            (o, getattr(self, o)) for o in self.options if getattr(self, o) != defaults[o].default
        ]

    @property
    def spec(self) -> str:
        """The spec :func:`parse_rerank` reads back, e.g. ``"mmr:0.3"`` or
        ``"mmr:0.3,coverage=0.1"``."""
        extra = "".join(f",{o}={_option_text(v)}" for o, v in self._changed_options())
        return f"{self.name}:{self.value:g}{extra}"

    def __repr__(self) -> str:
        extra = "".join(f", {o}={_option_text(v)}" for o, v in self._changed_options())
        return f"{type(self).__name__}({self.param}={self.value:g}{extra})"

    def with_value(self, value: float) -> Self:
        """A copy with the trade-off parameter set to ``value`` (validated) that keeps the
        fitted state: the points of a sweep share one similarity."""
        out = copy.copy(self)
        setattr(out, self.param, self._checked(value))
        return out

    @classmethod
    def _checked(cls, value: Any) -> Any:
        """``value`` if valid for ``param``, else a :class:`ConfigError`."""
        if (
            not isinstance(value, numbers.Real)
            or isinstance(value, bool)
            or not 0 <= float(value) <= 1
        ):
            raise ConfigError(f"{cls.name}: {cls.param} must be a number in [0, 1], got {value!r}")
        return value

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        *,
        item_vectors: Any = None,
        categories: Any = None,
    ) -> Self:
        """Prepare for a catalog: ``item_vectors`` (n_items, d) dense or sparse, or a built
        :class:`ItemSimilarity` (MMR, DPP), or ``categories`` (n_items, n_categories)
        non-negative, e.g. multi-hot genres (calibration, caps). Returns self."""
        if self.needs == "vectors" and item_vectors is None:
            raise ConfigError(
                f"{self.spec} needs item vectors: fit(item_vectors=...) with factors, text "
                "embeddings or feature (genre) vectors"
            )
        if self.needs == "categories" and categories is None:
            raise ConfigError(
                f"{self.spec} needs item categories: fit(categories=...) with multi-hot genres"
            )
        self._fit(item_vectors if self.needs == "vectors" else categories)
        return self

    def _fit(self, given: Any) -> None:
        raise NotImplementedError

    @property
    def n_items(self) -> int:
        if not hasattr(self, "n_items_"):
            raise NotFittedError(f"{self!r} is not fitted: call fit() first")
        return int(self.n_items_)

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "n_items_")

    # ------------------------------------------------------------------ re-ranking
    def rerank(
        self,
        candidates: np.ndarray,
        scores: np.ndarray,
        k: int,
        histories: Histories | None = None,
    ) -> np.ndarray:
        """Choose and order ``k`` of each row's candidates.

        Parameters
        ----------
        candidates : (n, N) int
            Internal item indices; ``-1`` marks padding.
        scores : (n, N) float
            Their model scores (higher is better); ``-inf`` or NaN candidates are never
            chosen.
        k : int
            List length.
        histories : Histories, optional
            The users' histories, one row per candidate row (calibration needs them).

        Returns
        -------
        (n, k) int32
            Positions in ``candidates`` of the listed items, best first; ``-1`` pads rows
            with fewer than ``k`` valid candidates. Ties go to the earlier candidate.
        """
        n_items = self.n_items
        if not isinstance(k, int | np.integer) or isinstance(k, bool) or k <= 0:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        cand = np.asarray(candidates)
        val = np.asarray(scores, dtype=np.float64)
        if cand.ndim != 2 or cand.dtype.kind not in "iu" or val.shape != cand.shape:
            raise DataError(
                f"candidates must be a 2-D int array and scores of the same shape, got "
                f"{cand.dtype} {cand.shape} and {val.shape}"
            )
        if cand.size and (cand.min() < -1 or cand.max() >= n_items):
            raise DataError(f"candidates hold indices outside [-1, {n_items}) (-1 is padding)")
        if histories is not None and len(histories) != len(cand):
            raise DataError(f"{len(histories)} histories for {len(cand)} candidate rows")
        cand = np.ascontiguousarray(cand, dtype=np.int64)
        out = np.full((len(cand), int(k)), -1, dtype=np.int32)
        if cand.size:
            self._rerank(cand, relevance(cand, val), int(k), histories, out)
        return out

    def _rerank(
        self,
        cand: np.ndarray,
        rel: np.ndarray,
        k: int,
        histories: Histories | None,
        out: np.ndarray,
    ) -> None:
        """Fill ``out`` (n, k) with positions; ``rel`` (n, N) float64 is -inf when invalid."""
        raise NotImplementedError

    def select(
        self,
        scores: np.ndarray,
        k: int,
        *,
        candidates: int = 100,
        exclude: sp.csr_matrix | None = None,
        allowed: np.ndarray | None = None,
        histories: Histories | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Full score rows in, re-ranked top-``k`` out: the serving call.

        The top ``candidates`` items of each row (:func:`recstack.ranking.topk` with
        ``exclude``/``allowed``; ``scores`` is overwritten there) are re-ranked to ``k``.

        Parameters
        ----------
        scores : (n, n_items) float32
            Model scores, e.g. ``model.score(histories)``.
        k : int
            List length (at most ``candidates``).
        candidates : int
            N, how many of the best-scored items the re-ranker chooses from.
        exclude, allowed
            As in :func:`recstack.ranking.topk` (typically ``histories.to_csr()``).
        histories : Histories, optional
            The users' histories (calibration needs them).

        Returns
        -------
        index : (n, k) int32
            Item indices, ``-1`` padding.
        value : (n, k) float32
            Their model scores (``-inf`` on padding).
        """
        n_cand = check_candidates(candidates, k)
        idx, val = topk(scores, n_cand, exclude=exclude, allowed=allowed)
        pos = self.rerank(idx, val, k, histories)
        return gather(idx, pos, -1), gather(val, pos, -np.inf)


def check_candidates(candidates: Any, k: int) -> int:
    """``candidates`` as an int, or a :class:`ConfigError` unless it is >= ``k``."""
    if (
        not isinstance(candidates, int | np.integer)
        or isinstance(candidates, bool)
        or candidates < k
    ):
        raise ConfigError(
            f"candidates must be an integer >= the list length {k}, got {candidates!r}"
        )
    return int(candidates)


def gather(values: np.ndarray, positions: np.ndarray, fill: Any) -> np.ndarray:
    """``values[r, positions[r, j]]`` per row, ``fill`` where the position is -1."""
    picked = np.take_along_axis(values, np.maximum(positions, 0), axis=1)
    return np.where(positions >= 0, picked, np.asarray(fill, dtype=values.dtype))


def relevance(candidates: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Scores min-max scaled to [0, 1] within each row over the valid candidates (index
    >= 0, finite score), ``-inf`` for the others; a row of equal scores is all 1. Shape
    (n, N) float64."""
    valid = (candidates >= 0) & np.isfinite(scores)
    lo = np.min(np.where(valid, scores, np.inf), axis=1, keepdims=True)
    hi = np.max(np.where(valid, scores, -np.inf), axis=1, keepdims=True)
    span = hi - lo
    with np.errstate(invalid="ignore"):  # rows without a valid candidate
        rel = np.where(span > 0, (scores - lo) / np.where(span > 0, span, 1.0), 1.0)
    return np.where(valid, rel, -np.inf)


# ---------------------------------------------------------------------------- MMR
@numba.njit(cache=True, nogil=True)
def _mmr_row(
    cand: np.ndarray,
    rel: np.ndarray,
    k: int,
    lam: float,
    mean: bool,
    is_dense: bool,
    dense: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    dim: int,
    out: np.ndarray,
) -> None:
    """Greedy MMR over one row: ``K * N`` cosines. The penalty is the max cosine to the
    listed items, or with ``mean`` their mean cosine."""
    n = len(cand)
    taken = np.zeros(n, dtype=np.bool_)
    penalty = np.zeros(n)
    sims = np.zeros(n)
    scratch = np.zeros(0 if is_dense else dim)
    for s in range(k):
        best, best_v = -1, -np.inf
        scale = 1.0 / s if mean and s > 0 else 1.0
        for c in range(n):
            if taken[c] or not rel[c] > -np.inf:
                continue
            v = lam * rel[c] - (1.0 - lam) * scale * penalty[c]
            if v > best_v:
                best, best_v = c, v
        if best < 0:
            return
        out[s] = best
        taken[best] = True
        _cosines_to(
            cand[best], cand, taken, rel, is_dense, dense, indptr, indices, data, scratch, sims
        )
        for c in range(n):
            if not taken[c] and rel[c] > -np.inf:
                if mean:
                    penalty[c] += sims[c]
                elif s == 0 or sims[c] > penalty[c]:
                    penalty[c] = sims[c]


@numba.njit(parallel=True, cache=True, nogil=True)
def _mmr_batch(
    cand: np.ndarray,
    rel: np.ndarray,
    k: int,
    lam: float,
    mean: bool,
    is_dense: bool,
    dense: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    dim: int,
    out: np.ndarray,
) -> None:
    for r in numba.prange(cand.shape[0]):
        _mmr_row(cand[r], rel[r], k, lam, mean, is_dense, dense, indptr, indices, data, dim, out[r])


@numba.njit(parallel=True, cache=True, nogil=True)
def _swap_costs(
    cand: np.ndarray,
    rel: np.ndarray,
    listed: np.ndarray,
    lam: float,
    mean: bool,
    is_dense: bool,
    dense: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    dim: int,
    cost: np.ndarray,
) -> None:
    """``cost[r, c]``: how much MMR's objective drops when candidate ``c`` takes the last
    slot of row ``r``'s list instead of the item there (both against the other listed
    items); left at ``inf`` for listed or invalid candidates and for short lists."""
    n, k = listed.shape
    for r in numba.prange(n):
        last = listed[r, k - 1]
        if last < 0:
            continue
        fixed = np.zeros(cand.shape[1], dtype=np.bool_)  # the k - 1 items that stay
        for j in range(k - 1):
            fixed[listed[r, j]] = True
        penalty = np.zeros(cand.shape[1])
        sims = np.zeros(cand.shape[1])
        scratch = np.zeros(0 if is_dense else dim)
        for j in range(k - 1):
            _cosines_to(
                cand[r, listed[r, j]], cand[r], fixed, rel[r], is_dense, dense, indptr,
                indices, data, scratch, sims,
            )  # fmt: skip
            for c in range(cand.shape[1]):
                if not fixed[c] and rel[r, c] > -np.inf:
                    if mean:
                        penalty[c] += sims[c] / (k - 1)
                    elif j == 0 or sims[c] > penalty[c]:
                        penalty[c] = sims[c]
        kept = lam * rel[r, last] - (1.0 - lam) * penalty[last]
        for c in range(cand.shape[1]):
            if not fixed[c] and c != last and rel[r, c] > -np.inf:
                cost[r, c] = kept - (lam * rel[r, c] - (1.0 - lam) * penalty[c])


@numba.njit(cache=True, nogil=True)
def _apply_swaps(
    rows: np.ndarray, cols: np.ndarray, cand: np.ndarray, listed: np.ndarray, counts: np.ndarray
) -> None:
    """Take the swaps ``(rows[t], cols[t])`` in order (cheapest first) while the
    candidate is still in no list, the row has not swapped yet and the item it gives up
    stays in another list; ``counts`` (n_items,) is how many lists hold each item."""
    k = listed.shape[1]
    swapped = np.zeros(listed.shape[0], dtype=np.bool_)
    for t in range(len(rows)):
        r, c = rows[t], cols[t]
        new, old = cand[r, c], cand[r, listed[r, k - 1]]
        if swapped[r] or counts[new] > 0 or counts[old] < 2:
            continue
        counts[old] -= 1
        counts[new] += 1
        listed[r, k - 1] = c
        swapped[r] = True


class _VectorReranker(Reranker):
    """A re-ranker over item similarity (fit with item vectors)."""

    needs = "vectors"

    def _fit(self, given: Any) -> None:
        sim = given if isinstance(given, ItemSimilarity) else ItemSimilarity(given)
        self.similarity_ = sim
        self.n_items_ = sim.n_items


class MMR(_VectorReranker):
    """Maximal marginal relevance (Carbonell & Goldstein, SIGIR 1998).

    Greedily lists the candidate maximizing ``lam * rel - (1 - lam) * max_j cos(i, j)``
    over the items ``j`` already listed (the penalty is 0 for the first pick); ``rel`` is
    the row's min-max scaled score. ``lam = 1`` is the plain ranking, ``lam = 0`` pure
    novelty with respect to the list.

    With ``coverage > 0`` a batch's lists then trade a little more relevance for catalog
    coverage (aggregate diversity: Adomavicius & Kwon, "Improving Aggregate
    Recommendation Diversity Using Ranking-Based Techniques", IEEE TKDE 2012): the last
    slot of a list may take a candidate that no list of the batch holds, when that costs
    MMR's own objective at most ``coverage`` against the item there (both scored against
    the list's other items, so a swap keeps the list's diversity in view). Swaps go
    cheapest first across the batch, at most one per list, and never drop an item that
    no other list holds: coverage only grows. A list then depends on the other users
    re-ranked in the same call (a batch job: e-mails, nightly lists); a one-user call is
    plain MMR. On ML-100K with EASE, mean-penalty MMR with swaps gave +31.7% coverage
    (and +15.3% intra-list diversity) for 1.0% of NDCG@10, where penalizing already-shown
    items inside the greedy pass had cost 5.3% for +35.7% (``benchmarks/bench_rerank.py``).

    Parameters
    ----------
    lam : float in [0, 1]
        Weight of relevance against similarity to the listed items (the default was chosen
        on ML-100K validation for EASE, like the other re-rankers': ``bench_rerank.py``).
    coverage : float >= 0
        The largest drop of the objective a coverage swap may cost (0: no swaps, lists
        are independent); in the objective's units (relevance is in [0, 1]).
    """

    name = "mmr"
    param = "lam"
    options = ("coverage",)
    sweep: ClassVar[tuple[float, ...]] = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5, 0.3, 0.0)
    #: penalize the mean cosine to the listed items instead of the max
    mean_penalty: ClassVar[bool] = False

    def __init__(self, lam: float = 0.7, coverage: float = 0.0) -> None:
        self.lam = self._checked(lam)
        if (
            not isinstance(coverage, numbers.Real)
            or isinstance(coverage, bool)
            or not 0 <= coverage < np.inf
        ):
            raise ConfigError(f"{self.name}: coverage must be a number >= 0, got {coverage!r}")
        self.coverage: float = coverage

    def _rerank(
        self,
        cand: np.ndarray,
        rel: np.ndarray,
        k: int,
        histories: Histories | None,
        out: np.ndarray,
    ) -> None:
        sim = self.similarity_.kernel_args()
        if len(cand) == 1:  # one request: a thread launch costs more than the work
            _mmr_row(cand[0], rel[0], k, float(self.lam), self.mean_penalty, *sim, out[0])
            return
        _mmr_batch(cand, rel, k, float(self.lam), self.mean_penalty, *sim, out)
        if self.coverage > 0:
            self._swap_for_coverage(cand, rel, out, sim)

    def _swap_for_coverage(
        self,
        cand: np.ndarray,
        rel: np.ndarray,
        out: np.ndarray,
        sim: tuple[bool, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int],
    ) -> None:
        """Give lists' last slots to candidates no list holds, cheapest first (see class);
        ``sim``: the similarity's kernel arguments."""
        cost = np.full(cand.shape, np.inf)
        _swap_costs(cand, rel, out, float(self.lam), self.mean_penalty, *sim, cost)
        listed = gather(cand, out, -1)
        counts = np.bincount(listed[listed >= 0], minlength=self.n_items)
        rows, cols = np.nonzero((cost <= self.coverage) & (counts[np.maximum(cand, 0)] == 0))
        order = np.argsort(cost[rows, cols], kind="stable")  # ties: earlier rows first
        _apply_swaps(rows[order], cols[order], cand, out, counts)


class MeanMMR(MMR):
    """MMR whose penalty is the *mean* cosine to the listed items, not the max.

    Lists the candidate maximizing ``lam * rel - (1 - lam) * mean_j cos(i, j)``. The
    mean is what intra-list diversity (a mean pairwise cosine distance) averages, so each
    step buys ILD directly; on ML-100K genres it gives more ILD per NDCG lost than the max
    (``benchmarks/bench_rerank.py``), while the max forbids near-duplicates more strictly.

    Parameters
    ----------
    lam : float in [0, 1]
        Weight of relevance against the mean similarity to the listed items.
    coverage : float >= 0
        The largest objective drop of a coverage swap (see :class:`MMR`).
    """

    name = "mmr-mean"
    sweep = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.0)
    mean_penalty = True

    def __init__(self, lam: float = 0.5, coverage: float = 0.0) -> None:
        super().__init__(lam, coverage)


# ---------------------------------------------------------------------------- DPP
@numba.njit(cache=True, nogil=True)
def _dpp_row(
    cand: np.ndarray,
    rel: np.ndarray,
    k: int,
    theta: float,
    jitter: float,
    is_dense: bool,
    dense: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    dim: int,
    out: np.ndarray,
) -> None:
    """Greedy DPP MAP over one row (Chen et al. 2018, Algorithm 1), ``O(N K^2)`` plus
    ``K * N`` cosines.

    ``d2[c]`` is the Schur complement of candidate ``c`` given the picked set ``Y`` in the
    similarity kernel ``S``: ``log det S_{Y+c} = log det S_Y + log d2[c]``. With quality
    ``q = exp(alpha * rel)``, ``alpha = theta / (2 (1 - theta))``, the kernel
    ``L = diag(q) S diag(q)`` gains ``log d2[c] + 2 alpha rel[c]``; times ``1 - theta`` this
    is the objective below, which stays finite at ``theta = 1``.
    """
    n = len(cand)
    taken = np.zeros(n, dtype=np.bool_)
    d2 = np.ones(n)  # S_cc = 1
    chol = np.zeros((k, n))  # row s: the s-th Cholesky coordinate of every candidate
    sims = np.zeros(n)
    scratch = np.zeros(0 if is_dense else dim)
    for s in range(k):
        best, best_v = -1, -np.inf
        for c in range(n):
            if taken[c] or not rel[c] > -np.inf:
                continue
            v = theta * rel[c] + (1.0 - theta) * np.log(max(d2[c], 1e-300))
            if v > best_v:
                best, best_v = c, v
        if best < 0:
            return
        out[s] = best
        taken[best] = True
        dj = np.sqrt(max(d2[best], 1e-300))
        _cosines_to(
            cand[best], cand, taken, rel, is_dense, dense, indptr, indices, data, scratch, sims
        )
        for c in range(n):
            if taken[c] or not rel[c] > -np.inf:
                continue
            dot = 0.0
            for t in range(s):
                dot += chol[t, best] * chol[t, c]
            e = ((1.0 - jitter) * sims[c] - dot) / dj
            chol[s, c] = e
            d2[c] -= e * e


@numba.njit(parallel=True, cache=True, nogil=True)
def _dpp_batch(
    cand: np.ndarray,
    rel: np.ndarray,
    k: int,
    theta: float,
    jitter: float,
    is_dense: bool,
    dense: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    dim: int,
    out: np.ndarray,
) -> None:
    for r in numba.prange(cand.shape[0]):
        _dpp_row(
            cand[r], rel[r], k, theta, jitter, is_dense, dense, indptr, indices, data, dim, out[r]
        )


class DPP(_VectorReranker):
    """Greedy MAP inference of a determinantal point process (Chen, Zhang & Zhou,
    NeurIPS 2018), with their incremental Cholesky update: ``O(N K^2)`` per user.

    The list ``Y`` greedily maximizes ``theta * sum_{i in Y} rel_i + (1 - theta) *
    log det S_Y``: the paper's kernel ``L = diag(q) S diag(q)`` with quality ``q_i =
    exp(alpha rel_i)``, ``alpha = theta / (2 (1 - theta))``, scaled by ``1 - theta`` (same
    argmax, finite at ``theta = 1``). ``S_ij = (1 - jitter) cos(i, j)`` off the diagonal
    and 1 on it, positive definite (smallest eigenvalue >= ``jitter``), so items with
    equal vectors (same genres) can still be listed after the rank of the vectors is spent.

    Parameters
    ----------
    theta : float in [0, 1]
        Weight of relevance; 1 is the plain ranking, 0 the most diverse greedy set.
    jitter : float in (0, 1)
        The ridge that keeps ``S`` positive definite.
    """

    name = "dpp"
    param = "theta"
    sweep = (1.0, 0.99, 0.98, 0.95, 0.9, 0.8, 0.7, 0.5, 0.3, 0.0)

    def __init__(self, theta: float = 0.95, jitter: float = 1e-3) -> None:
        self.theta = self._checked(theta)
        if not isinstance(jitter, numbers.Real) or isinstance(jitter, bool) or not 0 < jitter < 1:
            raise ConfigError(f"dpp: jitter must be a number in (0, 1), got {jitter!r}")
        self.jitter: float = jitter

    def _rerank(
        self,
        cand: np.ndarray,
        rel: np.ndarray,
        k: int,
        histories: Histories | None,
        out: np.ndarray,
    ) -> None:
        params = (float(self.theta), float(self.jitter), *self.similarity_.kernel_args())
        if len(cand) == 1:
            _dpp_row(cand[0], rel[0], k, *params, out[0])
        else:
            _dpp_batch(cand, rel, k, *params, out)


# ---------------------------------------------------------------------------- category caps
def category_matrix(categories: Any) -> sp.csr_matrix:
    """Item categories as CSR float64 (n_items, n_categories) with sorted indices, checked
    non-negative and finite."""
    m = sp.csr_matrix(categories, dtype=np.float64)
    m.sum_duplicates()
    m.sort_indices()
    if m.nnz and (not np.all(np.isfinite(m.data)) or m.data.min() < 0):
        raise DataError("item categories must be non-negative finite numbers")
    m.eliminate_zeros()
    return m


@numba.njit(cache=True, nogil=True)
def _cap_row(
    cand: np.ndarray,
    order: np.ndarray,
    valid: np.ndarray,
    k: int,
    cap: int,
    indptr: np.ndarray,
    indices: np.ndarray,
    n_categories: int,
    out: np.ndarray,
) -> None:
    """Candidates in ``order``; one is listed unless a category of its is full; the slots
    left are filled with the skipped candidates in ``order``."""
    count = np.zeros(n_categories, dtype=np.int64)
    skipped = np.empty(len(cand), dtype=np.int64)
    n_out, n_skip = 0, 0
    for p in range(len(cand)):
        if n_out == k:
            break
        c = order[p]
        if not valid[c]:
            continue
        item = cand[c]
        full = False
        for q in range(indptr[item], indptr[item + 1]):
            if count[indices[q]] >= cap:
                full = True
                break
        if full:
            skipped[n_skip] = c
            n_skip += 1
            continue
        for q in range(indptr[item], indptr[item + 1]):
            count[indices[q]] += 1
        out[n_out] = c
        n_out += 1
    for p in range(min(n_skip, k - n_out)):
        out[n_out + p] = skipped[p]


@numba.njit(parallel=True, cache=True, nogil=True)
def _cap_batch(
    cand: np.ndarray,
    order: np.ndarray,
    valid: np.ndarray,
    k: int,
    cap: int,
    indptr: np.ndarray,
    indices: np.ndarray,
    n_categories: int,
    out: np.ndarray,
) -> None:
    for r in numba.prange(cand.shape[0]):
        _cap_row(cand[r], order[r], valid[r], k, cap, indptr, indices, n_categories, out[r])


class CategoryCap(Reranker):
    """At most ``cap`` items per category in each list, otherwise the model's order.

    Candidates are taken by decreasing score; one whose categories (any of them, for a
    multi-genre item) already hold ``cap`` listed items is skipped. When too few
    candidates pass, the list is completed with the best skipped ones (so it is as long
    as without caps, and then breaks the cap). Items without a category never count.

    Parameters
    ----------
    cap : int >= 1
        The most items of one category in a list.
    """

    name = "cap"
    param = "cap"
    needs = "categories"
    sweep = (10.0, 5.0, 4.0, 3.0, 2.0, 1.0)

    def __init__(self, cap: int = 3) -> None:
        self.cap = self._checked(cap)

    @classmethod
    def _checked(cls, value: Any) -> int:
        """An integral ``value`` >= 1 as int (a spec's ``2.0`` is 2)."""
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not ok or not 1 <= value < np.inf or value != int(value):
            raise ConfigError(f"cap: cap must be an integer >= 1, got {value!r}")
        return int(value)

    def _fit(self, given: Any) -> None:
        self.categories_ = category_matrix(given)
        self.n_items_ = self.categories_.shape[0]

    def _rerank(
        self,
        cand: np.ndarray,
        rel: np.ndarray,
        k: int,
        histories: Histories | None,
        out: np.ndarray,
    ) -> None:
        order = np.argsort(-rel, axis=1, kind="stable")  # -inf (invalid) last
        cats = self.categories_
        params = (int(self.cap), cats.indptr.astype(np.int64), cats.indices, cats.shape[1])
        if len(cand) == 1:
            _cap_row(cand[0], order[0], rel[0] > -np.inf, k, *params, out[0])
        else:
            _cap_batch(cand, order, rel > -np.inf, k, *params, out)


# ---------------------------------------------------------------------------- specs
#: spec name -> "module:Class" (calibration lives in its own module, which imports this one)
RERANKERS: dict[str, str] = {
    "mmr": "recstack.ranking.rerank:MMR",
    "mmr-mean": "recstack.ranking.rerank:MeanMMR",
    "dpp": "recstack.ranking.rerank:DPP",
    "calibrate": "recstack.ranking.calibration:Calibrated",
    "cap": "recstack.ranking.rerank:CategoryCap",
}


def reranker_class(name: str) -> type[Reranker]:
    """The re-ranker class registered under ``name`` (a :class:`ConfigError` otherwise)."""
    import importlib

    if name not in RERANKERS:
        close = difflib.get_close_matches(name, list(RERANKERS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown re-ranker {name!r}{hint} (known: {', '.join(RERANKERS)})")
    module, cls = RERANKERS[name].split(":")
    klass: type[Reranker] = getattr(importlib.import_module(module), cls)
    return klass


def _option_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool | np.bool_) else f"{value:g}"


def parse_rerank(spec: str) -> Reranker:
    """A re-ranker from a spec ``"name:value"`` (or ``"name"`` for its default), e.g.
    ``"mmr:0.3"``, ``"dpp:0.9"``, ``"calibrate:0.5"``, ``"cap:2"``, optionally followed by
    ``,option=value`` pairs of the class's ``options`` (``"mmr:0.5,coverage=0.1"``,
    ``"calibrate:0.4,discount=false"``).

    Raises
    ------
    ConfigError
        An unknown name or option, a value that is not a number (or a boolean for a
        boolean option), or one out of the parameter's range.

    Examples
    --------
    >>> parse_rerank("mmr:0.3")
    MMR(lam=0.3)
    >>> parse_rerank("cap:2").spec
    'cap:2'
    >>> parse_rerank("mmr-mean:0.5,coverage=0.1")
    MeanMMR(lam=0.5, coverage=0.1)
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(
            f"a re-ranker spec is 'name:value' like 'mmr:0.3' (names: "
            f"{', '.join(RERANKERS)}), got {spec!r}"
        )
    name, sep, text = spec.strip().partition(":")
    klass = reranker_class(name.strip().lower())
    if not sep:
        return klass()
    text, *pairs = text.split(",")
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(
            f"re-ranker spec {spec!r}: the value of {klass.param} must be a number, got {text!r}"
        ) from None
    kwargs: dict[str, Any] = {}
    defaults = inspect.signature(klass.__init__).parameters
    for pair in pairs:
        key, eq, raw = (p.strip() for p in pair.partition("="))
        if not eq or key not in klass.options:
            known = ", ".join(klass.options) or "none"
            raise ConfigError(
                f"re-ranker spec {spec!r}: {pair.strip()!r} is not option=value with a known "
                f"option of {klass.name} ({known})"
            )
        if isinstance(defaults[key].default, bool):
            if raw.lower() not in ("true", "false"):
                raise ConfigError(f"re-ranker spec {spec!r}: {key} must be true or false")
            kwargs[key] = raw.lower() == "true"
            continue
        try:
            kwargs[key] = float(raw)
        except ValueError:
            raise ConfigError(
                f"re-ranker spec {spec!r}: {key} must be a number, got {raw!r}"
            ) from None
    return klass(value, **kwargs)  # type: ignore[call-arg]
