"""Split save/load: exact round trips in every format, one ID space, bad directories."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recstack.data import Interactions
from recstack.data.preprocess import kcore
from recstack.data.readers import read_atomic
from recstack.data.split_io import is_split_dir, load_split, save_split
from recstack.data.splits import Split
from recstack.errors import ConfigError, DataError

FORMATS = ["atomic", "csv", "parquet"]


def _data() -> Interactions:
    rng = np.random.default_rng(7)
    n = 300
    users = np.array(["007", "u 1", "42", "x-y", "0", "Zoë"], dtype=object)
    items = np.array([f"i{k:03d}" for k in range(25)] + ["0012", "12"], dtype=object)
    df = pd.DataFrame(
        {
            "user_id": users[rng.integers(0, len(users), n)],
            "item_id": items[rng.integers(0, len(items), n)],
            # float32 values that print long in float64, times with sub-second parts
            "rating": rng.choice([0.1, 0.5, 3.0, 4.7], n).astype(np.float32),
            "timestamp": 1.6e9 + rng.integers(0, 50, n) + rng.random(n).round(6),
        }
    )
    item_ids = [*items[:20], "only-in-features"]
    item_features = pd.DataFrame(
        {
            "title": [f'The "{k}" movie, part {k}' for k in range(21)],
            "year": [1990.0 + k if k % 4 else np.nan for k in range(21)],
            "code": ["0012"] * 21,
        },
        index=item_ids,
    )
    item_features.attrs["types"] = {"title": "token_seq", "year": "float", "code": "token"}
    user_features = pd.DataFrame({"zip": ["01234", None]}, index=["007", "42"])
    user_features.attrs["types"] = {"zip": "token"}
    # a user with two events, for k-core filtering
    rare = pd.DataFrame({"user_id": "rare", "item_id": ["i000", "i001"], "rating": 1.0})
    df = pd.concat([df, rare.assign(timestamp=[1.7e9, 1.7e9])], ignore_index=True)
    return Interactions.from_frame(df, item_features=item_features, user_features=user_features)


def _split(data: Interactions, with_valid: bool = True) -> Split:
    part = np.random.default_rng(0).choice([0, 1, 2], data.n_events, p=[0.7, 0.15, 0.15])
    if not with_valid:
        part[part == 1] = 0
    return Split(
        data.select(part == 0),
        data.select(part == 1) if with_valid else None,
        data.select(part == 2),
        {"method": "random", "params": {"seed": np.int64(0), "test": np.float64(0.15)}},
    )


def _assert_same(a: Split, b: Split) -> None:
    for name in ("train", "valid", "test"):
        pa, pb = getattr(a, name), getattr(b, name)
        if pa is None:
            assert pb is None
            continue
        pd.testing.assert_frame_equal(pa.to_frame(), pb.to_frame())
        assert pa.users == pb.users and pa.items == pb.items
        for attr in ("item_features", "user_features"):
            fa, fb = getattr(pa, attr), getattr(pb, attr)
            assert fa.attrs["types"] == fb.attrs["types"]
            pd.testing.assert_frame_equal(
                fa.astype(object), fb.astype(object), check_index_type=False
            )


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(tmp_path: Path, fmt: str) -> None:
    split = _split(_data())
    save_split(split, tmp_path / "s", format=fmt)
    loaded = load_split(tmp_path / "s")
    _assert_same(split, loaded)
    assert loaded.info == {"method": "random", "params": {"seed": 0, "test": 0.15}}
    assert "only-in-features" in loaded.train.items  # the catalog survives
    assert loaded.train.items.ids[-1] == "only-in-features"  # in map order
    assert is_split_dir(tmp_path / "s")


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_without_valid_and_with_empty_users(tmp_path: Path, fmt: str) -> None:
    data, _ = kcore(_data(), k=3)  # the maps keep users and items left without events
    assert (np.bincount(data.user, minlength=data.n_users) == 0).any()
    split = _split(data, with_valid=False)
    save_split(split, tmp_path, format=fmt)
    loaded = load_split(tmp_path)
    assert loaded.valid is None
    _assert_same(split, loaded)


def test_atomic_files_look_like_recbole(tmp_path: Path, ml100k_dir: Path) -> None:
    data = read_atomic(ml100k_dir)
    split = Split(data.select(data.time < 880e6), None, data.select(data.time >= 880e6))
    save_split(split, tmp_path)
    lines = (tmp_path / "train.inter").read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    # integral values are written as integers, exactly
    first = data.select(data.time < 880e6).to_frame().iloc[0]
    assert (
        lines[1] == f"{first.user_id}\t{first.item_id}\t{int(first.rating)}\t{int(first.timestamp)}"
    )
    items = (tmp_path / "items.item").read_text(encoding="utf-8").splitlines()
    assert items[0] == "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"
    assert (tmp_path / "users.user").read_text().startswith("user_id:token\tage:token\t")
    loaded = load_split(tmp_path)
    _assert_same(split, loaded)
    assert json.loads((tmp_path / "split.json").read_text())["events"] == {
        "train": split.train.n_events,
        "test": split.test.n_events,
    }


def test_peer_split_one_id_space(ml100k_dir: Path) -> None:
    peer = ml100k_dir.parents[1] / "peers" / "split"
    if not (peer / "train.tsv").is_file():
        pytest.skip("peer split not available")
    split = load_split(peer)
    assert split.valid is not None
    assert (split.train.n_events, split.valid.n_events, split.test.n_events) == (98_114, 943, 943)
    assert split.train.items == split.valid.items == split.test.items
    assert len(split.train.items) == 1682 and len(split.train.users) == 943
    # each user's test event is at or after their last train event
    last_train = np.full(943, -np.inf)
    np.maximum.at(last_train, split.train.user, split.train.time)
    assert (split.test.time >= last_train[split.test.user]).all()


def test_parts_without_timestamps_keep_file_order(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("user,item\na,x\na,y\nb,x\n")
    (tmp_path / "test.csv").write_text("user,item\na,z\nb,y\n")
    split = load_split(tmp_path)
    assert split.info == {"source": str(tmp_path)}
    assert split.test.items.ids.tolist() == ["x", "y", "z"]
    history = split.test_history().concat(split.test)
    a = history.histories(split.train.users.index(["a"]))
    assert split.train.items.ids[a.items].tolist() == ["x", "y", "z"]


def test_error_missing_test_part(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("user,item\na,x\n")
    assert not is_split_dir(tmp_path)
    with pytest.raises(DataError, match=r"no test\.\{inter,tsv,csv,txt,parquet\} file"):
        load_split(tmp_path)


def test_error_truncated_part(tmp_path: Path) -> None:
    save_split(_split(_data()), tmp_path, format="csv")
    lines = (tmp_path / "test.csv").read_text().splitlines()
    (tmp_path / "test.csv").write_text("\n".join(lines[:-3]) + "\n")
    with pytest.raises(DataError, match=r"test\.csv: \d+ events, but split\.json records \d+"):
        load_split(tmp_path)


def test_error_parts_disagree_on_columns(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("user,item,rating\na,x,1\n")
    (tmp_path / "test.csv").write_text("user,item\na,z\n")
    with pytest.raises(DataError, match=r"'rating' column is in train but not in every part"):
        load_split(tmp_path)


def test_error_atomic_cannot_hold_tabs(tmp_path: Path) -> None:
    df = pd.DataFrame({"user_id": ["a\tb", "c"], "item_id": ["x", "y"]})
    data = Interactions.from_frame(df)
    split = Split(data.select(np.array([0])), None, data.select(np.array([1])))
    with pytest.raises(DataError, match=r"user ID 'a\\tb' holds '\\t'.*save the split as csv"):
        save_split(split, tmp_path / "a")
    save_split(split, tmp_path / "c", format="csv")
    assert load_split(tmp_path / "c").train.users.ids.tolist() == ["a\tb", "c"]


def test_error_bad_format(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"format must be one of .*got 'json'"):
        save_split(_split(_data()), tmp_path, format="json")
