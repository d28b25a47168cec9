"""Comparing models: paired significance tests over per-user metric values.

Two models evaluated on the same split score the same users, so their per-user values
(:attr:`EvaluationResult.per_user`) pair up; a paired test on the differences is far more
sensitive than comparing two means.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from recstack.errors import ConfigError, DataError

if TYPE_CHECKING:
    from recstack.evaluation.evaluator import EvaluationResult

#: metrics where a smaller value is better (errors, concentration, popularity bias,
#: distance from the user's genre mix)
LOWER_IS_BETTER = ("rmse", "mae", "gini", "arp", "miscalibration")


def paired_test(a: pd.Series, b: pd.Series, method: str = "t") -> dict[str, Any]:
    """Paired test of ``a`` against ``b``, per-user values aligned by index (user ID).

    Users missing from either side or with a NaN value are left out.

    Parameters
    ----------
    a, b : Series
        Per-user values of one metric for two models.
    method : {"t", "wilcoxon"}
        Paired t-test (:func:`scipy.stats.ttest_rel`) or Wilcoxon signed-rank test
        (:func:`scipy.stats.wilcoxon`, zero differences dropped).

    Returns
    -------
    dict
        ``method``, ``n`` (paired users), ``mean_a``, ``mean_b``, ``mean_diff``
        (a - b), ``statistic``, ``p_value`` (two-sided). When every difference is zero
        the p-value is 1; when every difference is the same non-zero value (up to 1e-12)
        the t-test's p-value is 0 (no variance) with an infinite statistic.

    Examples
    --------
    >>> a = pd.Series([0.5, 0.2, 0.9, 0.4], index=list("wxyz"))
    >>> paired_test(a, a)["p_value"]
    1.0
    """
    if method not in ("t", "wilcoxon"):
        raise ConfigError(f"method must be 't' or 'wilcoxon', got {method!r}")
    pair = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    if len(pair) == 0:
        raise DataError("paired_test: the two series share no user with values on both sides")
    x = pair["a"].to_numpy(dtype=np.float64)
    y = pair["b"].to_numpy(dtype=np.float64)
    d = x - y
    out: dict[str, Any] = {
        "method": method,
        "n": len(d),
        "mean_a": float(x.mean()),
        "mean_b": float(y.mean()),
        "mean_diff": float(d.mean()),
    }
    # differences equal up to rounding ((a + c) - a is not exactly c) count as constant
    tol = 1e-12 * max(1.0, float(np.abs(d).max()))
    if np.abs(d).max() <= tol:
        stat, p = 0.0, 1.0
    elif method == "t" and np.ptp(d) <= tol:
        stat, p = float(np.sign(d[0]) * np.inf), 0.0
    elif method == "t" and len(d) < 2:
        stat, p = float("nan"), float("nan")
    elif method == "t":
        t = stats.ttest_rel(x, y)
        stat, p = float(t.statistic), float(t.pvalue)
    else:
        w = stats.wilcoxon(d, zero_method="wilcox")
        stat, p = float(w.statistic), float(w.pvalue)
    out["statistic"], out["p_value"] = stat, p
    return out


def _lower_is_better(metric: str) -> bool:
    return metric.split("@")[0] in LOWER_IS_BETTER


def compare_results(
    results: Mapping[str, EvaluationResult], metric: str = "ndcg@10", method: str = "t"
) -> pd.DataFrame:
    """Metrics table of several models evaluated on one split, with paired tests.

    Returns a DataFrame with one row per model (index ``model``, input order), one column
    per metric, and ``p_<metric>``: the p-value of the paired test (``method``) of the
    model's per-user ``metric`` against the best model's (1.0 for the best itself; NaN
    when the metric has no per-user values, like ``rmse``). ``attrs`` holds ``best``,
    ``metric`` and ``method``. Larger is better except for ``rmse``, ``mae``, ``gini``,
    ``arp`` and ``miscalibration``.
    """
    if not results:
        raise ConfigError("compare_results: no results to compare")
    table = pd.DataFrame({name: r.metrics for name, r in results.items()}).T
    table.index.name = "model"
    if metric not in table.columns:
        raise ConfigError(f"unknown metric {metric!r}; available: {', '.join(table.columns)}")
    values = table[metric].astype(float)
    if values.isna().all():
        raise DataError(f"compare_results: {metric} is NaN for every model")
    best = str(values.idxmin() if _lower_is_better(metric) else values.idxmax())
    best_users = results[best].per_user
    pvals = []
    for r in results.values():
        if metric in r.per_user.columns and metric in best_users.columns:
            pvals.append(paired_test(r.per_user[metric], best_users[metric], method)["p_value"])
        else:
            pvals.append(float("nan"))
    table[f"p_{metric}"] = pvals
    table.attrs.update(best=best, metric=metric, method=method)
    return table
