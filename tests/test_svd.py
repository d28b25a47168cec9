"""PureSVD: conformance, equality with numpy's dense SVD, fold-in, structure, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from conformance import RecommenderConformance, checkerboard_data, checkerboard_top1
from recstack.data import IdMap, Interactions, leave_last_out, make_shop
from recstack.errors import ConfigError
from recstack.evaluation import evaluate
from recstack.models import Popularity, Recommender
from recstack.models.svd import PureSVD, randomized_svd


class TestPureSVD(RecommenderConformance):
    def make_model(self) -> Recommender:
        return PureSVD(factors=8)


def _low_rank_log(seed: int = 0, n_users: int = 60, n_items: int = 45) -> Interactions:
    """Ratings 1-5 on planted blocks (users of block b use 70% of block b's items, 10% of
    the others): a gap after the 4th singular value, binary or not."""
    rng = np.random.default_rng(seed)
    same = np.arange(n_users)[:, None] % 4 == np.arange(n_items)[None, :] % 4
    u, i = np.nonzero(rng.random((n_users, n_items)) < np.where(same, 0.7, 0.1))
    df = pd.DataFrame({"user_id": u, "item_id": i, "rating": rng.integers(1, 6, len(u))})
    return Interactions.from_frame(
        df, users=IdMap(np.arange(n_users), "user"), items=IdMap(np.arange(n_items), "item")
    )


def _top_svd(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    return u[:, :k], s[:k], vt[:k]


@pytest.mark.parametrize("binary", [True, False])
def test_equals_numpy_svd_reconstruction(binary: bool) -> None:
    data = _low_rank_log()
    x = data.matrix.toarray().astype(np.float64)
    if binary:
        x = (x > 0).astype(np.float64)
    k = 4
    # enough power iterations to converge to float32 precision: the randomized SVD is
    # then the exact one (the default 4 stops at ~1e-3 on this small spectral gap)
    model = PureSVD(factors=k, binary=binary, power_iterations=15).fit(data)
    u, s, vt = _top_svd(x, k)
    np.testing.assert_allclose(model.singular_values_, s, rtol=1e-4)
    # training histories score their rank-k reconstruction U S V^T
    np.testing.assert_allclose(
        model.score(data.histories()), (u * s) @ vt, rtol=0, atol=1e-4 * np.abs(x).max()
    )
    np.testing.assert_allclose(
        model.item_factors_.T @ model.item_factors_, np.eye(k), rtol=0, atol=1e-5
    )
    # fold-in of the training users reproduces U S (up to each factor's sign)
    folded = model.fold_in(data.histories())
    sign = np.sign(np.sum(model.item_factors_ * vt.T, axis=0))
    np.testing.assert_allclose(folded * sign, u * s, rtol=0, atol=1e-4 * s[0])


def test_sketch_as_wide_as_the_matrix_is_exact() -> None:
    rng = np.random.default_rng(3)
    x = sp.csr_matrix(sp.random(30, 20, density=0.3, random_state=rng, dtype=np.float32))
    u, s, vt = randomized_svd(x, rank=20, oversamples=0, power_iterations=0, seed=0)
    np.testing.assert_allclose((u * s) @ vt, x.toarray(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(s, np.linalg.svd(x.toarray(), compute_uv=False), rtol=1e-5)


def test_factors_capped_at_matrix_rank_and_seeded() -> None:
    data = _low_rank_log(n_users=12, n_items=9)
    model = PureSVD(factors=50, seed=4).fit(data)
    assert model.item_factors_.shape == (9, 9)
    again = PureSVD(factors=50, seed=4).fit(data)
    np.testing.assert_array_equal(model.item_factors_, again.item_factors_)


def test_checkerboard() -> None:
    # two blocks of J - I: the top-2 factors are the parity indicators
    data = checkerboard_data()
    assert checkerboard_top1(PureSVD(factors=2).fit(data), data) == 1.0


def test_planted_clusters_recovered() -> None:
    data = make_shop(n_users=600, n_items=200, seq_strength=0.0, seed=0)
    split = leave_last_out(data)
    model = PureSVD(factors=8).fit(split.train)
    ndcg = evaluate(model, split, on="valid", progress=False).metrics["ndcg@10"]
    pop = evaluate(Popularity().fit(split.train), split, on="valid", progress=False)
    assert ndcg > 0.25 and ndcg > 3 * pop.metrics["ndcg@10"]
    # the top-10 of a user come mostly from their taste cluster (82% of the training
    # events do; 1 in 8 at random)
    recs = model.recommend(data.users.ids, k=10)
    assert data.item_features is not None and data.user_features is not None
    category = data.item_features["category"].to_numpy()[recs.index]
    cluster = data.user_features["cluster"].to_numpy()[:, None]
    assert np.mean(category == cluster) > 0.7


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"factors": -3}, "factors must be a positive integer, got -3"),
        ({"factors": 0}, "factors must be a positive integer, got 0"),
        ({"factors": 8.0}, "factors must be a positive integer, got 8.0"),
        ({"oversamples": -1}, "oversamples must be a non-negative integer, got -1"),
        ({"power_iterations": True}, "power_iterations must be a non-negative integer, got True"),
        ({"seed": "1"}, "seed must be an integer, got '1'"),
        ({"binary": 1}, "binary must be True or False, got 1"),
    ],
)
def test_bad_parameters(params: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PureSVD(**params).fit(_low_rank_log())  # type: ignore[arg-type]


def test_ml100k_peer_split_quality() -> None:
    from conftest import PEER_SPLIT
    from recstack.data import Split, load_dataset

    if not (PEER_SPLIT / "train.tsv").is_file():
        pytest.skip(f"peer split not found at {PEER_SPLIT}")
    split = load_dataset(PEER_SPLIT)
    assert isinstance(split, Split)
    refit = Split(split.test_history(), None, split.test)
    ndcg = evaluate(PureSVD().fit(refit.train), refit, progress=False).metrics["ndcg@10"]
    assert ndcg >= 0.070  # measured .0738 (peers: EASE .0723, ALS .0756); popularity .0441


def test_docstring_examples() -> None:
    import doctest

    import recstack.models.svd as module

    result = doctest.testmod(module, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0
