"""The event store contract, run against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from recstack.errors import ConfigError, DataError
from recstack.serving.store import (
    Event,
    EventStore,
    PostgresStore,
    RequestLog,
    RequestLogBuffer,
    SQLiteStore,
    StoreError,
    VariantCounts,
    open_store,
    redact,
)
from serving_support import postgres_cluster, reset_postgres


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_cluster() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    if request.param == "sqlite":
        s: EventStore = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    else:
        url = request.getfixturevalue("postgres_url")
        reset_postgres(url)
        s = open_store(url)
    yield s
    s.close()


def events(
    n: int, start: int = 0, kind: str = "click", request_id: str | None = None
) -> list[Event]:
    return [
        Event(f"e{i}", f"u{i % 7}", f"i{i % 5}", kind, 1000.0 + i, request_id)
        for i in range(start, start + n)
    ]


def test_open_store_picks_the_backend(store: EventStore) -> None:
    assert isinstance(store, SQLiteStore | PostgresStore)
    assert "***" not in repr(store)  # no password in these URLs: nothing to hide


def test_add_events_is_idempotent_by_event_id(store: EventStore) -> None:
    batch = events(50)
    assert store.add_events(batch) == 50
    assert store.add_events(batch) == 0  # the same batch again: stored once
    # a batch overlapping the stored events, with a repeat inside it
    overlap = [*events(20, start=40), events(1, start=55)[0]]
    assert store.add_events(overlap) == 20 - 10
    stored = store.user_events()
    ids = [e.event_id for e in stored]
    assert len(ids) == len(set(ids)) == 60
    assert set(ids) == {f"e{i}" for i in range(60)}


def test_user_events_are_history_types_in_arrival_order(store: EventStore) -> None:
    store.add_events(events(3, 0, "impression"))
    store.add_events(events(3, 3, "click"))
    store.add_events(events(3, 6, "conversion"))
    store.add_events([Event("late", "u1", "i1", "click", 10.0)])  # old timestamp, posted last
    got = store.user_events()
    assert [e.event_id for e in got] == ["e3", "e4", "e5", "e6", "e7", "e8", "late"]
    assert [e.seq for e in got] == sorted(e.seq for e in got)
    assert got[0] == (got[0].seq, "e3", "u3", "i3", "click", 1003.0)
    # after a sequence number, and from a timestamp on
    assert [e.event_id for e in store.user_events(after_seq=got[3].seq)] == ["e7", "e8", "late"]
    assert [e.event_id for e in store.user_events(since=1005.0)] == ["e5", "e6", "e7", "e8"]


def test_counts_by_variant_match_a_hand_count(store: EventStore) -> None:
    store.log_requests(
        [
            RequestLog("r1", "a", "u1", ["i1", "i2"]),
            RequestLog("r2", "a", "u2", ["i3"]),
            RequestLog("r3", "b", None, ["i1"]),
            RequestLog("r4", "c", "u4", []),  # served, no event: zero counts
        ]
    )
    store.log_request("r1", "b", "u1", ["i9"])  # a repeated request id is skipped
    batch = [
        Event("1", "u1", "i1", "impression", 1.0, "r1"),
        Event("2", "u1", "i2", "impression", 1.0, "r1"),
        Event("3", "u1", "i1", "click", 2.0, "r1"),
        Event("4", "u1", "i1", "conversion", 3.0, "r1"),
        Event("5", "u2", "i3", "impression", 1.0, "r2"),
        Event("6", "x", "i1", "impression", 1.0, "r3"),
        Event("7", "x", "i1", "click", 1.0, "r3"),
        Event("8", "x", "i1", "click", 1.0, "r3"),
        Event("9", "u1", "i1", "click", 1.0, None),  # no request: not attributed
        Event("10", "u1", "i1", "click", 1.0, "unknown-request"),
    ]
    store.add_events(batch)
    store.add_events(batch[:3])  # duplicates never count twice
    assert store.counts_by_variant() == {
        "a": VariantCounts(impressions=3, clicks=1, conversions=1),
        "b": VariantCounts(impressions=1, clicks=2, conversions=0),
        "c": VariantCounts(),
    }


def test_bad_event_type_is_rejected_and_nothing_stored(store: EventStore) -> None:
    batch = [*events(2), Event("bad", "u", "i", "purchase", 1.0)]
    with pytest.raises(DataError, match=r"event 2 \('bad'\): type must be one of"):
        store.add_events(batch)
    assert store.user_events() == []


def test_concurrent_writers_lose_nothing(store: EventStore) -> None:
    def post(worker: int) -> None:
        for b in range(5):
            store.add_events(events(40, start=worker * 1000 + b * 40))

    threads = [threading.Thread(target=post, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({e.event_id for e in store.user_events()}) == 4 * 5 * 40


def test_closed_store_raises_a_store_error(store: EventStore) -> None:
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.add_events(events(1))


def test_request_log_buffer_writes_in_the_background(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "e.db")
    log = RequestLogBuffer(store, interval=0.05)
    log.put(RequestLog("r1", "a", "u", ["i"]))
    store.add_events([Event("1", "u", "i", "impression", 1.0, "r1")])
    deadline = time.monotonic() + 5
    while store.counts_by_variant() == {} and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.counts_by_variant() == {"a": VariantCounts(impressions=1)}
    log.put(RequestLog("r2", "b", "u", ["i"]))
    log.close()  # flushes what is left
    assert "b" in store.counts_by_variant()
    store.close()


def test_sqlite_is_durable_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "e.db"  # the directory is created
    store = open_store(f"sqlite:///{path}")
    store.add_events(events(3))
    # another connection (another process would be the same) sees the committed rows
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 3
    store.close()
    reopened = open_store(f"sqlite:///{path}")
    assert len(reopened.user_events()) == 3
    reopened.close()


def test_open_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rel = open_store("sqlite:///rel.db")
    assert isinstance(rel, SQLiteStore) and (tmp_path / "rel.db").is_file()
    rel.close()
    with pytest.raises(
        ConfigError, match="unsupported event store URL 'mysql://me:\\*\\*\\*@h/db'"
    ):
        open_store("mysql://me:secret@h/db")
    with pytest.raises(ConfigError, match="sqlite:///relative"):
        open_store("sqlite://")
    with pytest.raises(StoreError) as info:
        open_store("postgresql://me:hunter2@127.0.0.1:1/db?connect_timeout=2")
    assert "hunter2" not in str(info.value) and "me:***@127.0.0.1:1" in str(info.value)
    with pytest.raises(StoreError, match="cannot open the event store sqlite:///"):
        open_store(f"sqlite:///{tmp_path}")  # a directory, not a database file


def test_redact() -> None:
    assert redact("postgresql://u:pw@h:5/d?x=1") == "postgresql://u:***@h:5/d?x=1"
    assert redact("postgresql://u@h/d") == "postgresql://u@h/d"
    assert redact("sqlite:///a.db") == "sqlite:///a.db"


def test_live_histories_sync_from_a_shared_store(tmp_path: Path) -> None:
    from recstack.serving.live import LiveHistories

    store = SQLiteStore(tmp_path / "e.db")
    mine, other = LiveHistories(), LiveHistories()
    batch = [
        Event("1", "u", "i1", "click", 5.0),
        Event("2", "u", "i2", "impression", 6.0),
        Event("3", "u", "i3", "conversion", 7.0),
    ]
    store.add_events(batch)
    assert mine.add(batch) == 2  # what the process that took the POST applies at once
    assert mine.sync(store) == 0  # reading it back applies nothing twice
    assert other.sync(store) == 2 and other.get("u") == (["i1", "i3"], [5.0, 7.0])
    store.add_events([Event("4", "u", "i4", "click", 8.0)])
    assert other.sync(store) == 1 and other.sync(store) == 0  # overlap re-read: no repeat
    assert other.get("u")[0] == ["i1", "i3", "i4"] and other.get("nobody") == ([], [])
    capped = LiveHistories(max_length=2)
    capped.sync(store)
    assert capped.get("u")[0] == ["i3", "i4"]  # the latest are kept
    store.close()


def test_postgres_reconnects_after_losing_its_connection(postgres_url: str) -> None:
    import psycopg

    reset_postgres(postgres_url)
    store = PostgresStore(postgres_url)
    assert store.add_events(events(5)) == 5
    connects: list[int] = []
    connect = store._connect
    store._connect = lambda: connects.append(1) or connect()  # type: ignore[method-assign]
    with psycopg.connect(postgres_url, autocommit=True) as admin:  # e.g. a server restart
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND datname = current_database()"
        )
    assert store.add_events(events(10)) == 5  # reconnected; the first five were stored
    assert connects == [1]
    assert len(store.user_events()) == 10
    store.close()
