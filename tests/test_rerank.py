"""Re-rankers (MMR, mean-penalty MMR, DPP, category caps): brute-force references on tiny
inputs, the plain ranking at the trade-off's end, caps, specs, evaluator and CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recstack.data import Histories, Interactions, make_shop
from recstack.data.split_io import save_split
from recstack.data.splits import Split, leave_last_out
from recstack.errors import ConfigError, DataError, NotFittedError
from recstack.evaluation import evaluate, item_feature_vectors
from recstack.evaluation import metrics as M
from recstack.evaluation.evaluator import evaluate_rerankers, rerank_sweep
from recstack.models import Popularity
from recstack.ranking import (
    DPP,
    MMR,
    Calibrated,
    CategoryCap,
    ItemSimilarity,
    MeanMMR,
    parse_rerank,
    topk,
)
from recstack.ranking import rerank as R


def _cosines(vectors: np.ndarray) -> np.ndarray:
    """Brute-force cosine matrix (zero vectors: cosine 0)."""
    v = np.asarray(vectors, dtype=np.float64)
    norm = np.linalg.norm(v, axis=1)
    unit = v / np.where(norm > 0, norm, 1.0)[:, None]
    return unit @ unit.T


def _minmax(scores: np.ndarray) -> np.ndarray:
    return (scores - scores.min()) / (scores.max() - scores.min())


def _mmr_reference(cand: np.ndarray, scores: np.ndarray, cos: np.ndarray, k: int, lam: float,
                   mean: bool) -> list[int]:  # fmt: skip
    """Greedy MMR written from the definition: argmax of lam rel - (1 - lam) penalty."""
    rel = _minmax(scores)
    chosen: list[int] = []
    for _ in range(k):
        best, best_v = -1, -np.inf
        for c in range(len(cand)):
            if c in chosen:
                continue
            sims = [cos[cand[c], cand[j]] for j in chosen]
            pen = 0.0 if not sims else (np.mean(sims) if mean else np.max(sims))
            v = lam * rel[c] - (1 - lam) * pen
            if v > best_v:
                best, best_v = c, v
        chosen.append(best)
    return chosen


def _dpp_reference(cand: np.ndarray, scores: np.ndarray, cos: np.ndarray, k: int,
                   theta: float, jitter: float) -> list[int]:  # fmt: skip
    """Greedy MAP of the paper's kernel L = diag(q) S diag(q), q = exp(alpha rel), each
    step the argmax of numpy's slogdet of L over the picked set plus one candidate."""
    rel = _minmax(scores)
    alpha = theta / (2 * (1 - theta))
    sim = (1 - jitter) * cos[np.ix_(cand, cand)]
    np.fill_diagonal(sim, 1.0)
    q = np.exp(alpha * rel)
    kernel = q[:, None] * sim * q[None, :]
    chosen: list[int] = []
    for _ in range(k):
        best, best_v = -1, -np.inf
        for c in range(len(cand)):
            if c in chosen:
                continue
            idx = [*chosen, c]
            sign, logdet = np.linalg.slogdet(kernel[np.ix_(idx, idx)])
            assert sign > 0
            if logdet > best_v:
                best, best_v = c, logdet
        chosen.append(best)
    return chosen


@pytest.fixture
def tiny() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """30 items with 4-dim vectors (some negative cosines), 3 users with 12 candidates."""
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(30, 4))
    cand = np.stack([rng.permutation(30)[:12] for _ in range(3)])
    scores = rng.normal(size=(3, 12))
    return vectors, cand, scores


# ---------------------------------------------------------------------------- MMR / DPP
@pytest.mark.parametrize("klass", [MMR, MeanMMR])
@pytest.mark.parametrize("lam", [0.0, 0.3, 0.7])
@pytest.mark.parametrize("sparse", [False, True])
def test_mmr_matches_brute_force(
    tiny: tuple[np.ndarray, np.ndarray, np.ndarray],
    klass: type[MMR],
    lam: float,
    sparse: bool,
) -> None:
    vectors, cand, scores = tiny
    given = vectors
    if sparse:  # the sparse kernel path, with some all-zero vectors
        given = sp.csr_matrix(
            np.where(np.abs(vectors) > 0.5, vectors, 0.0) * (np.arange(30) > 4)[:, None]
        )
    mmr = klass(lam).fit(item_vectors=given)
    assert mmr.similarity_.is_dense is not sparse
    cos = _cosines(given.toarray() if sparse else vectors)
    got = mmr.rerank(cand, scores, 5)
    for r in range(len(cand)):
        expected = _mmr_reference(cand[r], scores[r], cos, 5, lam, klass.mean_penalty)
        assert got[r].tolist() == expected
        one = mmr.rerank(cand[r : r + 1], scores[r : r + 1], 5)  # the one-row path
        assert one[0].tolist() == expected


def _coverage_reference(cand: np.ndarray, scores: np.ndarray, cos: np.ndarray, k: int,
                        lam: float, mean: bool, budget: float) -> list[list[int]]:  # fmt: skip
    """Coverage swaps from their definition: after plain MMR, every (row, candidate) pair
    whose candidate no list holds, priced as the drop of MMR's objective at the last slot
    (against the list's other items); cheapest first, one per row, never giving up an
    item no other list holds."""
    lists = [_mmr_reference(cand[r], scores[r], cos, k, lam, mean) for r in range(len(cand))]

    def value(r: int, c: int) -> float:
        sims = [cos[cand[r, c], cand[r, j]] for j in lists[r][:-1]]
        pen = 0.0 if not sims else (np.mean(sims) if mean else np.max(sims))
        return lam * _minmax(scores[r])[c] - (1 - lam) * pen

    held = [cand[r, j] for r in range(len(cand)) for j in lists[r]]
    swaps = sorted(
        (value(r, lists[r][-1]) - value(r, c), r, c)
        for r in range(len(cand))
        for c in range(cand.shape[1])
        if c not in lists[r] and cand[r, c] not in held
    )
    done: set[int] = set()
    for cost, r, c in swaps:
        old = cand[r, lists[r][-1]]
        if cost > budget or r in done or cand[r, c] in held or held.count(old) < 2:
            continue
        held.remove(old)
        held.append(cand[r, c])
        lists[r][-1] = c
        done.add(r)
    return lists


@pytest.mark.parametrize("klass", [MMR, MeanMMR])
@pytest.mark.parametrize("sparse", [False, True])
def test_coverage_swaps_match_brute_force(klass: type[MMR], sparse: bool) -> None:
    """Rows that share candidates: the swaps spread the lists over more items."""
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(30, 4))
    given = sp.csr_matrix(np.where(np.abs(vectors) > 0.3, vectors, 0.0)) if sparse else vectors
    cos = _cosines(given.toarray() if sparse else vectors)
    cand = np.stack([rng.permutation(16) for _ in range(9)])  # 9 users, the same 16 items
    scores = rng.normal(size=(9, 16)) + np.linspace(3, 0, 16)[cand]  # shared popularity
    plain = klass(0.6).fit(item_vectors=given).rerank(cand, scores, 4)
    mmr = klass(0.6, coverage=0.3).fit(item_vectors=given)
    got = mmr.rerank(cand, scores, 4)
    assert got.tolist() == _coverage_reference(cand, scores, cos, 4, 0.6, klass.mean_penalty, 0.3)
    covered = [len(np.unique(R.gather(cand, pos, -1))) for pos in (plain, got)]
    assert covered[1] > covered[0]
    assert (got[:, :3] == plain[:, :3]).all()  # only the last slot changes
    # a larger budget swaps at least as much; one row alone has nothing to swap with
    more = klass(0.6, coverage=2.0).fit(item_vectors=given).rerank(cand, scores, 4)
    assert len(np.unique(R.gather(cand, more, -1))) >= covered[1]
    assert mmr.rerank(cand[:1], scores[:1], 4).tolist() == plain[:1].tolist()


def test_mixture_similarity_is_the_weighted_sum_of_cosines() -> None:
    rng = np.random.default_rng(4)
    genres = (rng.random((20, 5)) < 0.3).astype(float)  # some all-zero rows
    columns = sp.random(20, 40, density=0.2, format="csr", random_state=2)
    factors = rng.normal(size=(20, 3))
    expected = 0.6 * _cosines(genres) + 0.4 * _cosines(columns.toarray())
    mixed = ItemSimilarity.mixture([(genres, 0.6), (columns, 0.4)])
    assert not mixed.is_dense
    np.testing.assert_allclose(mixed.pairwise(range(20), range(20)), expected, atol=1e-6)
    dense = ItemSimilarity.mixture([(genres, 0.5), (factors, 0.5)])
    assert dense.is_dense
    np.testing.assert_allclose(
        dense.pairwise(range(20), range(20)),
        0.5 * _cosines(genres) + 0.5 * _cosines(factors),
        atol=1e-6,
    )
    # MMR over the mixture is MMR over the mixed cosine matrix
    cand = np.stack([rng.permutation(20)[:10] for _ in range(3)])
    scores = rng.normal(size=(3, 10))
    got = MeanMMR(0.4).fit(item_vectors=mixed).rerank(cand, scores, 5)
    for r in range(3):
        assert got[r].tolist() == _mmr_reference(cand[r], scores[r], expected, 5, 0.4, True)
    with pytest.raises(ConfigError, match="weights must be non-negative and sum to 1"):
        ItemSimilarity.mixture([(genres, 0.6), (columns, 0.6)])
    with pytest.raises(DataError, match=r"mixture parts have \[20, 3\] rows"):
        ItemSimilarity.mixture([(genres, 0.5), (np.eye(3), 0.5)])


@pytest.mark.parametrize("theta", [0.0, 0.3, 0.8])
def test_dpp_matches_greedy_slogdet(
    tiny: tuple[np.ndarray, np.ndarray, np.ndarray], theta: float
) -> None:
    vectors, cand, scores = tiny
    dpp = DPP(theta, jitter=0.05).fit(item_vectors=vectors)
    got = dpp.rerank(cand, scores, 8)  # 8 > rank 4 of the vectors: the jitter is needed
    cos = _cosines(vectors)
    for r in range(len(cand)):
        assert got[r].tolist() == _dpp_reference(cand[r], scores[r], cos, 8, theta, 0.05)


@pytest.mark.parametrize("rr", [MMR(1.0), MeanMMR(1.0), DPP(1.0), CategoryCap(10)])
def test_no_trade_off_is_the_plain_top_k(rr: R.Reranker) -> None:
    """MMR/DPP at 1 and a cap as long as the list give exactly ranking.topk's lists, ties
    (integer scores) included."""
    rng = np.random.default_rng(3)
    n_items = 60
    scores = rng.integers(0, 8, size=(20, n_items)).astype(np.float32)
    exclude = sp.random(20, n_items, density=0.2, format="csr", random_state=1)
    feats = (rng.random((n_items, 5)) < 0.4).astype(float)
    rr.fit(item_vectors=feats, categories=feats)
    plain_idx, plain_val = topk(scores.copy(), 10, exclude=exclude)
    idx, val = rr.select(scores.copy(), 10, candidates=30, exclude=exclude)
    np.testing.assert_array_equal(idx, plain_idx)
    np.testing.assert_array_equal(val, plain_val)


def test_batch_equals_single_requests() -> None:
    """Re-ranking users one at a time (the serving path, no thread launch) gives the
    batch's lists, for every re-ranker."""
    rng = np.random.default_rng(9)
    cats = (rng.random((50, 6)) < 0.3).astype(float)
    vectors = cats + 0.1 * rng.random((50, 6))
    histories = Histories.from_lists([rng.choice(50, size=6).tolist() for _ in range(8)], 50)
    cand = np.stack([rng.permutation(50)[:20] for _ in range(8)])
    scores = rng.normal(size=(8, 20))
    for rr in (MMR(0.5), MeanMMR(0.5), DPP(0.6), CategoryCap(1), Calibrated(0.6)):
        rr.fit(item_vectors=vectors, categories=cats)
        batch = rr.rerank(cand, scores, 7, histories)
        for r in range(len(cand)):
            one = rr.rerank(cand[r : r + 1], scores[r : r + 1], 7, histories.select([r]))
            assert one[0].tolist() == batch[r].tolist(), rr


def test_docstring_examples() -> None:
    import doctest

    from recstack.ranking import calibration

    for module in (R, calibration):
        result = doctest.testmod(module, raise_on_error=False)
        assert result.attempted > 0 and result.failed == 0


def test_rerank_picks_from_candidates_and_pads() -> None:
    """Padding (-1) and -inf candidates are never chosen; short rows are padded with -1."""
    vectors = np.eye(4)
    cand = np.array([[0, 1, -1, 2], [3, -1, -1, -1]])
    scores = np.array([[1.0, 2.0, 5.0, -np.inf], [0.5, 9.0, 9.0, 9.0]])
    for rr in (MMR(0.5), DPP(0.5)):
        pos = rr.fit(item_vectors=vectors).rerank(cand, scores, 3)
        assert pos.tolist() == [[1, 0, -1], [0, -1, -1]]
        assert R.gather(cand, pos, -1).tolist() == [[1, 0, -1], [3, -1, -1]]


def test_mmr_moves_a_different_genre_up() -> None:
    """The hand-checkable case: two near-equal items of one genre and a weaker one of
    another; MMR at 0.5 lists the other genre second."""
    genres = np.array([[1, 0], [1, 0], [0, 1]])
    cand, scores = np.array([[0, 1, 2]]), np.array([[3.0, 2.9, 1.0]])
    assert MMR(0.5).fit(item_vectors=genres).rerank(cand, scores, 3).tolist() == [[0, 2, 1]]
    assert MMR(0.99).fit(item_vectors=genres).rerank(cand, scores, 3).tolist() == [[0, 1, 2]]


def test_similarity_paths_agree() -> None:
    rng = np.random.default_rng(0)
    feats = sp.random(40, 30, density=0.2, format="csr", random_state=2)
    dense = ItemSimilarity(feats.toarray())
    sparse = ItemSimilarity(feats)
    assert dense.is_dense and not sparse.is_dense
    a, b = rng.integers(0, 40, 10), rng.integers(0, 40, 15)
    expected = _cosines(feats.toarray())[np.ix_(a, b)]
    np.testing.assert_allclose(dense.pairwise(a, b), expected, atol=1e-6)
    np.testing.assert_allclose(sparse.pairwise(a, b), expected, atol=1e-6)


# ---------------------------------------------------------------------------- caps
def test_category_caps_hold_and_keep_score_order() -> None:
    rng = np.random.default_rng(5)
    n_items, n_cat = 80, 6
    cats = (rng.random((n_items, n_cat)) < 0.25).astype(float)
    cats[:5] = 0  # items without a category never count
    scores = rng.normal(size=(25, n_items)).astype(np.float32)
    for cap in (1, 2):
        rr = CategoryCap(cap).fit(categories=cats)
        idx, val = rr.select(scores.copy(), 8, candidates=n_items)
        assert (idx >= 0).all()
        for r in range(len(idx)):
            counts = cats[idx[r]].sum(axis=0)
            assert counts.max() <= cap
            # greedy from the top: every better-scored item left out breaks the cap
            listed = set(idx[r].tolist())
            better = np.flatnonzero(scores[r] > val[r].min())
            for item in set(better.tolist()) - listed:
                before = idx[r][val[r] > scores[r, item]]
                assert (cats[before].sum(axis=0) + cats[item] > cap).any()
            assert np.all(np.diff(val[r]) <= 0)


def test_category_caps_fill_the_list_when_too_few_pass() -> None:
    cats = np.array([[1.0], [1.0], [1.0], [0.0]])  # one category; item 3 has none
    rr = CategoryCap(1).fit(categories=cats)
    pos = rr.rerank(np.array([[0, 1, 2, 3]]), np.array([[4.0, 3.0, 2.0, 1.0]]), 3)
    assert pos.tolist() == [[0, 3, 1]]  # capped pass (0, then 3), filled with the best skipped


# ---------------------------------------------------------------------------- specs, errors
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("mmr:0.3", MMR(0.3)),
        (" MMR:1 ", MMR(1)),
        ("mmr-mean:0.4", MeanMMR(0.4)),
        ("dpp:0.5", DPP(0.5)),
        ("cap:2", CategoryCap(2)),
        ("cap:2.0", CategoryCap(2)),
        ("dpp", DPP()),
        ("mmr-mean:0.5, coverage=0.2", MeanMMR(0.5, coverage=0.2)),
        ("calibrate:0.3,discount=False,alpha=0.05", Calibrated(0.3, 0.05, discount=False)),
    ],
)
def test_parse_rerank(spec: str, expected: R.Reranker) -> None:
    got = parse_rerank(spec)
    assert type(got) is type(expected) and got.value == expected.value
    assert repr(got) == repr(expected)
    assert parse_rerank(got.spec).spec == got.spec
    if spec == "cap:2.0":
        assert isinstance(got, CategoryCap) and isinstance(got.cap, int)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", r"'name:value' like 'mmr:0\.3'"),
        ("mmx:0.3", r"unknown re-ranker 'mmx'; did you mean 'mmr'\?"),
        ("diversity:1", r"unknown re-ranker 'diversity' \(known: mmr, mmr-mean, dpp"),
        ("mmr:abc", r"value of lam must be a number, got 'abc'"),
        ("mmr:1.5", r"mmr: lam must be a number in \[0, 1\], got 1\.5"),
        ("mmr:nan", r"mmr: lam must be a number in \[0, 1\], got nan"),
        ("dpp:-0.1", r"dpp: theta must be a number in \[0, 1\]"),
        ("calibrate:2", r"calibrate: lam must be a number in \[0, 1\]"),
        ("cap:0", r"cap: cap must be an integer >= 1, got 0"),
        ("cap:1.5", r"cap: cap must be an integer >= 1, got 1\.5"),
        ("cap:inf", r"cap: cap must be an integer >= 1, got inf"),
        ("mmr:0.3:0.2", r"value of lam must be a number, got '0\.3:0\.2'"),
        ("mmr:0.3,jitter=1", r"'jitter=1' is not option=value with a known option of mmr"),
        ("dpp:0.3,coverage", r"known option of dpp \(none\)"),
        ("mmr:0.3,coverage=lots", r"coverage must be a number, got 'lots'"),
        ("mmr:0.3,coverage=-1", r"mmr: coverage must be a number >= 0, got -1\.0"),
        ("calibrate:0.3,discount=1", r"discount must be true or false"),
    ],
)
def test_bad_specs_name_the_problem(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_rerank(spec)


def test_misuse_errors() -> None:
    with pytest.raises(NotFittedError, match=r"MMR\(lam=0\.5\) is not fitted"):
        MMR(0.5).rerank(np.array([[0]]), np.array([[1.0]]), 1)
    with pytest.raises(ConfigError, match=r"mmr:0\.5 needs item vectors"):
        MMR(0.5).fit(categories=np.eye(3))
    with pytest.raises(ConfigError, match="cap:2 needs item categories"):
        CategoryCap(2).fit(item_vectors=np.eye(3))
    with pytest.raises(ConfigError, match="jitter must be a number in"):
        DPP(0.5, jitter=0.0)
    mmr = MMR(0.5).fit(item_vectors=np.eye(3))
    with pytest.raises(DataError, match=r"outside \[-1, 3\)"):
        mmr.rerank(np.array([[0, 3]]), np.array([[1.0, 0.0]]), 1)
    with pytest.raises(DataError, match="same shape"):
        mmr.rerank(np.array([[0, 1]]), np.array([[1.0]]), 1)
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        mmr.rerank(np.array([[0, 1]]), np.array([[1.0, 0.0]]), 0)
    with pytest.raises(ConfigError, match=r"candidates must be an integer >= the list length 5"):
        mmr.select(np.zeros((1, 3), np.float32), 5, candidates=3)
    with pytest.raises(DataError, match="item vectors hold NaN"):
        ItemSimilarity(np.array([[np.nan, 1.0]]))
    with pytest.raises(DataError, match="2 histories for 1 candidate rows"):
        mmr.rerank(np.array([[0]]), np.array([[1.0]]), 1, Histories.from_lists([[0], [1]], 3))


# ---------------------------------------------------------------------------- evaluation
@pytest.fixture(scope="module")
def shop() -> tuple[Split, Popularity]:
    split = leave_last_out(make_shop(n_users=300, n_items=120, seed=1))
    return split, Popularity().fit(split.train, split.valid)


def test_evaluate_metrics_describe_the_reranked_lists(shop: tuple[Split, Popularity]) -> None:
    split, model = shop
    plain = evaluate(model, split, ks=(5, 10), progress=False)
    same = evaluate(model, split, ks=(5, 10), progress=False, reranker="mmr:1", candidates=40)
    assert same.metrics == plain.metrics  # lam = 1 is the plain ranking
    assert same.rerank == "mmr:1" and same.candidates == 40
    assert same.to_dict()["rerank"]["spec"] == "mmr:1" and "rerank" not in plain.to_dict()

    res = evaluate(model, split, ks=(5, 10), progress=False, reranker="mmr:0.3", candidates=40)
    # the lists are the re-ranker's, applied by hand to the model's top 40
    genres = item_feature_vectors(split.train.item_features)
    hist = split.test_history()
    users = hist.users.index(res.recs.queries)
    h = hist.histories(users)
    idx, _ = topk(model.score(h), 40, exclude=h.to_csr())
    mmr = MMR(0.3).fit(item_vectors=genres)
    expected = R.gather(idx, mmr.rerank(idx, np.take_along_axis(model.score(h), idx, 1), 10), -1)
    np.testing.assert_array_equal(res.recs.index, expected)
    test_items = split.test.matrix[users]
    hits = np.array([[test_items[r, i] > 0 for i in row] for r, row in enumerate(expected)])
    np.testing.assert_array_equal(res.hits, hits)
    assert res.metrics["ndcg@10"] == pytest.approx(M.ndcg(hits, res.n_relevant).mean())
    assert res.metrics["ild@10"] == pytest.approx(M.ild(expected, genres).mean())
    assert res.metrics["ild@10"] > plain.metrics["ild@10"]
    assert res.metrics["auc"] == plain.metrics["auc"]  # a property of the scores


def test_evaluate_rerankers_equals_separate_runs(shop: tuple[Split, Popularity]) -> None:
    split, model = shop
    specs = {"plain": None, "dpp": "dpp:0.5", "cal": "calibrate:0.6", "cap": "cap:2"}
    many = evaluate_rerankers(model, split, specs, ks=(10,), progress=False, candidates=30)
    for name, spec in specs.items():
        one = evaluate(model, split, ks=(10,), progress=False, reranker=spec, candidates=30)
        assert many[name].metrics == one.metrics
        np.testing.assert_array_equal(many[name].recs.index, one.recs.index)
    assert many["cal"].metrics["miscalibration@10"] < many["plain"].metrics["miscalibration@10"]


def test_rerank_sweep_table(shop: tuple[Split, Popularity]) -> None:
    split, model = shop
    table = rerank_sweep(model, split, "mmr:0.42", ks=(10,), candidates=30)
    assert list(table.index) == [*MMR.sweep, 0.42] and table.index.name == "lam"
    assert table.attrs == {"reranker": "mmr", "param": "lam", "value": 0.42, "k": 10}
    plain = evaluate(model, split, ks=(10,), progress=False).metrics
    assert table.loc[1.0, "ndcg@10"] == plain["ndcg@10"]
    assert table.loc[0.0, "ild@10"] > table.loc[1.0, "ild@10"]
    assert (table["rerank_ms_per_user"] >= 0).all()


def test_evaluate_needs_categories_for_calibration(shop: tuple[Split, Popularity]) -> None:
    split, model = shop
    parts = (split.train, split.valid, split.test)
    bare = Split(
        *(Interactions(p.users, p.items, p.user, p.item, p.value, p.time) for p in parts if p)
    )
    with pytest.raises(ConfigError, match=r"calibrate:0\.5 needs item categories, but the data"):
        evaluate(model, bare, progress=False, reranker="calibrate:0.5")
    with pytest.raises(ConfigError, match=r"candidates must be an integer >= the list length 20"):
        evaluate(model, split, progress=False, reranker="mmr:0.5", candidates=10)


# ---------------------------------------------------------------------------- CLI
def _cli(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> tuple[int, str, str]:
    """Run ``recstack ARGS`` in this process: exit code, stdout, stderr."""
    from recstack import cli

    monkeypatch.setattr(sys, "argv", ["recstack", *args])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_rerank_round_trip(
    shop: tuple[Split, Popularity],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """`recstack evaluate --rerank` writes the re-ranked lists' metrics and lists, equal to
    the Python API's; `compare --rerank --report` draws the sweep."""
    split, model = shop
    save_split(split, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    code, out, err = _cli(
        ["evaluate", "data", "--model", "popularity", "--rerank", "calibrate:0.5",
         "--candidates", "50", "--json", "m.json", "--recs", "r.csv"],
        monkeypatch, capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "re-ranked with calibrate:0.5 from the top 50" in out
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["rerank"] == "calibrate:0.5" and report["candidates"] == 50
    api = evaluate(model, split, progress=False, reranker="calibrate:0.5", candidates=50)
    assert report["metrics"].keys() == api.metrics.keys()
    for key, value in api.metrics.items():
        assert report["metrics"][key] == pytest.approx(value, rel=1e-12, nan_ok=True)
    recs = pd.read_csv(tmp_path / "r.csv", dtype={"user": str, "item": str})
    assert recs["item"].tolist() == api.recs.to_frame()["item"].tolist()

    code, out, err = _cli(
        ["compare", "data", "--models", "popularity", "--rerank", "mmr:0.5", "--k", "10",
         "--report", "rep"],
        monkeypatch, capsys,
    )  # fmt: skip
    assert code == 0, err
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "Re-ranking trade-offs (mmr)" in html and "miscalibration@10" in html
    sweep = json.loads((tmp_path / "rep" / "results.json").read_text())["sweeps"]["popularity"]
    assert sweep["param"] == "lam" and [r["lam"] for r in sweep["rows"]] == list(MMR.sweep)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rerank", "mmr:2"], "mmr: lam must be a number in [0, 1], got 2.0"),
        (["--rerank", "mmr:0.5", "--candidates", "5"], "candidates must be an integer >= the"),
    ],
)
def test_cli_bad_rerank_is_one_line_and_exit_2(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Checked before any data is read (the data path does not exist)."""
    code, _, err = _cli(
        ["evaluate", "no-such-data", "--model", "popularity", *args], monkeypatch, capsys
    )
    assert code == 2
    assert message in err and "Traceback" not in err
