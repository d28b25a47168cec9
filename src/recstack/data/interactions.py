"""Interaction logs (`Interactions`) and batches of user histories (`Histories`).

Inside recstack users and items are contiguous int32 indices given by frozen
:class:`~recstack.data.idmap.IdMap` objects; external IDs appear only at the edges.
Events are kept sorted by (user, time), stably, so ties keep the order of the input file:
the per-user sequence is a slice, and a leave-last-out split reproduces peers' splits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recstack.data._columns import Columns
from recstack.data.idmap import IdMap, UnknownPolicy, as_id_array
from recstack.errors import DataError


def _last_value_csr(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]
) -> sp.csr_matrix:
    """CSR matrix holding, for a repeated (row, col), the value of its *last* event.

    ``rows``/``cols``/``values`` are in event order. Shape ``shape``, float32.
    """
    key = rows.astype(np.int64) * shape[1] + cols
    # the last occurrence of each key: unique on the reversed array gives first-in-reverse
    _, rev_first = np.unique(key[::-1], return_index=True)
    keep = len(key) - 1 - rev_first
    m = sp.csr_matrix(
        (values[keep].astype(np.float32), (rows[keep], cols[keep])), shape=shape, dtype=np.float32
    )
    m.sort_indices()
    return m


@dataclass(frozen=True, eq=False)
class Histories:
    """A batch of ``n`` users' histories, each in time order (CSR layout over events).

    Attributes
    ----------
    indptr : (n + 1,) int64
        Row ``r``'s events are ``items[indptr[r]:indptr[r + 1]]``.
    items : (nnz,) int32
        Item indices in the model's item map.
    values : (nnz,) float32
        Event values (ratings, or 1.0 for implicit feedback).
    times : (nnz,) float64
        Event times (unix seconds, or positions when the data has no timestamps).
    n_items : int
        Size of the item catalog the indices refer to.
    users : (n,) int32 or None
        Internal user index of each row, ``-1`` for a new or anonymous user.
    """

    indptr: np.ndarray
    items: np.ndarray
    values: np.ndarray
    times: np.ndarray
    n_items: int
    users: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Number of events per row, shape (n,) int64."""
        return np.diff(self.indptr)

    @property
    def rows(self) -> np.ndarray:
        """Row number of each event, shape (nnz,) int32."""
        return np.repeat(np.arange(len(self), dtype=np.int32), self.lengths)

    def to_csr(self) -> sp.csr_matrix:
        """The (n, n_items) float32 matrix; a repeated item keeps its last event's value."""
        return _last_value_csr(self.rows, self.items, self.values, (len(self), self.n_items))

    def decayed(self, half_life: float, ones: bool = False) -> Histories:
        """A copy whose event values are scaled by recency: the ``p``-th last event of each
        history (``p = 0`` the latest) is multiplied by ``0.5 ** (p / half_life)`` (events
        count, not time). ``ones`` first replaces the values by 1 (implicit feedback)."""
        from_end = np.repeat(self.indptr[1:], self.lengths) - 1 - np.arange(len(self.items))
        weight = np.exp2(-from_end / float(half_life)).astype(np.float32)
        values = weight if ones else weight * self.values
        return Histories(self.indptr, self.items, values, self.times, self.n_items, self.users)

    def select(self, rows: np.ndarray | Sequence[int] | slice) -> Histories:
        """The sub-batch of ``rows`` (indices, a boolean mask or a slice), in that order."""
        n = len(self)
        if isinstance(rows, slice):
            rows = np.arange(*rows.indices(n))
        else:
            rows = np.asarray(rows)
            if rows.dtype == bool:
                if rows.shape != (n,):
                    raise IndexError(f"boolean mask of shape {rows.shape} for {n} histories")
                rows = np.flatnonzero(rows)
            else:
                rows = rows.astype(np.int64)  # [] is float64
                if rows.size and (rows.min() < -n or rows.max() >= n):
                    raise IndexError(f"row index out of range for {n} histories")
                rows = np.where(rows < 0, rows + n, rows)
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        lengths = ends - starts
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        # positions of the selected events: start of each row + offset inside the row
        pos = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        return Histories(
            indptr,
            self.items[pos],
            self.values[pos],
            self.times[pos],
            self.n_items,
            None if self.users is None else self.users[rows],
        )

    @classmethod
    def stack(cls, parts: Sequence[Histories]) -> Histories:
        """One batch of every row of ``parts``, in order (all over the same catalog).

        ``users`` is kept when every part has it (else None)."""
        if not parts:
            raise ValueError("Histories.stack needs at least one batch")
        n_items = parts[0].n_items
        if any(p.n_items != n_items for p in parts):
            raise ValueError("Histories.stack: the batches index different catalogs")
        lengths = np.concatenate([p.lengths for p in parts])
        indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        users = (
            np.concatenate([p.users for p in parts])
            if all(p.users is not None for p in parts)
            else None
        )
        return cls(
            indptr,
            np.concatenate([p.items for p in parts]),
            np.concatenate([p.values for p in parts]),
            np.concatenate([p.times for p in parts]),
            n_items,
            users,
        )

    @classmethod
    def from_lists(
        cls,
        items: Sequence[Sequence[int]] | Sequence[np.ndarray],
        n_items: int,
        values: Sequence[Sequence[float]] | Sequence[np.ndarray] | None = None,
        times: Sequence[Sequence[float]] | Sequence[np.ndarray] | None = None,
    ) -> Histories:
        """Histories from lists of internal item indices (in time order), one list per user.

        ``values`` (default 1.0) and ``times`` (unix seconds, non-decreasing; default: the
        positions in each list, one second apart) have one list per user, as long as its
        items.
        """
        lengths = np.array([len(x) for x in items], dtype=np.int64)
        indptr = np.zeros(len(items) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        flat = np.concatenate([np.zeros(0, np.int64), *(np.asarray(x).ravel() for x in items)])
        kind = flat.dtype.kind
        if kind not in "iu" and (kind != "f" or not np.all(flat == np.round(flat))):
            raise DataError(f"history item indices must be integers, got {flat.dtype}")
        if flat.size and (flat.min() < 0 or flat.max() >= n_items):
            bad = flat[(flat < 0) | (flat >= n_items)][0]
            raise DataError(f"history item index {bad} is outside the catalog [0, {n_items})")
        if values is None:
            vals = np.ones(len(flat), dtype=np.float32)
        else:
            vals = _flat_per_event("values", values, lengths).astype(np.float32)
        if times is None:
            t = (np.arange(len(flat)) - np.repeat(indptr[:-1], lengths)).astype(np.float64)
        else:
            t = _flat_per_event("times", times, lengths)
            if not np.all(np.isfinite(t)):
                raise DataError("histories: times must be finite numbers (unix seconds)")
            back = np.flatnonzero(np.diff(t) < 0)
            back = back[np.isin(back + 1, indptr[1:-1], invert=True)]  # within one history
            if len(back):
                row = int(np.searchsorted(indptr, back[0], side="right") - 1)
                raise DataError(
                    f"histories: times must not decrease within a history; history {row} goes "
                    f"from {t[back[0]]:g} to {t[back[0] + 1]:g}"
                )
        users = np.full(len(items), -1, dtype=np.int32)
        return cls(indptr, flat.astype(np.int32), vals, t, int(n_items), users)

    @classmethod
    def from_ids(
        cls,
        item_map: IdMap,
        items: Sequence[Sequence[object]],
        unknown: UnknownPolicy = "raise",
        times: Sequence[Sequence[float]] | None = None,
    ) -> Histories:
        """Histories of new users from external item IDs, with their event ``times`` as in
        :meth:`from_lists`; unknown items follow ``unknown`` (with ``"warn"``/``"ignore"``
        they are left out of the history, with their times)."""
        idx = [item_map.index(list(x), unknown=unknown) for x in items]
        kept = None
        if times is not None:
            _flat_per_event("times", times, np.array([len(x) for x in idx]))
            kept = [np.asarray(t, np.float64)[x >= 0] for t, x in zip(times, idx, strict=True)]
        return cls.from_lists([x[x >= 0] for x in idx], len(item_map), times=kept)


class Interactions:
    """An interaction log in one ID space: events, ID maps and optional feature tables.

    Build one with :meth:`from_frame` or a reader in :mod:`recstack.data`. Filtering,
    preprocessing and splitting return new ``Interactions`` with the *same* ID maps, so
    train, valid and test line up and an item that only appears in the test (or only in
    the item feature table) is still part of the catalog.

    Parameters
    ----------
    users, items : IdMap
        The ID maps. ``items`` covers the whole catalog.
    user, item : (n,) int
        Internal indices of each event.
    value : (n,) float
        Event values (rating, or 1.0).
    time : (n,) float
        Event times in unix seconds (or positions when the data had no timestamps).
    item_features, user_features : DataFrame, optional
        One row per item (user) of the map, in map order, indexed by external ID.
    presorted : bool
        The events are already sorted by (user, time); skips the sort.
    """

    def __init__(
        self,
        users: IdMap,
        items: IdMap,
        user: np.ndarray,
        item: np.ndarray,
        value: np.ndarray,
        time: np.ndarray,
        *,
        item_features: pd.DataFrame | None = None,
        user_features: pd.DataFrame | None = None,
        presorted: bool = False,
    ) -> None:
        user = np.asarray(user, dtype=np.int32)
        item = np.asarray(item, dtype=np.int32)
        value = np.asarray(value, dtype=np.float32)
        time = np.asarray(time, dtype=np.float64)
        if not (len(user) == len(item) == len(value) == len(time)):
            raise DataError("user, item, value and time arrays differ in length")
        for idx, idmap in ((user, users), (item, items)):
            if len(idx) and (idx.min() < 0 or idx.max() >= len(idmap)):
                raise DataError(
                    f"{idmap.name} indices must lie in [0, {len(idmap)}), "
                    f"got {idx.min()} .. {idx.max()}"
                )
        if not presorted:
            order = _event_order(user, time)
            user, item, value, time = user[order], item[order], value[order], time[order]
        for arr in (user, item, value, time):
            arr.setflags(write=False)
        self.users, self.items = users, items
        self.user, self.item, self.value, self.time = user, item, value, time
        self.item_features = _align_features(item_features, items, "item")
        self.user_features = _align_features(user_features, users, "user")

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        user_col: str = Columns.USER,
        item_col: str = Columns.ITEM,
        rating_col: str | None = Columns.VALUE,
        time_col: str | None = Columns.TIME,
        item_features: pd.DataFrame | None = None,
        user_features: pd.DataFrame | None = None,
        items: IdMap | None = None,
        users: IdMap | None = None,
        source: str = "DataFrame",
        first_row: int = 0,
    ) -> Interactions:
        """Interactions from a DataFrame of events.

        ``rating_col``/``time_col`` that are ``None`` or absent mean implicit feedback
        (value 1.0) and file order as time order. ``item_features``/``user_features`` are
        indexed by external ID. Given ``items``/``users`` maps are extended, never reordered.
        ``source`` and ``first_row`` (the row number of ``df``'s first row in the file) make
        error messages name the file and row.

        Raises
        ------
        DataError
            A column is missing, an ID is empty, a rating or timestamp is not a finite number.
        """
        where = f"{source}"
        for col, role in ((user_col, "user"), (item_col, "item")):
            if col not in df.columns:
                raise DataError(
                    f"{where}: no {role} column {col!r}; columns are {list(map(str, df.columns))}"
                )
        for opt, role in ((rating_col, "rating"), (time_col, "timestamp")):
            # the canonical names are optional (implicit feedback, file order); others are not
            if (
                opt is not None
                and opt not in df.columns
                and opt not in (Columns.VALUE, Columns.TIME)
            ):
                raise DataError(
                    f"{where}: no {role} column {opt!r}; columns are {list(map(str, df.columns))}"
                )
        if len(df) == 0:
            raise DataError(f"{where}: no events (the table is empty)")
        ext_ids = {}
        for col in (user_col, item_col):
            ext = as_id_array(df[col])
            missing = pd.isna(ext) | (ext == "")
            if missing.any():
                row = int(np.flatnonzero(missing)[0]) + first_row
                raise DataError(f"{where}: column {col!r} is empty at row {row}")
            ext_ids[col] = ext
        value = _numeric(df, rating_col, where, first_row, "rating")
        time = _numeric(df, time_col, where, first_row, "timestamp")
        if value is None:
            value = np.ones(len(df), dtype=np.float32)
        if time is None:
            time = np.arange(len(df), dtype=np.float64)
        user_ext, item_ext = ext_ids[user_col], ext_ids[item_col]
        users = _grow(users, user_ext, user_features, "user")
        items = _grow(items, item_ext, item_features, "item")
        return cls(
            users,
            items,
            users.index(user_ext),
            items.index(item_ext),
            value,
            time,
            item_features=item_features,
            user_features=user_features,
        )

    def _replace(self, idx: np.ndarray | None = None, **arrays: np.ndarray) -> Interactions:
        """A new log over the same maps and features, with events ``idx`` (kept sorted)."""
        base = {"user": self.user, "item": self.item, "value": self.value, "time": self.time}
        if idx is not None:
            base = {k: v[idx] for k, v in base.items()}
        base.update(arrays)
        return Interactions(
            self.users,
            self.items,
            base["user"],
            base["item"],
            base["value"],
            base["time"],
            item_features=self.item_features,
            user_features=self.user_features,
            presorted=idx is None or bool(np.all(np.diff(idx) > 0)),
        )

    def select(self, events: np.ndarray) -> Interactions:
        """The events picked by a boolean mask or sorted index array, same ID space."""
        events = np.asarray(events)
        if events.dtype == bool:
            if len(events) != self.n_events:
                raise DataError(f"mask has {len(events)} entries for {self.n_events} events")
            events = np.flatnonzero(events)
        return self._replace(events)

    def concat(self, *others: Interactions) -> Interactions:
        """The union of logs in one ID space; for equal times, ``self``'s events come first
        (so train + valid keeps the validation event after the train events)."""
        for o in others:
            if o.items != self.items or o.users != self.users:
                raise DataError("cannot concatenate logs with different ID maps")
        parts = (self, *others)
        return Interactions(
            self.users,
            self.items,
            np.concatenate([p.user for p in parts]),
            np.concatenate([p.item for p in parts]),
            np.concatenate([p.value for p in parts]),
            np.concatenate([p.time for p in parts]),
            item_features=self.item_features,
            user_features=self.user_features,
        )

    def with_values(self, value: np.ndarray) -> Interactions:
        """The same events with new values (e.g. implicit 1.0), shape (n_events,)."""
        return self._replace(None, value=np.asarray(value, dtype=np.float32))

    # ----------------------------------------------------------------- views
    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_events(self) -> int:
        return len(self.user)

    def __len__(self) -> int:
        return self.n_events

    def __repr__(self) -> str:
        return (
            f"Interactions({self.n_events} events, {self.n_users} users, {self.n_items} items"
            f", density {self.density:.4%})"
        )

    @property
    def density(self) -> float:
        """Distinct (user, item) pairs over users x items."""
        return self.matrix.nnz / max(1, self.n_users * self.n_items)

    @cached_property
    def indptr(self) -> np.ndarray:
        """User ``u``'s events are ``indptr[u]:indptr[u + 1]``, shape (n_users + 1,) int64."""
        out = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.user, minlength=self.n_users), out=out[1:])
        return out

    @cached_property
    def matrix(self) -> sp.csr_matrix:
        """The (n_users, n_items) float32 CSR matrix; a repeated pair keeps its last value."""
        return _last_value_csr(self.user, self.item, self.value, (self.n_users, self.n_items))

    @cached_property
    def item_user_counts(self) -> np.ndarray:
        """Number of distinct users of each item, shape (n_items,) int64."""
        return np.bincount(self.matrix.indices, minlength=self.n_items)

    @property
    def user_lengths(self) -> np.ndarray:
        """Number of events per user, shape (n_users,) int64."""
        return np.diff(self.indptr)

    def active_users(self) -> np.ndarray:
        """Internal indices of users with at least one event, shape (m,) int32."""
        return np.flatnonzero(self.user_lengths > 0).astype(np.int32)

    def histories(self, users: np.ndarray | Sequence[int] | None = None) -> Histories:
        """The time-ordered histories of internal ``users`` (default: all users)."""
        full = Histories(
            self.indptr,
            self.item,
            self.value,
            self.time,
            self.n_items,
            np.arange(self.n_users, dtype=np.int32),
        )
        return full if users is None else full.select(np.asarray(users, dtype=np.int64))

    def to_frame(self) -> pd.DataFrame:
        """Events with external IDs, columns ``user_id, item_id, rating, timestamp``."""
        return pd.DataFrame(
            {
                Columns.USER: self.users.ids[self.user],
                Columns.ITEM: self.items.ids[self.item],
                Columns.VALUE: self.value,
                Columns.TIME: self.time,
            }
        )


def _numeric(
    df: pd.DataFrame, col: str | None, where: str, first_row: int, role: str
) -> np.ndarray | None:
    """Column ``col`` as finite float64, or a DataError naming the first bad row."""
    if col is None or col not in df.columns:
        return None
    raw = df[col]
    if pd.api.types.is_datetime64_any_dtype(raw):
        if isinstance(raw.dtype, pd.DatetimeTZDtype):
            raw = raw.dt.tz_convert(None)  # UTC wall time
        stamps = raw.to_numpy(dtype="datetime64[ns]")  # any resolution (s, ms, us, ns)
        out = (stamps - np.datetime64(0, "ns")) / np.timedelta64(1, "s")
        bad = np.isnat(stamps)
    else:
        num = pd.to_numeric(raw, errors="coerce")
        out = num.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(out)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = raw.iloc[row]
        shown = value.item() if isinstance(value, np.generic) else value  # inf, not np.float64(inf)
        raise DataError(
            f"{where}: column {col!r} ({role}) has a value that is not a finite number "
            f"at row {row + first_row}: {shown!r}"
        )
    return out


def _grow(idmap: IdMap | None, ext: np.ndarray, features: pd.DataFrame | None, kind: str) -> IdMap:
    """The ID map covering ``ext`` and the feature table's IDs, extending ``idmap``."""
    ids: Any = ext if features is None else np.concatenate([ext, as_id_array(features.index)])
    return IdMap.from_ids(ids, kind) if idmap is None else idmap.extend(ids)


def _flat_per_event(name: str, lists: Sequence[Any], lengths: np.ndarray) -> np.ndarray:
    """One float64 array of per-event ``lists``, checked to hold one list per history, as
    long as its items."""
    if len(lists) != len(lengths) or any(
        len(v) != n for v, n in zip(lists, lengths.tolist(), strict=True)
    ):
        raise DataError(f"histories: {name} need one list per user, as long as its items")
    try:
        return np.concatenate([np.zeros(0), *(np.asarray(v, np.float64) for v in lists)])
    except (TypeError, ValueError) as exc:
        raise DataError(f"histories: {name} must be numbers ({exc})") from exc


def _event_order(user: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Stable sort order by (user, time): ties keep input order.

    Whole-second times (the common case) are packed with the user into one int64 key, whose
    stable argsort is about 3x faster than ``np.lexsort`` on tens of millions of events.
    """
    if len(time):
        tmin, tmax = float(time.min()), float(time.max())
        span = tmax - tmin + 1
        if span * (int(user.max()) + 1) < 2**62 and np.array_equal(time, np.floor(time)):
            key = user.astype(np.int64) * np.int64(span) + (time - tmin).astype(np.int64)
            return np.argsort(key, kind="stable")
    return np.lexsort((time, user))


def _align_features(df: pd.DataFrame | None, idmap: IdMap, kind: str) -> pd.DataFrame | None:
    """Feature rows reindexed to the map's order (missing rows all-NaN), index = external ID."""
    if df is None:
        return None
    if (
        len(df) == len(idmap)
        and df.index.dtype == object
        and np.array_equal(df.index.to_numpy(), idmap.ids)
    ):
        return df  # already aligned (every select/concat/split passes features through)
    index = pd.Index(as_id_array(df.index), name=f"{kind}_id")
    if not index.is_unique:
        dup = index[index.duplicated()][0]
        raise DataError(f"{kind} features: {kind} ID {dup!r} appears in more than one row")
    out = df.set_axis(index, axis=0)
    if len(out) == len(idmap) and np.array_equal(out.index.to_numpy(), idmap.ids):
        return out
    return out.reindex(pd.Index(idmap.ids, name=f"{kind}_id"))
