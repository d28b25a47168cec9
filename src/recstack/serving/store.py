"""The event store: one small interface over SQLite (embedded default) and PostgreSQL.

The service keeps two tables: ``events`` (impressions, clicks and conversions, unique by
``event_id``, numbered in arrival order by ``seq``) and ``requests`` (one row per served
recommendation: its variant, user and items). The A/B report joins them on
``request_id``, so an event counts for the variant that served the list it came from.

- :meth:`EventStore.add_events` returns only once the batch is durable (committed with a
  full sync) and ignores event IDs it already holds: a client may retry a batch safely.
- Request logs are written in batches by :class:`RequestLogBuffer` off the request path;
  one lost in a crash costs attribution of that list's events, never an event.

Open a store with :func:`open_store` from a URL: ``sqlite:///relative/path.db``,
``sqlite:////absolute/path.db`` or ``postgresql://user:password@host:port/dbname``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from recstack.errors import ConfigError, DataError, RecstackError, require

#: the event types the service accepts
EVENT_TYPES = ("impression", "click", "conversion")
#: the event types that extend a user's history (an impression is not an interaction)
HISTORY_TYPES = ("click", "conversion")
#: the store used when none is given: a SQLite file in the working directory
DEFAULT_DB = "sqlite:///recstack-events.db"


class StoreError(RecstackError, RuntimeError):
    """The event store cannot be opened, read or written (the message names its URL)."""


class Event(NamedTuple):
    """One event as received: IDs are external (str), ``timestamp`` in unix seconds."""

    event_id: str
    user_id: str
    item_id: str
    type: str
    timestamp: float
    request_id: str | None = None


class StoredEvent(NamedTuple):
    """An event read back from the store; ``seq`` numbers events in arrival order."""

    seq: int
    event_id: str
    user_id: str
    item_id: str
    type: str
    timestamp: float


class RequestLog(NamedTuple):
    """One served list: which variant answered which user with which items (best first)."""

    request_id: str
    variant: str
    user_id: str | None
    items: Sequence[str]


@dataclass(frozen=True)
class VariantCounts:
    """Events attributed to one variant (through the request that served the list)."""

    impressions: int = 0
    clicks: int = 0
    conversions: int = 0


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


class EventStore(ABC):
    """The store contract (see the module docstring). Implementations are thread-safe."""

    url: str

    @abstractmethod
    def add_events(self, events: Sequence[Event]) -> int:
        """Store a batch in one transaction, durable when this returns; events whose
        ``event_id`` is already stored (or repeated in the batch) are skipped. Returns the
        number of new events.

        Raises
        ------
        DataError
            An event has a type outside :data:`EVENT_TYPES`.
        StoreError
            The database failed; nothing of the batch is stored.
        """

    @abstractmethod
    def log_requests(self, rows: Sequence[RequestLog]) -> None:
        """Record served lists (one transaction; a repeated ``request_id`` is skipped)."""

    def log_request(
        self, request_id: str, variant: str, user_id: str | None, items: Sequence[str]
    ) -> None:
        """Record one served list (see :meth:`log_requests`)."""
        self.log_requests([RequestLog(request_id, variant, user_id, items)])

    @abstractmethod
    def counts_by_variant(self) -> dict[str, VariantCounts]:
        """Impressions, clicks and conversions per variant: events joined to the request
        log by ``request_id``. Events without a logged request are not attributed; a
        variant that served lists but got no event has zero counts."""

    @abstractmethod
    def user_events(self, since: float | None = None, after_seq: int = 0) -> list[StoredEvent]:
        """Clicks and conversions (:data:`HISTORY_TYPES`) with ``seq > after_seq`` and,
        when ``since`` is given, ``timestamp >= since``, in arrival order: what rebuilds
        the live histories when the service starts."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection (idempotent)."""

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact(self.url)!r})"


def _check_types(events: Sequence[Event]) -> None:
    for n, e in enumerate(events):
        if e.type not in EVENT_TYPES:
            raise DataError(
                f"event {n} ({e.event_id!r}): type must be one of {EVENT_TYPES}, got {e.type!r}"
            )


def _counts(rows: Sequence[tuple[str, str | None, int]]) -> dict[str, VariantCounts]:
    """``(variant, type, count)`` rows (type None for a variant without events) -> counts."""
    tally: dict[str, dict[str, int]] = {}
    for variant, kind, count in rows:
        per = tally.setdefault(variant, dict.fromkeys(EVENT_TYPES, 0))
        if kind in per:
            per[kind] += int(count)
    return {
        v: VariantCounts(c["impression"], c["click"], c["conversion"])
        for v, c in sorted(tally.items())
    }


# ---------------------------------------------------------------------------- SQLite
_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    type TEXT NOT NULL,
    timestamp REAL NOT NULL,
    request_id TEXT
);
CREATE INDEX IF NOT EXISTS events_request ON events (request_id);
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY,
    variant TEXT NOT NULL,
    user_id TEXT,
    items TEXT NOT NULL
);
"""
_COUNTS_SQL = """
SELECT r.variant, e.type, COUNT(*) FROM {events} e JOIN {requests} r
    ON r.request_id = e.request_id GROUP BY r.variant, e.type
UNION ALL SELECT DISTINCT variant, NULL, 0 FROM {requests}
"""


class SQLiteStore(EventStore):
    """Events in a SQLite file: WAL journal, ``synchronous=FULL`` (a commit is on disk when
    it returns), one connection guarded by a lock; several processes may share the file
    (writers wait up to ``busy_timeout`` seconds for each other).

    Parameters
    ----------
    path : str or Path
        The database file (created with its tables when absent), or ``":memory:"``.
    busy_timeout : float
        Seconds to wait for another process's write lock.
    """

    def __init__(self, path: str | Path, busy_timeout: float = 30.0) -> None:
        self.path = str(path)
        self.url = f"sqlite:///{self.path}"
        self._lock = threading.Lock()
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # autocommit mode: transactions are the explicit BEGIN IMMEDIATE ... COMMIT below
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=busy_timeout
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SQLITE_SCHEMA)  # idempotent: IF NOT EXISTS
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the event store {self.url}: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the event store {self.url} is closed")
        return self._conn

    def _run(self, what: str, fn: Any) -> Any:
        """``fn(connection)`` under the lock, database errors named after the store."""
        with self._lock:
            try:
                return fn(self._connection())
            except sqlite3.Error as exc:
                raise StoreError(f"event store {self.url}: {what} failed: {exc}") from exc

    def add_events(self, events: Sequence[Event]) -> int:
        _check_types(events)
        if not events:
            return 0

        def insert(conn: sqlite3.Connection) -> int:
            with _SQLiteTransaction(conn):
                before = conn.total_changes
                conn.executemany(
                    "INSERT OR IGNORE INTO events "
                    "(event_id, user_id, item_id, type, timestamp, request_id) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    events,
                )
                return conn.total_changes - before

        return int(self._run("storing events", insert))

    def log_requests(self, rows: Sequence[RequestLog]) -> None:
        if not rows:
            return
        params = [(r.request_id, r.variant, r.user_id, json.dumps(list(r.items))) for r in rows]

        def insert(conn: sqlite3.Connection) -> None:
            with _SQLiteTransaction(conn):
                conn.executemany(
                    "INSERT OR IGNORE INTO requests (request_id, variant, user_id, items) "
                    "VALUES (?, ?, ?, ?)",
                    params,
                )

        self._run("logging requests", insert)

    def counts_by_variant(self) -> dict[str, VariantCounts]:
        sql = _COUNTS_SQL.format(events="events", requests="requests")
        return _counts(self._run("counting events", lambda c: c.execute(sql).fetchall()))

    def user_events(self, since: float | None = None, after_seq: int = 0) -> list[StoredEvent]:
        sql = (
            "SELECT seq, event_id, user_id, item_id, type, timestamp FROM events "
            "WHERE seq > ? AND type IN (?, ?) AND timestamp >= ? ORDER BY seq"
        )
        args = (int(after_seq), *HISTORY_TYPES, float("-inf") if since is None else float(since))
        rows = self._run("reading events", lambda c: c.execute(sql, args).fetchall())
        return [StoredEvent(*r) for r in rows]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class _SQLiteTransaction:
    """``BEGIN IMMEDIATE`` (take the write lock up front: no upgrade deadlock between
    processes) ... ``COMMIT``, or ``ROLLBACK`` on an error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")


# ---------------------------------------------------------------------------- PostgreSQL
_PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS recstack_events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    event_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    type TEXT NOT NULL,
    timestamp DOUBLE PRECISION NOT NULL,
    request_id TEXT
);
CREATE INDEX IF NOT EXISTS recstack_events_seq ON recstack_events (seq);
CREATE INDEX IF NOT EXISTS recstack_events_request ON recstack_events (request_id);
CREATE TABLE IF NOT EXISTS recstack_requests (
    request_id TEXT PRIMARY KEY,
    variant TEXT NOT NULL,
    user_id TEXT,
    items TEXT NOT NULL
);
"""
#: any constant: the advisory lock that serializes schema creation between workers
_PG_SCHEMA_LOCK = 0x7265637374616B


class PostgresStore(EventStore):
    """Events in PostgreSQL (psycopg 3): a batch is one ``INSERT ... SELECT FROM unnest``
    with ``ON CONFLICT DO NOTHING``, committed (``synchronous_commit`` as the server has
    it, ``on`` by default: durable on commit). One connection guarded by a lock.

    Parameters
    ----------
    url : str
        A libpq URL, ``postgresql://user:password@host:port/dbname`` (``?host=/socket/dir``
        for a unix socket).
    """

    def __init__(self, url: str) -> None:
        self._psycopg = require("psycopg", "serve")
        self.url = url
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._conn: Any = self._connect()
            with self._conn.transaction():
                self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_SCHEMA_LOCK,))
                self._conn.execute(_PG_SCHEMA)
        except self._psycopg.Error as exc:
            raise StoreError(
                f"cannot open the event store {redact(url)}: {_pg_message(exc)}"
            ) from None

    def _connect(self) -> Any:
        return self._psycopg.connect(self.url, autocommit=False)

    def _run(self, what: str, fn: Any) -> Any:
        """``fn(connection)`` in a transaction under the lock, errors named after the store.
        A broken connection (a server restart) is opened again and ``fn`` run once more:
        every write is idempotent, and a failed transaction left nothing behind."""
        with self._lock:
            if self._closed:
                raise StoreError(f"the event store {redact(self.url)} is closed")
            for attempt in (0, 1):
                try:
                    if self._conn.broken:
                        self._conn = self._connect()
                    with self._conn.transaction():
                        return fn(self._conn)
                except self._psycopg.Error as exc:
                    if attempt == 0 and self._conn.broken:
                        continue
                    raise StoreError(
                        f"event store {redact(self.url)}: {what} failed: {_pg_message(exc)}"
                    ) from None

    def add_events(self, events: Sequence[Event]) -> int:
        _check_types(events)
        if not events:
            return 0
        columns = [list(c) for c in zip(*events, strict=True)]

        def insert(conn: Any) -> int:
            cur = conn.execute(
                "INSERT INTO recstack_events "
                "(event_id, user_id, item_id, type, timestamp, request_id) "
                "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], "
                "%s::float8[], %s::text[]) ON CONFLICT (event_id) DO NOTHING",
                columns,
            )
            return int(cur.rowcount)

        return int(self._run("storing events", insert))

    def log_requests(self, rows: Sequence[RequestLog]) -> None:
        if not rows:
            return
        columns = [
            [r.request_id for r in rows],
            [r.variant for r in rows],
            [r.user_id for r in rows],
            [json.dumps(list(r.items)) for r in rows],
        ]
        self._run(
            "logging requests",
            lambda conn: conn.execute(
                "INSERT INTO recstack_requests (request_id, variant, user_id, items) "
                "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) "
                "ON CONFLICT (request_id) DO NOTHING",
                columns,
            ),
        )

    def counts_by_variant(self) -> dict[str, VariantCounts]:
        sql = _COUNTS_SQL.format(events="recstack_events", requests="recstack_requests")
        return _counts(self._run("counting events", lambda c: c.execute(sql).fetchall()))

    def user_events(self, since: float | None = None, after_seq: int = 0) -> list[StoredEvent]:
        sql = (
            "SELECT seq, event_id, user_id, item_id, type, timestamp FROM recstack_events "
            "WHERE seq > %s AND type = ANY(%s) AND timestamp >= %s ORDER BY seq"
        )
        args = (int(after_seq), list(HISTORY_TYPES), float("-inf") if since is None else since)
        rows = self._run("reading events", lambda c: c.execute(sql, args).fetchall())
        return [StoredEvent(*r) for r in rows]

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()


def _pg_message(exc: BaseException) -> str:
    """The first line of a psycopg error (libpq messages may span several lines)."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# ---------------------------------------------------------------------------- opening
def open_store(url: str = DEFAULT_DB) -> EventStore:
    """The store a URL names: ``sqlite:///relative.db``, ``sqlite:////absolute.db``,
    ``sqlite:///:memory:``, or ``postgresql://...`` (``postgres://`` too).

    Raises
    ------
    ConfigError
        An unsupported scheme or a SQLite URL without a path (the message never shows a
        password).
    StoreError
        The database cannot be opened.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if sep and scheme == "sqlite":
        if not rest.startswith("/") or len(rest) < 2:
            raise ConfigError(
                f"SQLite URLs are sqlite:///relative/path.db or sqlite:////absolute/path.db, "
                f"got {url!r}"
            )
        return SQLiteStore(rest[1:])
    if sep and scheme in ("postgresql", "postgres"):
        return PostgresStore(url)
    raise ConfigError(
        f"unsupported event store URL {redact(url)!r}: use sqlite:///path.db or "
        "postgresql://user:password@host:port/dbname"
    )


# ---------------------------------------------------------------------------- request log
class RequestLogBuffer:
    """Writes request logs in batches from a background thread, off the request path.

    :meth:`put` only appends to a list; the thread (started on the first ``put``) writes
    what has gathered every ``interval`` seconds. :meth:`flush` writes now (the report
    calls it, so it sees every list served so far); :meth:`close` flushes and stops.
    """

    def __init__(self, store: EventStore, interval: float = 0.2) -> None:
        self.store = store
        self.interval = interval
        self._rows: list[RequestLog] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # one writer at a time keeps logs in order
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        #: the last error of a background write (the rows were kept for the next try)
        self.error: StoreError | None = None

    def put(self, row: RequestLog) -> None:
        with self._lock:
            self._rows.append(row)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._loop, name="recstack-request-log", daemon=True
                )
                self._thread.start()

    def flush(self) -> None:
        """Write the gathered rows now; on a store error they are kept and it is raised."""
        with self._write_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return
            try:
                self.store.log_requests(rows)
            except StoreError:
                with self._lock:
                    self._rows[:0] = rows
                raise

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval)
            try:
                self.flush()
                self.error = None
            except StoreError as exc:
                self.error = exc

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()
