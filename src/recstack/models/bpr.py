"""Bayesian Personalized Ranking (Rendle et al. 2009): matrix factorization trained by SGD
on (user, positive item, negative item) triples, Hogwild-style on several threads.

Reference: S. Rendle, C. Freudenthaler, Z. Gantner, L. Schmidt-Thieme. "BPR: Bayesian
Personalized Ranking from Implicit Feedback", UAI 2009.
"""

from __future__ import annotations

import numbers
from typing import Any, ClassVar

import llvmlite.ir as ir
import numba
import numpy as np
import scipy.sparse as sp
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from recstack.data import Histories, Interactions
from recstack.errors import ConfigError
from recstack.models.base import Recommender

_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_MIX1 = _U64(0xBF58476D1CE4E5B9)
_MIX2 = _U64(0x94D049BB133111EB)
_S27, _S30, _S31, _S32 = _U64(27), _U64(30), _U64(31), _U64(32)
_LOW32 = _U64(0xFFFFFFFF)
#: training samples per parallel chunk; each chunk has its own random stream
_CHUNK = 4096
#: triples ahead whose memory is prefetched (their pairs twice as far ahead)
_AHEAD = 8
#: negative draws per triple before a sample is skipped (a user who used nearly every item)
_MAX_TRIES = 32
_SAMPLING = ("uniform", "popularity")
#: the largest batch of folded-in histories :meth:`BPR.user_vectors` remembers
_MEMO_ROWS = 1024
#: fast-math flags that let LLVM vectorize the dot products, without assuming no inf/NaN
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


# ---------------------------------------------------------------------- random numbers
@numba.njit(inline="always")
def _mix(z: np.uint64) -> np.uint64:
    """SplitMix64's finalizer (Steele et al. 2014): a well-mixed 64-bit hash of ``z``."""
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@numba.njit(inline="always")
def _below(r: np.uint64, n: int) -> int:
    """An integer in [0, n) from the high 32 bits of ``r`` (Lemire's multiply-shift)."""
    return np.int64(((r >> _S32) * _U64(n)) >> _S32)  # type: ignore[return-value]


@numba.njit(inline="always")
def _unit(r: np.uint64) -> np.float64:
    """A float in [0, 1) from the low 32 bits of ``r``."""
    return np.float64(r & _LOW32) * (1.0 / 4294967296.0)


@numba.njit(inline="always")
def _negative(r: np.uint64, n_items: int, prob: np.ndarray, alias: np.ndarray) -> int:
    """One negative item: uniform when ``prob`` is empty, else from the alias table."""
    j = _below(r, n_items)
    if prob.size and _unit(r) >= prob[j]:
        j = alias[j]
    return j


@numba.njit(inline="always")
def _contains(sorted_arr: np.ndarray, lo: int, hi: int, x: int) -> bool:
    """``x`` is in ``sorted_arr[lo:hi]`` (binary search)."""
    end = hi
    while lo < hi:
        mid = (lo + hi) >> 1
        if sorted_arr[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo < end and bool(sorted_arr[lo] == x)


@numba.njit(inline="always")
def _user_negative(
    state: np.uint64,
    indices: np.ndarray,
    lo: int,
    hi: int,
    n_items: int,
    prob: np.ndarray,
    alias: np.ndarray,
    verify: bool,
) -> tuple[np.uint64, int]:
    """A negative for the user whose sorted positives are ``indices[lo:hi]``: with
    ``verify``, redrawn while it is a positive (``-1`` after ``_MAX_TRIES`` draws).
    Returns the advanced random state and the item."""
    for _ in range(_MAX_TRIES):
        state += _GOLDEN
        j = _negative(_mix(state), n_items, prob, alias)
        if not verify or not _contains(indices, lo, hi, j):
            return state, j
    return state, -1


@numba.njit(cache=True)
def _alias_table(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias table (Vose's construction) for sampling ``i`` with probability
    ``weights[i] / weights.sum()`` in O(1): draw a column ``j`` uniformly, keep it with
    probability ``prob[j]``, else take ``alias[j]``."""
    n = len(weights)
    scaled = weights * (n / weights.sum())
    prob = np.ones(n, dtype=np.float64)
    alias = np.arange(n).astype(np.int32)
    small = np.empty(n, dtype=np.int64)
    large = np.empty(n, dtype=np.int64)
    ns = nl = 0
    for i in range(n):
        if scaled[i] < 1.0:
            small[ns] = i
            ns += 1
        else:
            large[nl] = i
            nl += 1
    while ns > 0 and nl > 0:
        ns -= 1
        s = small[ns]
        g = large[nl - 1]
        prob[s] = scaled[s]
        alias[s] = g
        scaled[g] = (scaled[g] + scaled[s]) - 1.0
        if scaled[g] < 1.0:
            nl -= 1
            small[ns] = g
            ns += 1
    # leftovers are 1 up to rounding: keep them
    return prob, alias


@numba.njit(cache=True)
def _draw_negatives(
    n: int, n_items: int, prob: np.ndarray, alias: np.ndarray, seed: int
) -> np.ndarray:
    """``n`` negatives from the training sampler (for checking its distribution)."""
    out = np.empty(n, dtype=np.int64)
    state = _mix(_U64(seed))
    for s in range(n):
        state += _GOLDEN
        out[s] = _negative(_mix(state), n_items, prob, alias)
    return out


@numba.njit(cache=True)
def _draw_verified(
    indptr: np.ndarray, indices: np.ndarray, user: int, n: int, n_items: int, seed: int
) -> np.ndarray:
    """``n`` verified uniform negatives of ``user`` (for checking the verification)."""
    out = np.empty(n, dtype=np.int64)
    state = _mix(_U64(seed))
    empty_f = np.zeros(0, dtype=np.float64)
    empty_i = np.zeros(0, dtype=np.int32)
    for s in range(n):
        state, out[s] = _user_negative(
            state, indices, indptr[user], indptr[user + 1], n_items, empty_f, empty_i, True
        )
    return out


# ---------------------------------------------------------------------- kernels
def _prefetcher(write: int) -> Any:
    """An intrinsic ``f(arr, idx)`` hinting the CPU to fetch the cache line of ``arr[idx]``
    (LLVM's ``llvm.prefetch``; ``write``: 1 if the line will be written). No effect on
    results."""

    def typer(typingctx: Any, arr: Any, idx: Any) -> Any:
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            i = context.cast(builder, args[1], signature.args[1], types.intp)
            ptr = cgutils.get_item_pointer(context, builder, signature.args[0], ary, [i])
            i8p = builder.bitcast(ptr, ir.IntType(8).as_pointer())
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i8p.type, i32, i32, i32])
            fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p.type], fnty)
            builder.call(fn, [i8p, i32(write), i32(3), i32(1)])  # keep in cache; data
            return context.get_dummy_value()

        return types.void(arr, idx), codegen

    typer.__name__ = f"_prefetch_{'write' if write else 'read'}"
    return intrinsic(typer)


_prefetch_read = _prefetcher(0)
_prefetch_write = _prefetcher(1)


@numba.njit(inline="always")
def _pull(pu: np.ndarray, pi: np.ndarray, pj: np.ndarray) -> np.float32:
    """``sigmoid(x_uj - x_ui)`` of a triple, vectors with the bias last: the weight of its
    BPR gradient (the probability that the negative is ranked above the positive)."""
    x = np.float32(0.0)
    for f in range(len(pu)):
        x += pu[f] * (pi[f] - pj[f])
    return np.float32(1.0) / (np.float32(1.0) + np.exp(x))


@numba.njit(fastmath=_FASTMATH, cache=True)
def _chunk(
    c: int,
    indptr: np.ndarray,
    indices: np.ndarray,
    event_user: np.ndarray,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    lr: np.float32,
    reg: np.float32,
    prob: np.ndarray,
    alias: np.ndarray,
    verify: bool,
    seed: np.uint64,
) -> tuple[int, int]:
    """SGD on chunk ``c`` of an epoch's triples; returns its (correct, skipped) counts.

    The chunk's positive pairs are drawn first, so the memory they will touch can be
    prefetched ahead (on large data each triple otherwise waits on several cache misses
    in a row: pair -> user's row of positives -> factor rows).
    """
    nnz = len(indices)
    n_items = item_factors.shape[0]
    k = item_factors.shape[1] - 1
    state = _mix(seed ^ _mix(_U64(c) + _GOLDEN))
    n = min(nnz, (c + 1) * _CHUNK) - c * _CHUNK
    events = np.empty(n, dtype=np.int64)
    for t in range(n):
        state += _GOLDEN
        events[t] = _below(_mix(state), nnz)
    correct = 0
    skipped = 0
    for t in range(n):
        if t + 2 * _AHEAD < n:  # stage 1: the pair
            e = events[t + 2 * _AHEAD]
            _prefetch_read(event_user, e)
            _prefetch_read(indices, e)
        if t + _AHEAD < n:  # stage 2: the user's positives and the factor rows
            e = events[t + _AHEAD]
            u = event_user[e]
            _prefetch_read(indices, indptr[u])
            for f in range(0, k + 1, 16):  # 16 float32 = one 64-byte cache line
                _prefetch_write(user_factors[u], f)
                _prefetch_write(item_factors[indices[e]], f)
        e = events[t]
        u = event_user[e]
        i = indices[e]
        state, j = _user_negative(
            state, indices, indptr[u], indptr[u + 1], n_items, prob, alias, verify
        )
        if j < 0 or j == i:
            skipped += 1
            continue
        pu = user_factors[u]
        pi = item_factors[i]
        pj = item_factors[j]
        z = _pull(pu, pi, pj)
        if z < 0.5:
            correct += 1
        for f in range(k):
            wu = pu[f]
            wi = pi[f]
            wj = pj[f]
            pu[f] = wu + lr * (z * (wi - wj) - reg * wu)
            pi[f] = wi + lr * (z * wu - reg * wi)
            pj[f] = wj + lr * (-z * wu - reg * wj)
        pi[k] += lr * (z - reg * pi[k])
        pj[k] += lr * (-z - reg * pj[k])
    return correct, skipped


@numba.njit(parallel=True, fastmath=_FASTMATH, cache=True)
def _epoch(
    indptr: np.ndarray,
    indices: np.ndarray,
    event_user: np.ndarray,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    learning_rate: float,
    regularization: float,
    prob: np.ndarray,
    alias: np.ndarray,
    verify: bool,
    seed: np.uint64,
) -> tuple[int, int]:
    """One epoch of SGD on ``nnz`` triples, Hogwild over chunks of ``_CHUNK``.

    Positive pairs are drawn uniformly with replacement. Chunk ``c`` draws from its own
    random stream (a hash of ``seed`` and ``c``), so the triples do not depend on the
    thread count and one thread reproduces a run exactly. The last factor column is the
    item bias (the users' last column stays 1). Returns how many triples were already
    ordered right before their update, and how many were skipped.
    """
    n_chunks = (len(indices) + _CHUNK - 1) // _CHUNK
    correct = np.zeros(n_chunks, dtype=np.int64)
    skipped = np.zeros(n_chunks, dtype=np.int64)
    lr = np.float32(learning_rate)
    reg = np.float32(regularization)
    for c in prange(n_chunks):
        correct[c], skipped[c] = _chunk(
            c, indptr, indices, event_user, user_factors, item_factors, lr, reg, prob, alias,
            verify, seed,
        )  # fmt: skip
    return correct.sum(), skipped.sum()


@numba.njit(parallel=True, fastmath=_FASTMATH, cache=True)
def _fold_in(
    indptr: np.ndarray,
    indices: np.ndarray,
    item_factors: np.ndarray,
    epochs: int,
    learning_rate: float,
    regularization: float,
    prob: np.ndarray,
    alias: np.ndarray,
    verify: bool,
    seed: np.uint64,
) -> np.ndarray:
    """User vectors (n, k + 1) for CSR rows of positives (sorted), item factors fixed.

    Each row starts from zero (last column 1) and takes ``epochs`` passes over its items
    (in item order), one SGD step on its vector alone per item, the step size decaying
    linearly from ``learning_rate`` to 0 (the problem is convex in the user vector: the
    decay settles the iterate near its optimum).

    The negatives are common random numbers: the one drawn for item ``i`` in pass ``t`` is
    a hash of ``seed``, ``t`` and ``i`` alone (redrawn only if it is in the history). So
    two histories that share items share those items' draws, and removing an item from a
    history changes its own steps rather than every draw: scores move smoothly with the
    history. With a stream seeded by the whole history (as before), the score change from
    removing one item on ML-100K was mostly sampling noise, and the influence explanation's
    top item passed the deletion test for 76% of pairs, against 95% now (same cost, same
    validation NDCG@10 within the seeds' spread). Rows are independent: a history gets the
    same vector alone or in any batch.
    """
    n = len(indptr) - 1
    n_items = item_factors.shape[0]
    k = item_factors.shape[1] - 1
    lr = np.float32(learning_rate)
    reg = np.float32(regularization)
    out = np.zeros((n, k + 1), dtype=np.float32)
    for r in prange(n):
        lo = indptr[r]
        hi = indptr[r + 1]
        m = hi - lo
        pu = out[r]
        pu[k] = 1.0
        if m == 0:
            continue  # no history: item biases alone (a learned popularity)
        total = epochs * m
        for t in range(epochs):
            for e in range(m):
                i = indices[lo + e]
                state = _mix(seed + _mix(_U64(t) * _GOLDEN + _U64(i)))
                state, j = _user_negative(state, indices, lo, hi, n_items, prob, alias, verify)
                if j < 0 or j == i:
                    continue
                pi = item_factors[i]
                pj = item_factors[j]
                z = _pull(pu, pi, pj)
                lrt = lr * np.float32(1.0 - (t * m + e) / total)
                for f in range(k):
                    pu[f] += lrt * (z * (pi[f] - pj[f]) - reg * pu[f])
    return out


# ---------------------------------------------------------------------- the model
def _positive_int(name: str, value: object, minimum: int = 1) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{name} must be {what}, got {value!r}")


def _nonneg_real(name: str, value: object, positive: bool = False) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    ok = ok and np.isfinite(float(value)) and (float(value) > 0 if positive else float(value) >= 0)  # type: ignore[arg-type]
    if not ok:
        what = "a positive" if positive else "a non-negative"
        raise ConfigError(f"{name} must be {what} finite number, got {value!r}")


class BPR(Recommender):
    """Bayesian Personalized Ranking matrix factorization (Rendle et al. 2009).

    Learns user vectors ``p_u`` and item vectors ``q_i`` with item biases ``b_i`` so that
    ``p_u . q_i + b_i`` ranks a user's items above the others, by SGD on
    ``-log sigmoid(x_ui - x_uj) + regularization * ||params||^2 / 2`` over sampled triples
    (user ``u``, one of their items ``i``, a negative item ``j``); the ratings are ignored
    (every event is a positive). Threads update shared factors without locks (Hogwild,
    Niu et al. 2011), as implicit's BPR does. The defaults are tuned on ML-100K
    validation (``benchmarks/bench_bpr.py``).

    Scoring folds the history in: a user vector is fitted to the history's distinct items
    by ``fold_in_iterations`` passes of SGD on the same loss with the item factors fixed
    (see :meth:`user_vectors`). So a new user, an anonymous session and a known user with
    fresh events are served without retraining, and a history scores the same alone or in
    a batch, before or after saving. An empty history scores by the item biases alone.
    On ML-100K the folded-in vectors rank at least as well as the trained user vectors.

    Parameters
    ----------
    factors : int
        Latent dimensions (the bias is an extra column).
    learning_rate : float > 0
        SGD step size.
    regularization : float >= 0
        L2 penalty on the factors and biases touched by a triple.
    iterations : int
        Epochs: each draws as many triples as there are training pairs.
    negative_sampling : {"uniform", "popularity"}
        How negatives are drawn: uniformly over the catalog, or with probability
        proportional to ``n_users(item) ** popularity_beta`` (Walker's alias table; items
        without training users are never drawn).
    popularity_beta : float >= 0
        Exponent of the popularity sampler (1: as often as the item occurs in the data,
        implicit's choice; 0: uniform over the items with training users).
    verify_negative : bool
        Redraw a negative that the user has used (up to 32 draws, then skip the triple).
    fold_in_iterations : int >= 1
        Passes over a history's items when folding it in at scoring time.
    fold_in_learning_rate : float > 0
        Initial fold-in step size (decays linearly to 0).
    num_threads : int >= 0
        Training threads (0: numba's default, all cores). With one thread training is
        exactly reproducible; with more, lock-free updates race and results differ
        slightly between runs (the triples drawn are the same: every chunk of samples
        has its own random stream derived from ``seed``). Scoring is always
        deterministic.
    seed : int
        Seeds initialization, sampling and fold-in.

    Attributes
    ----------
    item_factors_ : (n_items, factors + 1) float32
        Item vectors; the last column is the item bias.
    user_factors_ : (n_users, factors + 1) float32
        The training users' vectors (last column 1); scoring folds histories in instead.
    train_auc_ : (iterations,) float64
        Per epoch, the share of sampled triples already ranked right before their update
        (a cheap running estimate of the training AUC).

    Examples
    --------
    >>> import pandas as pd
    >>> from recstack.data import Interactions
    >>> log = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": list("abbcc")})
    >>> model = BPR(factors=4, iterations=5, num_threads=1).fit(Interactions.from_frame(log))
    >>> model.item_factors_.shape
    (3, 5)
    """

    name = "bpr"
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {
        "factors": ("int", 16, 256, "log"),
        "learning_rate": ("float", 1e-3, 0.3, "log"),
        "regularization": ("float", 1e-5, 0.1, "log"),
        "iterations": ("int", 20, 300, "log"),
        "negative_sampling": ("categorical", ["uniform", "popularity"]),
    }

    def __init__(
        self,
        factors: int = 128,
        learning_rate: float = 0.05,
        regularization: float = 0.005,
        iterations: int = 100,
        negative_sampling: str = "uniform",
        popularity_beta: float = 1.0,
        verify_negative: bool = True,
        fold_in_iterations: int = 100,
        fold_in_learning_rate: float = 0.1,
        num_threads: int = 0,
        seed: int = 0,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.negative_sampling = negative_sampling
        self.popularity_beta = popularity_beta
        self.verify_negative = verify_negative
        self.fold_in_iterations = fold_in_iterations
        self.fold_in_learning_rate = fold_in_learning_rate
        self.num_threads = num_threads
        self.seed = seed

    def _validate_params(self) -> None:
        _positive_int("factors", self.factors)
        _nonneg_real("learning_rate", self.learning_rate, positive=True)
        _nonneg_real("regularization", self.regularization)
        _positive_int("iterations", self.iterations)
        if self.negative_sampling not in _SAMPLING:
            raise ConfigError(
                f"negative_sampling must be one of {', '.join(map(repr, _SAMPLING))}, "
                f"got {self.negative_sampling!r}"
            )
        _nonneg_real("popularity_beta", self.popularity_beta)
        if not isinstance(self.verify_negative, bool | np.bool_):
            raise ConfigError(f"verify_negative must be a bool, got {self.verify_negative!r}")
        _positive_int("fold_in_iterations", self.fold_in_iterations)
        _nonneg_real("fold_in_learning_rate", self.fold_in_learning_rate, positive=True)
        _positive_int("num_threads", self.num_threads, minimum=0)
        if not isinstance(self.seed, numbers.Integral) or isinstance(self.seed, bool):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")

    # ------------------------------------------------------------------ training
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        pos = train.matrix  # (n_users, n_items) CSR, sorted indices, one entry per pair
        k = int(self.factors)
        rng = np.random.default_rng(self.seed)
        # implicit's initialization: uniform in +-0.5 / factors, bias column 0 / 1
        items = (rng.random((train.n_items, k + 1), dtype=np.float32) - 0.5) / np.float32(k)
        users = (rng.random((train.n_users, k + 1), dtype=np.float32) - 0.5) / np.float32(k)
        items[:, k] = 0.0
        users[:, k] = 1.0
        # as implicit: nothing to learn for unused items/users; keep them neutral (zero)
        items[np.bincount(pos.indices, minlength=train.n_items) == 0] = 0.0
        users[np.diff(pos.indptr) == 0, :k] = 0.0
        self._build_sampler(pos)
        event_user = np.repeat(np.arange(pos.shape[0], dtype=np.int32), np.diff(pos.indptr))
        indptr = pos.indptr.astype(np.int64)
        indices = pos.indices.astype(np.int32)
        base = int(rng.integers(0, 2**63))
        n = int(self.iterations)
        correct = np.zeros(n, dtype=np.int64)
        skipped = np.zeros(n, dtype=np.int64)
        # chunks are handed out dynamically: a thread slowed down (a busy machine) does not
        # hold the others up at the end of each epoch
        with _threads(int(self.num_threads)), numba.parallel_chunksize(1):
            for it in range(n):
                correct[it], skipped[it] = _epoch(
                    indptr,
                    indices,
                    event_user,
                    users,
                    items,
                    float(self.learning_rate),
                    float(self.regularization),
                    self._prob,
                    self._alias,
                    bool(self.verify_negative),
                    _U64((base + it * 0x9E3779B97F4A7C15) % 2**64),
                )
        self.item_factors_ = items
        self.user_factors_ = users
        self.train_auc_ = correct / np.maximum(len(indices) - skipped, 1)

    def _build_sampler(self, pos: sp.csr_matrix) -> None:
        """Alias table of the popularity sampler (empty arrays: uniform)."""
        if self.negative_sampling == "uniform":
            self._prob = np.zeros(0, dtype=np.float64)
            self._alias = np.zeros(0, dtype=np.int32)
            return
        counts = np.bincount(pos.indices, minlength=pos.shape[1]).astype(np.float64)
        weights = np.where(counts > 0, counts ** float(self.popularity_beta), 0.0)
        self._prob, self._alias = _alias_table(weights)

    def _after_load(self) -> None:
        self._build_sampler(self.history_.to_csr())

    # ------------------------------------------------------------------ scoring
    def user_vectors(self, histories: Histories) -> np.ndarray:
        """Fold ``histories`` in, shape (n, factors + 1) float32 (last column 1).

        Each row's vector minimizes the BPR loss of its distinct items against sampled
        negatives (the training sampler) plus the L2 penalty, by SGD with the item
        factors fixed, deterministic per history (negatives keyed by ``seed``, the pass and
        the item: see ``_fold_in``).

        The last batch of at most :data:`_MEMO_ROWS` histories is remembered, so that
        explaining a recommendation (``recstack.explain``) does not fold the same histories
        in again: the fold-in is half the cost of an explanation.
        """
        self._check_fitted()
        rows = histories.to_csr()
        indptr = rows.indptr.astype(np.int64)
        indices = rows.indices.astype(np.int32)
        key = (
            self.item_factors_,
            self.seed,
            self.fold_in_iterations,
            self.fold_in_learning_rate,
            self.regularization,
            self.verify_negative,
        )
        memo = getattr(self, "_memo", None)
        if (
            memo is not None
            and memo[0][0] is key[0]
            and memo[0][1:] == key[1:]
            and np.array_equal(memo[1], indptr)
            and np.array_equal(memo[2], indices)
        ):
            return memo[3].copy()
        seed = _U64(int(self.seed) & 0xFFFFFFFFFFFFFFFF)
        with numba.parallel_chunksize(1):  # rows differ in length: hand them out dynamically
            out = _fold_in(
                indptr,
                indices,
                self.item_factors_,
                int(self.fold_in_iterations),
                float(self.fold_in_learning_rate),
                float(self.regularization),
                self._prob,
                self._alias,
                bool(self.verify_negative),
                seed,
            )
        if len(out) <= _MEMO_ROWS:
            self._memo = (key, indptr, indices, out.copy())
        return out

    def _score(self, histories: Histories) -> np.ndarray:
        return self.user_vectors(histories) @ self.item_factors_.T

    def retrieval_items(self) -> np.ndarray:
        return self.item_factors_  # the bias is the last column, the queries' is 1

    def retrieval_queries(self, histories: Histories) -> np.ndarray:
        return self.user_vectors(histories)

    def item_vectors(self) -> np.ndarray:
        return self.item_factors_[:, :-1]


class _threads:
    """Context manager: numba runs with ``n`` threads (0: unchanged) inside the block."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.before = numba.get_num_threads()

    def __enter__(self) -> None:
        if self.n:
            numba.set_num_threads(min(self.n, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]

    def __exit__(self, *exc: object) -> None:
        numba.set_num_threads(self.before)
