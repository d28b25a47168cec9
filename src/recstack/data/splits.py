"""Train/valid/test splits in one ID space.

Every split labels each event train, valid or test (vectorized over events, no loop over
users), so the three parts partition the log exactly and share its ID maps and feature
tables. ``Split.info`` records the method (its name for :func:`split`), the parameters and
what could not be placed, so ``split(data, info["method"], **info["params"])`` reproduces it.

| name | function | held out |
| --- | --- | --- |
| ``loo`` | :func:`leave_last_out` | per user, the last events by time |
| ``ratio`` | :func:`temporal_ratio` | per user, the last fraction by time |
| ``temporal`` | :func:`global_temporal` | every event from a global cutoff time on |
| ``random`` | :func:`random_ratio` | per user, a random fraction |
| ``cold-items`` | :func:`cold_items` | every event of a random set of items |
| ``cold-users`` | :func:`cold_users` | random users, all but their first events |
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recstack.data.interactions import Interactions
from recstack.errors import ConfigError, DataError


@dataclass(frozen=True)
class Split:
    """A split of one log into train, optional valid, and test, sharing ID maps.

    ``info`` records the method, its parameters and what was counted along the way
    (users without enough events, events dropped for leakage, ...), so nothing is silent.
    """

    train: Interactions
    valid: Interactions | None
    test: Interactions
    info: dict[str, Any] = field(default_factory=dict)

    def test_history(self) -> Interactions:
        """What test users are scored from: train + valid (valid events last on ties)."""
        return self.train if self.valid is None else self.train.concat(self.valid)


_TRAIN, _VALID, _TEST = 0, 1, 2
Timestamp = float | int | str | dt.datetime | np.datetime64


# ---------------------------------------------------------------------------- splits
def leave_last_out(data: Interactions, n_valid: int = 1, n_test: int = 1) -> Split:
    """Per user, the last ``n_test`` events are test and the ``n_valid`` before them valid.

    Events are in time order, stably (ties keep file order), so the split is the one of
    RecBole's and our peers' leave-one-out protocol. A user with fewer than
    ``n_valid + n_test + 1`` events (one train event at least) stays entirely in train;
    ``info["users_too_short"]`` counts them.

    Parameters
    ----------
    data : Interactions
        The log.
    n_valid : int, >= 0
        Validation events per user (0: no valid part, ``Split.valid`` is None).
    n_test : int, >= 1
        Test events per user.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"user_id": [1, 1, 1, 2], "item_id": [10, 11, 12, 10],
    ...                    "timestamp": [3, 1, 2, 5]})
    >>> s = leave_last_out(Interactions.from_frame(df))
    >>> s.test.to_frame().item_id.tolist(), s.valid.to_frame().item_id.tolist()
    (['10'], ['12'])
    >>> s.info["users_too_short"]
    1
    """
    n_valid = _int("n_valid", n_valid, 0)
    n_test = _int("n_test", n_test, 1)
    _check_nonempty(data)
    pos, length = _positions(data)
    from_end = length - 1 - pos
    placed = length >= n_valid + n_test + 1
    part = _label(placed, from_end, n_test, n_test + n_valid)
    tie = _boundary_ties(data, part)
    return _finish(
        data,
        part,
        "loo",
        {"n_valid": n_valid, "n_test": n_test},
        users_too_short=_count_users(data, ~placed),
        users_with_tie_at_boundary=tie,
    )


def rolling_origins(split: Split, n: int) -> list[Split]:
    """``n`` validation origins of a leave-last-out split, latest first: hyper-parameters
    chosen on ``n`` held-out events per user instead of one (rolling-origin validation,
    as in time-series cross-validation).

    Origin 0 is ``split`` itself; origin ``j`` holds out each user's last train event of
    origin ``j - 1`` as ``valid`` and keeps the events before it as ``train``, so every
    origin's model sees only the past of its validation events. The origins are for
    ``evaluate(..., on="valid")``: their ``test`` is ``split.test``, never fitted or chosen
    on. A user with a single train event left keeps it, without a validation event
    (``info["users_too_short"]``).

    Why: with one held-out event per user, the change of a metric between two settings
    has a standard error of several percent on a thousand users (ML-100K: about 3.5% of
    NDCG@10 for a re-ranking), and a choice on one origin follows that noise; the mean
    over ``n`` origins shrinks it, by up to ``sqrt(n)`` (``benchmarks/bench_rerank.py``
    chooses re-ranking strengths so).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"user_id": [1] * 5, "item_id": [10, 11, 12, 13, 14],
    ...                    "timestamp": [1, 2, 3, 4, 5]})
    >>> origins = rolling_origins(leave_last_out(Interactions.from_frame(df)), 3)
    >>> [o.valid.to_frame().item_id.tolist() for o in origins]
    [['13'], ['12'], ['11']]
    >>> origins[2].train.to_frame().item_id.tolist()
    ['10']
    """
    n = _int("n", n, 1)
    if split.valid is None:
        raise ConfigError("rolling_origins: the split has no validation part (origin 0)")
    out = [split]
    train = split.train
    for j in range(1, n):
        if not np.any(train.user_lengths >= 2):
            raise ConfigError(
                f"rolling_origins: origin {j} would hold out nothing (no user has 2 train "
                f"events left); n can be at most {j} here, got {n}"
            )
        earlier = leave_last_out(train, n_valid=0, n_test=1)
        train = earlier.train
        info = {**earlier.info, "method": "rolling-origin", "params": {"origin": j}}
        out.append(Split(train, earlier.test, split.test, info))
    return out


def temporal_ratio(data: Interactions, test: float = 0.2, valid: float = 0.0) -> Split:
    """Per user, the last ``test`` fraction of events (by time, stable) is test, the
    ``valid`` fraction before it valid.

    A user with ``n`` events gets ``max(1, round(test * n))`` test events and, when
    ``valid > 0``, ``max(1, round(valid * n))`` valid events (rounding half up), so every
    user is evaluated; where that leaves no train event, valid shrinks first, then test
    (neither below 1). Users with fewer events than that (``1 + 1 + (valid > 0)``) stay entirely in
    train and are counted in ``info["users_too_short"]``.

    Parameters
    ----------
    test : float in (0, 1)
    valid : float in [0, 1), with ``test + valid < 1``
    """
    test, valid = _fractions(test, valid, "test", "valid")
    _check_nonempty(data)
    pos, length = _positions(data)
    n_test, n_valid, placed = _ratio_counts(data.user_lengths, test, valid)
    part = _label(
        placed[data.user], length - 1 - pos, n_test[data.user], (n_test + n_valid)[data.user]
    )
    return _finish(
        data,
        part,
        "ratio",
        {"test": test, "valid": valid},
        users_too_short=_count_users(data, ~placed[data.user]),
    )


def random_ratio(data: Interactions, test: float = 0.2, valid: float = 0.0, seed: int = 0) -> Split:
    """Per user, a random ``test`` fraction of events is test and a ``valid`` fraction valid.

    The per-user counts are those of :func:`temporal_ratio` (at least one test event, one
    valid event when ``valid > 0``, and one train event always: a user with 2 events and
    ``valid == 0`` keeps 1 train event); which events is drawn with ``seed``. Users too
    short for that stay in train (``info["users_too_short"]``).

    Parameters
    ----------
    test : float in (0, 1)
    valid : float in [0, 1), with ``test + valid < 1``
    seed : int >= 0
    """
    test, valid = _fractions(test, valid, "test", "valid")
    seed = _int("seed", seed, 0)
    _check_nonempty(data)
    # rank of each event in a random order inside its user: sort by (user, random key);
    # events are grouped by user already, so the sorted position minus the user's start
    # is the rank
    rng = np.random.default_rng(seed)
    key = (data.user.astype(np.uint64) << np.uint64(32)) | rng.integers(
        0, 1 << 32, data.n_events, dtype=np.uint64
    )
    order = np.argsort(key, kind="stable")
    rank = np.empty(data.n_events, dtype=np.int64)
    rank[order] = np.arange(data.n_events) - data.indptr[data.user]
    n_test, n_valid, placed = _ratio_counts(data.user_lengths, test, valid)
    part = _label(placed[data.user], rank, n_test[data.user], (n_test + n_valid)[data.user])
    return _finish(
        data,
        part,
        "random",
        {"test": test, "valid": valid, "seed": seed},
        users_too_short=_count_users(data, ~placed[data.user]),
    )


def global_temporal(
    data: Interactions, test_from: Timestamp, valid_from: Timestamp | None = None
) -> Split:
    """A global cutoff in time: train is every event before it, test every event from it on.

    Leak-free: no train (or valid) event is later than any test event, because every train
    event is strictly earlier than ``test_from`` and every test event is at or after it.
    With ``valid_from``, valid is ``valid_from <= t < test_from`` and train ``t < valid_from``.

    Users and items that first appear after the cutoff stay in the log's ID maps (one ID
    space for all parts); they have no train events, so the test holds cold users and cold
    items. ``info`` counts them: ``test_users_without_train``,
    ``test_users_without_history`` (not in train nor valid: nothing to score them from),
    ``test_items_without_train`` and ``test_events_without_train_item``.

    Parameters
    ----------
    test_from, valid_from : number, str or datetime
        A number strictly between 0 and 1 is a quantile of the event times: the cutoff is
        the time of the event at position ``round(q * n_events)`` in time order (ties all go
        to the later part). Any other number is a time in the log's unit (unix seconds; row
        positions for logs without timestamps). A string is parsed as a number, else as a
        date (``"2020-06-01"``, UTC when no zone is given), as are datetimes.

    Raises
    ------
    ConfigError
        A cutoff that cannot be parsed, ``valid_from`` after ``test_from``, or a cutoff that
        leaves a part empty (the message gives the log's time range).
    """
    _check_nonempty(data)
    cut_test = _cutoff(data, "test_from", test_from)
    cut_valid = None if valid_from is None else _cutoff(data, "valid_from", valid_from)
    lo, hi = float(data.time.min()), float(data.time.max())
    span = f"the events span times {lo:.10g} .. {hi:.10g}"
    if cut_test <= lo:
        raise ConfigError(
            f"test_from={test_from!r} (time {cut_test:.10g}) leaves train empty; {span}"
        )
    if cut_test > hi:
        raise ConfigError(
            f"test_from={test_from!r} (time {cut_test:.10g}) leaves test empty; {span}"
        )
    part = np.where(data.time >= cut_test, _TEST, _TRAIN).astype(np.int8)
    if cut_valid is not None:
        if cut_valid > cut_test:
            raise ConfigError(
                f"valid_from={valid_from!r} (time {cut_valid:.10g}) is after "
                f"test_from={test_from!r} (time {cut_test:.10g})"
            )
        part[(data.time >= cut_valid) & (part == _TRAIN)] = _VALID
        if not (part == _VALID).any() or not (part == _TRAIN).any():
            which = "valid" if not (part == _VALID).any() else "train"
            raise ConfigError(
                f"valid_from={valid_from!r} (time {cut_valid:.10g}) leaves {which} empty; {span}"
            )
    return _finish(
        data,
        part,
        "temporal",
        {"test_from": _jsonable(test_from), "valid_from": _jsonable(valid_from)},
        test_from_time=cut_test,
        valid_from_time=cut_valid,
    )


def cold_items(
    data: Interactions, fraction: float = 0.1, seed: int = 0, valid_fraction: float = 0.0
) -> Split:
    """Hold out a random ``fraction`` of items entirely: all their events are test.

    Train has none of the held-out items' events; the items stay in the catalog (same
    item map, same feature rows), so content and text models can still score them. The
    test holds *only* the cold items' events, so a metric on it measures how well cold
    items are ranked for users known from their train history (rank the full catalog or
    restrict it to ``np.unique(split.test.item)``). With ``valid_fraction``, another
    disjoint set of items is held out the same way as valid (for tuning cold-start models;
    note that ``test_history()`` then includes those events).

    The fractions are of the items with at least one event:
    ``max(1, round(fraction * n))`` test items and likewise for valid. ``info`` records
    the numbers (``cold_items``, ``valid_cold_items``) and the users whose events are all
    cold (``test_users_without_train``).

    Parameters
    ----------
    fraction : float in (0, 1)
    seed : int >= 0
    valid_fraction : float in [0, 1), with ``fraction + valid_fraction < 1``
    """
    fraction, valid_fraction = _fractions(fraction, valid_fraction, "fraction", "valid_fraction")
    seed = _int("seed", seed, 0)
    _check_nonempty(data)
    active = np.flatnonzero(np.bincount(data.item, minlength=data.n_items) > 0)
    n_test = max(1, _round(fraction * len(active)))
    n_valid = max(1, _round(valid_fraction * len(active))) if valid_fraction > 0 else 0
    if n_test + n_valid >= len(active):
        raise ConfigError(
            f"fraction={fraction!r}, valid_fraction={valid_fraction!r} hold out {n_test + n_valid} "
            f"of the {len(active)} items with events, leaving no item to train on"
        )
    picked = np.random.default_rng(seed).permutation(active)
    item_part = np.zeros(data.n_items, dtype=np.int8)
    item_part[picked[:n_test]] = _TEST
    item_part[picked[n_test : n_test + n_valid]] = _VALID
    return _finish(
        data,
        item_part[data.item],
        "cold-items",
        {"fraction": fraction, "seed": seed, "valid_fraction": valid_fraction},
        cold_items=n_test,
        valid_cold_items=n_valid,
    )


def cold_users(
    data: Interactions, fraction: float = 0.1, n_history: int = 3, seed: int = 0
) -> Split:
    """Hold out random users: models never train on them and score them from a short history.

    The fold-in protocol: ``Split.train`` holds the events of the *warm* users only;
    ``Split.valid`` holds each cold user's first ``n_history`` events (time order) — the
    history they are scored from, so ``test_history()`` (train + valid) gives exactly those
    histories; ``Split.test`` holds the rest of the cold users' events. ``valid`` is
    therefore *not* a tuning set: fit with ``model.fit(split.train)`` (``info["history_part"]
    == "valid"`` says so; it is ``"none"`` with ``n_history=0``, where ``valid`` is None and
    cold users are scored from an empty history).

    Only users with more than ``n_history`` events can be cold (one test event at least);
    ``max(1, round(fraction * n))`` of those ``n`` are drawn with ``seed``. Shorter users
    stay warm, counted in ``info["users_too_short"]``.

    Parameters
    ----------
    fraction : float in (0, 1)
    n_history : int >= 0
    seed : int >= 0
    """
    (fraction,) = _fractions(fraction, None, "fraction", None)
    n_history = _int("n_history", n_history, 0)
    seed = _int("seed", seed, 0)
    _check_nonempty(data)
    lengths = data.user_lengths
    eligible = np.flatnonzero(lengths > n_history)
    n_cold = max(1, _round(fraction * len(eligible)))
    n_active = int((lengths > 0).sum())
    if n_cold >= n_active or len(eligible) == 0:
        raise ConfigError(
            f"fraction={fraction!r} with n_history={n_history!r}: {len(eligible)} users have more "
            f"than {n_history} events and {n_active} have any, so no warm user would remain "
            "to train on or no user can be cold"
        )
    cold = np.zeros(data.n_users, dtype=bool)
    cold[np.random.default_rng(seed).choice(eligible, n_cold, replace=False)] = True
    pos, _ = _positions(data)
    is_cold = cold[data.user]
    part = np.where(is_cold, np.where(pos < n_history, _VALID, _TEST), _TRAIN).astype(np.int8)
    return _finish(
        data,
        part,
        "cold-users",
        {"fraction": fraction, "n_history": n_history, "seed": seed},
        cold_users=n_cold,
        users_too_short=int(((lengths > 0) & (lengths <= n_history)).sum()),
        history_part="valid" if n_history > 0 else "none",
    )


#: method names (for the CLI and config files) -> split functions
METHODS: dict[str, Callable[..., Split]] = {
    "loo": leave_last_out,
    "ratio": temporal_ratio,
    "temporal": global_temporal,
    "random": random_ratio,
    "cold-items": cold_items,
    "cold-users": cold_users,
}


def split(data: Interactions, method: str, **params: Any) -> Split:
    """Split ``data`` with the method named ``method`` (see :data:`METHODS`).

    Unknown methods and parameter names are :class:`ConfigError` (with a suggestion);
    numeric parameters given as strings (from a command line) are parsed.

    Examples
    --------
    >>> from recstack.data.synthetic import make_shop
    >>> s = split(make_shop(n_users=50, n_items=20, seed=0), "ratio", test=0.25)
    >>> s.info["method"], s.info["params"]
    ('ratio', {'test': 0.25, 'valid': 0.0})
    """
    if method not in METHODS:
        raise ConfigError(f"unknown split method {method!r}{_hint(method, METHODS)}")
    fn = METHODS[method]
    sig = dict(list(inspect.signature(fn).parameters.items())[1:])
    for name in params:
        if name not in sig:
            raise ConfigError(
                f"split method {method!r} has no parameter {name!r}{_hint(name, sig)}"
            )
    for name, p in sig.items():
        if p.default is inspect.Parameter.empty and name not in params:
            raise ConfigError(f"split method {method!r} needs the parameter {name!r}")
    return fn(data, **{k: _coerce(k, v, sig[k].default) for k, v in params.items()})


# ---------------------------------------------------------------------------- helpers
def _positions(data: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """Each event's position in its user's sequence and that user's length, (n_events,) int64."""
    pos = np.arange(data.n_events) - data.indptr[data.user]
    return pos, data.user_lengths[data.user]


def _label(
    placed: np.ndarray, rank: np.ndarray, n_test: np.ndarray | int, n_held: np.ndarray | int
) -> np.ndarray:
    """Part of each event: test if ``rank < n_test``, valid if ``rank < n_held``, else train;
    events of users not ``placed`` are train. (n_events,) int8."""
    part = np.where(rank < n_test, _TEST, np.where(rank < n_held, _VALID, _TRAIN))
    return np.where(placed, part, _TRAIN).astype(np.int8)


def _ratio_counts(
    lengths: np.ndarray, test: float, valid: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-user test and valid counts of a ratio split and whether the user is split at all."""
    need_valid = int(valid > 0)
    placed = lengths >= 2 + need_valid
    n_test = np.clip(np.floor(test * lengths + 0.5), 1, lengths - 1 - need_valid)
    n_valid = np.clip(np.floor(valid * lengths + 0.5), need_valid, lengths - 1 - n_test)
    n_test = np.where(placed, n_test, 0).astype(np.int64)
    n_valid = np.where(placed, n_valid, 0).astype(np.int64)
    return n_test, n_valid, placed


def _boundary_ties(data: Interactions, part: np.ndarray) -> int:
    """Users whose first held-out event has the same time as the event before it: their
    split depends on file order (as in every stable-sort protocol)."""
    change = np.flatnonzero((part[1:] != part[:-1]) & (data.user[1:] == data.user[:-1]))
    return len(np.unique(data.user[change[data.time[change] == data.time[change + 1]]]))


def _finish(
    data: Interactions, part: np.ndarray, method: str, params: dict[str, Any], **counts: Any
) -> Split:
    """The Split of ``data`` by event labels ``part``, with counts common to every method."""
    train = data.select(part == _TRAIN)
    has_valid = bool((part == _VALID).any())
    valid = data.select(part == _VALID) if has_valid else None
    test = data.select(part == _TEST)
    if test.n_events == 0:
        short = (
            f" ({counts['users_too_short']} users have too few events)"
            if counts.get("users_too_short")
            else ""
        )
        raise ConfigError(f"split {method!r} with {params}: the test part is empty{short}")

    def present(x: np.ndarray, n: int) -> np.ndarray:
        return np.bincount(x, minlength=n) > 0

    train_users = present(train.user, data.n_users)
    history_users = train_users.copy()
    if valid is not None:
        history_users |= present(valid.user, data.n_users)
    test_users = present(test.user, data.n_users)
    train_items = present(train.item, data.n_items)
    test_items = present(test.item, data.n_items)
    info: dict[str, Any] = {
        "method": method,
        "params": params,
        "events": {
            "train": train.n_events,
            "valid": 0 if valid is None else valid.n_events,
            "test": test.n_events,
        },
        "test_users": int(test_users.sum()),
        "test_users_without_train": int((test_users & ~train_users).sum()),
        "test_users_without_history": int((test_users & ~history_users).sum()),
        "test_items_without_train": int((test_items & ~train_items).sum()),
        "test_events_without_train_item": int((~train_items[test.item]).sum()),
        **counts,
    }
    return Split(train, valid, test, info)


def _count_users(data: Interactions, event_mask: np.ndarray) -> int:
    """Distinct users among the events of ``event_mask``."""
    return int((np.bincount(data.user[event_mask], minlength=data.n_users) > 0).sum())


def _check_nonempty(data: Interactions) -> None:
    if data.n_events == 0:
        raise DataError("cannot split a log without events")


def _round(x: float) -> int:
    """Round half up (Python's round() rounds half to even)."""
    return int(np.floor(x + 0.5))


def _int(name: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lo:
        raise ConfigError(f"{name} must be an integer >= {lo}, got {value!r}")
    return int(value)


def _fractions(a: Any, b: Any, name_a: str, name_b: str | None) -> tuple[float, ...]:
    """Validate a held-out fraction in (0, 1) and an optional second one in [0, 1) whose
    sum stays below 1."""
    out = []
    for name, value, zero_ok in ((name_a, a, False), (name_b, b, True)):
        if name is None:
            continue
        ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(
            value, bool
        )
        if not ok or not (0 <= value < 1) or (value == 0 and not zero_ok):
            interval = "[0, 1)" if zero_ok else "(0, 1)"
            raise ConfigError(f"{name} must be a number in {interval}, got {value!r}")
        out.append(float(value))
    if len(out) == 2 and out[0] + out[1] >= 1:
        raise ConfigError(f"{name_a} + {name_b} must be below 1, got {a!r} + {b!r}")
    return tuple(out)


def _cutoff(data: Interactions, name: str, value: Any) -> float:
    """A cutoff time from a quantile in (0, 1), a time, or a date string/datetime."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):  # else a date
            value = float(value)
    if isinstance(value, str | dt.datetime | dt.date | np.datetime64):
        try:
            return pd.Timestamp(value).value / 1e9  # naive dates are UTC, as readers take them
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{name} must be a number or a date, got {value!r}") from exc
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.integer | np.floating)
        or not np.isfinite(value)
    ):
        raise ConfigError(f"{name} must be a quantile in (0, 1), a time or a date, got {value!r}")
    if 0 < value < 1:
        k = min(data.n_events - 1, _round(float(value) * data.n_events))
        return float(np.partition(data.time, k)[k])
    return float(value)


def _jsonable(value: Any) -> Any:
    """A parameter as recorded in ``info`` (dates as ISO strings, numpy scalars as Python)."""
    if isinstance(value, dt.date | np.datetime64):
        return pd.Timestamp(value).isoformat()
    return value.item() if isinstance(value, np.generic) else value


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Parse a string given for a numeric parameter (command lines give strings)."""
    kind = type(default)
    if not isinstance(value, str) or kind not in (int, float):
        return value
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(
            f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}"
        ) from None


def _hint(name: str, known: Any) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    suggestion = f"; did you mean {close[0]!r}?" if close else ""
    return f"{suggestion} (known: {', '.join(known)})"
