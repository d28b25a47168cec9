"""A/B tests: sticky variant assignment, and the report of CTR and conversion rate with
95% Wilson intervals and two-proportion z-tests between variants.

Definitions (per variant, over the events attributed to it through ``request_id``):

- CTR = clicks / impressions;
- conversion rate = conversions / impressions.

Both are event-level proportions with the impressions as trials. When a variant has more
clicks than impressions (clicks were posted without their impressions) the rate is shown
as it is, and its interval is that of the rate capped at 1.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from recstack.errors import ConfigError
from recstack.serving.store import VariantCounts

#: the two-sided 95% normal quantile, ``Phi^-1(0.975)``
Z95 = 1.959963984540054
#: the report's metrics: name -> the VariantCounts field of its successes
METRICS = {"ctr": "clicks", "conversion_rate": "conversions"}


def bucket(user_id: str, salt: str) -> float:
    """A stable position in [0, 100) for ``user_id`` in the experiment named by ``salt``:
    the first 8 bytes of SHA-256 of ``salt`` and the ID (never Python's ``hash``, which is
    salted per process), so it is the same in every process and after every restart."""
    digest = hashlib.sha256(f"{salt}\x1f{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 * 100.0


class Experiment:
    """Deterministic assignment of users to variants by traffic share.

    Parameters
    ----------
    traffic : mapping of str to float
        Variant name -> percentage of users, summing to 100. Variants are laid out on
        [0, 100) in name order, so the assignment does not depend on the order they were
        given in.
    salt : str
        The experiment's name: a new salt reshuffles every user.

    Examples
    --------
    >>> ab = Experiment({"a": 50, "b": 50}, salt="exp-1")
    >>> ab.assign("user-7") == ab.assign("user-7")
    True
    """

    def __init__(self, traffic: Mapping[str, float], salt: str) -> None:
        if not traffic:
            raise ConfigError("an experiment needs at least one variant")
        shares = {str(k): _percentage(k, v) for k, v in traffic.items()}
        total = sum(shares.values())
        if not math.isclose(total, 100.0, abs_tol=1e-6):
            raise ConfigError(
                f"traffic shares must sum to 100, got {total:g} "
                f"({', '.join(f'{k}={v:g}' for k, v in shares.items())})"
            )
        self.salt = salt
        self.names = sorted(shares)
        self.traffic = {k: shares[k] for k in self.names}
        self._bounds = list(itertools.accumulate(self.traffic.values()))

    def assign(self, user_id: str) -> str:
        """The variant of ``user_id`` (the same on every call, process and restart)."""
        if len(self.names) == 1:
            return self.names[0]
        pos = bucket(user_id, self.salt)
        for name, bound in zip(self.names, self._bounds, strict=True):
            if pos < bound:
                return name
        # rounding of the last bound (99.9999...): the last variant with traffic
        return next(n for n in reversed(self.names) if self.traffic[n] > 0)


def _percentage(name: object, value: object) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not (math.isfinite(float(value)) and float(value) >= 0):  # type: ignore[arg-type]
        raise ConfigError(f"traffic of variant {name!r} must be a percentage >= 0, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def assign(user_id: str, variants: Sequence[str], traffic: Sequence[float], salt: str) -> str:
    """The variant of ``user_id`` among ``variants`` with percentages ``traffic`` (see
    :class:`Experiment`, which precomputes the layout for repeated calls)."""
    if len(variants) != len(traffic):
        raise ConfigError(f"{len(variants)} variants but {len(traffic)} traffic shares")
    return Experiment(dict(zip(variants, traffic, strict=True)), salt).assign(user_id)


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default).

    With ``p = successes / trials`` and ``n = trials``::

        (p + z^2 / 2n  +-  z sqrt(p (1 - p) / n + z^2 / 4n^2)) / (1 + z^2 / n)

    ``(0, 1)`` without trials; ``successes`` above ``trials`` count as ``trials``.

    Examples
    --------
    >>> lo, hi = wilson(10, 100)
    >>> round(lo, 4), round(hi, 4)
    (0.0552, 0.1744)
    """
    if trials < 0 or successes < 0:
        raise ConfigError(f"wilson: counts must be >= 0, got {successes}/{trials}")
    if trials == 0:
        return 0.0, 1.0
    n = float(trials)
    p = min(successes, trials) / n
    z2 = z * z
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, center - half), min(1.0, center + half)


def two_proportion_test(
    x_a: int, n_a: int, x_b: int, n_b: int
) -> tuple[float | None, float | None, float | None]:
    """Pooled two-proportion z-test of ``x_a / n_a`` against ``x_b / n_b``.

    Returns ``(diff, z, p_value)``: ``diff = p_b - p_a``, ``z = diff / se`` with the pooled
    ``se = sqrt(p (1 - p) (1/n_a + 1/n_b))``, ``p = (x_a + x_b) / (n_a + n_b)``, and the
    two-sided p-value ``2 (1 - Phi(|z|))``. All None when a side has no trials; ``z = 0``,
    ``p = 1`` when the pooled proportion is 0 or 1 (both sides equal).

    Examples
    --------
    >>> diff, z, p = two_proportion_test(50, 1000, 80, 1000)
    >>> round(diff, 3), round(z, 3), round(p, 4)
    (0.03, 2.721, 0.0065)
    """
    if n_a <= 0 or n_b <= 0:
        return None, None, None
    p_a, p_b = x_a / n_a, x_b / n_b
    pooled = (x_a + x_b) / (n_a + n_b)
    var = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    diff = p_b - p_a
    if var <= 0:
        return diff, 0.0, 1.0
    z = diff / math.sqrt(var)
    return diff, z, math.erfc(abs(z) / math.sqrt(2.0))


def experiment_report(
    counts: Mapping[str, VariantCounts], variants: Sequence[str] = ()
) -> dict[str, Any]:
    """The A/B report (the wire format of ``GET /experiments/report``).

    Parameters
    ----------
    counts : mapping of str to VariantCounts
        Events per variant (:meth:`EventStore.counts_by_variant`).
    variants : sequence of str
        Variants to list even without events (the configured ones), first, in this order;
        the others of ``counts`` follow in name order.

    Returns
    -------
    dict
        ``{"variants": [{"name", "impressions", "clicks", "conversions", "ctr",
        "ctr_ci": [lo, hi], "conversion_rate", "conversion_ci": [lo, hi]}],
        "comparisons": [{"a", "b", "metric", "diff", "z", "p_value"}]}``: a comparison for
        each pair of variants (``a`` listed before ``b``) and each metric (``"ctr"``,
        ``"conversion_rate"``), ``diff = rate_b - rate_a``. Rates are None without
        impressions, their intervals then ``[0, 1]``.
    """
    names = list(dict.fromkeys([*variants, *sorted(counts)]))
    per = {name: counts.get(name, VariantCounts()) for name in names}
    rows = []
    for name, c in per.items():
        n = c.impressions
        rows.append(
            {
                "name": name,
                "impressions": n,
                "clicks": c.clicks,
                "conversions": c.conversions,
                "ctr": c.clicks / n if n else None,
                "ctr_ci": list(wilson(c.clicks, n)),
                "conversion_rate": c.conversions / n if n else None,
                "conversion_ci": list(wilson(c.conversions, n)),
            }
        )
    comparisons = []
    for a, b in itertools.combinations(names, 2):
        for metric, field in METRICS.items():
            ca, cb = per[a], per[b]
            x_a, x_b = getattr(ca, field), getattr(cb, field)
            diff, z, p = two_proportion_test(x_a, ca.impressions, x_b, cb.impressions)
            comparisons.append(
                {"a": a, "b": b, "metric": metric, "diff": diff, "z": z, "p_value": p}
            )
    return {"variants": rows, "comparisons": comparisons}
