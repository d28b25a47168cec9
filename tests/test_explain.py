"""Explanations: exact decompositions sum to the scores (and match brute force), leave-one-out
equals re-scoring without the item, the sentences name the top items, the deletion test on
planted data (with a control that must fail), the content hook and bad input."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from conformance import cycle_data, planted_data
from recstack.data import Histories, IdMap, Interactions
from recstack.errors import ConfigError, DataError
from recstack.explain import (
    Attribution,
    attribute,
    content_explainer,
    deletion_test,
    explain,
    explainer_for,
    factors,
    influence,
    leave_one_out,
    register,
    registry,
    shared_tokens,
)
from recstack.explain import core as explain_core
from recstack.explain.text import item_labels, join_names, sentence
from recstack.models import (
    ALS,
    BPR,
    EASE,
    NMF,
    BiasedMF,
    ItemKNN,
    Popularity,
    PureSVD,
    Random,
    Recommender,
    UserKNN,
)
from recstack.models.nmf import _cd_rows

K = 4


@pytest.fixture(scope="module")
def data() -> Interactions:
    return planted_data()


@pytest.fixture(scope="module")
def rated(data: Interactions) -> Interactions:
    """The planted data with ratings 1..5 (for the non-binary and ALS confidence paths)."""
    rng = np.random.default_rng(1)
    return data.with_values(rng.integers(1, 6, data.n_events).astype(np.float32))


def query_histories(data: Interactions) -> Histories:
    """Ten stored users, then two new users whose histories repeat an item (a repeated item
    counts once, at its last event) and carry values."""
    stored = data.histories(np.arange(10))
    new = Histories.from_lists([[3, 7, 3, 11], [5]], data.n_items, [[2, 4, 5, 1], [3]])
    return stacked(stored, new)


def stacked(*parts: Histories) -> Histories:
    """The histories of ``parts`` one after another (same catalog)."""
    offsets = np.cumsum([0] + [p.indptr[-1] for p in parts[:-1]])
    return Histories(
        np.concatenate([[0]] + [p.indptr[1:] + o for p, o in zip(parts, offsets, strict=True)]),
        np.concatenate([p.items for p in parts]),
        np.concatenate([p.values for p in parts]),
        np.concatenate([p.times for p in parts]),
        parts[0].n_items,
    )


def targets_of(model: Recommender, hist: Histories) -> np.ndarray:
    return model.recommend(histories=hist, k=K).index


EXACT = [
    ("itemknn", lambda: ItemKNN(neighbors=10)),
    ("itemknn-recency-ratings", lambda: ItemKNN(neighbors=None, binary=False, half_life=2.0)),
    ("ease", lambda: EASE(l2=10.0)),
    ("ease-recency", lambda: EASE(l2=10.0, half_life=3.0)),
    ("ease-ratings", lambda: EASE(l2=10.0, binary=False)),
    ("puresvd", lambda: PureSVD(factors=8)),
    ("puresvd-ratings", lambda: PureSVD(factors=8, binary=False)),
    ("als", lambda: ALS(factors=8, iterations=5, alpha=2.0)),
    ("nmf", lambda: NMF(factors=6, iterations=20, l1=0.1, l2=0.5)),
    ("nmf-ratings-unconverged", lambda: NMF(factors=6, fold_in_sweeps=2, binary=False)),
]


@pytest.mark.parametrize(("name", "make"), EXACT, ids=[n for n, _ in EXACT])
def test_exact_decomposition_sums_to_the_score(name: str, make, rated: Interactions) -> None:
    model = make().fit(rated)
    hist = query_histories(rated)
    targets = targets_of(model, hist)
    attr = attribute(model, hist, targets)
    assert attr.exact and attr.method == ("hkv" if name == "als" else "exact")
    expected = np.take_along_axis(model.score(hist), targets, axis=1)
    sums = np.zeros(targets.shape)
    np.add.at(sums, attr.rows, attr.terms)
    np.testing.assert_allclose(sums, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(attr.scores, expected, rtol=1e-4, atol=1e-6)
    # one entry per distinct history item, as the model reads the history
    csr = hist.to_csr()
    np.testing.assert_array_equal(attr.indptr, csr.indptr)
    np.testing.assert_array_equal(attr.items, csr.indices)
    assert np.abs(attr.terms).max() > 0


def test_ease_terms_equal_its_own_per_event_contributions(rated: Interactions) -> None:
    """EASE.contributions (per event, one target per row) is an independent reference."""
    model = EASE(l2=10.0, half_life=2.0, binary=False).fit(rated)
    hist = query_histories(rated)
    targets = targets_of(model, hist)
    attr = attribute(model, hist, targets)
    for col in range(K):
        per_event = model.contributions(hist, targets[:, col])
        ref = np.zeros(len(attr.items))
        key = attr.rows * rated.n_items + attr.items
        np.add.at(ref, np.searchsorted(key, hist.rows * rated.n_items + hist.items), per_event)
        np.testing.assert_allclose(attr.terms[:, col], ref, rtol=1e-5, atol=1e-7)


def test_itemknn_terms_by_brute_force(rated: Interactions) -> None:
    model = ItemKNN(neighbors=None, binary=False, half_life=2.0).fit(rated)
    hist = query_histories(rated)
    targets = targets_of(model, hist)
    attr = attribute(model, hist, targets)
    sim = model.similarity_.toarray()
    for r in range(len(hist)):
        items = hist.items[hist.indptr[r] : hist.indptr[r + 1]].tolist()
        values = hist.values[hist.indptr[r] : hist.indptr[r + 1]].tolist()
        n = len(items)
        for e in range(attr.indptr[r], attr.indptr[r + 1]):
            j = attr.items[e]
            last = max(p for p in range(n) if items[p] == j)  # a repeat counts at its last
            weight = values[last] * 0.5 ** ((n - 1 - last) / 2.0)
            np.testing.assert_allclose(attr.terms[e], weight * sim[j, targets[r]], rtol=1e-5)


ALS_PARAMS = [{"factors": f, "alpha": a} for f, a in [(6, 0.7), (8, 2.0), (8, 0.0)]]


@pytest.mark.parametrize("params", ALS_PARAMS, ids=["k6", "k8", "alpha0"])
def test_als_hkv_terms_by_brute_force(params: dict, rated: Interactions) -> None:
    """Hu et al. sec. 5 with the dense confidence matrix: terms c_j p_j y_j^T W y_t with
    W = (Y^T C_u Y + lambda I)^-1, through the k x k system and the m x m one (Woodbury;
    short histories), with zero values (p = 0); and the same as ALS.explain_weights."""
    model = ALS(iterations=4, regularization=0.5, **params).fit(rated)
    zeros = Histories.from_lists([[1, 2, 9], [4, 6]], rated.n_items, [[0, 3, 2], [0, 0]])
    hist = stacked(query_histories(rated), zeros)
    targets = targets_of(model, hist)
    attr = attribute(model, hist, targets)
    small = factors.woodbury_rows(np.diff(attr.indptr), params["factors"], K, model.alpha)
    # both paths are taken (Woodbury needs alpha > 0: D^-1)
    assert (small.any() and not small.all()) if model.alpha > 0 else not small.any()
    y = model.item_factors_.astype(np.float64)
    csr = hist.to_csr()
    for r in range(len(hist)):
        c = np.ones(rated.n_items)
        row = slice(csr.indptr[r], csr.indptr[r + 1])
        c[csr.indices[row]] += model.alpha * csr.data[row]
        w = np.linalg.inv(y.T @ (c[:, None] * y) + model.regularization * np.eye(y.shape[1]))
        cp = c[csr.indices[row]] * (csr.data[row] > 0)  # confidence times preference
        ref = cp[:, None] * (y[csr.indices[row]] @ w @ y[targets[r]].T)
        np.testing.assert_allclose(attr.terms[row], ref, rtol=1e-4, atol=1e-7)
    for col in range(K):
        weights = model.explain_weights(hist, targets[:, col])
        np.testing.assert_allclose(attr.terms[:, col], weights.data, rtol=1e-4, atol=1e-7)


def brute_force_drops(model: Recommender, hist: Histories, targets: np.ndarray) -> np.ndarray:
    """Re-score each history without each of its distinct items, one at a time."""
    base = model.score(hist)
    out = []
    for r in range(len(hist)):
        sl = slice(hist.indptr[r], hist.indptr[r + 1])
        items, values, times = hist.items[sl], hist.values[sl], hist.times[sl]
        for j in np.unique(items):
            keep = items != j
            single = Histories.from_lists(
                [items[keep]], hist.n_items, [values[keep]], [times[keep]]
            )
            out.append(base[r, targets[r]] - model.score(single)[0, targets[r]])
    return np.array(out)


@pytest.mark.parametrize(
    "make",
    [
        lambda: UserKNN(neighbors=5),
        lambda: BPR(factors=4, iterations=3, fold_in_iterations=5, num_threads=1),
        lambda: Random(seed=3),
    ],
    ids=["userknn", "bpr", "random"],
)
def test_leave_one_out_equals_rescoring_without_the_item(make, data: Interactions) -> None:
    model = make().fit(data)
    hist = query_histories(data)
    targets = targets_of(model, hist)
    attr = attribute(model, hist, targets, method="leave-one-out")  # BPR's auto: influence
    assert attr.method == "leave-one-out" and not attr.exact
    np.testing.assert_allclose(attr.terms, brute_force_drops(model, hist, targets), atol=1e-5)
    np.testing.assert_allclose(
        attr.scores, np.take_along_axis(model.score(hist), targets, 1), atol=1e-6
    )


FAST_LOO = [
    ("biased-mf", lambda: BiasedMF(factors=6, reg=0.1, bias_reg=0.05)),
    ("biased-mf-no-bias-reg", lambda: BiasedMF(factors=3, bias_reg=0.0, method="sgd")),
    ("biased-mf-biases-only", lambda: BiasedMF(factors=0)),
    ("nmf", lambda: NMF(factors=6, iterations=20, l1=0.1, l2=0.5, fold_in_sweeps=7)),
    ("nmf-values", lambda: NMF(factors=4, iterations=10, binary=False)),
]


@pytest.mark.parametrize(("name", "make"), FAST_LOO, ids=[n for n, _ in FAST_LOO])
def test_fast_leave_one_out_equals_rescoring(name: str, make, rated: Interactions) -> None:
    """The closed-form (BiasedMF) and batched (NMF) paths give the generic path's drops,
    and those of re-scoring by hand; one-item histories (nothing left) included."""
    model = make().fit(rated)
    hist = query_histories(rated)
    targets = targets_of(model, hist)
    fast = attribute(model, hist, targets, method="leave-one-out")  # NMF's auto: exact
    assert any(p in registry.LEAVE_ONE_OUT for p in registry.class_paths(model))
    assert fast.method == "leave-one-out" and not fast.exact
    generic = leave_one_out(model, hist, targets)  # re-scores the catalog per removed item
    scale = np.abs(generic.terms).max()
    assert scale > 0
    np.testing.assert_allclose(fast.terms, generic.terms, atol=1e-5 * max(1.0, scale))
    brute = brute_force_drops(model, hist, targets)
    np.testing.assert_allclose(fast.terms, brute, atol=1e-5 * max(1.0, scale))
    np.testing.assert_allclose(fast.scores, generic.scores)
    assert 1 in hist.lengths  # the new user [5]: its one item's drop is the whole fold-in


USERKNN = [
    {"neighbors": 5},
    {"neighbors": None, "weighting": "tfidf", "shrink": 0.0, "alpha": 0.3},
    {"neighbors": 3, "similarity": "dot", "weighting": "none"},
    {"neighbors": 4, "binary": False},
    {"neighbors": 2, "binary": False, "weighting": "none"},
]


@pytest.mark.parametrize("params", USERKNN, ids=["bm25", "all-tfidf", "dot", "values", "none"])
@pytest.mark.parametrize("signs", ["positive", "mixed"])
def test_userknn_leave_one_out_equals_rescoring(
    params: dict, signs: str, rated: Interactions
) -> None:
    """Downdating the user similarities picks each variant's neighbours as the model does
    (same arithmetic and ties): the drops of re-scoring the catalog, to float rounding.

    Twenty stored users are duplicated, so stored users tie exactly, and a stored user's
    history holds its twin: the twin is no neighbour of the whole history (all its items
    lie in it) but is one of every variant. Values of both signs turn the pruning of the
    user scan off (``binary=False``); an empty and a one-item history are included."""
    frame = rated.to_frame()
    if signs == "mixed":
        frame["rating"] -= 3.0
    twins = frame[frame["user_id"].isin(rated.users.ids[:20])].assign(
        user_id=lambda f: "twin-" + f["user_id"]
    )
    log = Interactions.from_frame(pd.concat([frame, twins]), items=rated.items)
    model = UserKNN(**params).fit(log)
    empty = Histories.from_lists([[]], log.n_items)
    hist = stacked(query_histories(log), log.histories(np.arange(50, 60)), empty)
    targets = targets_of(model, hist)
    fast = attribute(model, hist, targets)
    assert fast.method == "leave-one-out" and explainer_for(model) is registry.loo_explainer
    generic = leave_one_out(model, hist, targets)  # re-scores the catalog per removed item
    assert np.abs(generic.terms).max() > 0
    np.testing.assert_allclose(fast.terms, generic.terms, rtol=0, atol=1e-6)
    np.testing.assert_allclose(fast.scores, generic.scores, rtol=0, atol=1e-6)


def test_nmf_terms_are_the_active_set_solution_when_converged(rated: Interactions) -> None:
    """A converged fold-in solves the ridge on its active factors A: ``w_A = (G_AA + l2 I)^-1
    (x H_A - l1)``, so a term is ``x_j h_tA^T (G_AA + l2 I)^-1 (h_jA - l1 / sum x)``."""
    model = NMF(factors=6, iterations=20, l1=0.2, l2=0.5, fold_in_sweeps=500, binary=False)
    model.fit(rated)
    hist = query_histories(rated)
    targets = targets_of(model, hist)
    attr = attribute(model, hist, targets)
    h, gram = model.item_factors_.astype(np.float64), model._item_gram
    w = model.fold_in(hist)
    csr = hist.to_csr()
    for r in range(len(hist)):
        row = slice(csr.indptr[r], csr.indptr[r + 1])
        x, active = csr.data[row].astype(np.float64), w[r] > 0
        inv = np.linalg.inv(gram[np.ix_(active, active)] + model.l2 * np.eye(active.sum()))
        h_j = h[csr.indices[row]][:, active] - model.l1 / x.sum()
        ref = x[:, None] * (h_j @ inv @ h[targets[r]][:, active].T)
        np.testing.assert_allclose(attr.terms[row], ref, rtol=1e-6, atol=1e-9)


def test_nmf_terms_follow_the_fold_in_steps(rated: Interactions) -> None:
    """Unconverged (3 sweeps), the fold-in is still linear in ``u = x H - l1`` between
    clips: a term is ``x_j`` times the score's derivative along ``h_j``, less the item's
    share of the derivative along the L1 offset; checked by finite differences of the
    model's own coordinate descent (float64)."""
    model = NMF(factors=6, iterations=20, l1=0.3, l2=0.5, fold_in_sweeps=3, binary=False)
    model.fit(rated)
    hist = query_histories(rated)
    targets = targets_of(model, hist)
    attr = attribute(model, hist, targets)
    h, csr = model._factors, hist.to_csr()

    def scores(xh: np.ndarray, r: int) -> np.ndarray:
        w = np.zeros((1, h.shape[1]))
        _cd_rows(w, model._item_gram, xh[None], model.l1, model.l2, model.fold_in_sweeps)
        return w[0] @ h[targets[r]].T

    eps = 1e-6
    for r in range(len(hist)):
        row = slice(csr.indptr[r], csr.indptr[r + 1])
        x = csr.data[row].astype(np.float64)
        xh = x @ h[csr.indices[row]]
        base = scores(xh, r)
        along_l1 = (base - scores(xh - eps, r)) / eps  # d score / d l1, negated
        for e, j in zip(range(row.start, row.stop), csr.indices[row], strict=True):
            along_j = (scores(xh + eps * h[j], r) - base) / eps
            ref = x[e - row.start] * (along_j - along_l1 * model.l1 / x.sum())
            np.testing.assert_allclose(attr.terms[e], ref, rtol=1e-4, atol=1e-7)


def _influence_reference(model: BPR, hist: Histories, targets: np.ndarray) -> np.ndarray:
    """The influence drops of ``recstack.explain.influence`` written densely: per history,
    the sampled objective's gradients and Hessian pair by pair, a linear solve."""
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    q = model.item_factors_.astype(np.float64)
    k = q.shape[1] - 1
    users = model.user_vectors(hist).astype(np.float64)
    probs = influence.sampler_probabilities(model)
    pool = np.flatnonzero(probs > 0)
    size = min(influence.NEGATIVES, len(pool))
    negatives = np.sort(np.random.default_rng(model.seed).choice(pool, size, replace=False))
    csr = hist.to_csr()
    out = np.zeros((csr.nnz, targets.shape[1]))
    for r in range(len(hist)):
        items, p = csr.indices[csr.indptr[r] : csr.indptr[r + 1]], users[r]
        m = len(items)
        if m == 1:
            out[csr.indptr[r]] = q[targets[r], :k] @ p[:k]
            continue
        neg = negatives[~np.isin(negatives, items)] if model.verify_negative else negatives
        pi = probs[neg] / probs[neg].sum()
        grads = np.zeros((m, k))
        hess = np.zeros((k, k))
        for a, i in enumerate(items):
            for n, w in zip(neg, pi, strict=True):
                x = p @ (q[i] - q[n])
                d = q[i, :k] - q[n, :k]
                grads[a] -= w * (1 - sig(x)) * d
                hess += w * sig(x) * (1 - sig(x)) * np.outer(d, d)
        hess = hess / m + model.regularization * np.eye(k)
        v = np.linalg.solve(hess, q[targets[r], :k].T)  # (k, K)
        outside = 1 - probs[items].sum()
        for a, j in enumerate(items):
            delta = grads.mean(0) - grads[a]
            if model.verify_negative:
                eps = probs[j] / (outside + probs[j])
                for b, i in enumerate(items):
                    if b != a:
                        pair = -(1 - sig(p @ (q[i] - q[j]))) * (q[i, :k] - q[j, :k])
                        delta += eps * (pair - grads[b])
            out[csr.indptr[r] + a] = delta @ v / (m - 1)
    return out


@pytest.mark.parametrize(
    "params",
    [{}, {"negative_sampling": "popularity", "popularity_beta": 0.7}, {"verify_negative": False}],
    ids=["uniform", "popularity", "unverified"],
)
def test_bpr_influence_matches_its_dense_formula(params: dict, data: Interactions) -> None:
    model = BPR(factors=5, iterations=5, fold_in_iterations=20, num_threads=1, **params)
    model.fit(data)
    hist = query_histories(data)
    targets = targets_of(model, hist)
    attr = attribute(model, hist, targets)
    assert attr.method == "influence" and not attr.exact
    np.testing.assert_allclose(attr.terms, _influence_reference(model, hist, targets), atol=1e-9)
    np.testing.assert_allclose(
        attr.scores, np.take_along_axis(model.score(hist), targets, 1), rtol=1e-5
    )
    # a one-item history leaves nothing: there the estimate is the exact drop
    one = np.flatnonzero(hist.lengths == 1)
    single = hist.select(one)
    np.testing.assert_allclose(
        attr.terms[attr.indptr[one]], brute_force_drops(model, single, targets[one]), atol=1e-5
    )


def test_bpr_influence_with_scores_beyond_the_exponential_range(data: Interactions) -> None:
    """Scores spanning more than 1,400 (factors scaled up): the pairs' sigmoids come from
    one exponential per pair instead of per item (whose ratios would overflow)."""
    model = BPR(factors=5, iterations=5, fold_in_iterations=20, num_threads=1).fit(data)
    model.item_factors_ = model.item_factors_ * 400
    hist = query_histories(data)
    targets = targets_of(model, hist)
    scores = model.score(hist)
    assert np.ptp(scores, axis=1).max() > 1400 > np.ptp(scores, axis=1).min()
    attr = attribute(model, hist, targets)
    with np.errstate(over="ignore"):
        ref = _influence_reference(model, hist, targets)
    np.testing.assert_allclose(attr.terms, ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())


def test_bpr_sampler_probabilities_from_the_alias_table(data: Interactions) -> None:
    model = BPR(factors=2, iterations=1, negative_sampling="popularity", popularity_beta=0.5)
    model.fit(data)
    weights = data.item_user_counts.astype(np.float64) ** 0.5
    np.testing.assert_allclose(influence.sampler_probabilities(model), weights / weights.sum())
    uniform = BPR(factors=2, iterations=1).fit(data)
    np.testing.assert_allclose(influence.sampler_probabilities(uniform), 1 / data.n_items)


def test_bpr_influence_tracks_leave_one_out(data: Interactions) -> None:
    """The Newton-step estimate follows the re-scored drops of the model's own fold-in (its
    negatives are common random numbers, so the drops are signal, not sampling noise): 0.83
    here, 0.75 with a fold-in stream seeded by the whole history (as before); on ML-100K see
    ``recstack.explain.influence``."""
    model = BPR(factors=4, iterations=30, num_threads=1).fit(data)
    hist = data.histories(np.arange(12))
    targets = targets_of(model, hist)
    attr = attribute(model, hist, targets)
    drops = leave_one_out(model, hist, targets).terms
    assert np.corrcoef(attr.terms.ravel(), drops.ravel())[0, 1] > 0.8


def test_leave_one_out_of_a_linear_model_is_its_exact_decomposition(data: Interactions) -> None:
    """Without recency weights, removing an item from x @ B removes exactly its term."""
    model = EASE(l2=10.0).fit(data)
    hist = query_histories(data)
    targets = targets_of(model, hist)
    loo = attribute(model, hist, targets, method="leave-one-out")
    np.testing.assert_allclose(loo.terms, attribute(model, hist, targets).terms, atol=1e-5)


def test_batches_and_chunks_give_the_same_attribution(
    data: Interactions, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = UserKNN(neighbors=5).fit(data)
    hist = query_histories(data)
    targets = targets_of(model, hist)
    whole = attribute(model, hist, targets)
    monkeypatch.setattr(explain_core, "_ENTRY_BUDGET", 8)  # a few rows per explainer call
    chunked = attribute(model, hist, targets)
    single = Attribution.concat(
        [attribute(model, hist.select([r]), targets[r : r + 1]) for r in range(len(hist))]
    )
    for other in (chunked, single):
        np.testing.assert_array_equal(other.indptr, whole.indptr)
        np.testing.assert_allclose(other.terms, whole.terms, atol=1e-6)


# ------------------------------------------------------------------ sequential models
@pytest.fixture(scope="module")
def sasrec() -> tuple[Recommender, Interactions]:
    pytest.importorskip("torch")
    from recstack.models.neural.sasrec import SASRec

    log = cycle_data(n_items=20, n_users=80)[0]
    fast = {"dim": 16, "heads": 2, "layers": 1, "epochs": 2, "verbose": False, "device": "cpu"}
    return SASRec(max_len=6, **fast).fit(log), log


def test_sequential_leave_one_out_skips_only_what_the_model_cannot_see(
    sasrec: tuple[Recommender, Interactions],
) -> None:
    model, log = sasrec
    users = np.flatnonzero((log.user_lengths > 8) & (log.user_lengths <= 14))[:12]
    hist = log.histories(users)  # longer than max_len=6, K unseen items left
    targets = targets_of(model, hist)
    attr = attribute(model, hist, targets, method="leave-one-out")  # within the window
    assert attr.method == "leave-one-out"
    np.testing.assert_allclose(attr.terms, brute_force_drops(model, hist, targets), atol=1e-5)
    full = leave_one_out(model, hist, targets)  # no window: every item re-scored
    np.testing.assert_allclose(attr.terms, full.terms, atol=1e-5)


@pytest.mark.parametrize(
    ("pre_norm", "time_gaps", "tie_orders"), [(True, False, 1), (False, False, 1), (True, True, 4)]
)
def test_shared_prefix_leave_one_out_equals_rescoring(
    pre_norm: bool, time_gaps: bool, tie_orders: int
) -> None:
    """SASRec's variants computed on the older items' shared states (2 layers; histories
    shorter and longer than the window, repeated items, which take the plain path, and a
    one-event history) give the brute-force re-scored drops, pre-LN and post-LN. With time
    gaps (removing an item changes the next one's gap) and scores averaged over orders of
    the latest tied events, every variant takes the plain path, exact too."""
    torch = pytest.importorskip("torch")
    from recstack.explain.loo_causal import shares_prefix
    from recstack.models.neural.sasrec import SASRec

    log = cycle_data(n_items=20, n_users=80)[0]
    fast = {"dim": 16, "heads": 2, "layers": 2, "epochs": 2, "verbose": False, "device": "cpu"}
    model = SASRec(max_len=7, exclude_seen=False, time_gaps=time_gaps, tie_orders=tie_orders,
                   **fast).fit(log)  # fmt: skip
    if not pre_norm:  # the same weights read as post-LN blocks
        for block in model._net.encoder.blocks:
            block.pre_norm = False
        model._net.encoder.norm = torch.nn.Identity()
    assert shares_prefix(model) is (not time_gaps and tie_orders == 1)
    rng = np.random.default_rng(0)
    lists = [list(rng.integers(0, 20, size=n)) for n in (1, 2, 4, 7, 8, 12, 15)]
    lists += [[3, 5, 3, 9, 1], [4, 4], [2, 6, 8, 6, 10, 12, 14, 16, 6]]  # repeats
    # gaps from the same second to weeks, so that removing an item moves the next one's
    times = [np.cumsum(rng.choice([0, 30, 4000, 10**6], size=len(x))) for x in lists]
    hist = Histories.from_lists(lists, log.n_items, times=times)
    targets = np.tile(np.arange(5), (len(lists), 1))
    attr = attribute(model, hist, targets, method="leave-one-out")
    np.testing.assert_allclose(attr.terms, brute_force_drops(model, hist, targets), atol=2e-5)
    assert np.abs(attr.terms).max() > 1e-3


def test_recent_leave_one_out_is_exact_on_the_latest_events(
    sasrec: tuple[Recommender, Interactions],
) -> None:
    """``method="recent:N"``: the full leave-one-out's drops for the items among the latest
    N events, 0 for the others (which are not re-scored)."""
    model, log = sasrec
    users = np.flatnonzero((log.user_lengths > 8) & (log.user_lengths <= 14))[:12]
    hist = log.histories(users)
    targets = targets_of(model, hist)
    full = attribute(model, hist, targets, method="leave-one-out")
    recent = attribute(model, hist, targets, method="recent:3")
    assert recent.method == "recent-leave-one-out"
    np.testing.assert_array_equal(recent.items, full.items)
    for r in range(len(hist)):
        latest = hist.items[hist.indptr[r + 1] - 3 : hist.indptr[r + 1]]
        row = slice(full.indptr[r], full.indptr[r + 1])
        inside = np.isin(full.items[row], latest)
        np.testing.assert_allclose(recent.terms[row][inside], full.terms[row][inside], atol=1e-6)
        assert np.all(recent.terms[row][~inside] == 0)
    # N at least what the model reads (the window of 6, and with time gaps the event before
    # it, which sets the gap of the window's oldest): the full leave-one-out
    assert model.time_gaps
    assert attribute(model, hist, targets, method="recent:6").method == "recent-leave-one-out"
    assert attribute(model, hist, targets, method="recent:7").method == "leave-one-out"
    # "auto" is "recent" with its default N
    auto, default = (attribute(model, hist, targets, method=m) for m in ("auto", "recent"))
    np.testing.assert_array_equal(auto.terms, default.terms)
    default_n = attribute(model, hist, targets, method=f"recent:{registry.RECENT}")
    np.testing.assert_array_equal(default_n.terms, default.terms)
    for bad in ("recent:0", "recent:x", "recent:-2"):
        with pytest.raises(ConfigError, match="'recent:N' needs a whole number N >= 1"):
            attribute(model, hist, targets, method=bad)
    with pytest.raises(ConfigError, match="method='recent' is for the sequential models"):
        attribute(EASE().fit(log), hist, targets, method="recent")


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("bert4rec", {"heads": 2, "layers": 1, "max_len": 6}),
        ("gru4rec", {"hidden_dim": 8, "max_len": 6}),
        ("caser", {"window": 3, "max_len": 6, "horizontal": 2, "vertical": 2}),
    ],
)
def test_sequential_fast_path_for_every_architecture(name: str, params: dict) -> None:
    """BERT4Rec (mask token), GRU4Rec (reads the padding) and Caser (reads only its
    ``window``) through the batched path: the generic path's drops."""
    pytest.importorskip("torch")
    from recstack.models import create_model

    log = cycle_data(n_items=20, n_users=60)[0]
    fast = {"dim": 8, "epochs": 1, "verbose": False, "device": "cpu"}
    model = create_model(name, **fast, **params).fit(log)
    users = np.flatnonzero((log.user_lengths > 3) & (log.user_lengths <= 12))[:10]
    hist = log.histories(users)
    targets = targets_of(model, hist)
    attr = attribute(model, hist, targets, method="leave-one-out")
    assert attr.method == "leave-one-out"
    generic = leave_one_out(model, hist, targets)
    assert np.abs(generic.terms).max() > 0
    np.testing.assert_allclose(attr.terms, generic.terms, atol=1e-5)


def test_attention_view_reads_the_last_layer(sasrec: tuple[Recommender, Interactions]) -> None:
    model, log = sasrec
    hist = log.histories(np.arange(5))
    targets = targets_of(model, hist)
    attr = attribute(model, hist, targets, method="attention")
    weights = model.attention(hist)[-1][:, :, -1, :].mean(axis=1)  # (n, max_len)
    for r in range(len(hist)):
        window = hist.items[hist.indptr[r] : hist.indptr[r + 1]][-model.max_len :]
        pad = model.max_len - len(window)
        row = slice(attr.indptr[r], attr.indptr[r + 1])
        for e, j in zip(range(row.start, row.stop), attr.items[row], strict=True):
            expected = weights[r, pad:][window == j].sum()
            np.testing.assert_allclose(attr.terms[e], expected, rtol=1e-5, atol=1e-7)
    assert np.all(attr.terms >= 0)
    with pytest.raises(ConfigError, match="method='attention' needs a model with attention"):
        attribute(EASE().fit(log), hist, targets, method="attention")


# ------------------------------------------------------------------ sentences
@pytest.fixture(scope="module")
def titled() -> Interactions:
    """Planted data with a title per item (one catalog-style, one missing)."""
    data = planted_data()
    titles = [f"Film {i}" for i in range(data.n_items)]
    titles[3] = "Fish Called Wanda, A"
    titles[5] = None
    features = pd.DataFrame({"title": titles}, index=data.items.ids)
    frame = data.to_frame()
    return Interactions.from_frame(frame, items=data.items, item_features=features)


def test_sentence_names_the_top_items_with_their_titles(titled: Interactions) -> None:
    model = EASE(l2=10.0).fit(titled)
    hist = titled.histories(np.arange(6))
    recs = model.recommend(histories=hist, k=K)
    found = explain(model, hist, recs.index, scores=recs.scores, k_items=5)
    attr = attribute(model, hist, recs.index)
    shares = attr.shares()
    labels = item_labels(model)
    for r, row in enumerate(found):
        assert [e.item for e in row] == list(recs.item_ids[r])
        for col, e in enumerate(row):
            assert e.method == "exact" and e.score == pytest.approx(recs.scores[r, col])
            sl = slice(attr.indptr[r], attr.indptr[r + 1])
            order = np.argsort(-attr.terms[sl, col], kind="stable")
            top = attr.items[sl][order][attr.terms[sl, col][order] > 0][:5]
            assert [i for i, _ in e.items] == list(titled.items.ids[top])
            assert [s for _, s in e.items] == pytest.approx(
                list(shares[sl, col][order][: len(top)])
            )
            assert all(s > 0 for _, s in e.items)
            assert e.text == "Because you watched " + join_names(list(labels[top[:3]]))
    assert labels[3] == "A Fish Called Wanda" and labels[5] == titled.items.ids[5]


def test_listed_items_are_the_largest_positive_terms() -> None:
    """explain()'s selection against a sort: the largest positive terms first, ties to the
    earlier entry, at most k; the denominators of the shares are the rows' sums of |term|."""
    rng = np.random.default_rng(0)
    indptr = np.array([0, 0, 1, 6, 20])
    terms = rng.integers(-2, 4, size=(20, 3)).astype(np.float64)  # ties, zeros, negatives
    for k in (1, 3, 30):
        top, den = explain_core._top_terms(indptr, terms, k)
        assert top.shape == (4, 3, k)
        for r in range(4):
            entries = np.arange(indptr[r], indptr[r + 1])
            for c in range(3):
                order = entries[np.argsort(-terms[entries, c], kind="stable")]
                expected = [e for e in order if terms[e, c] > 0][:k]
                assert top[r, c][top[r, c] >= 0].tolist() == expected
                assert np.all(top[r, c][len(expected) :] == -1)
                assert den[r, c] == np.abs(terms[entries, c]).sum()


def test_sentence_forms() -> None:
    assert join_names(["A"]) == "A"
    assert join_names(["A", "B"]) == "A and B"
    assert join_names(["A", "B", "C"]) == "A, B and C"
    assert sentence(["A", "B"], "bought") == "Because you bought A and B"
    assert sentence(["A"], "watched", "shared: Comedy") == "Because you watched A; shared: Comedy"
    assert sentence([], "watched", "popular with 3 users") == "Popular with 3 users"
    assert sentence([], "watched") == "No item of your history drove this recommendation"


def test_popularity_is_a_plain_statement(data: Interactions) -> None:
    model = Popularity().fit(data)
    hist = data.histories([0, 1])
    recs = model.recommend(histories=hist, k=2)
    counts = data.item_user_counts
    for r, row in enumerate(explain(model, hist, recs.index)):
        for e, item in zip(row, recs.index[r], strict=True):
            rank = 1 + int((counts > counts[item]).sum())
            assert e.items == () and e.method == "popularity"
            assert e.text == f"Popular with {counts[item]} users (#{rank} of 40 items)"
    assert deletion_test(model, hist, recs.index).pairs == 0  # names no item: nothing to test


def test_padding_is_skipped_and_bad_input_is_an_error(data: Interactions) -> None:
    model = ItemKNN().fit(data)
    hist = data.histories([0, 1])
    found = explain(model, hist, np.array([[1, -1], [-1, -1]]))
    assert [len(r) for r in found] == [1, 0] and found[0][0].item == data.items.ids[1]
    assert found[0][0].to_dict().keys() == {"text", "items"}
    with pytest.raises(DataError, match=r"outside the catalog \[0, 40\)"):
        attribute(model, hist, np.array([[40], [0]]))
    with pytest.raises(ConfigError, match="targets must be integer item indices of shape"):
        attribute(model, hist, np.array([[0.5], [1.0]]))
    with pytest.raises(ConfigError, match="method must be 'auto' or one of"):
        explain(model, hist, np.array([[1], [2]]), method="shap")
    with pytest.raises(ConfigError, match="k_items must be a positive integer"):
        explain(model, hist, np.array([[1], [2]]), k_items=0)
    with pytest.raises(ConfigError, match="scores have shape"):
        explain(model, hist, np.array([[1], [2]]), scores=np.zeros((2, 3)))
    with pytest.raises(ConfigError, match="expected a class or 'module:Class'"):
        register("ItemKNN", explainer_for(model))


def test_an_empty_history_is_explained_by_nothing(data: Interactions) -> None:
    model = UserKNN().fit(data)
    hist = Histories.from_lists([[]], data.n_items)
    (e,) = explain(model, hist, np.array([[2]]))[0]
    assert e.items == () and e.text == "No item of your history drove this recommendation"


# ------------------------------------------------------------------ faithfulness
@pytest.mark.parametrize(
    "make",
    [
        lambda: ItemKNN(neighbors=10),
        lambda: EASE(l2=10.0),
        lambda: PureSVD(factors=8),
        lambda: ALS(factors=8, iterations=5),
        lambda: UserKNN(neighbors=10),
        lambda: NMF(factors=8),
    ],
    ids=["itemknn", "ease", "puresvd", "als", "userknn", "nmf"],
)
def test_deletion_test_on_planted_data(make, data: Interactions) -> None:
    """Removing the top explaining item drops the recommended item's score more than
    removing a random other history item, for at least 90% of the pairs; an explanation
    that names the least contributing item instead fails the same test."""
    model = make().fit(data)
    hist = data.histories()
    targets = targets_of(model, hist)
    attr = attribute(model, hist, targets)
    result = deletion_test(model, hist, targets, attr, seed=0)
    assert result.pairs >= 0.9 * targets.size
    assert result.rate >= 0.9
    # the control: rank items by the opposite of their terms (positive where smallest)
    flipped = replace(attr, terms=attr.terms.max() + 1.0 - attr.terms)
    assert deletion_test(model, hist, targets, flipped, seed=0).rate < 0.5


# ------------------------------------------------------------------ content hook
class GenreModel(Recommender):
    """A toy content model: a history scores items by the cosine of genre vectors."""

    name = "genre-toy"

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        genres = self.item_features_["genres"].str.get_dummies(sep=" ")
        self.vectors_ = genres.to_numpy(np.float32)

    def _score(self, histories: Histories) -> np.ndarray:
        return histories.to_csr() @ self.vectors_ @ self.vectors_.T


def test_content_hook_names_similar_items_and_shared_genres(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    genres = {"a": "Comedy Drama", "b": "Comedy", "c": "Horror", "d": "Comedy Romance"}
    features = pd.DataFrame({"title": list("ABCD"), "genres": list(genres.values())}, genres)
    log = pd.DataFrame({"user_id": [1, 1, 2, 2], "item_id": list("abcd")})
    data = Interactions.from_frame(log, item_features=features, items=IdMap(list(genres)))
    model = GenreModel().fit(data)
    monkeypatch.setattr(registry, "EXPLAINERS", dict(registry.EXPLAINERS))  # undone after
    assert explainer_for(model) is registry.loo_explainer
    register(GenreModel, content_explainer("vectors_"))
    hist = Histories.from_ids(model.items_, [["b", "c"]])
    (e,) = explain(model, hist, model.items_.index(["d"])[:, None])[0]
    assert e.method == "content"
    assert [i for i, _ in e.items] == ["b"]  # the horror film shares nothing with D
    assert e.text == "Because you watched B; shared: Comedy"
    assert shared_tokens(features, 0, 3) == ["Comedy"]
    assert shared_tokens(features, 0, 1, columns=["title"]) == []
    assert shared_tokens(None, 0, 1) == []
