"""Interactions (sorting, matrix, select/concat, features, from_frame errors) and Histories."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recstack.data import Histories, IdMap, Interactions
from recstack.errors import DataError, UnknownIdError


def frame(users: list, items: list, times: list | None = None, ratings: list | None = None):
    df = pd.DataFrame({"user_id": users, "item_id": items})
    if times is not None:
        df["timestamp"] = times
    if ratings is not None:
        df["rating"] = ratings
    return df


@pytest.fixture
def log() -> Interactions:
    # u2 appears first; ties at t=5 for u1 keep input order (b before a)
    return Interactions.from_frame(
        frame(
            ["u2", "u1", "u1", "u1", "u2", "u1"],
            ["a", "b", "a", "c", "c", "b"],
            [3, 5, 5, 1, 1, 9],
            [4.0, 3.0, 2.0, 5.0, 1.0, 4.5],
        )
    )


# --------------------------------------------------------------------- sorting
def test_sorted_by_user_then_time_ties_in_input_order(log: Interactions) -> None:
    assert log.users.ids.tolist() == ["u2", "u1"]  # first appearance
    assert log.items.ids.tolist() == ["a", "b", "c"]
    assert log.users.ids[log.user].tolist() == ["u2", "u2", "u1", "u1", "u1", "u1"]
    assert log.items.ids[log.item].tolist() == ["c", "a", "c", "b", "a", "b"]
    assert log.time.tolist() == [1, 3, 1, 5, 5, 9]
    assert log.value.tolist() == [1.0, 4.0, 5.0, 3.0, 2.0, 4.5]
    assert log.indptr.tolist() == [0, 2, 6]
    for arr in (log.user, log.item, log.value, log.time):
        assert not arr.flags.writeable


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 6), st.integers(0, 3), st.integers(1, 5)),
        min_size=1,
        max_size=40,
    )
)
def test_sort_and_matrix_against_brute_force(events: list[tuple[int, int, int, int]]) -> None:
    df = pd.DataFrame(events, columns=["user_id", "item_id", "timestamp", "rating"])
    data = Interactions.from_frame(df)
    uidx = data.users.index(df["user_id"])
    iidx = data.items.index(df["item_id"])
    # reference: stable sort of the input rows by (user index, time)
    order = sorted(range(len(df)), key=lambda r: (uidx[r], df["timestamp"][r]))
    np.testing.assert_array_equal(data.user, uidx[order])
    np.testing.assert_array_equal(data.item, iidx[order])
    np.testing.assert_array_equal(data.time, df["timestamp"].to_numpy()[order])
    # reference matrix: the last event of each pair in that order
    last: dict[tuple[int, int], float] = {}
    for r in order:
        last[(int(uidx[r]), int(iidx[r]))] = float(df["rating"][r])
    dense = np.zeros((data.n_users, data.n_items), dtype=np.float32)
    for (u, i), v in last.items():
        dense[u, i] = v
    np.testing.assert_array_equal(data.matrix.toarray(), dense)
    assert data.matrix.nnz == len(last) and data.matrix.dtype == np.float32
    np.testing.assert_array_equal(data.histories().to_csr().toarray(), dense)
    assert data.item_user_counts.tolist() == [
        len({u for (u, i) in last if i == j}) for j in range(data.n_items)
    ]


def test_matrix_keeps_last_value_of_repeated_pair() -> None:
    data = Interactions.from_frame(
        frame(["u", "u", "u", "u"], ["a", "a", "a", "b"], [2, 1, 2, 0], [5.0, 1.0, 3.0, 0.0])
    )
    # time order: a@1 (1.0), a@2 (5.0), a@2 (3.0, later in the input) -> 3.0
    assert data.matrix.toarray().tolist() == [[3.0, 0.0]]
    assert data.matrix.nnz == 2  # a rating of 0 is still an interaction
    assert data.item_user_counts.tolist() == [1, 1]
    assert data.density == 1.0


# --------------------------------------------------------------------- select / concat
def test_select_keeps_maps_and_features(log: Interactions) -> None:
    feats = pd.DataFrame({"genre": ["x", "y", "z"]}, index=["a", "b", "c"])
    data = Interactions.from_frame(log.to_frame(), item_features=feats)
    mask = data.time >= 5
    sub = data.select(mask)
    assert sub.users == data.users and sub.items == data.items
    assert sub.item_features is not None and sub.item_features.equals(data.item_features)
    assert sub.n_events == 3 and np.all(sub.time >= 5)
    assert sub.select(np.array([0, 2])).time.tolist() == [5, 9]
    assert data.select(np.array([], dtype=np.int64)).n_events == 0
    with pytest.raises(DataError, match="mask has 2 entries for 6 events"):
        data.select(np.array([True, False]))


def test_concat_puts_self_first_on_ties(log: Interactions) -> None:
    first = log.select(log.item == log.items.index("a")[0])
    second = log.select(log.item != log.items.index("a")[0])
    both = second.concat(first)
    assert both.users == log.users and both.items == log.items
    assert both.n_events == log.n_events
    # u1 at t=5 has "b" then "a" in the input; concat orders equal times by part
    u1 = both.indptr[1]
    assert both.items.ids[both.item[u1 : u1 + 4]].tolist() == ["c", "b", "a", "b"]
    swapped = first.concat(second)
    assert swapped.items.ids[swapped.item[u1 : u1 + 4]].tolist() == ["c", "a", "b", "b"]
    assert log.concat(log.select(np.zeros(log.n_events, bool))).n_events == log.n_events
    other = Interactions.from_frame(frame(["u9"], ["a"]))
    with pytest.raises(DataError, match="different ID maps"):
        log.concat(other)


def test_with_values_and_to_frame_round_trip(log: Interactions) -> None:
    ones = log.with_values(np.ones(log.n_events))
    assert ones.value.tolist() == [1.0] * 6 and ones.time.tolist() == log.time.tolist()
    again = Interactions.from_frame(log.to_frame(), users=log.users, items=log.items)
    for a, b in ((again.user, log.user), (again.item, log.item), (again.value, log.value)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(DataError, match="differ in length"):
        log.with_values(np.ones(2))


# --------------------------------------------------------------------- features
def test_feature_tables_aligned_to_map_order() -> None:
    items = pd.DataFrame({"genre": ["y", "z", "w"], "year": [2001, 1999, 2010]}, index=[20, 30, 40])
    users = pd.DataFrame({"age": [30.0]}, index=["u2"])
    data = Interactions.from_frame(
        frame(["u1", "u2"], [10, 20]), item_features=items, user_features=users
    )
    # item 30 and 40 appear only in the feature table: still part of the catalog
    assert data.items.ids.tolist() == ["10", "20", "30", "40"]
    feats = data.item_features
    assert feats is not None and feats.index.tolist() == ["10", "20", "30", "40"]
    assert feats.index.name == "item_id"
    assert np.isnan(feats.loc["10", "year"]) and feats.loc["20", "genre"] == "y"
    assert feats["year"].tolist()[1:] == [2001, 1999, 2010]
    ufeats = data.user_features
    assert ufeats is not None and ufeats.index.tolist() == ["u1", "u2"]
    assert np.isnan(ufeats.loc["u1", "age"]) and ufeats.loc["u2", "age"] == 30.0


def test_duplicate_feature_rows_rejected() -> None:
    feats = pd.DataFrame({"g": [1, 2]}, index=[5, "5"])
    with pytest.raises(DataError, match="item features: item ID '5' appears in more than one"):
        Interactions.from_frame(frame(["u"], [5]), item_features=feats)


def test_given_maps_are_extended_never_reordered() -> None:
    items = IdMap(["z", "y"], "item")
    data = Interactions.from_frame(frame(["u", "u"], ["x", "y"]), items=items)
    assert data.items.ids.tolist() == ["z", "y", "x"]
    assert data.item_user_counts.tolist() == [0, 1, 1]


# --------------------------------------------------------------------- from_frame
def test_implicit_defaults() -> None:
    data = Interactions.from_frame(frame(["a", "a", "b"], [1, 2, 1]))
    assert data.value.tolist() == [1.0, 1.0, 1.0]
    assert data.time.tolist() == [0.0, 1.0, 2.0]  # file order is time order
    named = Interactions.from_frame(
        pd.DataFrame({"U": ["a"], "I": [1], "R": [4], "T": [7]}),
        user_col="U",
        item_col="I",
        rating_col="R",
        time_col="T",
    )
    assert named.value.tolist() == [4.0] and named.time.tolist() == [7.0]


def test_datetime_timestamps_in_unix_seconds() -> None:
    expected = [1577836800.0, 1577836801.0]  # 2020-01-01T00:00:00Z and one second later
    for stamps in (
        pd.Series(np.array(["2020-01-01T00:00:00", "2020-01-01T00:00:01"], "datetime64[s]")),
        pd.Series(pd.to_datetime(["2020-01-01 00:00:00", "2020-01-01 00:00:01"])),
        pd.Series(pd.to_datetime(["2020-01-01 01:00:00", "2020-01-01 01:00:01"])).dt.tz_localize(
            "Europe/Paris"
        ),
    ):
        data = Interactions.from_frame(frame(["u", "u"], [1, 2], stamps))
        assert data.time.tolist() == expected
    nat = pd.Series(pd.to_datetime(["2020-01-01", None]))
    with pytest.raises(DataError, match=r"'timestamp' \(timestamp\) .* at row 1: NaT"):
        Interactions.from_frame(frame(["u", "u"], [1, 2], nat))


def test_from_frame_missing_column() -> None:
    with pytest.raises(DataError, match=r"ratings\.csv: no user column 'user_id'; columns are"):
        Interactions.from_frame(pd.DataFrame({"uid": [1], "item_id": [1]}), source="ratings.csv")
    with pytest.raises(DataError, match="no item column 'movie'"):
        Interactions.from_frame(frame([1], [1]), item_col="movie")
    with pytest.raises(DataError, match="no rating column 'stars'"):
        Interactions.from_frame(frame([1], [1]), rating_col="stars")
    with pytest.raises(DataError, match="no timestamp column 'when'"):
        Interactions.from_frame(frame([1], [1]), time_col="when")


def test_from_frame_empty_ids() -> None:
    with pytest.raises(DataError, match=r"f\.csv: column 'user_id' is empty at row 12"):
        Interactions.from_frame(frame([1, 2, None], [1, 2, 3]), source="f.csv", first_row=10)
    with pytest.raises(DataError, match="column 'item_id' is empty at row 1"):
        Interactions.from_frame(frame(["a", "b"], ["x", ""]))
    with pytest.raises(DataError, match="column 'item_id' is empty at row 0"):
        Interactions.from_frame(frame(["a", "b"], [np.nan, 1.0]))


def test_from_frame_bad_numbers() -> None:
    with pytest.raises(
        DataError,
        match=r"column 'rating' \(rating\) has a value that is not a finite number at row 1: 'x'",
    ):
        Interactions.from_frame(frame(["a", "b"], [1, 2], ratings=["4", "x"]))
    with pytest.raises(DataError, match=r"'timestamp' \(timestamp\) .* at row 5: inf"):
        Interactions.from_frame(frame(["a"], [1], [np.inf]), first_row=5)
    with pytest.raises(DataError, match=r"'rating' .* at row 0: nan"):
        Interactions.from_frame(frame(["a"], [1], ratings=[np.nan]))


def test_from_frame_empty() -> None:
    with pytest.raises(DataError, match=r"data\.csv: no events \(the table is empty\)"):
        Interactions.from_frame(frame([], []), source="data.csv")


def test_constructor_checks_indices() -> None:
    users, items = IdMap(["u"], "user"), IdMap(["a", "b"], "item")
    with pytest.raises(DataError, match=r"item indices must lie in \[0, 2\), got 0 \.\. 2"):
        Interactions(users, items, [0, 0], [0, 2], [1.0, 1.0], [0.0, 1.0])
    with pytest.raises(DataError, match="user indices"):
        Interactions(users, items, [-1], [0], [1.0], [0.0])
    with pytest.raises(DataError, match="differ in length"):
        Interactions(users, items, [0], [0, 1], [1.0], [0.0])


def test_views(log: Interactions) -> None:
    assert (log.n_users, log.n_items, log.n_events, len(log)) == (2, 3, 6, 6)
    assert log.user_lengths.tolist() == [2, 4]
    assert log.density == pytest.approx(5 / 6)  # 5 distinct pairs
    assert repr(log).startswith("Interactions(6 events, 2 users, 3 items")
    empty_user = Interactions(IdMap(["a", "b"], "user"), log.items, [1], [0], [1.0], [0.0])
    assert empty_user.active_users().tolist() == [1]
    assert list(log.to_frame().columns) == ["user_id", "item_id", "rating", "timestamp"]


# --------------------------------------------------------------------- Histories
def test_histories_of_users(log: Interactions) -> None:
    h = log.histories([1, 0, 1])
    assert len(h) == 3 and h.users.tolist() == [1, 0, 1]
    assert h.lengths.tolist() == [4, 2, 4]
    assert h.rows.tolist() == [0] * 4 + [1] * 2 + [2] * 4
    assert log.items.ids[h.items[:4]].tolist() == ["c", "b", "a", "b"]
    assert h.times[:4].tolist() == [1, 5, 5, 9] and h.n_items == 3
    # the repeated item b keeps its last value (4.5)
    assert h.to_csr().toarray()[0].tolist() == [2.0, 4.5, 5.0]
    assert len(log.histories()) == 2


def test_histories_select() -> None:
    h = Histories.from_lists([[0, 1], [], [2], [3, 4, 0]], 5, values=[[1, 2], [], [3], [4, 5, 6]])
    for rows, want in (
        ([3, 0], [[3, 4, 0], [0, 1]]),
        ([], []),
        (np.array([], dtype=np.int64), []),
        ([1, 1], [[], []]),
        (slice(1, 3), [[], [2]]),
        (slice(None, None, -2), [[3, 4, 0], []]),
        ([-1], [[3, 4, 0]]),
        (np.array([True, False, True, False]), [[0, 1], [2]]),
    ):
        sub = h.select(rows)
        got = [
            sub.items[a:b].tolist() for a, b in zip(sub.indptr[:-1], sub.indptr[1:], strict=True)
        ]
        assert got == want, rows
        assert sub.indptr.dtype == np.int64 and sub.n_items == 5
        assert sub.users is not None and len(sub.users) == len(want)
    assert h.select([3]).values.tolist() == [4, 5, 6]
    assert h.select([3]).times.tolist() == [0, 1, 2]
    with pytest.raises(IndexError, match="out of range for 4 histories"):
        h.select([4])
    with pytest.raises(IndexError, match="out of range"):
        h.select([-5])
    with pytest.raises(IndexError, match="boolean mask of shape"):
        h.select(np.array([True]))


def test_histories_from_lists_validation() -> None:
    h = Histories.from_lists([[2, 0], []], 3)
    assert h.indptr.tolist() == [0, 2, 2] and h.items.dtype == np.int32
    assert h.values.tolist() == [1.0, 1.0] and h.users.tolist() == [-1, -1]
    assert Histories.from_lists([], 3).indptr.tolist() == [0]
    assert Histories.from_lists([np.array([1, 2])], 3).items.tolist() == [1, 2]
    with pytest.raises(DataError, match=r"history item index 3 is outside the catalog \[0, 3\)"):
        Histories.from_lists([[0], [3]], 3)
    with pytest.raises(DataError, match="outside the catalog"):
        Histories.from_lists([[-1]], 3)
    with pytest.raises(DataError, match="must be integers"):
        Histories.from_lists([[0.5]], 3)
    with pytest.raises(DataError, match="must be integers"):
        Histories.from_lists([["a"]], 3)
    with pytest.raises(DataError, match="values need one list per user"):
        Histories.from_lists([[0], [1, 2]], 3, values=[[1.0, 2.0], [3.0]])  # same total
    with pytest.raises(DataError, match="values need one list per user"):
        Histories.from_lists([[0]], 3, values=[[1.0], [2.0]])
    assert Histories.from_lists([[], [1]], 3, values=[[], [2.5]]).values.tolist() == [2.5]
    # times: one list per user, as long as its items; positions when absent
    assert h.times.tolist() == [0.0, 1.0]
    timed = Histories.from_lists([[2, 0], [1]], 3, times=[[10, 10.5], [3]])
    assert timed.times.tolist() == [10.0, 10.5, 3.0]  # each history on its own clock
    with pytest.raises(DataError, match="times need one list per user"):
        Histories.from_lists([[0], [1]], 3, times=[[1.0, 2.0]])
    with pytest.raises(DataError, match="history 1 goes from 5 to 4"):
        Histories.from_lists([[0], [1, 2]], 3, times=[[9], [5, 4]])
    with pytest.raises(DataError, match="finite"):
        Histories.from_lists([[0]], 3, times=[[np.nan]])
    with pytest.raises(DataError, match="times must be numbers"):
        Histories.from_lists([[0]], 3, times=[["noon"]])


def test_histories_from_ids() -> None:
    items = IdMap(["a", "b", "c"], "item")
    h = Histories.from_ids(items, [["c", "a"], [], ["b"]])
    assert h.items.tolist() == [2, 0, 1] and h.indptr.tolist() == [0, 2, 2, 3]
    with pytest.raises(UnknownIdError, match="'zz'"):
        Histories.from_ids(items, [["a", "zz"]])
    assert Histories.from_ids(items, [["zz", "a"]], unknown="ignore").items.tolist() == [0]
    with pytest.warns(UserWarning, match="zz"):
        Histories.from_ids(items, [["zz"]], unknown="warn")
    # an unknown item leaves with its time
    h = Histories.from_ids(items, [["a", "zz", "b"]], unknown="ignore", times=[[1, 2, 3]])
    assert h.items.tolist() == [0, 1] and h.times.tolist() == [1.0, 3.0]
    with pytest.raises(DataError, match="times need one list per user"):
        Histories.from_ids(items, [["a", "b"]], times=[[1]])


def test_histories_decayed() -> None:
    h = Histories.from_lists([[0, 1, 2], [], [3]], 5, values=[[2, 4, 8], [], [5]])
    d = h.decayed(2.0)
    np.testing.assert_allclose(d.values, [2 * 2**-1, 4 * 2**-0.5, 8, 5])
    np.testing.assert_allclose(h.decayed(1.0, ones=True).values, [0.25, 0.5, 1, 1])
    np.testing.assert_array_equal(d.items, h.items)
    np.testing.assert_array_equal(d.indptr, h.indptr)
    np.testing.assert_array_equal(h.values, [2, 4, 8, 5])  # the original is untouched
