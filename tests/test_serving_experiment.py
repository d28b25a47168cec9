"""A/B statistics against closed forms and scipy, and the sticky assignment."""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

pytest.importorskip("fastapi")

from recstack.errors import ConfigError
from recstack.serving.experiment import (
    Experiment,
    assign,
    bucket,
    experiment_report,
    two_proportion_test,
    wilson,
)
from recstack.serving.store import VariantCounts


@pytest.mark.parametrize(("x", "n"), [(0, 1), (1, 1), (3, 10), (10, 100), (81, 263), (500, 1000)])
def test_wilson_matches_scipy(x: int, n: int) -> None:
    ci = stats.binomtest(x, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson(x, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_wilson_textbook_value_and_edges() -> None:
    # Agresti & Coull (1998) style check by hand: 10 of 100 -> [0.0552, 0.1744]
    lo, hi = wilson(10, 100)
    assert (round(lo, 4), round(hi, 4)) == (0.0552, 0.1744)
    assert wilson(0, 0) == (0.0, 1.0)  # no trials: nothing known
    assert wilson(0, 20)[0] == 0.0 and wilson(20, 20)[1] == 1.0
    assert wilson(30, 20) == wilson(20, 20)  # more clicks than impressions: capped at 1
    with pytest.raises(ConfigError, match="counts must be >= 0"):
        wilson(-1, 10)


def test_two_proportion_test_closed_form() -> None:
    x_a, n_a, x_b, n_b = 50, 1000, 80, 1000
    diff, z, p = two_proportion_test(x_a, n_a, x_b, n_b)
    pooled = 130 / 2000
    se = math.sqrt(pooled * (1 - pooled) * (2 / 1000))
    assert diff == pytest.approx(0.03)
    assert z == pytest.approx(0.03 / se)
    assert p == pytest.approx(2 * stats.norm.sf(abs(0.03 / se)))
    # symmetric, and z^2 is the chi-square statistic of the 2x2 table (no continuity fix)
    assert two_proportion_test(x_b, n_b, x_a, n_a)[1] == pytest.approx(-z)
    table = np.array([[x_a, n_a - x_a], [x_b, n_b - x_b]])
    chi2, p_chi2, _, _ = stats.chi2_contingency(table, correction=False)
    assert z**2 == pytest.approx(chi2) and p == pytest.approx(p_chi2)
    assert two_proportion_test(0, 10, 0, 10) == (0.0, 0.0, 1.0)  # nothing to tell apart
    assert two_proportion_test(1, 0, 1, 10) == (None, None, None)


def test_experiment_report_recomputed_by_hand() -> None:
    counts = {
        "b": VariantCounts(impressions=200, clicks=30, conversions=4),
        "a": VariantCounts(impressions=100, clicks=10, conversions=1),
    }
    report = experiment_report(counts, variants=["a", "b", "c"])
    rows = {r["name"]: r for r in report["variants"]}
    assert [r["name"] for r in report["variants"]] == ["a", "b", "c"]
    assert rows["a"] == {
        "name": "a",
        "impressions": 100,
        "clicks": 10,
        "conversions": 1,
        "ctr": 0.1,
        "ctr_ci": list(wilson(10, 100)),
        "conversion_rate": 0.01,
        "conversion_ci": list(wilson(1, 100)),
    }
    assert rows["b"]["ctr"] == 0.15 and rows["b"]["conversion_rate"] == 0.02
    assert rows["c"]["ctr"] is None and rows["c"]["ctr_ci"] == [0.0, 1.0]
    pairs = [(c["a"], c["b"], c["metric"]) for c in report["comparisons"]]
    assert pairs == [
        ("a", "b", "ctr"),
        ("a", "b", "conversion_rate"),
        ("a", "c", "ctr"),
        ("a", "c", "conversion_rate"),
        ("b", "c", "ctr"),
        ("b", "c", "conversion_rate"),
    ]
    ab_ctr = report["comparisons"][0]
    diff, z, p = two_proportion_test(10, 100, 30, 200)
    assert (ab_ctr["diff"], ab_ctr["z"], ab_ctr["p_value"]) == (diff, z, p)
    assert ab_ctr["diff"] == pytest.approx(0.05)
    assert report["comparisons"][2]["p_value"] is None  # c has no impressions


def test_assignment_is_a_stable_hash() -> None:
    expected = int.from_bytes(hashlib.sha256(b"exp\x1fuser-1").digest()[:8], "big") / 2**64 * 100
    assert bucket("user-1", "exp") == expected
    ab = Experiment({"a": 50, "b": 50}, salt="exp")
    assert ab.assign("user-1") == ("a" if expected < 50 else "b")
    # the layout follows variant names, not the order they were given in
    assert Experiment({"b": 50, "a": 50}, salt="exp").assign("user-1") == ab.assign("user-1")
    assert assign("user-1", ["a", "b"], [50, 50], "exp") == ab.assign("user-1")
    assert Experiment({"only": 100}, salt="x").assign("anyone") == "only"
    assert Experiment({"a": 0, "b": 100}, salt="x").assign("u") == "b"


def test_assignment_is_the_same_in_another_process() -> None:
    """Python's own ``hash`` differs per process (PYTHONHASHSEED); the assignment must not."""
    users = [f"user-{i}" for i in range(200)]
    here = [Experiment({"a": 30, "b": 70}, "s").assign(u) for u in users]
    code = (
        "from recstack.serving.experiment import Experiment\n"
        "e = Experiment({'a': 30, 'b': 70}, 's')\n"
        f"print(','.join(e.assign(f'user-{{i}}') for i in range({len(users)})))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip().split(",") == here


def test_assignment_proportions_follow_traffic() -> None:
    traffic = {"a": 20.0, "b": 30.0, "c": 50.0}
    ab = Experiment(traffic, salt="exp-7")
    n = 10_000
    got = [ab.assign(f"user-{i}") for i in range(n)]
    for name, pct in traffic.items():
        p = pct / 100
        count = got.count(name)
        assert abs(count - n * p) < 4.5 * math.sqrt(n * p * (1 - p)), (name, count)
    # another salt reshuffles users: about half of them change variant between 2 x 50%
    a = Experiment({"x": 50, "y": 50}, "one")
    b = Experiment({"x": 50, "y": 50}, "two")
    moved = sum(a.assign(f"u{i}") != b.assign(f"u{i}") for i in range(n))
    assert abs(moved - n / 2) < 4.5 * math.sqrt(n / 4)


@pytest.mark.parametrize(
    ("traffic", "message"),
    [
        ({"a": 60, "b": 60}, "must sum to 100, got 120"),
        ({"a": -10, "b": 110}, "traffic of variant 'a' must be a percentage >= 0"),
        ({"a": float("nan"), "b": 100}, "must be a percentage"),
        ({"a": "50", "b": 50}, "must be a percentage"),
        ({}, "at least one variant"),
    ],
)
def test_bad_traffic_is_a_config_error(traffic: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Experiment(traffic, salt="s")  # type: ignore[arg-type]
