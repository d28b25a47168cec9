"""The conformance suite every model runs, and the tiny hand-checkable fixtures.

A model's test module subclasses :class:`RecommenderConformance` and says how to build the
model (as implicit's ``RecommenderBaseTestMixin`` and LensKit's ``ScorerTests`` do)::

    from conformance import RecommenderConformance

    class TestEase(RecommenderConformance):
        def make_model(self) -> Recommender:
            return EASE(l2=10.0)

The suite checks the contract of :mod:`recstack.models.base`: fit returns self; scores are
(n, n_items) float32 without NaN; batch == one at a time; save/load round trip without pickle;
refit replaces the state; seen-item exclusion and candidate restriction equal a top-K of
``score``; unknown user/item policies; parameter round trip and typo errors; a new user's
history scores like a known user with the same history; not-fitted and ``k`` errors;
``similar_items``. ``make_model`` must be deterministic (fixed seeds), and fast on the
60 x 40 planted data below. Override the class-scoped ``data``/``other_data`` fixtures to
use other data (all-1.0 values, at least one user with two or more events).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recstack.data import Histories, IdMap, Interactions
from recstack.errors import (
    ConfigError,
    DataError,
    NotFittedError,
    RecstackError,
    UnknownIdError,
)
from recstack.models import base as model_base
from recstack.models import create_model, get_model_class
from recstack.models.base import Recommendations, Recommender
from recstack.ranking import topk

#: file types that are pickles (or wrap them): a saved model must contain none
PICKLE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".joblib", ".ckpt", ".bin"}
_DAY = 86_400.0


def planted_data(
    n_users: int = 60, n_items: int = 40, n_blocks: int = 4, seed: int = 0
) -> Interactions:
    """Implicit feedback with planted blocks: users of block b mostly use items of block b.

    User IDs are strings ``"u0", "u1", ...``, item IDs integers ``1000, 1001, ...`` (so both
    kinds of external ID are exercised). Each user has 4 to 8 distinct in-block items and one
    out-of-block item, at distinct times spread over 90 days (values 1.0). Every item is used.
    """
    rng = np.random.default_rng(seed)
    user_block = np.arange(n_users) % n_blocks
    item_block = np.arange(n_items) % n_blocks
    rows: list[tuple[str, int, float]] = []
    for u in range(n_users):
        own = np.flatnonzero(item_block == user_block[u])
        other = np.flatnonzero(item_block != user_block[u])
        picks = rng.choice(own, size=min(len(own), int(rng.integers(4, 9))), replace=False)
        picks = np.append(picks, rng.choice(other))
        times = np.sort(rng.choice(90 * 24, size=len(picks), replace=False)) * 3600.0
        rows += [(f"u{u}", 1000 + int(i), float(t)) for i, t in zip(picks, times, strict=True)]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    items = IdMap(1000 + np.arange(n_items), "item")  # catalog order = item number
    data = Interactions.from_frame(df, items=items, source="planted_data")
    assert np.all(data.item_user_counts > 0), "planted_data: an item has no user"
    return data


def checkerboard_data(n: int = 50) -> Interactions:
    """The implicit-style checkerboard: user ``u`` used every item of its parity except ``u``.

    Users and items have external IDs ``"0" .. str(n - 1)`` in index order. With seen items
    excluded, the only unseen item co-used with user ``u``'s items is item ``u``, so any
    collaborative model must recommend item ``u`` first (see :func:`checkerboard_top1`).
    """
    if n < 6 or n % 2:
        raise ValueError(f"checkerboard_data needs an even n >= 6, got {n}")
    u, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    keep = (u % 2 == i % 2) & (u != i)
    df = pd.DataFrame({"user_id": u[keep], "item_id": i[keep]})
    ids = np.arange(n)
    return Interactions.from_frame(
        df, users=IdMap(ids, "user"), items=IdMap(ids, "item"), source="checkerboard"
    )


def checkerboard_top1(model: Recommender, data: Interactions) -> float:
    """Share of users ``u`` whose first recommendation (seen items excluded) is item ``u``."""
    recs = model.recommend(data.users.ids, k=1)
    return float(np.mean(recs.item_ids[:, 0] == data.users.ids))


def _rows(recs: Recommendations, rows: list[int]) -> Recommendations:
    return Recommendations(
        recs.queries[rows], recs.index[rows], recs.scores[rows], recs.items, recs.known[rows]
    )


def learned_keys(model: Recommender) -> set[str]:
    """Public attributes ending with ``_``: the learned state."""
    return {k for k in vars(model) if k.endswith("_") and not k.startswith("_")}


def reference_topk(
    model: Recommender,
    hist: Histories,
    k: int,
    exclude_seen: bool,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """What ``recommend`` must return: the top ``k`` of ``score`` in one batch."""
    exclude = hist.to_csr() if exclude_seen else None
    return topk(model.score(hist), k, exclude=exclude, allowed=allowed)


class RecommenderConformance:
    """Mixin of contract tests; subclasses define :meth:`make_model` (deterministic)."""

    #: absolute/relative tolerance when comparing scores computed in different batches
    atol: float = 1e-5
    rtol: float = 1e-5

    def make_model(self) -> Recommender:
        raise NotImplementedError

    # ---------------------------------------------------------------- fixtures
    # class-scoped (fit once per model class); pytest wants them as classmethods
    @pytest.fixture(scope="class")
    @classmethod
    def data(cls) -> Interactions:
        return planted_data()

    @pytest.fixture(scope="class")
    @classmethod
    def other_data(cls) -> Interactions:
        return planted_data(n_users=45, n_items=30, n_blocks=3, seed=1)

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, data: Interactions) -> Recommender:
        return cls().make_model().fit(data)

    def _users(self, data: Interactions, n: int = 8) -> np.ndarray:
        return data.users.ids[:n]

    def _assert_same_recs(self, a: Recommendations, b: Recommendations) -> None:
        np.testing.assert_array_equal(a.index, b.index)
        np.testing.assert_allclose(a.scores, b.scores, rtol=self.rtol, atol=self.atol)

    # ---------------------------------------------------------------- fit / state
    def test_fit_returns_self_and_sets_state(self, data: Interactions) -> None:
        model = self.make_model()
        assert not model.is_fitted
        assert model.fit(data) is model
        assert model.is_fitted
        assert model.users_ == data.users and model.items_ == data.items
        assert model.n_items == data.n_items

    def test_not_fitted_errors(self, data: Interactions, tmp_path: Path) -> None:
        model = self.make_model()
        with pytest.raises(NotFittedError, match=type(model).__name__):
            model.score(data.histories([0]))
        with pytest.raises(NotFittedError, match="fit"):
            model.recommend(data.users.ids[:1])
        with pytest.raises(NotFittedError):
            model.save(tmp_path / "m")
        with pytest.raises(NotFittedError):
            model.similar_items(data.items.ids[:1])

    def test_fit_rejects_non_interactions(self, data: Interactions) -> None:
        with pytest.raises(DataError, match="Interactions"):
            self.make_model().fit(data.to_frame())  # type: ignore[arg-type]

    def test_refit_replaces_state(self, data: Interactions, other_data: Interactions) -> None:
        refit = self.make_model().fit(data).fit(other_data)
        fresh = self.make_model().fit(other_data)
        assert refit.items_ == other_data.items and refit.users_ == other_data.users
        assert learned_keys(refit) == learned_keys(fresh)
        hist = other_data.histories()
        np.testing.assert_allclose(
            refit.score(hist), fresh.score(hist), rtol=self.rtol, atol=self.atol
        )

    # ---------------------------------------------------------------- scores
    def test_score_shape_dtype_finite(self, fitted: Recommender, data: Interactions) -> None:
        scores = fitted.score(data.histories())
        assert scores.shape == (data.n_users, data.n_items)
        assert scores.dtype == np.float32
        assert not np.isnan(scores).any()
        assert np.all(np.isfinite(scores) | (scores == -np.inf))
        assert np.isfinite(scores).any(axis=1).all(), "a user has no recommendable item"

    def test_retrieval_form_gives_the_scores(self, fitted: Recommender, data: Interactions) -> None:
        """Where a model has a dot-product form, queries @ items.T are its scores."""
        items = fitted.retrieval_items()
        if items is None:
            with pytest.raises(RecstackError, match="no dot-product form"):
                fitted.retrieval_queries(data.histories())
            return
        hist = data.histories()
        queries = fitted.retrieval_queries(hist)
        assert items.shape[0] == data.n_items and queries.shape == (len(hist), items.shape[1])
        np.testing.assert_allclose(
            queries @ items.T, fitted.score(hist), rtol=self.rtol, atol=10 * self.atol
        )

    def test_score_is_a_fresh_array(self, fitted: Recommender, data: Interactions) -> None:
        hist = data.histories(np.arange(4))
        first = fitted.score(hist)
        expected = first.copy()
        first[:] = -np.inf  # what top-K does to excluded items: must not reach the model
        np.testing.assert_array_equal(fitted.score(hist), expected)

    def test_score_rejects_another_catalog(self, fitted: Recommender) -> None:
        with pytest.raises(DataError, match="items"):
            fitted.score(Histories.from_lists([[0]], fitted.n_items + 1))

    def test_batch_equals_single(
        self, fitted: Recommender, data: Interactions, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        users = self._users(data)
        batch = fitted.recommend(users, k=10)
        singles = [fitted.recommend([u], k=10) for u in users]
        np.testing.assert_array_equal(batch.index, np.concatenate([s.index for s in singles]))
        np.testing.assert_allclose(
            batch.scores,
            np.concatenate([s.scores for s in singles]),
            rtol=self.rtol,
            atol=self.atol,
        )
        hist = data.histories(np.arange(len(users)))
        np.testing.assert_allclose(
            fitted.score(hist),
            np.concatenate([fitted.score(hist.select([r])) for r in range(len(users))]),
            rtol=self.rtol,
            atol=self.atol,
        )
        # recommend scores in memory-bounded batches: force uneven ones (3 + 3 + 2 rows)
        monkeypatch.setattr(model_base, "batch_rows", lambda n_items, budget=0: 3)
        self._assert_same_recs(batch, fitted.recommend(users, k=10))

    # ---------------------------------------------------------------- recommend
    def test_recommendations_well_formed(self, fitted: Recommender, data: Interactions) -> None:
        k = 7
        users = self._users(data)
        recs = fitted.recommend(users, k=k)
        assert recs.index.shape == recs.scores.shape == (len(users), k)
        assert recs.index.dtype == np.int32 and recs.scores.dtype == np.float32
        assert recs.queries.tolist() == list(users) and recs.known.all()
        valid = recs.index >= 0
        # padding (if any) only at the end, scores best first, no item twice
        assert np.all(valid[:, :-1] >= valid[:, 1:])
        assert np.all(np.diff(np.where(valid, recs.scores, -np.inf), axis=1) <= 0)
        for row in recs.index:
            assert len(set(row[row >= 0].tolist())) == int((row >= 0).sum())
        scores = fitted.score(data.histories(data.users.index(users)))
        np.testing.assert_allclose(
            recs.scores[valid],
            np.take_along_axis(scores, np.maximum(recs.index, 0), axis=1)[valid],
            rtol=self.rtol,
            atol=self.atol,
        )
        frame = recs.to_frame()
        assert list(frame.columns) == ["user", "item", "rank", "score"]
        assert len(frame) == int(valid.sum())

    def test_exclude_seen(self, fitted: Recommender, data: Interactions) -> None:
        k = data.n_items
        users = data.users.ids
        seen = data.matrix
        hist = data.histories()
        on = fitted.recommend(users, k=k, exclude_seen=True)
        for r in range(len(users)):
            history = set(seen.indices[seen.indptr[r] : seen.indptr[r + 1]].tolist())
            assert history.isdisjoint(on.index[r].tolist())
        ref_idx, _ = reference_topk(fitted, hist, k, exclude_seen=True)
        np.testing.assert_array_equal(on.index, ref_idx)
        off = fitted.recommend(users, k=k, exclude_seen=False)
        ref_idx, _ = reference_topk(fitted, hist, k, exclude_seen=False)
        np.testing.assert_array_equal(off.index, ref_idx)

    def test_candidate_items(self, fitted: Recommender, data: Interactions) -> None:
        users = self._users(data)
        cand = data.items.ids[::3]
        recs = fitted.recommend(users, k=5, items=cand)
        returned = recs.item_ids[recs.index >= 0]
        assert set(returned.tolist()) <= set(cand.tolist())
        allowed = np.zeros(data.n_items, dtype=bool)
        allowed[::3] = True
        ref_idx, _ = reference_topk(
            fitted, data.histories(data.users.index(users)), 5, True, allowed
        )
        np.testing.assert_array_equal(recs.index, ref_idx)
        with pytest.raises(UnknownIdError, match="no-such-item"):
            fitted.recommend(users, k=5, items=[*cand, "no-such-item"])
        ignored = fitted.recommend(users, k=5, items=[*cand, "no-such-item"], unknown="ignore")
        self._assert_same_recs(recs, ignored)

    def test_k_validation(self, fitted: Recommender, data: Interactions) -> None:
        users = self._users(data, 2)
        for bad in (0, -3, 2.5, True, "5"):
            with pytest.raises(ConfigError, match="k must be a positive integer"):
                fitted.recommend(users, k=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="exactly one"):
            fitted.recommend(users, histories=[[]])
        with pytest.raises(ConfigError, match="exactly one"):
            fitted.recommend()

    def test_k_beyond_catalog_pads(self, fitted: Recommender, data: Interactions) -> None:
        k = data.n_items + 5
        recs = fitted.recommend(self._users(data, 3), k=k)
        assert recs.index.shape == (3, k)
        n_seen = np.diff(data.matrix.indptr)[:3]
        assert np.all((recs.index >= 0).sum(axis=1) <= data.n_items - n_seen)
        assert np.all(recs.index[:, -5:] == -1) and np.all(recs.scores[:, -5:] == -np.inf)

    # ---------------------------------------------------------------- unknown IDs
    def test_unknown_user(self, fitted: Recommender, data: Interactions) -> None:
        users = [data.users.ids[0], "no-such-user"]
        with pytest.raises(UnknownIdError, match="no-such-user"):
            fitted.recommend(users, k=5)
        recs = fitted.recommend(users, k=5, unknown="ignore")
        assert recs.known.tolist() == [True, False]
        assert recs.queries.tolist() == users
        self._assert_same_recs(_rows(recs, [0]), fitted.recommend(users[:1], k=5))
        self._assert_same_recs(_rows(recs, [1]), fitted.recommend(histories=[[]], k=5))
        with pytest.warns(UserWarning, match="no-such-user"):
            warned = fitted.recommend(users, k=5, unknown="warn")
        self._assert_same_recs(recs, warned)

    def test_unknown_item_in_history(self, fitted: Recommender, data: Interactions) -> None:
        known = list(data.items.ids[:2])
        with pytest.raises(UnknownIdError, match="no-such-item"):
            fitted.recommend(histories=[[*known, "no-such-item"]], k=5)
        expected = fitted.recommend(histories=[known], k=5)
        got = fitted.recommend(histories=[[*known, "no-such-item"]], k=5, unknown="ignore")
        self._assert_same_recs(expected, got)
        assert got.known.tolist() == [False] and got.queries.tolist() == [None]
        with pytest.warns(UserWarning, match="no-such-item"):
            warned = fitted.recommend(histories=[[*known, "no-such-item"]], k=5, unknown="warn")
        self._assert_same_recs(expected, warned)

    # ---------------------------------------------------------------- new users
    def test_new_user_history_equals_known_user(
        self, fitted: Recommender, data: Interactions
    ) -> None:
        lengths = data.user_lengths
        user = int(np.flatnonzero(lengths == lengths.max())[0])
        hist = data.histories([user])
        assert np.all(hist.values == 1.0), "the conformance data must be implicit (1.0)"
        item_ids = list(data.items.ids[hist.items])  # time order
        as_known = fitted.recommend([data.users.ids[user]], k=10)
        as_new = fitted.recommend(histories=[item_ids], k=10, times=[hist.times])
        self._assert_same_recs(as_known, as_new)
        assert as_known.known.tolist() == [True] and as_new.known.tolist() == [False]
        # a Histories batch of several new users scores like the lists, row by row
        many = [item_ids, item_ids[:1], []]
        batch = fitted.recommend(histories=many, k=10)
        for r, items in enumerate(many):
            self._assert_same_recs(_rows(batch, [r]), fitted.recommend(histories=[items], k=10))

    # ---------------------------------------------------------------- params
    def test_params_round_trip(self) -> None:
        model = self.make_model()
        params = model.get_params()
        assert list(params) == type(model).param_names()
        assert type(model)(**params).get_params() == params
        json.dumps(params)  # parameters are JSON values (config files, saved models)
        assert get_model_class(model.name) is type(model)
        assert create_model(model.name, **params).get_params() == params
        assert repr(model).startswith(f"{type(model).__name__}(")

    def test_set_params_typo(self) -> None:
        model = self.make_model()
        names = type(model).param_names()
        if names:
            typo = names[0][:-1] + "x" if len(names[0]) > 3 else names[0] + "x"
            with pytest.raises(ConfigError, match=f"did you mean {names[0]!r}"):
                model.set_params(**{typo: 1})
            value = model.get_params()[names[0]]
            assert model.set_params(**{names[0]: value}) is model
        with pytest.raises(ConfigError, match="has no parameter 'zzz_not_a_param'"):
            model.set_params(zzz_not_a_param=1)
        with pytest.raises(ConfigError, match="zzz_not_a_param"):
            create_model(model.name, zzz_not_a_param=1)

    # ---------------------------------------------------------------- persistence
    def test_save_load_round_trip(
        self, fitted: Recommender, data: Interactions, tmp_path: Path
    ) -> None:
        path = fitted.save(tmp_path / "model")
        loaded = Recommender.load(path)
        assert type(loaded) is type(fitted)
        assert type(fitted).load(path).get_params() == fitted.get_params()
        assert loaded.get_params() == fitted.get_params()
        assert loaded.users_ == fitted.users_ and loaded.items_ == fitted.items_
        assert learned_keys(loaded) >= learned_keys(fitted)
        hist = data.histories()
        np.testing.assert_allclose(loaded.score(hist), fitted.score(hist), rtol=1e-6, atol=1e-6)
        users = data.users.ids
        self._assert_same_recs(fitted.recommend(users, k=10), loaded.recommend(users, k=10))
        new = [list(data.items.ids[:3])]
        self._assert_same_recs(
            fitted.recommend(histories=new, k=10), loaded.recommend(histories=new, k=10)
        )

    def test_optimize_inference_keeps_the_scores(
        self, fitted: Recommender, data: Interactions, tmp_path: Path
    ) -> None:
        """A service calls optimize_inference() once after loading: same scores after,
        and a torch sequence model really switches to its traced network."""
        served = Recommender.load(fitted.save(tmp_path / "model"))
        changed = served.optimize_inference()
        assert isinstance(changed, bool)
        if hasattr(fitted, "_net"):
            assert changed
        hist = data.histories()
        np.testing.assert_allclose(served.score(hist), fitted.score(hist), rtol=1e-4, atol=1e-5)
        anonymous = Histories.from_lists([[0, 3, 5]], n_items=fitted.n_items)
        np.testing.assert_allclose(
            served.score(anonymous), fitted.score(anonymous), rtol=1e-4, atol=1e-5
        )

    def test_saved_model_has_no_pickle(self, fitted: Recommender, tmp_path: Path) -> None:
        path = fitted.save(tmp_path / "model")
        files = [p for p in path.rglob("*") if p.is_file()]
        assert (path / "config.json").is_file()
        assert not [p for p in files if p.suffix in PICKLE_SUFFIXES]
        for p in files:
            if p.suffix in (".npz", ".npy"):
                loaded = np.load(p, allow_pickle=False)
                if isinstance(loaded, np.lib.npyio.NpzFile):
                    with loaded:
                        for key in loaded.files:
                            assert not loaded[key].dtype.hasobject
        config = json.loads((path / "config.json").read_text())
        assert config["model"] == fitted.name
        assert config["params"] == fitted.get_params()

    # ---------------------------------------------------------------- similar items
    def test_similar_items(self, fitted: Recommender, data: Interactions) -> None:
        queries = list(data.items.ids[:3])
        try:
            sims = fitted.similar_items(queries, k=5)
        except RecstackError as exc:  # the contract allows a model without item vectors
            assert not isinstance(exc, NotFittedError)
            return
        assert sims.index.shape == (3, 5)
        assert sims.known.all() and sims.queries.tolist() == queries
        for r in range(3):
            assert r not in sims.index[r].tolist()  # query r is item index r
        assert np.all(np.diff(sims.scores, axis=1) <= 0)
        with pytest.raises(UnknownIdError, match="no-such-item"):
            fitted.similar_items(["no-such-item"], k=5)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            unknown = fitted.similar_items([queries[0], "no-such-item"], k=5, unknown="ignore")
        assert unknown.known.tolist() == [True, False]
        assert unknown.queries.tolist() == [queries[0], "no-such-item"]
        assert np.all(unknown.index[1] == -1) and np.all(unknown.scores[1] == -np.inf)
        np.testing.assert_array_equal(unknown.index[0], sims.index[0])


def cycle_data(
    n_items: int = 30, n_users: int = 300, seed: int = 0
) -> tuple[Interactions, dict[str, str]]:
    """The planted next-item rule: users walk one cycle through the whole catalog (a fixed
    random order), starting anywhere, 5 to 20 steps, so item ``succ[i]`` always follows item
    ``i`` and no history repeats an item (the successor is never excluded as seen). Returns
    the data and ``succ`` keyed by external item ID."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_items)
    succ = np.empty(n_items, dtype=np.int64)
    succ[order] = np.roll(order, -1)
    rows = []
    for u in range(n_users):
        item = int(rng.integers(n_items))
        for t in range(int(rng.integers(5, 21))):
            rows.append((u, item, t))
            item = int(succ[item])
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return Interactions.from_frame(frame), {str(i): str(s) for i, s in enumerate(succ)}
