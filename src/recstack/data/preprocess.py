"""Preprocessing: duplicates, implicit conversion, k-core filtering.

Each step returns new :class:`Interactions` in the *same* ID space (the maps and feature
tables are kept, so users or items left without events stay in the catalog) and a
:class:`Report` counting what was dropped; the report is also logged (INFO) on the
``recstack.data.preprocess`` logger. Nothing is dropped silently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from recstack.data.interactions import Interactions
from recstack.errors import ConfigError, DataError

log = logging.getLogger(__name__)

Keep = Literal["first", "last", "sum"]


@dataclass(frozen=True)
class Report:
    """What a preprocessing step did.

    Attributes
    ----------
    step : str
        The function (``"dedupe"``, ``"to_implicit"``, ``"kcore"``).
    params : dict
        Its parameters.
    events_before, events_after : int
        Event counts before and after.
    details : dict
        Step-specific counts (users/items removed, rounds, pairs merged, ...).
    """

    step: str
    params: dict[str, Any]
    events_before: int
    events_after: int
    details: dict[str, int] = field(default_factory=dict)

    @property
    def events_dropped(self) -> int:
        return self.events_before - self.events_after

    def __str__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        extra = "".join(f", {k}={v}" for k, v in self.details.items())
        return (
            f"{self.step}({params}): {self.events_before} -> {self.events_after} events "
            f"({self.events_dropped} dropped{extra})"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for ``Split.info`` or a CLI report)."""
        return {
            "step": self.step,
            "params": dict(self.params),
            "events_before": self.events_before,
            "events_after": self.events_after,
            "events_dropped": self.events_dropped,
            **self.details,
        }


def _done(report: Report) -> Report:
    log.info("%s", report)
    return report


def _pair_key(data: Interactions) -> np.ndarray:
    """One int64 per (user, item) pair, shape (n_events,)."""
    return data.user.astype(np.int64) * data.n_items + data.item


def dedupe(data: Interactions, keep: Keep = "last") -> tuple[Interactions, Report]:
    """Merge repeated (user, item) pairs into one event.

    Parameters
    ----------
    data : Interactions
    keep : {"first", "last", "sum"}
        ``"first"``/``"last"``: the pair's earliest/latest event (time order, ties in file
        order) is kept. ``"sum"``: the latest event is kept with the sum of the pair's
        values (e.g. play counts).

    Returns
    -------
    Interactions, Report
        ``details``: ``pairs_merged`` (pairs that had more than one event).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"user_id": [1, 1, 1], "item_id": [5, 5, 6], "rating": [2.0, 3.0, 1.0]})
    >>> out, report = dedupe(Interactions.from_frame(df, time_col=None), keep="sum")
    >>> out.value.tolist(), report.events_dropped
    ([5.0, 1.0], 1)
    """
    if keep not in ("first", "last", "sum"):
        raise ConfigError(f"keep must be 'first', 'last' or 'sum', got {keep!r}")
    key = _pair_key(data)
    n = data.n_events
    # np.unique's return_index is the first occurrence; on the reversed array, the last
    uniq, pos, inverse, counts = np.unique(
        key[::-1] if keep != "first" else key,
        return_index=True,
        return_inverse=True,
        return_counts=True,
    )
    kept = np.sort(pos if keep == "first" else n - 1 - pos)
    out = data.select(kept)
    if keep == "sum":
        sums = np.bincount(inverse, weights=data.value[::-1].astype(np.float64))
        # kept[j] is an event of pair key[kept[j]]; its rank in uniq indexes the sums
        out = out.with_values(sums[np.searchsorted(uniq, key[kept])])
    report = Report(
        "dedupe", {"keep": keep}, n, out.n_events, {"pairs_merged": int((counts > 1).sum())}
    )
    return out, _done(report)


def to_implicit(data: Interactions, threshold: float) -> tuple[Interactions, Report]:
    """Keep events with ``value >= threshold`` as implicit positives (value 1.0).

    Returns
    -------
    Interactions, Report
        ``details``: ``users_left_empty``, ``items_left_empty`` (had events, have none now).
    """
    if not np.isfinite(threshold):
        raise ConfigError(f"threshold must be a finite number, got {threshold!r}")
    mask = data.value >= threshold
    out = data.select(mask)
    out = out.with_values(np.ones(out.n_events, dtype=np.float32))
    report = Report(
        "to_implicit",
        {"threshold": float(threshold)},
        data.n_events,
        out.n_events,
        dict(zip(("users_left_empty", "items_left_empty"), _emptied(data, mask), strict=True)),
    )
    return out, _done(report)


def kcore(
    data: Interactions, k: int = 5, *, user_k: int | None = None, item_k: int | None = None
) -> tuple[Interactions, Report]:
    """Iterative k-core: drop users and items with fewer than ``k`` events until none is left.

    Removing a user's events can push an item below ``k`` and vice versa, so the filter is
    repeated to its fixed point (each round is one vectorized pass over the events). The
    counts are of events; after :func:`dedupe` they are distinct pairs.

    Parameters
    ----------
    data : Interactions
    k : int >= 1
        Minimum events per user and per item.
    user_k, item_k : int, optional
        Separate minima for users and items (default ``k``).

    Returns
    -------
    Interactions, Report
        ``details``: ``rounds``, ``users_removed``, ``items_removed`` (had events before,
        none after).

    Raises
    ------
    DataError
        The filter removes every event.
    """
    limits = {"k": k, "user_k": k if user_k is None else user_k}
    limits["item_k"] = k if item_k is None else item_k
    for name, v in limits.items():
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {v!r}")
    keep = np.ones(data.n_events, dtype=bool)
    rounds = 0
    while True:
        user_n = np.bincount(data.user[keep], minlength=data.n_users)
        item_n = np.bincount(data.item[keep], minlength=data.n_items)
        drop = keep & (
            (user_n[data.user] < limits["user_k"]) | (item_n[data.item] < limits["item_k"])
        )
        if not drop.any():
            break
        keep &= ~drop
        rounds += 1
    params = {"user_k": limits["user_k"], "item_k": limits["item_k"]}
    if data.n_events and not keep.any():
        raise DataError(
            f"kcore with {params} removes every one of the {data.n_events} events "
            f"({data.n_users} users, {data.n_items} items); lower k"
        )
    out = data.select(keep)
    users, items = _emptied(data, keep)
    details = {"rounds": rounds, "users_removed": users, "items_removed": items}
    return out, _done(Report("kcore", params, data.n_events, out.n_events, details))


def _emptied(data: Interactions, keep: np.ndarray) -> tuple[int, int]:
    """Numbers of users and of items that had events and have none among ``keep``."""
    out = []
    for idx, n in ((data.user, data.n_users), (data.item, data.n_items)):
        before = np.bincount(idx, minlength=n) > 0
        after = np.bincount(idx[keep], minlength=n) > 0
        out.append(int((before & ~after).sum()))
    return out[0], out[1]
