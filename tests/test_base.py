"""The Recommender base class: persistence of every kind of state, fit/score guards,
similar_items, registry errors, and the conformance suite run on a small co-occurrence
model (which also shows the suite and the checkerboard fixture can fail)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from conformance import (
    RecommenderConformance,
    checkerboard_data,
    checkerboard_top1,
    planted_data,
)
from recstack.data import Histories, Interactions
from recstack.errors import ConfigError, DataError, ModelFitError, NotFittedError, UnknownIdError
from recstack.models import (
    Popularity,
    Random,
    Recommendations,
    Recommender,
    create_model,
    get_model_class,
    model_names,
)
from recstack.models.base import batch_rows
from recstack.models.registry import REGISTRY


class Cooc(Recommender):
    """Item co-occurrence: an item scores the number of co-users it has with the history."""

    name = "test-cooc"

    def __init__(self, shrink: float = 0.0, tag: str = "x") -> None:
        self.shrink = shrink
        self.tag = tag

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        x = train.matrix.copy()
        x.data[:] = 1.0
        cooc = (x.T @ x).tocsc()
        cooc.setdiag(0)
        cooc.eliminate_zeros()
        self.cooc_ = cooc  # csc_matrix
        self.item_users_ = sp.csr_array(x.T)  # the array kind, not the matrix kind
        self.scale_ = np.float32(1.0 / (1.0 + self.shrink))  # a numpy scalar
        self.n_events_ = int(train.n_events)  # JSON values
        self.meta_ = {"kind": "cooc", "shape": [train.n_users, train.n_items], "ok": True}
        self._cache = "derived state, not saved"

    def _score(self, histories: Histories) -> np.ndarray:
        h = histories.to_csr()
        h.data[:] = 1.0
        return (h @ self.cooc_).toarray() * self.scale_

    def item_vectors(self) -> np.ndarray:
        return self.item_users_.toarray()


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the test models under their names (save/load go through the registry)."""
    for klass in (Cooc, Leaky, Broken, Unsaveable):
        monkeypatch.setitem(REGISTRY, klass.name, (f"{__name__}:{klass.__name__}", "test"))


class TestCoocConformance(RecommenderConformance):
    @pytest.fixture(autouse=True)
    def _register(self, registered: None) -> None:
        pass

    def make_model(self) -> Recommender:
        return Cooc(shrink=1.0)


@pytest.fixture(scope="module")
def data() -> Interactions:
    return planted_data()


# --------------------------------------------------------------------- the fixtures
def test_checkerboard_is_well_formed() -> None:
    n = 50
    board = checkerboard_data(n)
    assert (board.n_users, board.n_items) == (n, n)
    assert board.users.ids.tolist() == board.items.ids.tolist() == [str(i) for i in range(n)]
    x = board.matrix.toarray()
    u, i = np.indices((n, n))
    np.testing.assert_array_equal(x, ((u % 2 == i % 2) & (u != i)).astype(np.float32))
    assert np.all(x.sum(axis=1) == n // 2 - 1) and np.all(np.diag(x) == 0)
    # brute-force item co-occurrence: item u is the best unseen item of user u, alone
    scores = x @ (x.T @ x)
    scores[x > 0] = -np.inf
    best = np.argsort(-scores, axis=1, kind="stable")
    np.testing.assert_array_equal(best[:, 0], np.arange(n))
    assert np.all(scores[np.arange(n), best[:, 1]] < scores[np.arange(n), best[:, 0]])
    with pytest.raises(ValueError, match="even n"):
        checkerboard_data(7)


def test_checkerboard_separates_collaborative_from_popularity() -> None:
    board = checkerboard_data()
    assert checkerboard_top1(Cooc().fit(board), board) == 1.0
    # every item has n/2 - 1 users, so popularity returns the smallest unseen index:
    # item 0 for user 0 and the odd users, item 1 for the other even users; one hit
    assert checkerboard_top1(Popularity().fit(board), board) == pytest.approx(1 / 50)


# --------------------------------------------------------------------- the suite can fail
class BatchDependent(Cooc):
    def _score(self, histories: Histories) -> np.ndarray:
        s = super()._score(histories)
        return s - s.mean()  # depends on the other rows of the batch


class LosesStateOnSave(Cooc):
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        super()._fit(train, valid)
        self._boost = np.arange(train.n_items, dtype=np.float32)  # private: not saved

    def _after_load(self) -> None:
        self._boost = np.zeros(self.n_items, dtype=np.float32)

    def _score(self, histories: Histories) -> np.ndarray:
        return super()._score(histories) + self._boost


class CachesAcrossFits(Cooc):
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        super()._fit(train, valid)
        if not hasattr(self, "_first_items"):
            self._first_items = train.n_items
        self.offset_ = np.float32(self._first_items)

    def _score(self, histories: Histories) -> np.ndarray:
        return super()._score(histories) + self.offset_ * np.arange(self.n_items)


def test_suite_catches_batch_dependence(data: Interactions, monkeypatch) -> None:
    suite = TestCoocConformance()
    with pytest.raises(AssertionError):
        suite.test_batch_equals_single(BatchDependent().fit(data), data, monkeypatch)


def test_suite_catches_state_lost_on_save(
    data: Interactions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LosesStateOnSave, "name", "test-loses")
    monkeypatch.setitem(REGISTRY, "test-loses", (f"{__name__}:LosesStateOnSave", "test"))
    with pytest.raises(AssertionError):
        TestCoocConformance().test_save_load_round_trip(
            LosesStateOnSave().fit(data), data, tmp_path
        )


def test_suite_catches_state_kept_across_fits(data: Interactions) -> None:
    suite = TestCoocConformance()
    suite.make_model = CachesAcrossFits  # type: ignore[method-assign]
    with pytest.raises(AssertionError):
        suite.test_refit_replaces_state(data, planted_data(n_users=45, n_items=30, seed=1))


# --------------------------------------------------------------------- persistence
def test_save_load_every_kind_of_state(
    registered: None, data: Interactions, tmp_path: Path
) -> None:
    model = Cooc(shrink=3.0, tag="y").fit(data)
    loaded = Recommender.load(model.save(tmp_path / "m"))
    assert isinstance(loaded, Cooc) and loaded.get_params() == {"shrink": 3.0, "tag": "y"}
    assert type(loaded.cooc_) is sp.csc_matrix and type(loaded.item_users_) is sp.csr_array
    assert (loaded.cooc_ != model.cooc_).nnz == 0
    np.testing.assert_array_equal(loaded.item_users_.toarray(), model.item_users_.toarray())
    assert type(loaded.scale_) is np.float32 and loaded.scale_ == model.scale_
    assert loaded.n_events_ == model.n_events_ and type(loaded.n_events_) is int
    assert loaded.meta_ == model.meta_
    assert not hasattr(loaded, "_cache")  # private derived state is not saved
    np.testing.assert_array_equal(loaded.history_.items, model.history_.items)
    np.testing.assert_array_equal(loaded.history_.times, model.history_.times)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["state"] == {"n_events_": model.n_events_, "meta_": model.meta_}
    assert config["items_sha256"] == data.items.checksum()


class Unsaveable(Cooc):
    name = "test-unsaveable"

    def __init__(self, state: str = "frame") -> None:
        self.state = state
        self.shrink, self.tag = 0.0, "x"  # read by Cooc._fit

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        super()._fit(train, valid)
        self.extra_ = {
            "frame": pd.DataFrame({"a": [1]}),
            "tuple": (1, 2),
            "objects": np.array(["a", None], dtype=object),
            "keys": {1: "int keys do not survive JSON"},
        }[self.state]


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ("frame", "cannot save learned attribute 'extra_' of type DataFrame"),
        ("tuple", "cannot save learned attribute 'extra_' of type tuple"),
        ("keys", "cannot save learned attribute 'extra_' of type dict"),
        ("objects", "learned array 'extra_' has dtype object"),
    ],
)
def test_save_refuses_state_it_cannot_restore(
    registered: None, data: Interactions, tmp_path: Path, state: str, message: str
) -> None:
    model = Unsaveable(state=state).fit(data)
    with pytest.raises(ConfigError, match=message):
        model.save(tmp_path / "m")
    assert not (tmp_path / "m" / "config.json").exists()


def test_save_refuses_unregistered_classes(data: Interactions, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Cooc is not registered as 'test-cooc'"):
        Cooc().fit(data).save(tmp_path / "a")

    class MyPopularity(Popularity):  # inherits name "popularity": load would build the parent
        pass

    with pytest.raises(ConfigError, match="MyPopularity is not registered as 'popularity'"):
        MyPopularity().fit(data).save(tmp_path / "b")


def test_save_refuses_non_json_parameters(data: Interactions, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="parameters must be JSON values"):
        Random(seed=np.int64(3)).fit(data).save(tmp_path / "m")  # type: ignore[arg-type]


def test_load_errors(data: Interactions, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a saved model directory"):
        Recommender.load(tmp_path / "nothing")
    path = Popularity().fit(data).save(tmp_path / "pop")
    with pytest.raises(DataError, match="holds a Popularity, not a Random"):
        Random.load(path)
    assert isinstance(Popularity.load(path), Popularity)
    cfg = path / "config.json"
    good = json.loads(cfg.read_text())

    def write(**changes: object) -> None:
        cfg.write_text(json.dumps({**good, **changes}))

    write(format=99)
    with pytest.raises(DataError, match="unsupported format 99"):
        Recommender.load(path)
    write(model="populartiy")
    with pytest.raises(ConfigError, match="unknown model 'populartiy'; did you mean 'popularity'"):
        Recommender.load(path)
    write(params={"half_life": 3})
    with pytest.raises(ConfigError, match="did you mean 'half_life_days'"):
        Recommender.load(path)
    write(items_sha256="0" * 64)
    with pytest.raises(DataError, match=r"items\.parquet does not match its checksum"):
        Recommender.load(path)
    cfg.write_text(json.dumps({k: v for k, v in good.items() if k != "model"}))
    with pytest.raises(DataError, match="no 'model' entry"):
        Recommender.load(path)
    cfg.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        Recommender.load(path)
    write()
    np.savez(path / "arrays.npz", **dict(np.load(path / "arrays.npz")), **{"w_:bogus": [1]})
    with pytest.raises(DataError, match=r"unreadable entries for 'w_': \['bogus'\]"):
        Recommender.load(path)


def test_other_sparse_formats_load_as_csr(
    registered: None, data: Interactions, tmp_path: Path
) -> None:
    model = Broken("coo").fit(data)
    loaded = Recommender.load(model.save(tmp_path / "m"))
    assert type(loaded.extra_) is sp.csr_array
    np.testing.assert_array_equal(loaded.extra_.toarray(), np.eye(3, 4, 1))


def test_scalar_state_survives(data: Interactions, tmp_path: Path) -> None:
    model = Popularity(half_life_days=7).fit(data)
    loaded = Recommender.load(model.save(tmp_path / "m"))
    assert loaded.get_params() == {"half_life_days": 7}
    np.testing.assert_array_equal(loaded.item_scores_, model.item_scores_)


# --------------------------------------------------------------------- fit / score guards
class Broken(Cooc):
    name = "test-broken"

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.shrink, self.tag = 0.0, "x"  # read by Cooc._fit

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        super()._fit(train, valid)
        if self.mode == "nan":
            self.weights_ = np.full(3, np.nan, dtype=np.float32)
        elif self.mode == "raise":
            raise RuntimeError("solver failed")
        elif self.mode == "extra":
            self.extra_ = np.ones(2)
        elif self.mode == "coo":
            self.extra_ = sp.coo_array(np.eye(3, 4, 1))


def test_failed_fit_leaves_no_fitted_state(data: Interactions) -> None:
    model = Broken("nan")
    with pytest.raises(ModelFitError, match="non-finite values in 'weights_'"):
        model.fit(data)
    assert not model.is_fitted and not hasattr(model, "cooc_")
    model = Broken().fit(data)
    model.set_params(mode="raise")
    with pytest.raises(RuntimeError, match="solver failed"):
        model.fit(data)
    assert not model.is_fitted and not hasattr(model, "cooc_")  # no stale state from before
    with pytest.raises(NotFittedError):
        model.recommend(data.users.ids[:1])


def test_refit_drops_attributes_of_the_former_fit(data: Interactions) -> None:
    model = Broken("extra").fit(data)
    assert hasattr(model, "extra_")
    model.set_params(mode="ok").fit(data)
    assert not hasattr(model, "extra_")
    assert model._cache == "derived state, not saved"  # private attributes are the model's


def test_fit_validation(data: Interactions) -> None:
    with pytest.raises(DataError, match="no events"):
        Popularity().fit(data.select(np.zeros(data.n_events, dtype=bool)))
    other = planted_data(n_items=30, seed=1)
    with pytest.raises(DataError, match="different item ID maps"):
        Popularity().fit(data, valid=other)
    model = Popularity().fit(data)
    with pytest.raises(ConfigError):
        model.set_params(half_life_days=-1).fit(other)
    assert model.items_ == data.items  # a rejected refit keeps the former fit


class Leaky(Recommender):
    """Returns views of its learned state from _score (the base class must copy)."""

    name = "test-leaky"

    def __init__(self, readonly: bool = False) -> None:
        self.readonly = readonly

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self.w_ = np.arange(train.n_items, dtype=np.float32)

    def _score(self, histories: Histories) -> np.ndarray:
        shape = (len(histories), self.n_items)
        if self.readonly:
            return np.broadcast_to(self.w_, shape)
        return self.w_.reshape(1, -1) if len(histories) == 1 else np.tile(self.w_, (shape[0], 1))


@pytest.mark.parametrize("readonly", [False, True])
def test_scores_never_alias_learned_state(data: Interactions, readonly: bool) -> None:
    model = Leaky(readonly).fit(data)
    before = model.w_.copy()
    top = model.n_items - 1
    first = model.recommend(histories=[[data.items.ids[top]]], k=3)
    np.testing.assert_array_equal(model.w_, before)
    assert first.index[0].tolist() == [top - 1, top - 2, top - 3]
    scores = model.score(Histories.from_lists([[0]], model.n_items))
    scores[:] = 0
    np.testing.assert_array_equal(model.w_, before)


def test_score_shape_checked(data: Interactions) -> None:
    model = Leaky().fit(data)
    model.w_ = model.w_[:-1]
    with pytest.raises(Exception, match=r"returned shape \(1, 39\), expected \(1, 40\)"):
        model.score(Histories.from_lists([[0]], 40))


def test_user_histories_of_unknown_users(data: Interactions) -> None:
    model = Popularity().fit(data)
    h = model.user_histories(["u3", "nobody", "u1"], unknown="ignore")
    assert h.users.tolist() == [3, -1, 1]
    assert h.lengths.tolist() == [data.user_lengths[3], 0, data.user_lengths[1]]
    np.testing.assert_array_equal(h.select([0]).items, data.histories([3]).items)
    with pytest.raises(UnknownIdError, match="'nobody'"):
        model.user_histories(["nobody"])
    assert model.recommend([], k=3).index.shape == (0, 3)
    with pytest.raises(ConfigError, match="pass a Histories as histories="):
        model.recommend(data.histories([1]))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="times= goes with histories= given as lists of IDs"):
        model.recommend(["u1"], times=[[0.0]])


# --------------------------------------------------------------------- similar items
def test_similar_items_closed_form(data: Interactions) -> None:
    model = Cooc().fit(data)
    x = (data.matrix.toarray().T > 0).astype(np.float64)  # item x user
    norm = np.linalg.norm(x, axis=1)
    cos = (x @ x.T) / np.outer(norm, norm)
    np.fill_diagonal(cos, -np.inf)
    queries = [5, 17, 33]
    sims = model.similar_items(data.items.ids[queries], k=4)
    for r, q in enumerate(queries):
        order = np.lexsort((np.arange(data.n_items), -cos[q]))[:4]
        np.testing.assert_array_equal(sims.index[r], order)
        np.testing.assert_allclose(sims.scores[r], cos[q, order], rtol=1e-6)
    assert sims.item_ids[0].tolist() == data.items.ids[sims.index[0]].tolist()


def test_similar_items_unknown_and_missing_vectors(data: Interactions) -> None:
    model = Cooc().fit(data)
    with pytest.warns(UserWarning, match="'gone'"):
        sims = model.similar_items(["gone", 1003], k=2, unknown="warn")
    assert sims.queries.tolist() == ["gone", "1003"] and sims.known.tolist() == [False, True]
    assert sims.index[0].tolist() == [-1, -1] and np.all(sims.scores[0] == -np.inf)
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        model.similar_items([1003], k=0)
    with pytest.raises(Exception, match="Popularity has no item representation"):
        Popularity().fit(data).similar_items([1003])


# --------------------------------------------------------------------- recommendations
def test_recommendations_frame_leaves_padding_out() -> None:
    from recstack.data import IdMap

    recs = Recommendations(
        np.array(["u1", None], dtype=object),
        np.array([[2, 0, -1], [1, -1, -1]], dtype=np.int32),
        np.array([[0.9, 0.5, -np.inf], [0.7, -np.inf, -np.inf]], dtype=np.float32),
        IdMap(["a", "b", "c"], "item"),
        np.array([True, False]),
    )
    assert len(recs) == 2
    assert recs.item_ids.tolist() == [["c", "a", None], ["b", None, None]]
    frame = recs.to_frame()
    assert frame["user"].iloc[:2].tolist() == ["u1", "u1"] and pd.isna(frame["user"].iloc[2])
    assert frame.drop(columns="user").to_dict("list") == {
        "item": ["c", "a", "b"],
        "rank": [1, 2, 1],
        "score": pytest.approx([0.9, 0.5, 0.7]),
    }


def test_batch_rows() -> None:
    assert batch_rows(10, budget=1000) == 100
    assert batch_rows(10**9) == 1
    assert batch_rows(1) == 8192 and batch_rows(0) == 8192


# --------------------------------------------------------------------- params / registry
def test_param_introspection() -> None:
    assert Recommender.param_names() == []
    assert Cooc.param_names() == ["shrink", "tag"]
    assert Cooc.param_defaults() == {"shrink": 0.0, "tag": "x"}
    assert repr(Cooc(shrink=2)) == "Cooc(shrink=2, tag='x')"
    with pytest.raises(ConfigError, match=r"Cooc has no parameter 'shrnk'; did you mean 'shrink'"):
        Cooc().set_params(shrnk=1)
    with pytest.raises(ConfigError, match=r"no parameter 'zzz' \(parameters: shrink, tag\)"):
        Cooc.check_param_names(["zzz"])


def test_registry_errors() -> None:
    assert {"popularity", "random"} <= set(model_names())
    with pytest.raises(ConfigError, match="unknown model 'popularty'; did you mean 'popularity'"):
        get_model_class("popularty")
    with pytest.raises(ConfigError, match=r"unknown model 'zzzz' \(known: popularity, random"):
        get_model_class("zzzz")
    with pytest.raises(ConfigError, match="unknown model None"):
        get_model_class(None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="did you mean 'half_life_days'"):
        create_model("popularity", half_life_day=3)
    assert create_model("random", seed=4).get_params() == {"seed": 4}


def test_every_registered_model_knows_its_name() -> None:
    # save() writes model.name and load() resolves it: they must round trip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in model_names():
            klass = get_model_class(name)
            assert issubclass(klass, Recommender) and klass.name == name


def test_every_registered_class_is_exported_by_name() -> None:
    import recstack.models as models
    from recstack.models.registry import REGISTRY

    for name, (target, _) in REGISTRY.items():
        cls_name = target.split(":")[1]
        assert getattr(models, cls_name) is models.get_model_class(name)
        assert cls_name in models.__all__
    with pytest.raises(AttributeError, match="NoSuchModel"):
        models.NoSuchModel  # noqa: B018


def test_an_empty_history_gets_the_popular_items() -> None:
    from recstack.models import ItemKNN

    log = pd.DataFrame(
        {"user_id": [1, 1, 1, 2, 2, 3, 3, 3, 4], "item_id": list("abcabdabe")}
    )  # a and b: 3 users each; c, d and e: 1
    data = Interactions.from_frame(log)
    model = ItemKNN().fit(data)
    recs = model.recommend(histories=[[], ["c"]], k=3)
    assert recs.item_ids[0].tolist()[:2] == ["a", "b"]
    np.testing.assert_array_equal(recs.scores[0][:2], [3, 3])
    assert recs.item_ids[1][0] in {"a", "b"}  # the model's own list for a real history
    assert not np.allclose(recs.scores[1][:2], [3, 3])
