"""Top-K maximum-inner-product search over a large catalog: exact, or approximate with faiss.

A model with a dot-product form (:meth:`recstack.models.Recommender.retrieval_items`)
scores ``q . v_i`` for every item ``i``; above some catalog size, scoring all items per
request costs more than searching an index. :class:`ItemIndex` answers the same top-K
question with the history's items excluded and a candidate filter applied, like
:func:`~recstack.ranking.topk.topk`:

- ``"exact"``: the scores in batches and the top-K kernel (the reference);
- ``"hnsw"``: a faiss HNSW graph (Malkov & Yashunin 2018). Inner products are turned into
  Euclidean distances by one extra coordinate (Bachrach et al., "Speeding Up the Xbox
  Recommender System Using a Euclidean Transformation for Inner-Product Spaces", RecSys
  2014): items ``[v, sqrt(M^2 - |v|^2)]`` and queries ``[q, 0]``, with ``M`` the largest item
  norm, so the nearest items are those of largest ``q . v``;
- ``"ivf"``: a faiss inverted file over k-means cells, probing ``nprobe`` cells per query
  with inner products.

Excluded items are dropped after the search, which fetches ``k`` plus the most items any row
excludes, so every row still gets ``k`` items; the candidate filter goes into the search
itself (a faiss ID selector). Returned scores are the exact inner products, best first.
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recstack.errors import ConfigError, DataError, require
from recstack.ranking.topk import topk

KINDS = ("auto", "exact", "hnsw", "ivf")
#: queries scored at once by the exact search (bounds its (batch, n_items) scratch)
_EXACT_BATCH = 64


class ItemIndex:
    """Top-K inner-product search over item vectors (see the module docstring).

    Parameters
    ----------
    items : (n_items, d) float
        The item side of a dot-product model (``model.retrieval_items()``).
    kind : {"auto", "exact", "hnsw", "ivf"}
        ``"auto"``: exact below ``exact_below`` items, IVF from there (on clustered
        factors IVF reaches a higher recall than HNSW over the transformed inner products
        at the same latency: ``benchmarks/bench_ann.py``).
    exact_below : int
        The catalog size from which ``"auto"`` builds an IVF index.
    hnsw_m : int
        Neighbours per HNSW node (memory and recall grow with it).
    ef_construction, ef_search : int
        HNSW candidate-list sizes when building and when searching (recall against speed).
    nlist : int or None
        IVF cells (default ``4 sqrt(n_items)``, at most ``n_items / 39``).
    nprobe : int
        IVF cells visited per query.
    seed : int
        Seed of the IVF k-means.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> items = rng.normal(size=(1000, 8)).astype(np.float32)
    >>> index = ItemIndex(items, kind="exact")
    >>> found, scores = index.search(items[:2], k=3)
    >>> bool(np.allclose(scores, np.sort(items[:2] @ items.T, axis=1)[:, ::-1][:, :3]))
    True
    """

    def __init__(
        self,
        items: np.ndarray,
        kind: str = "auto",
        *,
        exact_below: int = 100_000,
        hnsw_m: int = 32,
        ef_construction: int = 200,
        ef_search: int = 128,
        nlist: int | None = None,
        nprobe: int = 32,
        seed: int = 0,
    ) -> None:
        items = np.asarray(items)
        if items.ndim != 2 or items.shape[0] == 0 or items.shape[1] == 0:
            raise DataError(f"item vectors must be a non-empty (n_items, d) array: {items.shape}")
        if not np.isfinite(items).all():
            raise DataError("item vectors hold NaN or infinite values")
        if kind not in KINDS:
            raise ConfigError(f"kind must be one of {KINDS}, got {kind!r}")
        for name, value in (
            ("exact_below", exact_below),
            ("hnsw_m", hnsw_m),
            ("ef_construction", ef_construction),
            ("ef_search", ef_search),
            ("nprobe", nprobe),
            ("nlist", 1 if nlist is None else nlist),
        ):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        self.items = np.ascontiguousarray(items, dtype=np.float32)
        self.n_items, self.dim = self.items.shape
        if kind == "auto":
            kind = "exact" if self.n_items < exact_below else "ivf"
        self.kind = kind
        self.ef_search, self.nprobe = int(ef_search), int(nprobe)
        self._faiss: Any = None
        if kind == "hnsw":
            self._faiss = self._build_hnsw(int(hnsw_m), int(ef_construction))
        elif kind == "ivf":
            # faiss's k-means wants >= 39 training points per cell
            default = int(min(4 * np.sqrt(self.n_items), self.n_items / 39))
            cells = min(self.n_items, int(nlist) if nlist is not None else default)
            self._faiss = self._build_ivf(max(1, cells), int(seed))

    def __repr__(self) -> str:
        return f"ItemIndex({self.n_items} items x {self.dim}, kind={self.kind!r})"

    # ------------------------------------------------------------------ building
    def _augmented(self) -> np.ndarray:
        """Items with the extra coordinate that makes inner products Euclidean."""
        norm2 = np.einsum("ij,ij->i", self.items, self.items, dtype=np.float64)
        extra = np.sqrt(np.maximum(norm2.max() - norm2, 0.0)).astype(np.float32)
        return np.hstack([self.items, extra[:, None]])

    def _build_hnsw(self, m: int, ef_construction: int) -> Any:
        faiss = require("faiss", "ann")
        index = faiss.IndexHNSWFlat(self.dim + 1, m)
        index.hnsw.efConstruction = ef_construction
        index.add(self._augmented())
        return index

    def _build_ivf(self, nlist: int, seed: int) -> Any:
        faiss = require("faiss", "ann")
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(self.items)
        index.add(self.items)
        return index

    # ------------------------------------------------------------------ search
    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        exclude: sp.csr_matrix | None = None,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items of largest ``q . v`` for each query, best first.

        Parameters
        ----------
        queries : (n, d) float
            Query vectors (``model.retrieval_queries(histories)``).
        k : int
            List length; rows with fewer eligible items are padded with -1 and ``-inf``.
        exclude : (n, n_items) sparse, optional
            Items never returned for a row (e.g. its history).
        allowed : (n_items,) bool, optional
            Candidate items for every row.

        Returns
        -------
        index : (n, k) int32
        scores : (n, k) float32
            Exact inner products of the items found.
        """
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k <= 0:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise DataError(f"queries must have shape (n, {self.dim}), got {q.shape}")
        if exclude is not None:
            exclude = sp.csr_matrix(exclude)
            if exclude.shape != (len(q), self.n_items):
                raise DataError(
                    f"exclude has shape {exclude.shape}, expected {(len(q), self.n_items)}"
                )
        if allowed is not None:
            allowed = np.asarray(allowed, dtype=bool)
            if allowed.shape != (self.n_items,):
                raise DataError(f"allowed must have shape ({self.n_items},), got {allowed.shape}")
        if self._faiss is None:
            return self._search_exact(q, int(k), exclude, allowed)
        return self._search_faiss(q, int(k), exclude, allowed)

    def _search_exact(
        self, q: np.ndarray, k: int, exclude: sp.csr_matrix | None, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        parts = []
        for start in range(0, len(q), _EXACT_BATCH):
            rows = slice(start, start + _EXACT_BATCH)
            ex = None if exclude is None else exclude[rows]
            parts.append(topk(q[rows] @ self.items.T, k, exclude=ex, allowed=allowed))
        if not parts:
            return np.zeros((0, k), np.int32), np.zeros((0, k), np.float32)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _search_faiss(
        self, q: np.ndarray, k: int, exclude: sp.csr_matrix | None, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        faiss = require("faiss", "ann")
        extra = 0 if exclude is None or exclude.nnz == 0 else int(np.diff(exclude.indptr).max())
        fetch = min(self.n_items, k + extra)
        selector = None
        if allowed is not None:
            bits = np.packbits(allowed, bitorder="little")
            selector = faiss.IDSelectorBitmap(self.n_items, faiss.swig_ptr(bits))
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, fetch), sel=selector)
            query = np.hstack([q, np.zeros((len(q), 1), np.float32)])
        else:
            params = faiss.SearchParametersIVF(nprobe=self.nprobe, sel=selector)
            query = q
        _, found = self._faiss.search(query, fetch, params=params)
        if exclude is not None and extra:
            drop = _row_members(found, exclude)
            found = np.where(drop, -1, found)
        return _best_k(found, q, self.items, k)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the faiss index (faiss's own binary format, no code) to ``path``."""
        if self._faiss is None:
            raise ConfigError("an exact ItemIndex has nothing to save (it is the item matrix)")
        faiss = require("faiss", "ann")
        path = Path(path)
        faiss.write_index(self._faiss, str(path))
        return path

    @classmethod
    def load(cls, path: str | Path, items: np.ndarray, **search: int) -> ItemIndex:
        """An index read from ``path`` for the same ``items`` (scores come from them).

        ``search`` may set ``ef_search`` or ``nprobe``.
        """
        faiss = require("faiss", "ann")
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such index file")
        raw = faiss.read_index(str(path))
        kind = "hnsw" if isinstance(raw, faiss.IndexHNSW) else "ivf"
        obj = cls(items, kind="exact", **search)
        if raw.ntotal != obj.n_items:
            raise DataError(f"{path}: the index holds {raw.ntotal} items, not {obj.n_items}")
        obj.kind = kind
        obj._faiss = raw
        return obj


def _row_members(found: np.ndarray, exclude: sp.csr_matrix) -> np.ndarray:
    """``out[r, j]``: ``found[r, j]`` is among row ``r``'s excluded items."""
    rows = np.repeat(np.arange(exclude.shape[0]), np.diff(exclude.indptr))
    keys = np.sort(rows.astype(np.int64) * exclude.shape[1] + exclude.indices)
    probe = np.arange(found.shape[0], dtype=np.int64)[:, None] * exclude.shape[1] + found
    pos = np.minimum(np.searchsorted(keys, probe), max(0, len(keys) - 1))
    return (found >= 0) & (len(keys) > 0) & (keys[pos] == probe)


def _best_k(
    found: np.ndarray, q: np.ndarray, items: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of each row's ``found`` ids (-1: none) by exact inner product."""
    safe = np.maximum(found, 0)
    scores = np.einsum("nd,nfd->nf", q, items[safe]).astype(np.float32)
    scores[found < 0] = -np.inf
    # best first; equal scores by increasing item index, as topk orders them
    order = np.lexsort((np.where(found < 0, np.iinfo(np.int64).max, found), -scores), axis=1)
    order = order[:, :k]
    index = np.take_along_axis(found, order, 1).astype(np.int32)
    value = np.take_along_axis(scores, order, 1)
    if index.shape[1] < k:  # fewer items than k in the catalog
        pad = k - index.shape[1]
        index = np.pad(index, ((0, 0), (0, pad)), constant_values=-1)
        value = np.pad(value, ((0, 0), (0, pad)), constant_values=-np.inf)
    value[index < 0] = -np.inf
    return index, value
