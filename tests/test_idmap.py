"""IdMap: the bijection between external IDs (str at the edges) and int32 indices."""

from __future__ import annotations

import doctest
import hashlib
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import recstack.data.idmap as idmap_module
from recstack.data import IdMap
from recstack.data.idmap import as_id_array
from recstack.errors import ConfigError, DataError, UnknownIdError

ids_st = st.lists(st.text(max_size=6), unique=True, max_size=40)


@settings(max_examples=60, deadline=None)
@given(ids_st)
def test_index_inverts_ids(ids: list[str]) -> None:
    m = IdMap(ids)
    assert len(m) == len(ids)
    np.testing.assert_array_equal(m.index(m.ids), np.arange(len(ids)))
    assert m.index(m.ids).dtype == np.int32
    assert m.ids.tolist() == ids
    np.testing.assert_array_equal(m.to_ids(np.arange(len(ids))), m.ids)
    for i, ext in enumerate(ids):
        assert m.index([ext]).tolist() == [i]
        assert ext in m


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-(10**12), 10**12), max_size=40))
def test_from_ids_first_appearance_and_int_str_float_equivalence(values: list[int]) -> None:
    m = IdMap.from_ids(values)
    first = list(dict.fromkeys(values))  # order of first appearance
    assert m.ids.tolist() == [str(v) for v in first]
    assert m == IdMap.from_ids([str(v) for v in values])
    assert m == IdMap.from_ids(np.asarray(values, dtype=np.int64))
    if values:
        np.testing.assert_array_equal(m.index([float(v) for v in first]), np.arange(len(first)))


def test_id_kinds_are_one_id() -> None:
    m = IdMap.from_ids([196, 7, 12])
    # a CSV integer, a token, a float from a column with missing values, numpy scalars
    for same in (196, "196", 196.0, np.int64(196), np.float32(196.0), np.float64(196.0)):
        assert same in m
        assert m.index(same).tolist() == [0]
    assert m.index(pd.Series([7.0, np.nan, 12.0]), unknown="ignore").tolist() == [1, -1, 2]
    assert m.index(pd.Series([7, 12], dtype="Int64")).tolist() == [1, 2]
    # mixed lists: the float element still loses its ".0" (numpy would keep "196.0")
    assert m.index([196.0, "7"]).tolist() == [0, 1]
    # a fractional float ID is kept as written, and does not change its neighbours
    assert as_id_array(np.array([1.0, 2.5])).tolist() == ["1", "2.5"]
    assert "196.5" not in m and 196.5 not in m


def test_unknown_policies() -> None:
    m = IdMap.from_ids(["a", "b"], name="item")
    with pytest.raises(UnknownIdError, match=r"1 unknown item ID\(s\), e\.g\. 'zz'"):
        m.index(["a", "zz"])
    with pytest.warns(UserWarning, match="unknown item ID.*'zz'"):
        assert m.index(["a", "zz"], unknown="warn").tolist() == [0, -1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert m.index(["zz", "b"], unknown="ignore").tolist() == [-1, 1]
        assert m.index(["a"], unknown="warn").tolist() == [0]  # nothing unknown: no warning
    with pytest.raises(ConfigError, match="unknown= must be one of"):
        m.index(["a"], unknown="skip")  # type: ignore[arg-type]
    assert isinstance(UnknownIdError("x"), KeyError)
    assert m.to_ids(np.array([[1, -1], [0, 0]])).tolist() == [["b", None], ["a", "a"]]


@settings(max_examples=60, deadline=None)
@given(ids_st, st.lists(st.text(max_size=6), max_size=40))
def test_extend_keeps_old_indices(old: list[str], new: list[str]) -> None:
    m = IdMap(old, name="user")
    ext = m.extend(new)
    assert ext.name == "user"
    assert ext.ids[: len(old)].tolist() == old
    added = [x for x in dict.fromkeys(new) if x not in set(old)]
    assert ext.ids[len(old) :].tolist() == added
    np.testing.assert_array_equal(ext.index(old), np.arange(len(old)))


def test_checksum_stable_and_order_sensitive() -> None:
    # a fixed value: saved models and splits compare it across processes and versions
    expected = hashlib.sha256(b"2\x1ea\x1fb\x1e").hexdigest()
    assert IdMap(["a", "b"]).checksum() == expected
    assert IdMap(["a", "b"]).checksum() == IdMap.from_ids(["a", "b", "a"]).checksum()
    assert IdMap(["a", "b"]).checksum() != IdMap(["b", "a"]).checksum()
    assert IdMap([]).checksum() != IdMap([""]).checksum()
    assert IdMap(["a\x1fb"]).checksum() != IdMap(["a", "b"]).checksum()
    assert hash(IdMap(["a", "b"])) == hash(IdMap(["a", "b"]))


def test_checksum_of_a_large_map() -> None:
    ids = np.arange(250_000)
    m = IdMap(ids)
    assert m.checksum() == IdMap(ids.astype(str)).checksum()
    changed = ids.copy()
    changed[-1] = -1
    assert m.checksum() != IdMap(changed).checksum()


def test_duplicates_and_missing_ids_rejected() -> None:
    with pytest.raises(DataError, match="user map: external ID 'a' appears more than once"):
        IdMap(["a", "b", "a"], name="user")
    with pytest.raises(DataError, match="external ID '3' appears more than once"):
        IdMap([3, "3"])  # one ID written two ways
    with pytest.raises(DataError, match="item map: the external ID at position 1 is missing"):
        IdMap(["a", None], name="item")
    with pytest.raises(DataError, match="at position 0 is missing"):
        IdMap.from_ids(np.array([np.nan, 1.0]))


def test_equality_repr_frame_and_immutability() -> None:
    m = IdMap.from_ids([30, 10, 20, 40], name="item")
    assert m == IdMap(["30", "10", "20", "40"]) and m != IdMap(["10", "30", "20", "40"])
    assert m != ["30", "10", "20", "40"]
    assert repr(m) == "IdMap(item: 4 ids [30, 10, 20, ...])"
    frame = m.to_frame()
    assert frame["index"].tolist() == [0, 1, 2, 3] and frame["id"].tolist() == m.ids.tolist()
    assert frame["index"].dtype == np.int32
    with pytest.raises(ValueError, match="read-only"):
        m.ids[0] = "x"
    assert m.index([]).shape == (0,)
    assert "30" in m and ["30"] not in m and "99" not in m


def test_docstring_examples() -> None:
    result = doctest.testmod(idmap_module, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0
