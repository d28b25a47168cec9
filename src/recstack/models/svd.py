"""PureSVD: a truncated SVD of the interaction matrix (Cremonesi, Koren, Turrin 2010).

Cremonesi et al., "Performance of Recommender Algorithms on Top-N Recommendation Tasks",
RecSys 2010. The interaction matrix ``X`` (users x items, zeros where nothing happened) is
approximated by ``U S V^T`` of rank ``factors``; a history ``h`` scores ``h V V^T``. The
fold-in ``h V`` is the least-squares projection of ``h`` onto the item factors, so a
training user folds in to exactly its row of ``U S``.

The SVD is the randomized range finder of Halko, Martinsson and Tropp (SIAM Review 2011,
algorithm 4.4): a Gaussian sketch refined by power iterations with re-orthonormalization,
using only sparse-times-dense products with ``X`` (never a dense ``X``).
"""

from __future__ import annotations

import numbers
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from recstack.data import Histories, Interactions
from recstack.errors import ConfigError
from recstack.models.base import Recommender


def randomized_svd(
    x: sp.csr_matrix, rank: int, oversamples: int, power_iterations: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``rank`` singular triplets of a sparse ``x`` by a randomized range finder.

    Parameters
    ----------
    x : (m, n) sparse
        The matrix; used only through ``x @ dense`` and ``x.T @ dense``.
    rank : int
        Triplets kept (at most ``min(m, n)``).
    oversamples : int
        Extra sketch columns; the sketch has ``min(rank + oversamples, m, n)`` columns. With
        ``rank + oversamples >= min(m, n)`` the result is exact up to rounding.
    power_iterations : int
        Passes of ``x x^T`` that sharpen the sketch towards the top singular vectors.
    seed : int
        Seed of the Gaussian sketch.

    Returns
    -------
    u : (m, rank) float32
    s : (rank,) float32, descending
    vt : (rank, n) float32
    """
    m, n = x.shape
    width = min(rank + oversamples, m, n)
    rng = np.random.default_rng(seed)
    sketch = rng.standard_normal((n, width), dtype=np.float32)
    # orthonormalize after every product: without it the columns collapse onto the top
    # singular vector in float32
    q, _ = np.linalg.qr(x @ sketch)
    for _ in range(power_iterations):
        z, _ = np.linalg.qr(x.T @ q)
        q, _ = np.linalg.qr(x @ z)
    small = np.asarray((x.T @ q).T, dtype=np.float64)  # (width, n) = q^T x
    u_small, s, vt = np.linalg.svd(small, full_matrices=False)
    u = q @ u_small[:, :rank].astype(np.float32)
    return u, s[:rank].astype(np.float32), vt[:rank].astype(np.float32)


class PureSVD(Recommender):
    """PureSVD (Cremonesi et al. 2010): rank-``factors`` SVD ``X ~ U S V^T``, scores ``h V V^T``.

    Parameters
    ----------
    factors : int > 0
        Rank of the approximation (capped at ``min(n_users, n_items)``). Tuned on ML-100K
        validation (the shared peer protocol): 32.
    binary : bool
        Use 1.0 for every (user, item) pair (ratings as implicit positives, the shared
        protocol); ``False`` factorizes the event values (e.g. ratings).
    oversamples : int >= 0
        Extra columns of the randomized sketch (accuracy of the smaller factors).
    power_iterations : int >= 0
        Power iterations of the range finder (accuracy when the spectrum decays slowly).
    seed : int
        Seed of the random sketch.

    Attributes
    ----------
    item_factors_ : (n_items, k) float32
        ``V``: orthonormal columns, the right singular vectors.
    singular_values_ : (k,) float32
        ``S``, descending.

    Examples
    --------
    >>> import pandas as pd
    >>> from recstack.data import Interactions
    >>> log = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": ["a", "b", "a", "b", "a"]})
    >>> model = PureSVD(factors=1).fit(Interactions.from_frame(log))
    >>> model.recommend(histories=[["a"]], k=1).item_ids.tolist()
    [['b']]
    """

    name = "puresvd"
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {"factors": ("int", 8, 512, "log")}

    def __init__(
        self,
        factors: int = 32,
        binary: bool = True,
        oversamples: int = 10,
        power_iterations: int = 4,
        seed: int = 0,
    ) -> None:
        self.factors = factors
        self.binary = binary
        self.oversamples = oversamples
        self.power_iterations = power_iterations
        self.seed = seed

    def _validate_params(self) -> None:
        checks = (
            ("factors", "a positive integer", 1),
            ("oversamples", "a non-negative integer", 0),
            ("power_iterations", "a non-negative integer", 0),
        )
        for key, what, low in checks:
            v = getattr(self, key)
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < low:
                raise ConfigError(f"{key} must be {what}, got {v!r}")
        if not isinstance(self.seed, numbers.Integral) or isinstance(self.seed, bool):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        if not isinstance(self.binary, bool | np.bool_):
            raise ConfigError(f"binary must be True or False, got {self.binary!r}")

    def _matrix(self, m: sp.csr_matrix) -> sp.csr_matrix:
        """``m`` as float32 CSR, with 1.0 values when ``binary``."""
        m = sp.csr_matrix(m, dtype=np.float32, copy=True)
        if self.binary:
            m.data[:] = 1.0
        return m

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        x = self._matrix(train.matrix)
        rank = min(int(self.factors), *x.shape)
        _, s, vt = randomized_svd(
            x, rank, int(self.oversamples), int(self.power_iterations), int(self.seed)
        )
        self.item_factors_ = np.ascontiguousarray(vt.T)
        self.singular_values_ = s

    def fold_in(self, histories: Histories) -> np.ndarray:
        """User factors ``h V`` of each history, shape (n, k) float32: the least-squares
        coordinates of ``h`` on the orthonormal item factors (a training user gets its
        row of ``U S``)."""
        self._check_fitted()
        return np.asarray(self._matrix(histories.to_csr()) @ self.item_factors_, np.float32)

    def _score(self, histories: Histories) -> np.ndarray:
        return self.fold_in(histories) @ self.item_factors_.T

    def retrieval_items(self) -> np.ndarray:
        return self.item_factors_

    def retrieval_queries(self, histories: Histories) -> np.ndarray:
        return self.fold_in(histories)

    def item_vectors(self) -> np.ndarray:
        """``V S``: item factors weighted by their singular values, (n_items, k)."""
        return self.item_factors_ * self.singular_values_
