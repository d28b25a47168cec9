"""Readers: column detection, separators, atomic files, validation errors, ML-100K, dispatch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recstack.data import IdMap, Interactions
from recstack.data.readers import (
    encode_ids,
    events_to_interactions,
    load_dataset,
    read_atomic,
    read_events,
    read_features,
    read_table,
)
from recstack.data.splits import Split
from recstack.errors import ConfigError, DataError

ROWS = [("u1", "007", 4.0, 100), ("u2", "i2", 3.5, 50), ("u1", "i3", 1.0, 300)]


def _write(path: Path, header: list[str], rows: list[tuple], sep: str = ",") -> Path:
    lines = [sep.join(header)] + [sep.join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _expected() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in ROWS],
            "item_id": [r[1] for r in ROWS],
            "rating": [r[2] for r in ROWS],
            "timestamp": [float(r[3]) for r in ROWS],
        }
    )


def _check(df: pd.DataFrame, expected: pd.DataFrame | None = None) -> None:
    expected = _expected() if expected is None else expected
    assert list(df.columns) == list(expected.columns)
    assert df["user_id"].tolist() == expected["user_id"].tolist()
    assert df["item_id"].tolist() == expected["item_id"].tolist()
    for col in ("rating", "timestamp"):
        if col in expected:
            np.testing.assert_array_equal(df[col].to_numpy(np.float64), expected[col].to_numpy())


# ------------------------------------------------------------------------------ detection
@pytest.mark.parametrize(
    "header",
    [
        ["userId", "movieId", "rating", "timestamp"],
        ["user", "item", "score", "ts"],
        ["userID", "itemId", "value", "time"],
        ["user_id", "movie_id", "ratings", "timestamp"],
        ["USER_ID", "Item_Id", "Rating", "Time"],
    ],
)
def test_column_aliases_are_detected(tmp_path: Path, header: list[str]) -> None:
    _check(read_events(_write(tmp_path / "r.csv", header, ROWS)))


def test_explicit_columns_win_and_other_columns_are_ignored(tmp_path: Path) -> None:
    header = ["who", "what", "stars", "when", "user_id"]
    rows = [(*r, "decoy") for r in ROWS]
    path = _write(tmp_path / "r.csv", header, rows)
    df = read_events(path, user_col="who", item_col="what", rating_col="stars", time_col="when")
    _check(df)


def test_missing_optional_columns_give_implicit_file_order_data(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", ["user", "item"], [r[:2] for r in ROWS])
    df = read_events(path)
    assert list(df.columns) == ["user_id", "item_id"]
    data = read_table(path)
    assert data.value.tolist() == [1.0, 1.0, 1.0]
    # u1's events keep file order (times are row positions 0 and 2)
    assert data.time.tolist() == [0.0, 2.0, 1.0]


@pytest.mark.parametrize(
    ("name", "sep"),
    [("r.csv", ","), ("r.tsv", "\t"), ("r.txt", ";"), ("r.csv", "|"), ("r.txt", "\t")],
)
def test_separator_is_sniffed(tmp_path: Path, name: str, sep: str) -> None:
    path = _write(tmp_path / name, ["user_id", "item_id", "rating", "timestamp"], ROWS, sep)
    _check(read_events(path))


def test_quoted_fields_with_separators(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text('movieId,title,genres\n1,"American President, The (1995)",Comedy|Drama\n')
    f = read_features(path)
    assert f.loc["1", "title"] == "American President, The (1995)"


def test_explicit_separator(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.txt", ["user_id", "item_id", "rating", "timestamp"], ROWS, " ")
    _check(read_events(path, sep=" "))


def test_parquet(tmp_path: Path) -> None:
    df = _expected().rename(columns={"user_id": "userId", "item_id": "itemId"})
    df.to_parquet(tmp_path / "r.parquet")
    _check(read_events(tmp_path / "r.parquet"))


def test_ids_stay_strings(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", ["user", "item"], [("01", "007"), ("1", "7")])
    data = read_table(path)
    assert data.users.ids.tolist() == ["01", "1"]
    assert data.items.ids.tolist() == ["007", "7"]


def test_iso_datetimes_parse_to_unix_seconds(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(
        "user,item,timestamp\n"
        "a,x,1970-01-02T00:00:00Z\n"
        "a,y,2020-01-01T00:00:00+01:00\n"
        "b,x,2020-01-01 00:00:01\n"  # naive: UTC
    )
    np.testing.assert_array_equal(
        read_events(path)["timestamp"].to_numpy(), [86400.0, 1577833200.0, 1577836801.0]
    )


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z0-9_]{1,6}", fullmatch=True),
            st.from_regex(r"[A-Za-z0-9_.-]{1,6}", fullmatch=True),
            st.floats(-1e6, 1e6, allow_nan=False, width=32),
            st.floats(0, 2e9, allow_nan=False),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_csv_values_round_trip_exactly(tmp_path_factory: pytest.TempPathFactory, rows) -> None:
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    path = tmp_path_factory.mktemp("rt") / "r.csv"
    df.to_csv(path, index=False)
    got = read_events(path)
    assert got["user_id"].tolist() == df["user_id"].tolist()
    assert got["item_id"].tolist() == df["item_id"].tolist()
    np.testing.assert_array_equal(got["rating"].to_numpy(), df["rating"].to_numpy())
    np.testing.assert_array_equal(got["timestamp"].to_numpy(), df["timestamp"].to_numpy())


# ------------------------------------------------------------------------------ errors
def test_error_missing_user_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", ["person", "item"], [("a", "b")])
    with pytest.raises(
        DataError, match=r"r\.csv: no user_id column .*\['person', 'item'\].*user_col="
    ):
        read_events(path)


def test_error_misnamed_explicit_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", ["user", "item", "rating"], [("a", "b", 1)])
    with pytest.raises(DataError, match=r"no column 'stars' \(given as rating_col=\)"):
        read_events(path, rating_col="stars")


def test_error_non_numeric_rating_names_column_and_line(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    # a blank line: the reported number is the line in the file, not the row
    path.write_text("user,item,rating\na,x,4\n\nb,y,five\n")
    with pytest.raises(DataError, match=r"r\.csv: column 'rating' \(rating\) has 'five'.* line 4"):
        read_events(path)


def test_error_missing_rating(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\na,x,4\nb,y,\n")
    with pytest.raises(DataError, match=r"column 'rating' \(rating\) is missing at line 3"):
        read_events(path)


def test_error_nan_rating(tmp_path: Path) -> None:
    path = tmp_path / "r.tsv"
    path.write_text("user\titem\trating\na\tx\tNaN\n")
    with pytest.raises(DataError, match=r"column 'rating' \(rating\) is missing at line 2"):
        read_events(path)


def test_error_empty_id(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("user,item\na,x\n,y\n")
    with pytest.raises(DataError, match=r"column 'user' is empty at line 3"):
        read_events(path)


def test_error_empty_file(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text("")
    with pytest.raises(DataError, match=r"r\.csv: the file is empty"):
        read_events(tmp_path / "r.csv")


def test_error_header_only(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text("user,item,rating\n")
    with pytest.raises(DataError, match=r"r\.csv: no events \(the file has a header only\)"):
        read_events(tmp_path / "r.csv")


def test_error_unparsable_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("user,item,time\na,x,2020-01-01T10:00:00\nb,y,yesterday\n")
    with pytest.raises(
        DataError, match=r"column 'time' \(timestamp\) has 'yesterday', not a time, at line 3"
    ):
        read_events(path)


def test_error_garbage_among_numeric_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("user,item,ts\na,x,881250949\nb,y,88125x949\n")
    with pytest.raises(DataError, match=r"column 'ts' \(timestamp\) has '88125x949'.* line 3"):
        read_events(path)


def test_error_wrong_encoding_suggests_encoding(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_bytes("item_id,title\n1,Toy Story\n2,Misérables\n".encode("latin-1"))
    with pytest.raises(
        DataError,
        match=r"byte 0xe9 at line 3, column 'title' is not valid utf-8.*encoding='latin-1'",
    ):
        read_features(path)
    assert read_features(path, encoding="latin-1").loc["2", "title"] == "Misérables"


def test_error_wrong_encoding_deep_in_a_large_file(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    body = "".join(f"u{i},i{i}\n" for i in range(20_000))  # beyond the 64 KiB header sample
    path.write_bytes(("user,item\n" + body + "u,caf\xe9\n").encode("latin-1"))
    with pytest.raises(DataError, match=r"line 20002, column 'item' is not valid utf-8"):
        read_events(path)


def test_error_wrong_number_of_fields(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\na,x,1\nb,y,2,extra\n")
    with pytest.raises(DataError, match=r"line 3 has 4 fields, the header has 3"):
        read_events(path)


def test_error_unknown_extension(tmp_path: Path) -> None:
    (tmp_path / "r.xlsx").write_text("x")
    with pytest.raises(DataError, match=r"unknown file type '\.xlsx'"):
        read_events(tmp_path / "r.xlsx")


def test_error_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: no such file"):
        read_events(tmp_path / "nope.csv")


def test_error_parquet_names_row(tmp_path: Path) -> None:
    df = pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "rating": [1.0, np.inf]})
    df.to_parquet(tmp_path / "r.parquet")
    with pytest.raises(DataError, match=r"column 'rating' \(rating\) has inf.* row 2"):
        read_events(tmp_path / "r.parquet")


def test_error_atomic_header_without_types(tmp_path: Path) -> None:
    path = tmp_path / "x.inter"
    path.write_text("user_id:token\titem_id\n1\t2\n")
    with pytest.raises(DataError, match=r"header field 'item_id' \(line 1\) is not 'name:type'"):
        read_events(path)


def test_error_duplicate_feature_id(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("item_id,title\n1,a\n2,b\n1,c\n")
    with pytest.raises(
        DataError, match=r"item ID '1' \(column 'item_id'\) appears again at line 4"
    ):
        read_features(path)


def test_error_non_numeric_float_feature(tmp_path: Path) -> None:
    path = tmp_path / "x.item"
    path.write_text("item_id:token\tprice:float\n1\t2.5\n2\tcheap\n")
    with pytest.raises(DataError, match=r"column 'price' \(float feature\) has 'cheap'.* line 3"):
        read_features(path)


def test_error_bad_kind_and_types() -> None:
    with pytest.raises(ConfigError, match="kind must be 'item' or 'user'"):
        read_features("x.csv", "movie")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ atomic & features
def _atomic_dir(root: Path) -> Path:
    root.mkdir()
    (root / "toy.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "u1\t007\t4\t100\nu2\ti2\t3.5\t50\nu1\ti3\t1\t300\n"
    )
    (root / "toy.item").write_text(
        "item_id:token\ttitle:token_seq\tyear:token\tprice:float\n"
        '007\tThe "Spy" Who\t1977\t9.5\ni2\tTwo\t\t\ni9\tOnly in features\t01999\t1\n'
    )
    (root / "toy.user").write_text("user_id:token\tzip:token\nu1\t01234\n")
    return root


def test_read_atomic_directory_and_file(tmp_path: Path) -> None:
    root = _atomic_dir(tmp_path / "toy")
    for spec in (root, root / "toy.inter"):
        data = read_atomic(spec)
        assert (data.n_users, data.n_items, data.n_events) == (2, 4, 3)
        # the catalog has the feature-only item i9
        assert data.items.ids.tolist() == ["007", "i2", "i3", "i9"]
        f = data.item_features
        assert f is not None and list(f.columns) == ["title", "year", "price"]
        assert f.attrs["types"] == {"title": "token_seq", "year": "token", "price": "float"}
        assert f.loc["007", "title"] == 'The "Spy" Who'  # atomic files are not quoted
        assert f.loc["i9", "year"] == "01999"  # token: text, leading zero kept
        assert np.isnan(f.loc["i2", "price"]) and pd.isna(f.loc["i2", "year"])
        assert f.loc["i3"].isna().all()  # an event item without a feature row
        assert data.user_features is not None
        assert data.user_features.loc["u1", "zip"] == "01234"
        assert pd.isna(data.user_features.loc["u2", "zip"])


def test_read_atomic_needs_one_inter_file(tmp_path: Path) -> None:
    root = _atomic_dir(tmp_path / "toy")
    (root / "other.inter").write_text("user_id:token\titem_id:token\n1\t2\n")
    with pytest.raises(DataError, match=r"expected one \.inter file .*other\.inter, toy\.inter"):
        read_atomic(root)


def test_csv_features_infer_types_and_accept_declared_ones(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text("userId,zip,age,job\n1,01234,31,data scientist\n2,98765,40,nurse\n")
    f = read_features(path, "user")
    assert f.index.name == "user_id" and f.index.tolist() == ["1", "2"]
    assert f.attrs["types"] == {"zip": "float", "age": "float", "job": "token_seq"}
    g = read_features(path, "user", types={"zip": "token"})
    assert g.loc["1", "zip"] == "01234" and g.attrs["types"]["zip"] == "token"


def test_parquet_features_join_lists(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {"item_id": [1, 2], "genres": [["Action", "Drama"], []], "year": [1999, 2001]}
    )
    df.to_parquet(tmp_path / "items.parquet")
    f = read_features(tmp_path / "items.parquet")
    assert f["genres"].tolist() == ["Action Drama", ""]
    assert f.attrs["types"] == {"genres": "token_seq", "year": "float"}


def test_read_table_item_map_covers_feature_items(tmp_path: Path) -> None:
    events = _write(tmp_path / "r.csv", ["user", "item"], [("a", "x"), ("b", "y")])
    items = tmp_path / "items.csv"
    items.write_text("item,title\nz,Zed\nx,Ex\n")
    data = read_table(events, item_features=items)
    assert data.items.ids.tolist() == ["x", "y", "z"]
    assert data.item_features is not None
    assert data.item_features["title"].tolist()[0] == "Ex"
    assert pd.isna(data.item_features.loc["y", "title"])
    assert data.item_features.loc["z", "title"] == "Zed"


def test_events_to_interactions_matches_from_frame() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "user_id": rng.integers(0, 30, 500).astype(str),
            "item_id": rng.integers(0, 40, 500).astype(str),
            "rating": rng.integers(1, 6, 500).astype(float),
            "timestamp": rng.integers(0, 50, 500).astype(float),
        }
    )
    fast, ref = events_to_interactions(df), Interactions.from_frame(df)
    assert fast.users == ref.users and fast.items == ref.items
    for attr in ("user", "item", "value", "time"):
        np.testing.assert_array_equal(getattr(fast, attr), getattr(ref, attr))


# ------------------------------------------------------------------------------ ML-100K
def test_ml100k_atomic(ml100k_dir: Path) -> None:
    data = read_atomic(ml100k_dir)
    assert (data.n_users, data.n_items, data.n_events) == (943, 1682, 100_000)
    f = data.item_features
    assert f is not None
    assert {"movie_title", "release_year", "class"} <= set(f.columns)
    assert f.attrs["types"]["class"] == "token_seq"
    assert f.loc["1", "movie_title"] == "Toy Story"
    assert f.loc["1", "release_year"] == "1995"
    assert f.loc["1", "class"] == "Animation Children's Comedy"
    assert data.user_features is not None and data.user_features.loc["1", "gender"] == "M"
    # first file line: 196 242 3 881250949
    first = np.flatnonzero(
        (data.users.ids[data.user] == "196") & (data.items.ids[data.item] == "242")
    )
    assert data.value[first].tolist() == [3.0] and data.time[first].tolist() == [881250949.0]
    assert float(data.value.sum()) == pytest.approx(352_986.0)  # sum of ML-100K ratings


# ------------------------------------------------------------------------------ load_dataset
def test_load_dataset_dispatch(tmp_path: Path) -> None:
    root = _atomic_dir(tmp_path / "toy")
    assert isinstance(load_dataset(root), Interactions)
    assert load_dataset(root / "toy.inter").n_events == 3
    csv_path = _write(tmp_path / "r.csv", ["user_id", "item_id", "rating", "timestamp"], ROWS)
    assert load_dataset(str(csv_path)).n_events == 3
    with pytest.raises(
        DataError, match=r"neither an existing file .*\(movielens-100k, movielens-1m"
    ):
        load_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: the directory holds no split"):
        load_dataset(tmp_path / "empty")


def test_load_dataset_peer_split(ml100k_dir: Path) -> None:
    peer = ml100k_dir.parents[1] / "peers" / "split"
    if not (peer / "train.tsv").is_file():
        pytest.skip("peer split not available")
    split = load_dataset(peer)
    assert isinstance(split, Split)
    assert split.valid is not None
    assert (split.train.n_events, split.valid.n_events, split.test.n_events) == (98_114, 943, 943)
    assert (split.train.n_users, split.train.n_items) == (943, 1682)
    assert split.train.items == split.test.items and split.train.users == split.valid.users
    # the parts together are exactly ML-100K's events
    whole = read_events(ml100k_dir / "ml-100k.inter")
    parts = pd.concat([p.to_frame() for p in (split.train, split.valid, split.test)])
    key = ["user_id", "item_id", "timestamp"]
    pd.testing.assert_frame_equal(
        parts[key].sort_values(key).reset_index(drop=True),
        whole[key].sort_values(key).reset_index(drop=True),
    )


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.integers(-1000, 10**6).map(str),
            st.sampled_from(["007", "+1", "1.0", " 1", "a", "0", "-0", "00"]),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_encode_ids_matches_idmap(ids: list[str]) -> None:
    """Canonical integer strings take a faster path; the map must not change."""
    idmap, index = encode_ids(pd.Series(ids, dtype="str"), None, None, "item")
    ref = IdMap.from_ids(ids, "item")
    assert idmap == ref
    np.testing.assert_array_equal(index, ref.index(ids))
