"""Paired tests and the comparison table."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from recstack.errors import ConfigError, DataError
from recstack.evaluation import EvaluationResult, compare_results, paired_test


def _series(values: list[float], users: list[str]) -> pd.Series:
    return pd.Series(values, index=pd.Index(users, name="user_id"))


def test_paired_t_aligns_by_user() -> None:
    rng = np.random.default_rng(0)
    users = [f"u{j}" for j in range(40)]
    a = rng.random(40)
    b = a - 0.05 + 0.02 * rng.standard_normal(40)
    # b in another order, with an extra user and a NaN: both must drop out of the pairing
    sb = _series([*b[::-1], 0.3], [*users[::-1], "extra"])
    sa = _series([*a[:-1], np.nan], users)
    out = paired_test(sa, sb)
    ref = stats.ttest_rel(a[:-1], b[:-1])
    assert out["n"] == 39
    assert out["p_value"] == pytest.approx(ref.pvalue)
    assert out["statistic"] == pytest.approx(ref.statistic)
    assert out["mean_diff"] == pytest.approx(np.mean(a[:-1] - b[:-1]))


def test_wilcoxon_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    users = [str(j) for j in range(30)]
    a, b = rng.random(30), rng.random(30)
    b[:5] = a[:5]  # zero differences are dropped
    out = paired_test(_series(list(a), users), _series(list(b), users), method="wilcoxon")
    ref = stats.wilcoxon(a - b, zero_method="wilcox")
    assert out["p_value"] == pytest.approx(ref.pvalue)


@pytest.mark.parametrize("method", ["t", "wilcoxon"])
def test_degenerate_differences_without_warnings(method: str) -> None:
    users = list("abcd")
    a = _series([0.1, 0.5, 0.0, 1.0], users)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = paired_test(a, a, method=method)
        shifted = paired_test(a + 0.25, a, method=method)
    assert (same["statistic"], same["p_value"]) == (0.0, 1.0)
    assert shifted["mean_diff"] == pytest.approx(0.25)
    if method == "t":  # every user moved by the same amount: no variance, p = 0
        assert shifted["p_value"] == 0.0 and shifted["statistic"] == np.inf
    else:  # 4 positive ranks: exact two-sided p = 2 / 2**4
        assert shifted["p_value"] == pytest.approx(0.125)


def test_paired_test_errors() -> None:
    with pytest.raises(ConfigError, match="method must be"):
        paired_test(_series([1.0], ["a"]), _series([1.0], ["a"]), method="z")
    with pytest.raises(DataError, match="share no user"):
        paired_test(_series([1.0], ["a"]), _series([1.0], ["b"]))


def _result(per_user: dict[str, list[float]], users: list[str]) -> EvaluationResult:
    frame = pd.DataFrame(per_user, index=pd.Index(users, name="user_id"))
    metrics = {k: float(np.mean(v)) for k, v in per_user.items()}
    metrics["gini@10"] = 0.5
    return EvaluationResult(
        metrics=metrics,
        per_user=frame,
        recs=None,  # type: ignore[arg-type]
        segments=pd.DataFrame(),
        n_users=len(users),
        n_items=10,
        eval_seconds=0.0,
    )


def test_compare_results_table() -> None:
    rng = np.random.default_rng(2)
    users = [str(j) for j in range(50)]
    strong = rng.random(50)
    results = {
        "weak": _result({"ndcg@10": list(strong * 0.5)}, users),
        "strong": _result({"ndcg@10": list(strong)}, users),
        "close": _result({"ndcg@10": list(strong - 0.01 * rng.random(50))}, users),
    }
    table = compare_results(results, metric="ndcg@10")
    assert table.index.tolist() == ["weak", "strong", "close"]
    assert table.attrs["best"] == "strong"
    assert table.loc["strong", "p_ndcg@10"] == 1.0
    ref = stats.ttest_rel(strong * 0.5, strong).pvalue
    assert table.loc["weak", "p_ndcg@10"] == pytest.approx(ref)
    assert table.loc["weak", "ndcg@10"] == pytest.approx(np.mean(strong * 0.5))
    # lower is better for gini; without per-user values the p-value is NaN
    gini = compare_results(results, metric="gini@10")
    assert gini["p_gini@10"].isna().all()
    with pytest.raises(ConfigError, match="unknown metric 'hr@5'"):
        compare_results(results, metric="hr@5")
