"""Preprocessing: hand-checked cases, brute-force references, reports, same ID space."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recstack.data import IdMap, Interactions
from recstack.data.preprocess import Report, dedupe, kcore, to_implicit
from recstack.data.readers import read_atomic
from recstack.errors import ConfigError, DataError


def _data(rows: list[tuple[str, str, float, float]]) -> Interactions:
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    return Interactions.from_frame(df)


def _events(data: Interactions) -> list[tuple[str, str, float, float]]:
    f = data.to_frame()
    return list(
        zip(f.user_id, f.item_id, f.rating.astype(float), f.timestamp.astype(float), strict=True)
    )


DUPS = [
    ("a", "x", 1.0, 10.0),
    ("a", "y", 2.0, 11.0),
    ("a", "x", 3.0, 12.0),
    ("b", "x", 4.0, 5.0),
    ("a", "x", 5.0, 12.0),  # same time as the 3.0 event: file order breaks the tie
]


@pytest.mark.parametrize(
    ("keep", "expected"),
    [
        ("first", [("a", "x", 1.0, 10.0), ("a", "y", 2.0, 11.0), ("b", "x", 4.0, 5.0)]),
        ("last", [("a", "y", 2.0, 11.0), ("a", "x", 5.0, 12.0), ("b", "x", 4.0, 5.0)]),
        ("sum", [("a", "y", 2.0, 11.0), ("a", "x", 9.0, 12.0), ("b", "x", 4.0, 5.0)]),
    ],
)
def test_dedupe_by_hand(keep: str, expected: list) -> None:
    data = _data(DUPS)
    out, report = dedupe(data, keep=keep)  # type: ignore[arg-type]
    assert _events(out) == expected
    assert out.users is data.users and out.items is data.items
    assert (report.events_before, report.events_after, report.events_dropped) == (5, 3, 2)
    assert report.details == {"pairs_merged": 1}


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 4), st.integers(1, 5), st.integers(0, 3)),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from(["first", "last", "sum"]),
)
def test_dedupe_matches_pandas(rows: list, keep: str) -> None:
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"]).astype(float)
    data = Interactions.from_frame(df)
    out, report = dedupe(data, keep=keep)  # type: ignore[arg-type]
    # reference: stable sort by (user, time) as Interactions does, then group pairs
    ref = data.to_frame()
    g = ref.groupby(["user_id", "item_id"], sort=False)
    if keep == "first":
        ref = ref[~ref.duplicated(["user_id", "item_id"], keep="first")]
    else:
        total = g["rating"].transform("sum")
        ref = ref.assign(rating=total if keep == "sum" else ref["rating"])
        ref = ref[~ref.duplicated(["user_id", "item_id"], keep="last")]
    got = out.to_frame()
    pd.testing.assert_frame_equal(got.reset_index(drop=True), ref.reset_index(drop=True))
    assert report.events_dropped == len(df) - len(ref)


def test_to_implicit() -> None:
    data = _data([("a", "x", 5.0, 1.0), ("a", "y", 3.0, 2.0), ("b", "y", 4.0, 3.0)])
    out, report = to_implicit(data, threshold=4)
    assert _events(out) == [("a", "x", 1.0, 1.0), ("b", "y", 1.0, 3.0)]
    assert out.items == data.items and out.n_items == 2
    assert report.events_dropped == 1
    assert report.details == {"users_left_empty": 0, "items_left_empty": 0}
    out, report = to_implicit(data, threshold=5)
    assert report.details == {"users_left_empty": 1, "items_left_empty": 1}


def _kcore_reference(pairs: list[tuple[int, int]], uk: int, ik: int) -> set[int]:
    """Indices of the surviving events, removing one offending event at a time (an event
    whose user or item is below its minimum can be in no k-core, so the order is free)."""
    alive = set(range(len(pairs)))
    while True:
        users = Counter(pairs[e][0] for e in alive)
        items = Counter(pairs[e][1] for e in alive)
        bad = [e for e in alive if users[pairs[e][0]] < uk or items[pairs[e][1]] < ik]
        if not bad:
            return alive
        alive.remove(min(bad))


def test_kcore_needs_several_rounds() -> None:
    # a chain: dropping user c (1 event) leaves item z with 1 event, which drops user b's z,
    # leaving user b with 1 event, ... down to nothing but the a/b/x/y square
    rows = [
        ("a", "x"), ("a", "y"), ("b", "x"), ("b", "y"),
        ("b", "z"), ("c", "z"), ("d", "w"),
    ]  # fmt: skip
    data = _data([(u, i, 1.0, float(t)) for t, (u, i) in enumerate(rows)])
    out, report = kcore(data, k=2)
    assert sorted((u, i) for u, i, _, _ in _events(out)) == [
        ("a", "x"), ("a", "y"), ("b", "x"), ("b", "y"),
    ]  # fmt: skip
    assert report.details == {"rounds": 2, "users_removed": 2, "items_removed": 2}
    assert out.users == data.users and out.n_users == 4  # the maps are kept
    # every survivor meets k
    assert np.bincount(out.user)[np.bincount(out.user) > 0].min() >= 2
    assert np.bincount(out.item)[np.bincount(out.item) > 0].min() >= 2


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=60),
    st.integers(1, 4),
    st.integers(1, 4),
)
def test_kcore_matches_one_at_a_time_reference(pairs: list, uk: int, ik: int) -> None:
    """The k-core is unique: removing all offenders per round gives what removing one
    offending event at a time gives."""
    data = Interactions(
        IdMap([str(i) for i in range(7)], "user"),
        IdMap([str(i) for i in range(7)], "item"),
        np.array([p[0] for p in pairs]),
        np.array([p[1] for p in pairs]),
        np.ones(len(pairs)),
        np.arange(len(pairs), dtype=float),
    )
    alive = _kcore_reference(pairs, uk, ik)
    if not alive:
        with pytest.raises(DataError, match="removes every one"):
            kcore(data, user_k=uk, item_k=ik)
        return
    out, report = kcore(data, user_k=uk, item_k=ik)
    # times are the input positions, so they identify the events
    assert sorted(out.time.astype(int).tolist()) == sorted(alive)
    assert report.events_dropped == len(pairs) - len(alive)


def test_reports_are_logged_and_printable(caplog: pytest.LogCaptureFixture) -> None:
    data = _data(DUPS)
    with caplog.at_level(logging.INFO, logger="recstack.data.preprocess"):
        _, report = dedupe(data, keep="last")
    assert "dedupe(keep='last'): 5 -> 3 events (2 dropped, pairs_merged=1)" in caplog.text
    assert str(report) in caplog.text
    assert report.to_dict() == {
        "step": "dedupe",
        "params": {"keep": "last"},
        "events_before": 5,
        "events_after": 3,
        "events_dropped": 2,
        "pairs_merged": 1,
    }
    assert isinstance(report, Report)


def test_bad_parameters() -> None:
    data = _data(DUPS)
    with pytest.raises(ConfigError, match="keep must be 'first', 'last' or 'sum', got 'max'"):
        dedupe(data, keep="max")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="item_k must be an integer >= 1, got 0"):
        kcore(data, item_k=0)
    with pytest.raises(ConfigError, match="threshold must be a finite number"):
        to_implicit(data, float("nan"))
    with pytest.raises(DataError, match=r"kcore with \{'user_k': 9, 'item_k': 9\} removes every"):
        kcore(data, k=9)


def test_ml100k_kcore_is_a_fixed_point(ml100k_dir) -> None:
    data = read_atomic(ml100k_dir)
    out, report = kcore(data, k=20)
    users, items = np.bincount(out.user), np.bincount(out.item)
    assert users[users > 0].min() >= 20 and items[items > 0].min() >= 20
    again, second = kcore(out, k=20)
    assert second.events_dropped == 0 and again.n_events == out.n_events
    assert report.events_dropped > 0 and out.n_items == data.n_items
