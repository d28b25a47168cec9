"""Hyper-parameter search: every model's search space is valid and contains its defaults, a
short search runs for every model, error metrics are minimized, bad requests are refused."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conformance import planted_data
from recstack.data.splits import Split, leave_last_out, rolling_origins
from recstack.errors import ConfigError
from recstack.evaluation import evaluate
from recstack.evaluation.tune import tune
from recstack.models import get_model_class, model_names
from test_biased_mf import planted_ratings
from test_content import with_text

pytest.importorskip("optuna")

#: parameters that make a trial fast on the tiny planted set (held fixed in the search)
NEURAL_FAST = {"epochs": 2, "dim": 16, "verbose": False, "device": "cpu"}
FAST = {
    "nmf": {"iterations": 5},
    "bpr": {"iterations": 5},
    "biased-mf": {"iterations": 3},
    **dict.fromkeys(("sasrec", "bert4rec", "gru4rec", "caser", "two-tower"), NEURAL_FAST),
    "content-knn": {"encoder": "tfidf"},
}
TUNABLE = [n for n in model_names() if n != "random"]


@pytest.mark.parametrize("name", TUNABLE)
def test_search_space_is_valid_and_contains_the_defaults(name: str) -> None:
    klass = get_model_class(name)
    space = klass.search_space
    assert space, f"{name} has no search space"
    klass.check_param_names(list(space))
    defaults = klass.param_defaults()
    for param, spec in space.items():
        kind, *rest = spec
        if kind == "categorical":
            assert defaults[param] in rest[0], (name, param, defaults[param], rest[0])
            continue
        assert kind in ("int", "float"), (name, param, kind)
        low, high = rest[0], rest[1]
        assert low < high and set(rest[2:]) <= {"log"}, (name, param, spec)
        if "log" in rest[2:]:
            assert low > 0, (name, param, spec)
        value = defaults[param]
        if value is not None:
            assert low <= value <= high, f"{name}.{param} default {value} outside {spec}"
        # every value the search may pick passes the model's own validation
        klass(**{**FAST.get(name, {}), param: low})._validate_params()
        klass(**{**FAST.get(name, {}), param: high})._validate_params()


@pytest.fixture(scope="module")
def planted_split() -> Split:
    # item titles of each block's words, for the content models (the others ignore them)
    return leave_last_out(with_text(planted_data(n_users=80, n_items=40), 4))


@pytest.mark.parametrize("name", TUNABLE)
def test_tune_runs_for_every_model(name: str, planted_split: Split) -> None:
    seen: list[float] = []
    result = tune(
        name,
        planted_split,
        trials=3,
        fixed=FAST.get(name),
        callback=lambda n, v, p: seen.append(v),
    )
    assert len(result.trials) == 3 and len(seen) == 3
    assert result.best_value == max(seen)
    get_model_class(name).check_param_names(list(result.best_params))
    assert set(result.best_params) >= set(FAST.get(name, {}))


def test_error_metrics_are_minimized() -> None:
    data, _ = planted_ratings(n_users=120, n_items=80)
    order = np.random.default_rng(0).permutation(data.n_events)
    part = np.zeros(data.n_events, dtype=np.int8)
    part[order[: data.n_events // 10]] = 1
    part[order[data.n_events // 10 : data.n_events // 5]] = 2
    split = Split(data.select(part == 0), data.select(part == 1), data.select(part == 2))
    result = tune(
        "biased-mf", split, trials=4, metric="rmse", fixed={"iterations": 3, "factors": 3}
    )
    values = [t["value"] for t in result.trials]
    assert result.best_value == min(values) and not math.isnan(result.best_value)
    assert len(set(values)) > 1  # the trials differ, so min vs max is a real check


def test_bad_requests(planted_split: Split) -> None:
    with pytest.raises(ConfigError, match="search space is empty"):
        tune("random", planted_split, trials=1)
    with pytest.raises(ConfigError, match="trials"):
        tune("ease", planted_split, trials=0)
    with pytest.raises(ConfigError, match="unknown metric 'ndcg@11'"):
        tune("ease", planted_split, trials=1, metric="ndcg@11")
    with pytest.raises(ConfigError, match="validation"):
        tune("ease", Split(planted_split.train, None, planted_split.test), trials=1)


def test_origins_average_the_validation_of_each(planted_split: Split) -> None:
    result = tune("ease", planted_split, trials=3, origins=3)
    assert result.origins == 3
    # the best trial's value, recomputed by hand: one EASE per origin, mean NDCG@10
    model = get_model_class("ease")
    by_origin = [
        evaluate(model(**result.best_params).fit(o.train), o, on="valid", progress=False)
        for o in rolling_origins(planted_split, 3)
    ]
    values = [r.metrics["ndcg@10"] for r in by_origin]
    assert result.best_value == pytest.approx(np.mean(values))
    assert len(set(values)) > 1  # the origins differ, so the mean is a real check
    with pytest.raises(ConfigError, match="origins must be a positive integer"):
        tune("ease", planted_split, trials=1, origins=0)
