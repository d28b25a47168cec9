"""Alternating least squares for implicit feedback (Hu, Koren & Volinsky 2008)."""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterator
from typing import Any, ClassVar

import numba
import numpy as np
import scipy.sparse as sp

from recstack.data import Histories, Interactions
from recstack.errors import ConfigError, DataError
from recstack.models import _als_kernels as K
from recstack.models.base import Recommender

_SOLVERS = ("cg", "cholesky")
#: dense work of one row in units of its sparse entries (k^2 vs ~4k per entry per CG step;
#: k^3 / 3 vs k^2 / 2 per entry for the exact solve)
_CG_FIXED, _EXACT_FIXED = 0.25, 0.67
#: below this many flops a kernel runs on one thread: waking the pool would cost more
#: (much more on a busy machine, where a descheduled thread stalls the whole region)
_PARALLEL_FLOPS = 4e6


class ALS(Recommender):
    """Implicit-feedback matrix factorization by alternating least squares.

    Minimizes the objective of Hu, Koren & Volinsky, "Collaborative Filtering for Implicit
    Feedback Datasets" (ICDM 2008) over *all* user-item pairs::

        sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + regularization (sum_u |x_u|^2 + sum_i |y_i|^2)

    with preference ``p_ui = 1`` for an observed pair with value ``r_ui > 0`` (else 0) and
    confidence ``c_ui = 1 + alpha * r_ui`` (1 for unobserved pairs). ``r`` is the training
    matrix value (the last value of a repeated pair: a rating, or 1.0). Each iteration solves
    the item factors, then the user factors, each row in closed form given the other side.
    The default solver takes ``cg_steps`` conjugate-gradient steps per row, warm-started from
    the previous factors and touching only the row's observed entries plus the shared
    ``Y^T Y`` (Takacs, Pilaszy & Tikk 2011; implicit's approach), in float32 and in parallel
    over rows (numba threads); ``solver="cholesky"`` solves each row exactly.

    Scoring folds a history in: ``x_u = (Y^T C_u Y + regularization I)^-1 Y^T C_u p_u``,
    solved exactly from the history's values, then ``scores = x_u @ Y^T``. A known user's
    stored history gives back its trained factors (exactly with ``solver="cholesky"``, to
    the CG tolerance otherwise), and a new user or fresh events need no retraining.

    The defaults were chosen on the ML-100K validation split of the shared protocol (ratings
    1-5 as ``r``; ``benchmarks/bench_als.py --quality``).

    Parameters
    ----------
    factors : int
        Latent dimension ``k``.
    regularization : float
        L2 weight ``lambda`` > 0 (not scaled by the number of entries).
    alpha : float
        Confidence slope >= 0 (0 weighs observed and unobserved pairs alike).
    iterations : int
        Full sweeps (item half-step, then user half-step).
    solver : {"cg", "cholesky"}
        Conjugate gradient (fast) or exact Cholesky solve per row (``O(k^3)`` each).
    cg_steps : int
        Conjugate-gradient steps per row and half-step (``solver="cg"``).
    seed : int
        Seed of the random initialization (factors uniform in ``[0, 0.01)``).

    Attributes
    ----------
    user_factors_ : (n_users, factors) float32
        ``x_u`` of the training users (zeros for users without training events).
    item_factors_ : (n_items, factors) float32
        ``y_i``.

    Notes
    -----
    Explanations (Hu et al. section 5): the score of item ``t`` is
    ``sum_j c_uj p_uj s^u_jt`` over the history items ``j``, with the user-specific
    similarity ``s^u_jt = y_j^T W_u y_t`` and ``W_u = (Y^T C_u Y + lambda I)^-1``.
    :meth:`explain_weights` returns these terms, computing ``W_u y_t`` on the fly from the
    item factors (one k x k Cholesky factorization per history).

    Examples
    --------
    >>> import pandas as pd
    >>> from recstack.data import Interactions
    >>> log = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": list("abbca")})
    >>> model = ALS(factors=4, iterations=5).fit(Interactions.from_frame(log))
    >>> model.item_factors_.shape
    (3, 4)
    >>> model.recommend(histories=[["a"]], k=2).item_ids.shape
    (1, 2)
    """

    name = "als"
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {
        "factors": ("int", 16, 256, "log"),
        "regularization": ("float", 0.01, 200.0, "log"),
        "alpha": ("float", 0.05, 50.0, "log"),
        "iterations": ("int", 5, 50),
    }

    def __init__(
        self,
        factors: int = 128,
        regularization: float = 20.0,
        alpha: float = 1.0,
        iterations: int = 15,
        solver: str = "cg",
        cg_steps: int = 3,
        seed: int = 0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.solver = solver
        self.cg_steps = cg_steps
        self.seed = seed

    def _validate_params(self) -> None:
        for name in ("factors", "iterations", "cg_steps"):
            _check_int(name, getattr(self, name), 1)
        _check_int("seed", self.seed, 0)
        _check_real("regularization", self.regularization, positive=True)
        _check_real("alpha", self.alpha, positive=False)
        if self.solver not in _SOLVERS:
            raise ConfigError(f"solver must be one of {_SOLVERS}, got {self.solver!r}")

    # ------------------------------------------------------------------ fitting
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        user_items = _checked_csr(train.matrix, "fit: training")
        item_users = user_items.T.tocsr()
        rng = np.random.default_rng(self.seed)
        k = int(self.factors)
        x = rng.random((train.n_users, k), dtype=np.float32) * np.float32(0.01)
        y = rng.random((train.n_items, k), dtype=np.float32) * np.float32(0.01)
        # each sweep ends with the users, so user_factors_ solve for the final item_factors_
        for _ in range(int(self.iterations)):
            self._half_step(item_users, x, y)
            self._half_step(user_items, y, x)
        self.user_factors_, self.item_factors_ = x, y
        self._after_load()

    def _half_step(self, rows: sp.csr_matrix, other: np.ndarray, factors: np.ndarray) -> None:
        """Solve ``factors`` (one row per row of ``rows``) given the ``other`` side."""
        k = other.shape[1]
        if self.solver == "cg":
            gram = _gram(other, self.regularization).astype(np.float32)
            bounds = K.work_chunks(rows.indptr, _CG_FIXED * k)
            with _parallel(4.0 * k * (rows.nnz + _CG_FIXED * k * rows.shape[0]) * self.cg_steps):
                K.cg_half_step(
                    rows.indptr,
                    rows.indices,
                    rows.data,
                    np.float32(self.alpha),
                    other,
                    gram,
                    factors,
                    bounds,
                    int(self.cg_steps),
                )
        else:
            self._solve_exact(rows, other, _gram(other, self.regularization), factors)

    def _solve_exact(
        self, rows: sp.csr_matrix, other: np.ndarray, gram: np.ndarray, out: np.ndarray
    ) -> None:
        k = other.shape[1]
        bounds = K.work_chunks(rows.indptr, _EXACT_FIXED * k)
        with _parallel(0.5 * k * k * (rows.nnz + _EXACT_FIXED * k * rows.shape[0])):
            K.exact_half_step(
                rows.indptr, rows.indices, rows.data, float(self.alpha), other, gram, out, bounds
            )

    def _after_load(self) -> None:
        # Y^T Y + lambda I in float64, shared by every fold-in
        self._gram = _gram(self.item_factors_, self.regularization)

    # ------------------------------------------------------------------ scoring
    def user_vectors(self, histories: Histories) -> np.ndarray:
        """Fold histories in: the exact ``x_u`` of each, shape (n, factors) float32.

        ``x_u = (Y^T C_u Y + lambda I)^-1 Y^T C_u p_u`` from the history's values (a repeated
        item counts once, with its last value); an empty history gives zeros.
        """
        self._check_fitted()
        csr = _checked_csr(histories.to_csr(), "histories")
        out = np.empty((len(histories), self.item_factors_.shape[1]), dtype=np.float32)
        self._solve_exact(csr, self.item_factors_, self._gram, out)
        return out

    def _score(self, histories: Histories) -> np.ndarray:
        return self.user_vectors(histories) @ self.item_factors_.T

    def retrieval_items(self) -> np.ndarray:
        return self.item_factors_

    def retrieval_queries(self, histories: Histories) -> np.ndarray:
        return self.user_vectors(histories)

    def item_vectors(self) -> np.ndarray:
        return self.item_factors_

    def explain_weights(self, histories: Histories, items: np.ndarray) -> sp.csr_matrix:
        """How much each history item contributes to the score of ``items[r]`` for row ``r``.

        Parameters
        ----------
        histories : Histories
            ``n`` histories.
        items : (n,) int
            Internal index of the explained item of each row.

        Returns
        -------
        (n, n_items) float32 CSR
            Row ``r`` holds ``c_uj p_uj y_j^T W_u y_t`` for each history item ``j``
            (``t = items[r]``, ``W_u = (Y^T C_u Y + lambda I)^-1``); the row sums to the
            score of ``t`` (Hu et al. 2008, section 5). Large terms are the history items
            that explain the recommendation.
        """
        self._check_fitted()
        targets = np.asarray(items, dtype=np.int64).reshape(-1)
        if len(targets) != len(histories):
            raise DataError(f"explain_weights: {len(targets)} items for {len(histories)} rows")
        if len(targets) and (targets.min() < 0 or targets.max() >= self.n_items):
            raise DataError(f"explain_weights: an item index is outside [0, {self.n_items})")
        csr = _checked_csr(histories.to_csr(), "histories")
        terms = K.explain_solve(
            csr.indptr,
            csr.indices,
            csr.data,
            float(self.alpha),
            self.item_factors_,
            self._gram,
            targets,
        )
        return sp.csr_matrix(
            (terms.astype(np.float32), csr.indices.copy(), csr.indptr.copy()), shape=csr.shape
        )

    def loss(self, data: Interactions) -> float:
        """The objective (see the class docstring) of the fitted factors on ``data``
        (same ID space as the training data)."""
        self._check_fitted()
        if data.users != self.users_ or data.items != self.items_:
            raise DataError("loss: data must use the model's user and item ID maps")
        return implicit_objective(
            data.matrix,
            self.user_factors_,
            self.item_factors_,
            float(self.alpha),
            float(self.regularization),
        )


def implicit_objective(
    matrix: sp.csr_matrix,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    alpha: float,
    regularization: float,
) -> float:
    """Hu et al.'s objective of factors ``X`` (n_users, k) and ``Y`` (n_items, k) on ``matrix``.

    ``sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + regularization (|X|^2 + |Y|^2)`` over all pairs,
    with ``c = 1 + alpha r``, ``p = [r > 0]``; computed in O(nnz k + (n_users + n_items) k^2).
    """
    csr = _checked_csr(sp.csr_matrix(matrix, dtype=np.float32), "objective")
    x = np.ascontiguousarray(user_factors, dtype=np.float32)
    y = np.ascontiguousarray(item_factors, dtype=np.float32)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    all_pairs = float(np.sum((x64.T @ x64) * (y64.T @ y64)))  # sum_{u,i} (x_u . y_i)^2
    observed = K.observed_loss(csr.indptr, csr.indices, csr.data, float(alpha), x, y)
    penalty = regularization * (float(np.sum(x64 * x64)) + float(np.sum(y64 * y64)))
    return all_pairs + float(observed) + penalty


@contextlib.contextmanager
def _parallel(flops: float) -> Iterator[None]:
    """Run numba kernels on all threads, handing out work chunks dynamically; on one
    thread when the job has fewer than ``_PARALLEL_FLOPS``."""
    n_threads = numba.get_num_threads()
    numba.set_num_threads(n_threads if flops >= _PARALLEL_FLOPS else 1)
    try:
        with numba.parallel_chunksize(1):
            yield
    finally:
        numba.set_num_threads(n_threads)


def _gram(factors: np.ndarray, regularization: float) -> np.ndarray:
    """``F^T F + regularization I``, (k, k) float64."""
    with _parallel(0.5 * factors.shape[0] * factors.shape[1] ** 2):
        return K.gram(factors, float(regularization))


def _checked_csr(matrix: sp.csr_matrix, what: str) -> sp.csr_matrix:
    """Canonical float32 CSR with int32/int64 indices; negative values are an error
    (a confidence ``1 + alpha r`` below 1 has no meaning in the model)."""
    csr = sp.csr_matrix(matrix, dtype=np.float32)
    csr.sum_duplicates()
    if csr.nnz and csr.data.min() < 0:
        raise DataError(
            f"ALS: {what} values must be >= 0 (confidence 1 + alpha * value), "
            f"got {float(csr.data.min())}"
        )
    return csr


def _check_int(name: str, value: object, lo: int) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < lo:
        kind = "a positive integer" if lo == 1 else f"an integer >= {lo}"
        raise ConfigError(f"{name} must be {kind}, got {value!r}")


def _check_real(name: str, value: object, *, positive: bool) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = math.isfinite(v) and (v > 0 if positive else v >= 0)
    if not ok:
        kind = "a positive number" if positive else "a number >= 0"
        raise ConfigError(f"{name} must be {kind}, got {value!r}")
