"""Splits: exact partitions in one ID space, each method's own guarantee, and the peer LOO split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recstack.data import Interactions
from recstack.data.splits import (
    METHODS,
    Split,
    cold_items,
    cold_users,
    global_temporal,
    leave_last_out,
    random_ratio,
    rolling_origins,
    split,
    temporal_ratio,
)
from recstack.data.synthetic import make_shop
from recstack.errors import ConfigError

PEER_SPLIT = Path(__file__).resolve().parents[2] / "shared" / "peers" / "split"

#: one parameter set per method, valid on the fixtures below
PARAMS: dict[str, dict[str, object]] = {
    "loo": {"n_valid": 1, "n_test": 2},
    "ratio": {"test": 0.3, "valid": 0.2},
    "temporal": {"test_from": 0.75, "valid_from": 0.6},
    "random": {"test": 0.25, "valid": 0.1, "seed": 4},
    "cold-items": {"fraction": 0.2, "seed": 1, "valid_fraction": 0.1},
    "cold-users": {"fraction": 0.3, "n_history": 2, "seed": 2},
}


@pytest.fixture(scope="module")
def shop() -> Interactions:
    return make_shop(n_users=300, n_items=120, seed=3)


@pytest.fixture(scope="module")
def tiny() -> Interactions:
    """User a: times 1, 3, 2, 3 (a tie: file order decides), b: 2 events, c: 5 events."""
    df = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "a", "b", "b", "c", "c", "c", "c", "c"],
            "item_id": ["x", "y", "z", "w", "x", "y", "x", "y", "z", "w", "v"],
            "rating": [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1],
            "timestamp": [1, 3, 2, 3, 7, 8, 5, 1, 4, 2, 3],
        }
    )
    return Interactions.from_frame(df)


def _rows(x: Interactions) -> np.ndarray:
    """Events as sorted (user, item, value, time) rows: a multiset to compare."""
    rows = np.column_stack([x.user, x.item, x.value, x.time]).astype(np.float64)
    return rows[np.lexsort(rows.T[::-1])]


def _parts(s: Split) -> list[Interactions]:
    return [p for p in (s.train, s.valid, s.test) if p is not None]


def _assert_partition(data: Interactions, s: Split) -> None:
    for part in _parts(s):
        assert part.users is data.users and part.items is data.items
        assert part.n_events > 0
    glued = Interactions(
        data.users,
        data.items,
        np.concatenate([p.user for p in _parts(s)]),
        np.concatenate([p.item for p in _parts(s)]),
        np.concatenate([p.value for p in _parts(s)]),
        np.concatenate([p.time for p in _parts(s)]),
    )
    np.testing.assert_array_equal(_rows(glued), _rows(data))
    assert sum(s.info["events"].values()) == data.n_events


def _per_user(x: Interactions | None, n_users: int) -> np.ndarray:
    return np.zeros(n_users, int) if x is None else np.bincount(x.user, minlength=n_users)


# ---------------------------------------------------------------------------- all methods
@pytest.mark.parametrize("method", list(PARAMS))
@pytest.mark.parametrize("fixture", ["shop", "tiny"])
def test_parts_partition_the_log(method: str, fixture: str, request: pytest.FixtureRequest):
    data = request.getfixturevalue(fixture)
    params = dict(PARAMS[method])
    if fixture == "tiny" and method == "loo":
        params = {"n_valid": 1, "n_test": 1}
    s = split(data, method, **params)
    _assert_partition(data, s)
    assert s.info["method"] == method and s.info["params"] == params


@pytest.mark.parametrize("method", list(PARAMS))
def test_info_reproduces_the_split(method: str, shop: Interactions):
    a = split(shop, method, **PARAMS[method])
    b = split(shop, a.info["method"], **a.info["params"])
    for pa, pb in zip(_parts(a), _parts(b), strict=True):
        np.testing.assert_array_equal(_rows(pa), _rows(pb))
    assert a.info == b.info


@pytest.mark.parametrize("method", ["random", "cold-items", "cold-users"])
def test_seeded_methods_are_deterministic_and_differ_across_seeds(method: str, shop: Interactions):
    params = dict(PARAMS[method])
    a, b = split(shop, method, **params), split(shop, method, **params)
    np.testing.assert_array_equal(_rows(a.test), _rows(b.test))
    params["seed"] = 1 + params["seed"]  # type: ignore[operator]
    c = split(shop, method, **params)
    assert not np.array_equal(_rows(a.test), _rows(c.test))


def test_common_counts_match_brute_force(shop: Interactions):
    s = global_temporal(shop, test_from=0.9)
    train_users, train_items = set(s.train.user), set(s.train.item)
    assert s.info["test_users"] == len(set(s.test.user))
    assert s.info["test_users_without_train"] == len(set(s.test.user) - train_users)
    assert s.info["test_users_without_history"] == s.info["test_users_without_train"]
    assert s.info["test_items_without_train"] == len(set(s.test.item) - train_items)
    assert s.info["test_events_without_train_item"] == sum(
        i not in train_items for i in s.test.item
    )


# ---------------------------------------------------------------------------- hypothesis
@st.composite
def logs(draw: st.DrawFn) -> Interactions:
    n = draw(st.integers(1, 40))
    ints = st.lists(st.integers(0, 5), min_size=n, max_size=n)
    df = pd.DataFrame(
        {
            "user_id": draw(ints),
            "item_id": draw(ints),
            "rating": draw(ints),
            "timestamp": draw(ints),  # few distinct times: many ties
        }
    )
    return Interactions.from_frame(df)


@settings(max_examples=150, deadline=None)
@given(
    data=logs(),
    method=st.sampled_from(list(PARAMS)),
    small=st.integers(0, 2),
    frac=st.sampled_from([0.1, 0.3, 0.5]),
    seed=st.integers(0, 3),
)
def test_partition_property(data: Interactions, method: str, small: int, frac: float, seed: int):
    params: dict[str, object] = {
        "loo": {"n_valid": small, "n_test": 1 + small // 2},
        "ratio": {"test": frac, "valid": frac / 2 * (small > 0)},
        "temporal": {"test_from": 1 - frac / 2, "valid_from": 1 - frac if small else None},
        "random": {"test": frac, "valid": frac / 2 * (small > 0), "seed": seed},
        "cold-items": {"fraction": frac, "seed": seed, "valid_fraction": frac / 3 * small},
        "cold-users": {"fraction": frac, "n_history": small, "seed": seed},
    }[method]
    try:
        s = split(data, method, **params)
    except ConfigError as exc:
        # only "the data cannot be split this way" is acceptable, never a bad parameter
        assert any(w in str(exc) for w in ("empty", "no item to train", "no warm user")), exc
        return
    _assert_partition(data, s)
    if method == "temporal":
        held = s.test.time.min()
        assert s.train.time.max() < held
        if s.valid is not None:
            assert s.valid.time.max() < held and s.train.time.max() < s.valid.time.min()


# ---------------------------------------------------------------------------- leave-last-out
def _read_inter(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, sep="\t", dtype=str)
    df.columns = [c.split(":")[0] for c in df.columns]
    return df


def _keyed(df: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "user_id": df["user_id"].astype(str),
            "item_id": df["item_id"].astype(str),
            "timestamp": df["timestamp"].astype(float),
        }
    )
    return out.sort_values(list(out.columns)).reset_index(drop=True)


def test_loo_reproduces_the_peer_split(ml100k_dir: Path):
    if not all((PEER_SPLIT / f"{p}.tsv").is_file() for p in ("train", "valid", "test")):
        pytest.skip(f"peer split not found at {PEER_SPLIT}")
    df = _read_inter(ml100k_dir / "ml-100k.inter")
    s = leave_last_out(Interactions.from_frame(df))
    for name in ("train", "valid", "test"):
        mine = _keyed(getattr(s, name).to_frame())
        peer = _keyed(_read_inter(PEER_SPLIT / f"{name}.tsv"))
        pd.testing.assert_frame_equal(mine, peer, check_exact=True)
    assert s.info["users_too_short"] == 0 and s.info["events"]["test"] == 943


def test_loo_by_hand(tiny: Interactions):
    s = leave_last_out(tiny)

    def pairs(x: Interactions | None) -> set[tuple[str, str]]:
        assert x is not None
        f = x.to_frame()
        return set(zip(f.user_id, f.item_id, strict=True))

    # a: x(1) z(2) y(3) w(3): the tie at 3 keeps file order, so w is last
    # c: y(1) w(2) v(3) z(4) x(5); b has 2 < 3 events: all train
    assert pairs(s.test) == {("a", "w"), ("c", "x")}
    assert pairs(s.valid) == {("a", "y"), ("c", "z")}
    assert pairs(s.train) == {("a", "x"), ("a", "z"), ("b", "x"), ("b", "y"),
                              ("c", "y"), ("c", "w"), ("c", "v")}  # fmt: skip
    assert s.info["users_too_short"] == 1
    assert s.info["users_with_tie_at_boundary"] == 1  # a: y and w share time 3


@pytest.mark.parametrize(("n_valid", "n_test"), [(1, 1), (0, 2), (2, 3)])
def test_loo_per_user_counts(shop: Interactions, n_valid: int, n_test: int):
    s = leave_last_out(shop, n_valid=n_valid, n_test=n_test)
    lengths = shop.user_lengths
    placed = lengths >= n_valid + n_test + 1
    np.testing.assert_array_equal(_per_user(s.test, shop.n_users), np.where(placed, n_test, 0))
    np.testing.assert_array_equal(_per_user(s.valid, shop.n_users), np.where(placed, n_valid, 0))
    assert (s.valid is None) == (n_valid == 0)
    assert s.info["users_too_short"] == int((~placed & (lengths > 0)).sum())
    # the held-out events are the user's last ones: train + valid + test in time order
    for u in np.flatnonzero(placed)[:20]:
        seq = shop.item[shop.indptr[u] : shop.indptr[u + 1]]
        np.testing.assert_array_equal(
            s.test.item[s.test.indptr[u] : s.test.indptr[u + 1]], seq[-n_test:]
        )


# ---------------------------------------------------------------------------- rolling origins
@pytest.mark.parametrize(("fixture", "n"), [("shop", 4), ("tiny", 3)])  # tiny: users run short
def test_rolling_origins_hold_out_earlier_events(
    fixture: str, n: int, request: pytest.FixtureRequest
):
    shop = request.getfixturevalue(fixture)
    s = leave_last_out(shop)
    origins = rolling_origins(s, n)
    assert len(origins) == n and origins[0] is s
    for j, o in enumerate(origins[1:], start=1):
        assert o.test is s.test and o.info["params"] == {"origin": j}
        assert o.train.users is shop.users and o.valid is not None
        # brute force: each user's train events before this origin (time order), the last
        # of them held out when there are 2 or more
        for u in range(shop.n_users):
            seq = shop.item[shop.indptr[u] : shop.indptr[u + 1]]
            left = len(seq) - 2 if len(seq) >= 3 else len(seq)  # origin 0's train
            for _ in range(j - 1):
                left -= left >= 2
            got_valid = o.valid.item[o.valid.indptr[u] : o.valid.indptr[u + 1]]
            got_train = o.train.item[o.train.indptr[u] : o.train.indptr[u + 1]]
            held = seq[left - 1 : left] if left >= 2 else seq[:0]
            np.testing.assert_array_equal(got_valid, held)
            np.testing.assert_array_equal(got_train, seq[: left - len(held)])
        short = (np.diff(origins[j - 1].train.indptr) == 1).sum()
        assert o.info["users_too_short"] == short


def test_rolling_origins_bad_input(shop: Interactions):
    s = leave_last_out(shop)
    assert rolling_origins(s, 1) == [s]
    with pytest.raises(ConfigError, match="n must be"):
        rolling_origins(s, 0)
    with pytest.raises(ConfigError, match="no validation part"):
        rolling_origins(leave_last_out(shop, n_valid=0), 2)


def test_rolling_origins_too_many(tiny: Interactions):
    # origin 3 of tiny: every user has one train event left
    with pytest.raises(ConfigError, match=r"origin 3 would hold out nothing.*at most 3"):
        rolling_origins(leave_last_out(tiny), 4)


# ---------------------------------------------------------------------------- ratio splits
def _expected_ratio_counts(n: int, test: float, valid: float) -> tuple[int, int]:
    """The documented rule, one user at a time."""
    need_valid = 1 if valid > 0 else 0
    if n < 2 + need_valid:
        return 0, 0
    n_test = min(max(1, int(test * n + 0.5)), n - 1 - need_valid)
    n_valid = min(max(need_valid, int(valid * n + 0.5)), n - 1 - n_test)
    return n_test, n_valid


@pytest.mark.parametrize(("test", "valid"), [(0.2, 0.0), (0.3, 0.2), (0.5, 0.45)])
@pytest.mark.parametrize("method", ["ratio", "random"])
def test_ratio_per_user_counts(shop: Interactions, method: str, test: float, valid: float):
    s = split(shop, method, test=test, valid=valid)
    expected = np.array(
        [_expected_ratio_counts(int(n), test, valid) for n in shop.user_lengths]
    ).reshape(-1, 2)
    np.testing.assert_array_equal(_per_user(s.test, shop.n_users), expected[:, 0])
    np.testing.assert_array_equal(_per_user(s.valid, shop.n_users), expected[:, 1])
    train = _per_user(s.train, shop.n_users)
    assert (train[shop.user_lengths >= 1] >= 1).all()


def test_ratio_short_users_stay_in_train(tiny: Interactions):
    s = temporal_ratio(tiny, test=0.2, valid=0.2)  # needs 3 events: b (2 events) is too short
    b = tiny.users.index(["b"])[0]
    assert _per_user(s.train, tiny.n_users)[b] == 2 and s.info["users_too_short"] == 1
    assert random_ratio(tiny, test=0.5).info["users_too_short"] == 0  # 2 events suffice


def test_temporal_ratio_holds_out_each_users_latest_events(shop: Interactions):
    s = temporal_ratio(shop, test=0.2, valid=0.1)
    assert s.valid is not None
    for u in range(shop.n_users):
        tr = s.train.time[s.train.indptr[u] : s.train.indptr[u + 1]]
        va = s.valid.time[s.valid.indptr[u] : s.valid.indptr[u + 1]]
        te = s.test.time[s.test.indptr[u] : s.test.indptr[u + 1]]
        if len(te):
            assert tr.max() <= va.min() <= va.max() <= te.min()


def test_random_ratio_is_not_temporal(shop: Interactions):
    rnd, tmp = random_ratio(shop, test=0.3, seed=0), temporal_ratio(shop, test=0.3)
    assert not np.array_equal(_rows(rnd.test), _rows(tmp.test))
    # about the same counts, but random test events are not the latest ones
    assert rnd.test.time.mean() < tmp.test.time.mean()


# ---------------------------------------------------------------------------- global temporal
def test_global_temporal_is_leak_free_and_keeps_cold_ids(shop: Interactions):
    s = global_temporal(shop, test_from=0.8, valid_from=0.7)
    assert s.valid is not None
    assert s.train.time.max() < s.valid.time.min() <= s.valid.time.max() < s.test.time.min()
    cut = s.info["test_from_time"]
    assert s.test.time.min() >= cut > s.valid.time.max()
    assert s.info["events"]["test"] == pytest.approx(0.2 * shop.n_events, rel=0.02)
    assert s.test.n_users == shop.n_users and s.test.n_items == shop.n_items
    assert s.info["test_users_without_train"] == len(set(s.test.user) - set(s.train.user))


def test_global_temporal_cutoff_forms_agree(shop: Interactions):
    cut = float(np.sort(shop.time)[shop.n_events // 2])  # whole seconds: exact as a date
    iso = pd.Timestamp(cut, unit="s").isoformat()
    by_time, by_text, by_date = (global_temporal(shop, test_from=x) for x in (cut, str(cut), iso))
    assert by_time.info["test_from_time"] == cut == by_date.info["test_from_time"]
    np.testing.assert_array_equal(_rows(by_time.test), _rows(by_text.test))
    np.testing.assert_array_equal(_rows(by_time.test), _rows(by_date.test))
    assert (by_time.test.time >= cut).all() and (by_time.train.time < cut).all()


def test_global_temporal_ties_go_to_test(tiny: Interactions):
    s = global_temporal(tiny, test_from=3)
    assert sorted(s.test.time) == [3, 3, 3, 4, 5, 7, 8]
    assert s.info["test_users_without_train"] == 1  # b's events are all at 7 and 8


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"test_from": 0}, r"test_from=0 .*leaves train empty"),
        ({"test_from": 1e12}, r"test_from=1000000000000.0 .*leaves test empty"),
        ({"test_from": 0.8, "valid_from": 0.9}, r"valid_from=0.9 .* is after test_from=0.8"),
        ({"test_from": "soon"}, r"test_from must be a number or a date, got 'soon'"),
        ({"test_from": float("nan")}, r"test_from must be a quantile .* got nan"),
        ({"test_from": 0.8, "valid_from": 1}, r"valid_from=1 .*leaves train empty"),
    ],
)
def test_global_temporal_bad_cutoffs(shop: Interactions, params: dict, match: str):
    with pytest.raises(ConfigError, match=match):
        global_temporal(shop, **params)


# ---------------------------------------------------------------------------- cold items
def test_cold_items_are_held_out_entirely(shop: Interactions):
    s = cold_items(shop, fraction=0.2, seed=5, valid_fraction=0.1)
    assert s.valid is not None
    test_items, valid_items = set(s.test.item), set(s.valid.item)
    assert not test_items & set(s.train.item) and not valid_items & set(s.train.item)
    assert not test_items & valid_items
    # every event of a cold item is in the test, and nothing else is
    assert s.test.n_events == int(np.isin(shop.item, list(test_items)).sum())
    active = len(set(shop.item))
    assert len(test_items) == s.info["cold_items"] == int(0.2 * active + 0.5)
    assert len(valid_items) == s.info["valid_cold_items"] == int(0.1 * active + 0.5)
    assert s.info["test_items_without_train"] == len(test_items)
    assert s.train.n_items == shop.n_items  # the catalog keeps them, with their features
    assert s.train.item_features is not None and s.train.item_features.equals(shop.item_features)


def test_cold_items_at_least_one(tiny: Interactions):
    assert cold_items(tiny, fraction=0.01).info["cold_items"] == 1
    with pytest.raises(ConfigError, match=r"fraction=0.5, valid_fraction=0.4 hold out 5 of the 5"):
        cold_items(tiny, fraction=0.5, valid_fraction=0.4)


# ---------------------------------------------------------------------------- cold users
def test_cold_users_fold_in_protocol(shop: Interactions):
    s = cold_users(shop, fraction=0.2, n_history=3, seed=1)
    assert s.valid is not None and s.info["history_part"] == "valid"
    cold = set(s.test.user)
    assert cold == set(s.valid.user) and not cold & set(s.train.user)
    eligible = int((shop.user_lengths > 3).sum())
    assert len(cold) == s.info["cold_users"] == int(0.2 * eligible + 0.5)
    np.testing.assert_array_equal(_per_user(s.valid, shop.n_users)[list(cold)], 3)
    history = s.test_history()
    for u in list(cold)[:20]:
        seq = shop.item[shop.indptr[u] : shop.indptr[u + 1]]
        np.testing.assert_array_equal(
            history.item[history.indptr[u] : history.indptr[u + 1]], seq[:3]
        )
        np.testing.assert_array_equal(s.test.item[s.test.indptr[u] : s.test.indptr[u + 1]], seq[3:])


def test_cold_users_without_history(tiny: Interactions):
    s = cold_users(tiny, fraction=0.3, n_history=0, seed=0)
    assert s.valid is None and s.info["history_part"] == "none"
    s = cold_users(tiny, fraction=0.3, n_history=3, seed=0)  # only a and c have > 3 events
    assert s.info["users_too_short"] == 1 and s.info["cold_users"] == 1
    with pytest.raises(ConfigError, match=r"fraction=0.9 with n_history=1: 3 users .* 3 have any"):
        cold_users(tiny, fraction=0.9, n_history=1)


# ---------------------------------------------------------------------------- dispatcher, errors
def test_dispatcher_names_and_strings(shop: Interactions):
    assert set(METHODS) == {"loo", "ratio", "temporal", "random", "cold-items", "cold-users"}
    a = split(shop, "loo", n_valid="2", n_test="1")
    b = leave_last_out(shop, n_valid=2)
    assert a.valid is not None and b.valid is not None
    np.testing.assert_array_equal(_rows(a.valid), _rows(b.valid))
    assert split(shop, "ratio", test="0.25").info["params"]["test"] == 0.25


@pytest.mark.parametrize(
    ("method", "params", "match"),
    [
        ("lool", {}, r"unknown split method 'lool'; did you mean 'loo'\?"),
        ("loo", {"n_tests": 2}, r"'loo' has no parameter 'n_tests'; did you mean 'n_test'\?"),
        ("temporal", {}, r"'temporal' needs the parameter 'test_from'"),
        ("loo", {"n_test": 0}, r"n_test must be an integer >= 1, got 0"),
        ("loo", {"n_valid": 1.5}, r"n_valid must be an integer >= 0, got 1.5"),
        ("loo", {"n_valid": "x"}, r"n_valid must be an integer, got 'x'"),
        ("ratio", {"test": 1.0}, r"test must be a number in \(0, 1\), got 1.0"),
        ("ratio", {"test": 0}, r"test must be a number in \(0, 1\), got 0"),
        ("ratio", {"valid": -0.1}, r"valid must be a number in \[0, 1\), got -0.1"),
        ("ratio", {"test": 0.6, "valid": 0.4}, r"test \+ valid must be below 1, got 0.6 \+ 0.4"),
        ("random", {"seed": -1}, r"seed must be an integer >= 0, got -1"),
        ("random", {"test": True}, r"test must be a number in \(0, 1\), got True"),
        ("cold-items", {"fraction": 2}, r"fraction must be a number in \(0, 1\), got 2"),
        ("cold-users", {"n_history": -1}, r"n_history must be an integer >= 0, got -1"),
    ],
)
def test_bad_parameters(shop: Interactions, method: str, params: dict, match: str):
    with pytest.raises(ConfigError, match=match):
        split(shop, method, **params)


def test_too_short_for_any_test(tiny: Interactions):
    with pytest.raises(ConfigError, match=r"test part is empty \(3 users have too few events\)"):
        leave_last_out(tiny, n_valid=3, n_test=3)


def test_docstring_examples() -> None:
    import doctest

    from recstack.data import splits

    result = doctest.testmod(splits)
    assert result.attempted >= 3 and result.failed == 0
