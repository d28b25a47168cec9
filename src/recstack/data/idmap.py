"""Frozen maps between external IDs (strings, at the edges) and contiguous int32 indices."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable
from typing import Literal

import numpy as np
import pandas as pd

from recstack.errors import ConfigError, DataError, UnknownIdError

UnknownPolicy = Literal["raise", "warn", "ignore"]
_POLICIES = ("raise", "warn", "ignore")


def as_id_array(ids: object) -> np.ndarray:
    """External IDs as an object array of str: ``196``, ``"196"``, ``196.0`` are one ID.

    A scalar is one ID. Integral floats (a reader that parsed integer IDs as floats, a
    column with missing values) become integer strings, element by element, so one
    fractional ID does not turn ``196.0`` into ``"196.0"``.
    """
    if isinstance(ids, pd.Series | pd.Index):
        arr = ids.to_numpy()
    elif isinstance(ids, np.ndarray):
        arr = ids
    elif isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
        arr = np.array([ids], dtype=object)
    else:  # object dtype: numpy would turn [196.0, "x"] into the strings "196.0", "x"
        arr = np.asarray(list(ids), dtype=object)
    arr = arr.ravel()
    if arr.dtype.kind == "f":
        return _float_ids(arr)
    if arr.dtype == object and pd.api.types.infer_dtype(arr, skipna=False) in _HAS_FLOATS:
        # rare mixed tables: only float elements need the integral-float rule
        is_float = np.array([isinstance(x, float | np.floating) for x in arr], dtype=bool)
        out = _str_ids(arr)
        out[is_float] = _float_ids(arr[is_float].astype(np.float64))
        return out
    return _str_ids(arr)


#: ``pandas.api.types.infer_dtype`` kinds of object arrays that hold float elements
_HAS_FLOATS = ("floating", "mixed-integer-float", "mixed")


def _str_ids(arr: np.ndarray) -> np.ndarray:
    return pd.Series(arr, copy=False).astype(str).to_numpy(dtype=object)


def _float_ids(arr: np.ndarray) -> np.ndarray:
    """Float IDs as str; integral values (exactly representable in int64) without ``.0``."""
    out = _str_ids(arr)
    with np.errstate(invalid="ignore"):
        integral = np.isfinite(arr) & (arr == np.round(arr)) & (np.abs(arr) < 2.0**62)
    out[integral] = _str_ids(arr[integral].astype(np.int64))
    return out


class IdMap:
    """A frozen bijection between external IDs and indices ``0 .. len-1`` (int32).

    External IDs are stored as strings, so IDs read from a CSV (integers), a RecBole atomic
    file (tokens) or an HTTP path all match. Build one with :meth:`from_ids` (order of first
    appearance) or the constructor (IDs that are already unique, in index order).

    Examples
    --------
    >>> m = IdMap.from_ids([30, 10, 30, 20])
    >>> m.ids.tolist()
    ['30', '10', '20']
    >>> m.index(["10", 20]).tolist()
    [1, 2]
    >>> m.index(["99"], unknown="ignore").tolist()
    [-1]
    """

    __slots__ = ("_ids", "_index", "name")

    def __init__(self, ids: object, name: str = "id") -> None:
        index = pd.Index(as_id_array(ids), dtype=object)
        missing = pd.isna(index)
        if missing.any():
            pos = int(np.flatnonzero(missing)[0])
            raise DataError(f"{name} map: the external ID at position {pos} is missing (NaN)")
        if not index.is_unique:
            dup = index[index.duplicated()][0]
            raise DataError(f"{name} map: external ID {dup!r} appears more than once")
        self._ids = index.to_numpy()
        self._ids.setflags(write=False)
        self._index = index
        self.name = name

    @classmethod
    def from_ids(cls, ids: object, name: str = "id") -> IdMap:
        """Unique IDs of ``ids`` in order of first appearance."""
        return cls(pd.unique(as_id_array(ids)), name)

    @property
    def ids(self) -> np.ndarray:
        """External IDs, shape (n,), object array of str, position = internal index."""
        return self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and np.array_equal(self._ids, other._ids)

    def __hash__(self) -> int:
        return hash(self.checksum())

    def __repr__(self) -> str:
        head = ", ".join(map(str, self._ids[:3]))
        return f"IdMap({self.name}: {len(self)} ids [{head}{', ...' if len(self) > 3 else ''}])"

    def __contains__(self, ext: object) -> bool:
        """``ext`` (one ID, any kind: ``196``, ``"196"``, ``196.0``) is in the map."""
        if not isinstance(ext, str | bytes) and isinstance(ext, Iterable):
            return False  # a batch is not one ID
        return bool(as_id_array(ext)[0] in self._index)

    def index(self, ids: object, unknown: UnknownPolicy = "raise") -> np.ndarray:
        """Internal indices of external ``ids``, shape (n,) int32.

        ``unknown`` says what an ID that is not in the map becomes: ``"raise"`` an
        :class:`UnknownIdError` naming it, ``"warn"`` a warning and ``-1``, ``"ignore"`` ``-1``.
        """
        if unknown not in _POLICIES:
            raise ConfigError(f"unknown= must be one of {_POLICIES}, got {unknown!r}")
        query = as_id_array(ids)
        idx = self._index.get_indexer(query).astype(np.int32)
        missing = idx < 0
        if missing.any() and unknown != "ignore":
            bad = query[missing]
            msg = (
                f"{missing.sum()} unknown {self.name} ID(s), e.g. {bad[0]!r} "
                f"(the map has {len(self)} {self.name}s)"
            )
            if unknown == "raise":
                raise UnknownIdError(msg)
            warnings.warn(msg, stacklevel=2)
        return idx

    def to_ids(self, index: np.ndarray) -> np.ndarray:
        """External IDs of internal indices (any shape); ``-1`` becomes ``None``."""
        index = np.asarray(index)
        out = np.full(index.shape, None, dtype=object)
        valid = index >= 0
        out[valid] = self._ids[index[valid]]
        return out

    def extend(self, ids: object) -> IdMap:
        """A new map with the IDs of ``ids`` not yet present appended (existing indices kept)."""
        new = IdMap.from_ids(ids, self.name)
        extra = new.ids[self._index.get_indexer(new.ids) < 0]
        return IdMap(np.concatenate([self._ids, extra]), self.name)

    def checksum(self) -> str:
        """SHA-256 of the IDs in order: a saved model checks that its data uses the same map."""
        h = hashlib.sha256(f"{len(self)}\x1e".encode())  # the length tells [] from [""]
        for chunk in np.array_split(self._ids, max(1, len(self) // 100_000)):
            h.update("\x1f".join(chunk.tolist()).encode())
            h.update(b"\x1e")
        return h.hexdigest()

    def to_frame(self) -> pd.DataFrame:
        """Two columns, ``index`` and ``id`` (for Parquet files of saved models and splits)."""
        return pd.DataFrame({"index": np.arange(len(self), dtype=np.int32), "id": self._ids})
