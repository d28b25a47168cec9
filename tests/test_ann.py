"""ItemIndex: exact search against brute force, faiss HNSW/IVF recall against exact with
exclusions and candidate filters, save/load, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recstack.errors import ConfigError, DataError
from recstack.ranking.ann import ItemIndex

pytest.importorskip("faiss")


def clustered(n: int, d: int = 16, n_queries: int = 200, seed: int = 0) -> tuple:
    """Items around 50 centres with varied norms (as trained factors are), and queries."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, d))
    items = centres[rng.integers(50, size=n)] + 0.5 * rng.normal(size=(n, d))
    items *= rng.lognormal(0, 0.3, size=(n, 1))
    queries = centres[rng.integers(50, size=n_queries)] + 0.5 * rng.normal(size=(n_queries, d))
    return items.astype(np.float32), queries.astype(np.float32)


def brute(items: np.ndarray, q: np.ndarray, k: int, exclude=None, allowed=None) -> np.ndarray:
    s = (q.astype(np.float64) @ items.T.astype(np.float64)).copy()
    if exclude is not None:
        s[exclude.toarray() != 0] = -np.inf
    if allowed is not None:
        s[:, ~allowed] = -np.inf
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


def recall(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / len(y) for x, y in zip(a, b, strict=True)]))


@pytest.fixture(scope="module")
def data() -> tuple:
    items, q = clustered(4000)
    rng = np.random.default_rng(1)
    exclude = sp.random(len(q), len(items), density=0.005, format="csr", random_state=2)
    allowed = rng.random(len(items)) < 0.6
    return items, q, exclude, allowed


def test_exact_matches_brute_force(data: tuple) -> None:
    items, q, exclude, allowed = data
    index = ItemIndex(items, kind="exact")
    for kw in ({}, {"exclude": exclude}, {"allowed": allowed}):
        found, scores = index.search(q, 10, **kw)
        np.testing.assert_array_equal(found, brute(items, q, 10, **kw))
        np.testing.assert_allclose(
            scores, np.take_along_axis(q @ items.T, found.astype(np.int64), 1), rtol=1e-5
        )


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_recall_and_constraints(data: tuple, kind: str) -> None:
    items, q, exclude, allowed = data
    index = ItemIndex(items, kind=kind, nprobe=16)
    for kw in ({}, {"exclude": exclude}, {"allowed": allowed}):
        found, scores = index.search(q, 10, **kw)
        assert recall(found, brute(items, q, 10, **kw)) >= 0.95
        # best first, exact inner products
        assert np.all(np.diff(scores, axis=1) <= 1e-6)
        np.testing.assert_allclose(
            scores, np.einsum("nd,nkd->nk", q, items[found]), rtol=1e-4, atol=1e-5
        )
    found, _ = index.search(q, 10, exclude=exclude)
    assert not np.take_along_axis(exclude.toarray(), found.astype(np.int64), 1).any()
    found, _ = index.search(q, 10, allowed=allowed)
    assert allowed[found].all()


def test_rows_with_few_candidates_are_padded() -> None:
    items, q = clustered(300, n_queries=3)
    allowed = np.zeros(300, bool)
    allowed[[5, 7]] = True
    for kind in ("exact", "ivf"):
        found, scores = ItemIndex(items, kind=kind, nlist=4, nprobe=4).search(q, 4, allowed=allowed)
        assert set(found[:, :2].ravel()) == {5, 7}
        assert (found[:, 2:] == -1).all() and np.isneginf(scores[:, 2:]).all()


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_save_load(data: tuple, kind: str, tmp_path: Path) -> None:
    items, q, _, _ = data
    index = ItemIndex(items, kind=kind)
    path = index.save(tmp_path / "items.faiss")
    loaded = ItemIndex.load(path, items, nprobe=index.nprobe, ef_search=index.ef_search)
    assert loaded.kind == kind
    a, b = index.search(q, 5), loaded.search(q, 5)
    np.testing.assert_array_equal(a[0], b[0])
    with pytest.raises(DataError, match="holds 4000 items, not 10"):
        ItemIndex.load(path, items[:10])


def test_auto_kind_switches_on_catalog_size() -> None:
    items, _ = clustered(500)
    assert ItemIndex(items).kind == "exact"
    assert ItemIndex(items, exact_below=100).kind == "ivf"


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((np.zeros((0, 3)),), {}, DataError, "non-empty"),
        ((np.full((3, 2), np.nan),), {}, DataError, "NaN"),
        ((np.ones((3, 2)),), {"kind": "lsh"}, ConfigError, "kind must be one of"),
        ((np.ones((3, 2)),), {"nprobe": 0}, ConfigError, "nprobe must be a positive integer"),
    ],
)
def test_bad_construction(args: tuple, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        ItemIndex(*args, **kwargs)


def test_bad_search() -> None:
    index = ItemIndex(np.ones((3, 2), np.float32), kind="exact")
    with pytest.raises(DataError, match=r"queries must have shape \(n, 2\)"):
        index.search(np.ones((1, 3)), 2)
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        index.search(np.ones((1, 2)), 0)
    with pytest.raises(DataError, match="allowed must have shape"):
        index.search(np.ones((1, 2)), 1, allowed=np.ones(2, bool))
