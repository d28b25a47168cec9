"""Blend: the conformance suite, normalization against a naive per-row reference, the
weights chosen on validation against a brute-force search with the evaluator, the closed
form of the blended scores (with ``-inf`` items), save/load checks, add_items, bad
parameters and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import rankdata
from typer.testing import CliRunner

from conformance import RecommenderConformance, planted_data
from recstack.cli import app
from recstack.data import Interactions, Split, leave_last_out, load_dataset
from recstack.errors import ConfigError, DataError
from recstack.evaluation import evaluate
from recstack.models import ItemKNN, Popularity, Recommender
from recstack.models.blend import Blend, mix, normalize_scores, simplex_grid
from test_content import category_data, with_text


@pytest.fixture(autouse=True)
def cache_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSTACK_CACHE", str(tmp_path / "cache"))


class TestBlend(RecommenderConformance):
    def make_model(self) -> Recommender:
        return Blend("itemknn,popularity", normalize="zscore")


class TestBlendRankFixedWeights(RecommenderConformance):
    """Rank normalization, dict entries, and a sub-model with weight 0 (never scored)."""

    def make_model(self) -> Recommender:
        models: list[str | dict[str, Any]] = [
            {"name": "ease", "params": {"l2": 5.0}},
            "random",
            {"name": "popularity"},
        ]
        return Blend(models, normalize="rank", weights=[0.6, 0.0, 0.4])


@pytest.fixture(scope="module")
def split() -> Split:
    return leave_last_out(planted_data(n_users=300))


# ---------------------------------------------------------------------- normalization
def _naive_normalize(row: np.ndarray, method: str) -> np.ndarray:
    """One row, the obvious way in float64."""
    finite = np.isfinite(row)
    v = row[finite].astype(np.float64)
    if method == "zscore":
        z = (v - v.mean()) / v.std() if len(v) and v.std() > 0 else np.zeros_like(v)
    elif method == "minmax":
        span = v.max() - v.min() if len(v) else 0.0
        z = (v - v.min()) / span if span > 0 else np.zeros_like(v)
    elif method == "rank":
        z = (rankdata(v) - 1) / max(len(v) - 1, 1)
    else:
        z = v
    out = np.full(len(row), z.min() if len(z) else 0.0)
    out[finite] = z
    return out


@pytest.mark.parametrize("method", ["zscore", "minmax", "rank", "none"])
def test_normalize_matches_a_naive_row_by_row_reference(method: str) -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(-3, 4, size=(6, 9)).astype(np.float32)  # many ties
    scores[0, [1, 4]] = -np.inf
    scores[1] = -np.inf  # no finite score
    scores[2] = 2.5  # constant
    scores[3, :-1] = -np.inf  # one finite score
    scores[4, 2] = np.nan
    z, finite = normalize_scores(scores, method)
    assert z.dtype == np.float32 and np.all(np.isfinite(z))
    np.testing.assert_array_equal(finite, np.isfinite(scores))
    expected = np.stack([_naive_normalize(r, method) for r in scores])
    np.testing.assert_allclose(z, expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(ConfigError, match="normalize must be one of"):
        normalize_scores(scores, "softmax")


def test_mix_is_the_weighted_sum_and_minus_inf_only_where_no_weighted_model_scores() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    a[0, 0] = b[0, 0] = -np.inf  # excluded by both
    a[1, 1] = -np.inf  # excluded by one: its normalized minimum
    b[2, 2] = -np.inf  # excluded by the model that gets weight 0 below
    (za, fa), (zb, fb) = normalize_scores(a, "zscore"), normalize_scores(b, "zscore")
    out = mix([za, zb], [fa, fb], [0.3, 0.7])
    expected = 0.3 * za.astype(np.float64) + 0.7 * zb
    expected[0, 0] = -np.inf
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out[1, 1] == pytest.approx(0.3 * za[1].min() + 0.7 * zb[1, 1], rel=1e-6)
    only_a = mix([za, zb], [fa, fb], [1.0, 0.0])
    np.testing.assert_array_equal(only_a, np.where(fa, za, -np.inf))


def test_simplex_grid() -> None:
    for m, (size, step) in {1: (1, 1), 2: (21, 0.05), 3: (66, 0.1), 4: (56, 0.2)}.items():
        g = simplex_grid(m)
        assert g.shape == (size, m) and np.all(g >= 0)
        np.testing.assert_allclose(g.sum(axis=1), 1.0)
        assert len({tuple(r) for r in np.round(g / step).astype(int)}) == size  # distinct
        np.testing.assert_allclose(g / step, np.round(g / step), atol=1e-9)  # on the step
        assert all((g == np.eye(m)[i]).all(axis=1).any() for i in range(m))  # vertices
    assert (simplex_grid(2) == 0.5).all(axis=1).any()
    assert len(simplex_grid(10)) <= 100


# ---------------------------------------------------------------------- fitted weights
def test_weights_go_to_the_informative_model(split: Split) -> None:
    model = Blend(["random", "itemknn", "popularity"]).fit(split.train, split.valid)
    assert split.valid is not None and model.n_valid_users_ == split.valid.n_users
    alone = model.model_valid_ndcg_
    assert alone is not None and alone[1] > 3 * alone[0]  # the planted blocks vs random
    assert model.weights_[0] <= 0.1 and model.weights_[1] >= 0.7
    assert model.valid_ndcg_ is not None and model.valid_ndcg_ >= max(alone)
    # the same number as the evaluator's, for the same scores and users
    ev = evaluate(model, split, on="valid", ks=(10,), progress=False).metrics["ndcg@10"]
    assert model.valid_ndcg_ == pytest.approx(ev, abs=1e-12)


def test_chosen_weights_are_the_brute_force_best_on_valid(split: Split) -> None:
    """Each grid point refitted with fixed weights and evaluated: the blend's choice is the
    best one (ties: the most even), with the same validation NDCG."""
    models = "itemknn,popularity"
    grid = simplex_grid(2)
    ndcg = np.array(
        [
            evaluate(
                Blend(models, weights=w.tolist()).fit(split.train),
                split,
                on="valid",
                ks=(10,),
                progress=False,
            ).metrics["ndcg@10"]
            for w in grid
        ]
    )
    assert ndcg.max() > ndcg.min() + 0.02  # the weights matter on this data
    best = np.flatnonzero(np.isclose(ndcg, ndcg.max(), rtol=0, atol=1e-12))
    expected = grid[best[np.argmin(np.abs(grid[best, 0] - 0.5))]]
    model = Blend(models).fit(split.train, split.valid)
    np.testing.assert_allclose(model.weights_, expected)
    assert model.valid_ndcg_ == pytest.approx(ndcg.max(), abs=1e-12)
    assert model.model_valid_ndcg_ == pytest.approx([ndcg[-1], ndcg[0]], abs=1e-12)


def test_sub_models_stay_fitted_on_train(split: Split) -> None:
    model = Blend("ease,itemknn").fit(split.train, split.valid)
    ease = model.models_[0]
    assert ease.users_ == split.train.users
    alone = ItemKNN().fit(split.train)
    hist = split.test_history().histories()
    np.testing.assert_array_equal(model.models_[1].score(hist), alone.score(hist))


def test_without_valid_or_with_fixed_weights(split: Split) -> None:
    equal = Blend("itemknn,popularity,random").fit(split.train)
    np.testing.assert_allclose(equal.weights_, [1 / 3] * 3)
    assert equal.valid_ndcg_ is None and equal.model_valid_ndcg_ is None
    fixed = Blend("itemknn,popularity", weights=[0.25, 0.75]).fit(split.train, split.valid)
    np.testing.assert_array_equal(fixed.weights_, [0.25, 0.75])
    assert fixed.valid_ndcg_ is None and fixed.n_valid_users_ == 0


# ---------------------------------------------------------------------- scores
def test_scores_are_the_weighted_sum_of_normalized_sub_scores() -> None:
    """Closed form, including items without text that ContentKNN scores -inf."""
    pytest.importorskip("sklearn")
    data = with_text(planted_data(), 4)
    assert data.item_features is not None
    feats = data.item_features.copy()
    feats.loc[feats.index[[3, 7]], "title"] = ""  # no text: -inf in content-knn
    data = Interactions(
        data.users, data.items, data.user, data.item, data.value, data.time,
        item_features=feats, presorted=True,
    )  # fmt: skip
    hist = data.histories()
    content = [{"name": "content-knn", "params": {"encoder": "tfidf"}}]
    for method in ("zscore", "minmax", "rank", "none"):
        model = Blend([*content, "popularity"], normalize=method, weights=[0.4, 0.6]).fit(data)
        s_content = model.models_[0].score(hist)
        assert np.all(s_content[:, [3, 7]] == -np.inf)
        expected = 0.4 * np.stack([_naive_normalize(r, method) for r in s_content])
        expected += 0.6 * np.stack(
            [_naive_normalize(r, method) for r in Popularity().fit(data).score(hist)]
        )
        np.testing.assert_allclose(model.score(hist), expected, rtol=1e-5, atol=1e-5)
    # items that every weighted model scores -inf stay -inf
    only = Blend([*content, "popularity"], weights=[1.0, 0.0]).fit(data)
    assert np.all(only.score(hist)[:, [3, 7]] == -np.inf)
    assert "3" not in set(only.recommend(data.users.ids, k=40).item_ids.ravel().tolist())


def test_a_zero_weight_model_is_not_scored(split: Split, monkeypatch: pytest.MonkeyPatch) -> None:
    model = Blend("itemknn,random", normalize="zscore", weights=[1.0, 0.0]).fit(split.train)

    def fail(*args: object) -> None:
        raise AssertionError("a model with weight 0 was scored")

    monkeypatch.setattr(model.models_[1], "score", fail)
    hist = split.train.histories()
    z, _ = normalize_scores(model.models_[0].score(hist), "zscore")
    np.testing.assert_array_equal(model.score(hist), z)


# ---------------------------------------------------------------------- persistence
def test_save_load_keeps_weights_and_checks_sub_models(split: Split, tmp_path: Path) -> None:
    model = Blend("itemknn,popularity").fit(split.train, split.valid)
    path = model.save(tmp_path / "blend")
    assert (path / "models" / "0-itemknn" / "config.json").is_file()
    assert (path / "models" / "1-popularity" / "config.json").is_file()
    loaded = Recommender.load(path)
    assert isinstance(loaded, Blend)
    np.testing.assert_array_equal(loaded.weights_, model.weights_)
    assert loaded.valid_ndcg_ == model.valid_ndcg_
    hist = split.test_history().histories()
    np.testing.assert_array_equal(loaded.score(hist), model.score(hist))

    other = planted_data(n_users=45, n_items=30, n_blocks=3, seed=1)
    shutil.rmtree(path / "models" / "0-itemknn")
    ItemKNN().fit(other).save(path / "models" / "0-itemknn")
    with pytest.raises(DataError, match="item map does not match"):
        Recommender.load(path)
    shutil.rmtree(path / "models" / "0-itemknn")
    Popularity().fit(split.train).save(path / "models" / "0-itemknn")
    with pytest.raises(DataError, match="holds a 'popularity' model, the blend expects 'itemknn'"):
        Recommender.load(path)
    shutil.rmtree(path / "models" / "0-itemknn")
    with pytest.raises(DataError, match="0-itemknn: not a saved model directory"):
        Recommender.load(path)


# ---------------------------------------------------------------------- cold items
def test_add_items_forwards_to_every_sub_model(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    data, cold, _ = category_data(n_warm=6, n_cold=3, users_per=12)
    assert data.item_features is not None
    feats = data.item_features.assign(title=data.item_features["description"])
    data = Interactions.from_frame(data.to_frame(), item_features=feats)
    models = [
        {"name": "content-knn", "params": {"encoder": "tfidf", "text_columns": "description"}},
        {"name": "als-text", "params": {"encoder": "tfidf", "text_columns": "description,title"}},
    ]
    model = Blend(models).fit(data)
    n_old = model.n_items

    # all or nothing: the second sub-model needs 'title', the first does not
    with pytest.raises(DataError, match="title"):
        model.add_items(cold)
    assert model.n_items == n_old and all(m.n_items == n_old for m in model.models_)

    assert model.add_items(cold.assign(title=cold["description"])) is model
    assert model.n_items == n_old + len(cold)
    assert all(m.items_ == model.items_ for m in model.models_)
    assert list(model.items_.ids[n_old:]) == list(cold.index)
    hist = model.user_histories(data.users.ids)
    subs = [normalize_scores(m.score(hist), "rank") for m in model.models_]
    expected = mix([z for z, _ in subs], [f for _, f in subs], model.weights_)
    np.testing.assert_array_equal(model.score(hist), expected)
    loaded = Recommender.load(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.score(hist), expected)

    no_cold = Blend(["itemknn", models[0]]).fit(data)
    with pytest.raises(ConfigError, match=r"sub-model 0 \('itemknn', ItemKNN\) has no add_items"):
        no_cold.add_items(cold)


# ---------------------------------------------------------------------- bad parameters
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"models": "ease,itemnn"}, r"models: unknown model 'itemnn'; did you mean 'itemknn'"),
        ({"models": [{"name": "ease", "params": {"l3": 1}}]}, "EASE has no parameter 'l3'"),
        ({"models": [{"name": "ease", "params": {"l2": -1.0}}]}, "models: ease: l2"),
        ({"models": [{"model": "ease"}]}, "keys 'name' and optionally 'params'"),
        ({"models": ""}, "at least one model"),
        ({"models": []}, "at least one model"),
        ({"models": 3}, "models must be comma-separated model names"),
        ({"weights": [1.0]}, r"weights has 1 values for 2 models \(ease, itemknn\)"),
        ({"weights": [1.5, -0.5]}, "weights must be finite and non-negative"),
        ({"weights": [0.5, 0.6]}, "weights must sum to 1"),
        ({"weights": [0.5, "a"]}, "weights must be a list of numbers"),
        ({"weights": 1.0}, "weights must be a list of numbers"),
        ({"normalize": "softmax"}, "normalize must be one of"),
        ({"metric_k": 0}, "metric_k must be a positive integer"),
    ],
)
def test_bad_parameters(params: dict, message: str, split: Split) -> None:
    with pytest.raises(ConfigError, match=message):
        Blend(**params).fit(split.train)


# ---------------------------------------------------------------------- CLI
def test_cli_evaluate_blend(tmp_path: Path) -> None:
    data = planted_data(n_users=120)
    raw = tmp_path / "raw"
    raw.mkdir()
    data.to_frame()[["user_id", "item_id", "timestamp"]].to_csv(
        raw / "d.inter", sep="\t", index=False,
        header=["user_id:token", "item_id:token", "timestamp:float"],
    )  # fmt: skip
    out = tmp_path / "m.json"
    res = CliRunner().invoke(
        app,
        ["evaluate", str(raw), "--model", "blend", "--param", "models=itemknn,popularity",
         "--param", "normalize=minmax", "--json", str(out)],
        catch_exceptions=False,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert report["model"] == "blend"
    assert report["params"]["models"] == "itemknn,popularity"
    assert report["params"]["normalize"] == "minmax"
    # the CLI fits on train with valid and tests on the leave-last-out split, as here
    log = load_dataset(raw)
    assert isinstance(log, Interactions)
    split = leave_last_out(log)
    model = Blend("itemknn,popularity", normalize="minmax").fit(split.train, split.valid)
    metrics = evaluate(model, split, progress=False).metrics
    assert report["metrics"]["ndcg@10"] == pytest.approx(metrics["ndcg@10"], abs=1e-12)
