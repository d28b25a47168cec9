"""Readers: interaction logs and feature tables from CSV, TSV, Parquet and RecBole atomic files.

Every reader validates what it reads and names the file, the column and the line of the
first bad value (:class:`~recstack.errors.DataError`). Text files are parsed by pyarrow;
the separator of ``.csv``/``.tsv``/``.txt`` files is sniffed unless ``sep=`` is given.

Column names are detected from common spellings (:data:`COLUMN_ALIASES`, case-insensitive)
unless given. ID columns are always read as strings, so ``"007"`` stays ``"007"``.

RecBole atomic files (``.inter``, ``.item``, ``.user``) are tab-separated, unquoted, with
a header of ``name:type`` fields (``token``, ``token_seq``, ``float``, ``float_seq``; a
``token_seq`` holds space-separated tokens). Any text file whose header has that form is
read the same way (the peers' ``train.tsv`` files are). Feature tables keep the field
names without ``:type`` and record the types in ``DataFrame.attrs["types"]``, which the
split writer uses to round-trip them.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recstack.data._columns import Columns
from recstack.data.idmap import IdMap, as_id_array
from recstack.data.interactions import Interactions
from recstack.errors import ConfigError, DataError

if TYPE_CHECKING:
    from recstack.data.splits import Split

#: spellings of each canonical column accepted by auto-detection (compared lower-cased);
#: the first match in this order wins
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    Columns.USER: ("user_id", "user", "userid"),
    Columns.ITEM: ("item_id", "item", "itemid", "movieid", "movie_id"),
    Columns.VALUE: ("rating", "ratings", "score", "value"),
    Columns.TIME: ("timestamp", "time", "ts"),
}
#: field types of RecBole atomic files
ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
ATOMIC_EXTENSIONS = (".inter", ".item", ".user")
TEXT_EXTENSIONS = (".csv", ".tsv", ".txt", *ATOMIC_EXTENSIONS)
PARQUET_EXTENSIONS = (".parquet", ".pq")

_ATOMIC_FIELD = re.compile(r"^(.+):(token_seq|token|float_seq|float)$")
_SEPARATORS = ("\t", ",", ";", "|")
_SAMPLE_BYTES = 1 << 16
#: the argument of read_events naming each canonical column
_ARG = {
    Columns.USER: "user_col",
    Columns.ITEM: "item_col",
    Columns.VALUE: "rating_col",
    Columns.TIME: "time_col",
}

FeatureKind = Literal["item", "user"]


# ------------------------------------------------------------------------------ layout
@dataclass(frozen=True)
class _Layout:
    """How a file is read: its kind, separator, clean column names and atomic types."""

    path: Path
    parquet: bool
    sep: str
    names: list[str]
    types: dict[str, str]
    encoding: str

    @property
    def atomic(self) -> bool:
        return bool(self.types) and not self.parquet

    def at(self, row: int) -> str:
        """Where data row ``row`` (0-based) is: a line of a text file, a row of Parquet."""
        return f"row {row + 1}" if self.parquet else f"line {_line_of(self.path, row)}"

    def columns_text(self) -> str:
        return f"columns are {self.names}"


def _layout(path: str | Path, sep: str | None, encoding: str) -> _Layout:
    """Inspect ``path``: file kind, separator (sniffed), header and atomic types."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    ext = path.suffix.lower()
    if ext in PARQUET_EXTENSIONS:
        try:
            names = list(pq.read_schema(path).names)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{path}: not a readable Parquet file ({exc})") from exc
        return _Layout(path, True, "", [n for n in names if n != "__index_level_0__"], {}, "")
    if ext not in TEXT_EXTENSIONS:
        raise DataError(
            f"{path}: unknown file type {ext!r}; expected one of "
            f"{', '.join(TEXT_EXTENSIONS + PARQUET_EXTENSIONS)}"
        )
    lines, decodes = _sample_lines(path, encoding)
    if not lines:
        raise DataError(f"{path}: the file is empty (no header, no events)")
    if sep is None:
        sep = "\t" if ext in ATOMIC_EXTENSIONS else _sniff(path, lines)
    if not decodes:
        raise _encoding_error(path, encoding, sep)
    header = next(csv.reader([lines[0]], delimiter=sep))
    fields = [_ATOMIC_FIELD.match(h.strip()) for h in header]
    if all(fields):
        names = [m[1] for m in fields if m]
        types = {m[1]: m[2] for m in fields if m}
    elif ext in ATOMIC_EXTENSIONS:
        bad = header[[m is None for m in fields].index(True)]
        raise DataError(
            f"{path}: header field {bad!r} (line 1) is not 'name:type' with a type in "
            f"{ATOMIC_TYPES}, as RecBole atomic files need"
        )
    else:
        names, types = [h.strip() for h in header], {}
    if len(set(names)) < len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DataError(f"{path}: column {dup!r} appears twice in the header (line 1)")
    return _Layout(path, False, sep, names, types, encoding)


def _sample_lines(path: Path, encoding: str) -> tuple[list[str], bool]:
    """The first complete, non-blank lines of a text file (about 64 KiB), and whether they
    decode without error."""
    with path.open("rb") as f:
        data = f.read(_SAMPLE_BYTES + 1)
    if len(data) > _SAMPLE_BYTES:  # drop a line cut by the sample's end
        data = data[: data.rfind(b"\n", 0, _SAMPLE_BYTES) + 1] or data[:_SAMPLE_BYTES]
    try:
        text = data.decode(encoding)
        decodes = True
    except UnicodeDecodeError:  # reported once the separator is known, to name the column
        text, decodes = data.decode(encoding, "replace"), False
    except LookupError as exc:
        raise ConfigError(f"encoding={encoding!r} is not a known text encoding") from exc
    return [ln for ln in text.lstrip("\ufeff").splitlines() if ln.strip()], decodes


def _sniff(path: Path, lines: list[str]) -> str:
    """The separator that splits the header into more than one field and the most sampled
    lines into as many fields as the header (a bad line must not hide the separator)."""
    best, best_score = None, 0.0
    for sep in _SEPARATORS:
        counts = [len(row) for row in csv.reader(lines[:50], delimiter=sep)]
        score = sum(c == counts[0] for c in counts) / len(counts)
        if counts[0] > 1 and score > best_score:
            best, best_score = sep, score
    if best is None and not any(sep in lines[0] for sep in _SEPARATORS):
        return ","  # a one-column header (an ID list): any separator reads it
    if best is None:
        raise DataError(
            f"{path}: cannot detect the column separator (tried tab, ',', ';', '|'); pass sep="
        )
    return best


def _line_of(path: Path, row: int) -> int:
    """The line number (1-based) of data row ``row``: the header is line 1, blank lines are
    skipped as the parser skips them. Only called to word an error."""
    seen = -1
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            if line.strip(b"\r\n"):
                if seen == row:
                    return number
                seen += 1
    return row + 2


def _clean(name: str) -> str:
    """A header field without its atomic ``:type``."""
    return _ATOMIC_FIELD.sub(r"\1", name.strip())


def _encoding_error(path: Path, encoding: str, sep: str | None) -> DataError:
    """A DataError naming the line (and column) of the first byte ``encoding`` cannot decode."""
    data = path.read_bytes()
    try:
        data.decode(encoding)
    except UnicodeDecodeError as exc:
        start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        where = f"line {line}"
        if sep is not None and line > 1:
            header = data[: data.find(b"\n")].decode(encoding, "replace").split(sep)
            field = data[start : exc.start].count(sep.encode())
            if field < len(header):
                where += f", column {_clean(header[field])!r}"
        return DataError(
            f"{path}: byte 0x{data[exc.start]:02x} at {where} is not valid {encoding} text; "
            "pass the file's encoding, e.g. encoding='latin-1' (MovieLens 100K and 1M files "
            "are latin-1)"
        )
    return DataError(f"{path}: cannot decode the file as {encoding}")


# ------------------------------------------------------------------------------ reading
def _read(layout: _Layout, columns: list[str], strings: set[str]) -> pd.DataFrame:
    """Columns ``columns`` of the file; ``strings`` are read as text, the rest inferred.
    Empty fields are missing values (NaN)."""
    if layout.parquet:
        try:
            return pd.read_parquet(layout.path, columns=columns)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(
                f"{layout.path}: cannot read Parquet columns {columns} ({exc})"
            ) from exc
    try:
        table = pacsv.read_csv(
            layout.path,
            read_options=pacsv.ReadOptions(
                skip_rows=1, column_names=layout.names, encoding=layout.encoding
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=layout.sep, quote_char=False if layout.atomic else '"'
            ),
            convert_options=pacsv.ConvertOptions(
                include_columns=columns,
                column_types={c: pa.string() for c in strings},
                null_values=[""],
                strings_can_be_null=True,
            ),
        )
    except UnicodeDecodeError as exc:
        raise _encoding_error(layout.path, layout.encoding, layout.sep) from exc
    except pa.ArrowInvalid as exc:
        raise _parse_error(layout, exc) from exc
    return table.to_pandas()


def _parse_error(layout: _Layout, exc: Exception) -> DataError:
    """Word a pyarrow parse error with the line it happened on."""
    msg = str(exc)
    if "UTF8" in msg or "utf-8" in msg.lower():
        return _encoding_error(layout.path, layout.encoding, layout.sep)
    with layout.path.open(encoding=layout.encoding, errors="replace", newline="") as f:
        rows = (
            csv.reader(f, delimiter=layout.sep, quoting=csv.QUOTE_NONE)
            if layout.atomic
            else csv.reader(f, delimiter=layout.sep)
        )
        for number, row in enumerate(rows, 1):
            if row and len(row) != len(layout.names):
                return DataError(
                    f"{layout.path}: line {number} has {len(row)} fields, the header has "
                    f"{len(layout.names)} ({layout.columns_text()})"
                )
    return DataError(f"{layout.path}: cannot parse the file ({msg})")


def _pick(layout: _Layout, role: str, given: str | None, arg: str, required: bool) -> str | None:
    """The file column playing ``role``: the given name (argument ``arg``), or an alias."""
    if given is not None:
        clean = _clean(given)  # "user_id:token" names "user_id"
        if clean not in layout.names:
            raise DataError(
                f"{layout.path}: no column {given!r} (given as {arg}=); {layout.columns_text()}"
            )
        return clean
    lower = {n.lower(): n for n in reversed(layout.names)}
    found = next((lower[a] for a in COLUMN_ALIASES[role] if a in lower), None)
    if found is None and required:
        hint = " (a single column: pass the separator with sep=?)" if len(layout.names) == 1 else ""
        raise DataError(
            f"{layout.path}: no {role} column (looked for {', '.join(COLUMN_ALIASES[role])}); "
            f"{layout.columns_text()}{hint}; name it with {arg}="
        )
    return found


def _check_ids(df: pd.DataFrame, col: str, layout: _Layout, label: str) -> None:
    """Raise on the first empty ID of column ``col``."""
    s = df[col]
    missing = s.isna()
    if layout.parquet and not pd.api.types.is_numeric_dtype(s):  # text readers give NaN
        missing |= s.astype("str") == ""
    if missing.any():
        row = int(np.flatnonzero(missing.to_numpy())[0])
        raise DataError(f"{layout.path}: column {label!r} is empty at {layout.at(row)}")


def _numbers(s: pd.Series, label: str, layout: _Layout, role: str, allow_na: bool) -> np.ndarray:
    """Column ``s`` as float64; raises on the first non-number (or empty, unless allowed)."""
    num = pd.to_numeric(s, errors="coerce") if not pd.api.types.is_bool_dtype(s) else s
    out = np.asarray(num.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    bad = ~np.isfinite(out)
    if allow_na:
        bad &= s.notna().to_numpy() | ~np.isnan(out)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raw = s.iloc[row]
        raw = raw.item() if isinstance(raw, np.generic) else raw
        what = "is missing" if pd.isna(raw) else f"has {raw!r}, not a finite number,"
        raise DataError(f"{layout.path}: column {label!r} ({role}) {what} at {layout.at(row)}")
    return out


def _seconds(s: pd.Series, label: str, layout: _Layout) -> np.ndarray:
    """Timestamps as float64 unix seconds from numbers or ISO 8601 date/times (naive = UTC)."""
    if pd.api.types.is_datetime64_any_dtype(s) or (
        not pd.api.types.is_numeric_dtype(s) and pd.to_numeric(s, errors="coerce").isna().all()
    ):
        stamps = pd.to_datetime(s, errors="coerce", utc=True, format="ISO8601")
        bad = stamps.isna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            what = "is empty" if pd.isna(s.iloc[row]) else f"has {s.iloc[row]!r}, not a time,"
            raise DataError(
                f"{layout.path}: column {label!r} (timestamp) {what} at {layout.at(row)} "
                "(expected unix seconds or an ISO 8601 date/time)"
            )
        return np.asarray((stamps - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1))
    return _numbers(s, label, layout, "timestamp", allow_na=False)


def read_events(
    path: str | Path,
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    rating_col: str | None = None,
    time_col: str | None = None,
    sep: str | None = None,
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Read and validate an event table (CSV, TSV, TXT, Parquet or atomic ``.inter``).

    Parameters
    ----------
    path : str or Path
        The file; its type is told by its extension.
    user_col, item_col, rating_col, time_col : str, optional
        File column names; by default detected from :data:`COLUMN_ALIASES`. Ratings and
        timestamps are optional (implicit feedback, file order).
    sep : str, optional
        Field separator of text files; sniffed when ``None`` (tab for atomic files).
    encoding : str
        Text encoding (default UTF-8). A file that does not decode is an error that names
        the line and suggests ``encoding=``; there is no silent fallback.

    Returns
    -------
    DataFrame
        Columns ``user_id``, ``item_id`` (str) and, when present, ``rating`` (float64) and
        ``timestamp`` (float64 unix seconds; ISO 8601 strings are parsed, naive as UTC),
        in file order. ``attrs["source"]`` is the path.

    Raises
    ------
    DataError
        Missing or unknown columns, empty IDs, non-numeric or missing ratings, unparsable
        timestamps, an empty file, a line with a wrong number of fields, bad encoding;
        the message names the file, the column and the line (row, for Parquet).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.csv"
    >>> _ = p.write_text("userId,movieId,rating\\n1,007,4.5\\n")
    >>> read_events(p).to_dict("records")
    [{'user_id': '1', 'item_id': '007', 'rating': 4.5}]
    """
    layout = _layout(path, sep, encoding)
    given = {Columns.USER: user_col, Columns.ITEM: item_col}
    given |= {Columns.VALUE: rating_col, Columns.TIME: time_col}
    cols = {
        role: _pick(layout, role, name, _ARG[role], required=role in (Columns.USER, Columns.ITEM))
        for role, name in given.items()
    }
    found = {role: col for role, col in cols.items() if col is not None}
    ids = {found[Columns.USER], found[Columns.ITEM]}
    df = _read(layout, list(dict.fromkeys(found.values())), ids)
    if len(df) == 0:
        raise DataError(f"{layout.path}: no events (the file has a header only)")
    out: dict[str, Any] = {}
    for role in (Columns.USER, Columns.ITEM):
        _check_ids(df, found[role], layout, found[role])
        out[role] = df[found[role]].astype("str")
    if Columns.VALUE in found:
        col = found[Columns.VALUE]
        out[Columns.VALUE] = _numbers(df[col], col, layout, "rating", allow_na=False)
    if Columns.TIME in found:
        out[Columns.TIME] = _seconds(df[found[Columns.TIME]], found[Columns.TIME], layout)
    events = pd.DataFrame(out)
    events.attrs["source"] = str(layout.path)
    return events


def read_features(
    path: str | Path,
    kind: FeatureKind = "item",
    *,
    id_col: str | None = None,
    types: dict[str, str] | None = None,
    sep: str | None = None,
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Read an item or user feature table (atomic ``.item``/``.user``, CSV, TSV, Parquet).

    Parameters
    ----------
    path : str or Path
    kind : {"item", "user"}
        Which IDs the table describes (names the index and picks the ID aliases).
    id_col : str, optional
        The ID column; by default detected (``item_id``, ``movieId``, ...).
    types : dict, optional
        Atomic types (``token``, ``token_seq``, ``float``) of columns of files without a
        typed header; ``token`` columns stay text (zip codes keep leading zeros).
        Unnamed columns are inferred: numbers are ``float``, text with spaces
        ``token_seq``, other text ``token``.
    sep, encoding
        As in :func:`read_events`.

    Returns
    -------
    DataFrame
        One row per ID, indexed by the external ID (str, index name ``item_id`` or
        ``user_id``); feature columns under their names without ``:type``: text columns
        as str (``token_seq`` space-separated, lists joined by spaces), ``float`` columns
        as float64; empty fields are NaN. ``attrs["types"]`` maps each column to its
        atomic type.

    Raises
    ------
    DataError
        No ID column, an empty or repeated ID, a non-numeric value in a ``float`` column.
    """
    if kind not in ("item", "user"):
        raise ConfigError(f"kind must be 'item' or 'user', got {kind!r}")
    layout = _layout(path, sep, encoding)
    role = Columns.ITEM if kind == "item" else Columns.USER
    idc = _pick(layout, role, id_col, "id_col", required=True)
    assert idc is not None  # required=True raised otherwise
    declared = {**layout.types, **(types or {})}
    for col, t in declared.items():
        if t not in ATOMIC_TYPES:
            raise ConfigError(f"types[{col!r}] must be one of {ATOMIC_TYPES}, got {t!r}")
    text = {c for c in layout.names if declared.get(c, "float") != "float"} | {idc}
    df = _read(layout, list(layout.names), text)
    _check_ids(df, idc, layout, idc)
    index = pd.Index(as_id_array(df[idc]), name=f"{kind}_id")
    dup = index.duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise DataError(
            f"{layout.path}: {kind} ID {index[row]!r} (column {idc!r}) appears again at "
            f"{layout.at(row)}"
        )
    columns: dict[str, Any] = {}
    out_types: dict[str, str] = {}
    for col in layout.names:
        if col == idc:
            continue
        s = df[col].reset_index(drop=True)
        t = declared.get(col) or _infer_type(s)
        if t == "float":
            columns[col] = _numbers(s, col, layout, "float feature", allow_na=True)
        else:
            columns[col] = feature_text(s)
        out_types[col] = t
    features = pd.DataFrame(columns, index=pd.RangeIndex(len(df))).set_axis(index)
    features.attrs["types"] = out_types
    return features


def _infer_type(s: pd.Series) -> str:
    """The atomic type of a column of a file without a typed header."""
    if pd.api.types.is_numeric_dtype(s):
        return "float"
    text = feature_text(s)
    return "token_seq" if text.str.contains(" ", regex=False).any() else "token"


def feature_text(s: pd.Series) -> pd.Series:
    """A feature column as str (NaN kept), list-like values joined by spaces (token_seq)."""
    if s.dtype == object or isinstance(s.dtype, pd.ArrowDtype):
        values = s.to_numpy(dtype=object)
        is_list = np.array([isinstance(v, list | tuple | np.ndarray) for v in values], bool)
        if is_list.any():
            values = values.copy()
            values[is_list] = [" ".join(map(str, v)) for v in values[is_list]]
            s = pd.Series(values, index=s.index)
    return s.astype("str").where(s.notna())


def infer_types(features: pd.DataFrame) -> dict[str, str]:
    """Atomic types of a feature table's columns: ``attrs["types"]`` where recorded, else
    inferred (numbers ``float``, text with spaces ``token_seq``, other text ``token``)."""
    known = features.attrs.get("types", {})
    return {str(c): known.get(c) or _infer_type(features[c]) for c in features.columns}


# ------------------------------------------------------------------------------ Interactions
def encode_ids(
    ids: pd.Series, idmap: IdMap | None, features: pd.DataFrame | None, kind: str
) -> tuple[IdMap, np.ndarray]:
    """The ID map covering ``ids`` (and the feature table's IDs) and each row's index.

    ``idmap`` is extended, never reordered; without it the map is the IDs in order of first
    appearance, then feature-only IDs. IDs are hashed once per distinct value (pandas
    factorize), which keeps large logs fast. Returns the map and (n,) int32 indices.
    """
    codes, uniques = pd.factorize(_as_ints(ids))
    ext = as_id_array(uniques)
    grow = ext if features is None else np.concatenate([ext, as_id_array(features.index)])
    idmap = IdMap.from_ids(grow, kind) if idmap is None else idmap.extend(grow)
    return idmap, idmap.index(ext)[codes]


def _as_ints(ids: pd.Series) -> pd.Series | np.ndarray:
    """Text IDs that are all canonical decimal integers ("196", not "007" or "+1") as int64,
    which hash about 3x faster; the strings and the integers are in one-to-one
    correspondence, so the map is the same. Other IDs are returned unchanged."""
    if not isinstance(ids.dtype, pd.StringDtype) or ids.dtype.storage != "pyarrow":
        return ids
    text = pa.chunked_array(pa.array(ids.array))
    try:
        ints = pc.cast(text, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return ids
    if not pc.all(pc.equal(pc.cast(ints, text.type), text)).as_py():
        return ids
    return ints.to_numpy()


def events_to_interactions(
    events: pd.DataFrame,
    *,
    item_features: pd.DataFrame | None = None,
    user_features: pd.DataFrame | None = None,
    items: IdMap | None = None,
    users: IdMap | None = None,
) -> Interactions:
    """Interactions from a validated canonical event table (as :func:`read_events` returns).

    The item map covers the events' items and every item of ``item_features`` (likewise
    for users); given maps are extended, never reordered. Without ``rating`` events are
    implicit (1.0); without ``timestamp`` the row order is the time order.
    """
    users, user = encode_ids(events[Columns.USER], users, user_features, "user")
    items, item = encode_ids(events[Columns.ITEM], items, item_features, "item")
    n = len(events)
    value = events[Columns.VALUE] if Columns.VALUE in events else np.ones(n, np.float32)
    time = events[Columns.TIME] if Columns.TIME in events else np.arange(n, dtype=np.float64)
    return Interactions(
        users,
        items,
        user,
        item,
        np.asarray(value, dtype=np.float32),
        np.asarray(time, dtype=np.float64),
        item_features=item_features,
        user_features=user_features,
    )


def read_table(
    path: str | Path,
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    rating_col: str | None = None,
    time_col: str | None = None,
    sep: str | None = None,
    encoding: str = "utf-8",
    item_features: str | Path | pd.DataFrame | None = None,
    user_features: str | Path | pd.DataFrame | None = None,
) -> Interactions:
    """Interactions from an event file and optional feature tables (files or DataFrames).

    Arguments are those of :func:`read_events`; feature files are read with
    :func:`read_features` (same ``encoding``). The item map covers the whole catalog:
    every item of the events and of the item feature table.
    """
    events = read_events(
        path,
        user_col=user_col,
        item_col=item_col,
        rating_col=rating_col,
        time_col=time_col,
        sep=sep,
        encoding=encoding,
    )
    if isinstance(item_features, str | Path):
        item_features = read_features(item_features, "item", encoding=encoding)
    if isinstance(user_features, str | Path):
        user_features = read_features(user_features, "user", encoding=encoding)
    return events_to_interactions(events, item_features=item_features, user_features=user_features)


def read_atomic(path: str | Path, *, encoding: str = "utf-8") -> Interactions:
    """Interactions from RecBole atomic files: ``NAME.inter`` with optional ``NAME.item`` and
    ``NAME.user`` beside it.

    Parameters
    ----------
    path : str or Path
        The ``.inter`` file, or a directory holding exactly one.
    encoding : str
        Text encoding of the files.

    Examples
    --------
    ``read_atomic("data/ml-100k")`` reads ``ml-100k.inter``, ``ml-100k.item`` and
    ``ml-100k.user``.
    """
    path = Path(path)
    if path.is_dir():
        inters = sorted(path.glob("*.inter"))
        if len(inters) != 1:
            found = ", ".join(p.name for p in inters) or "none"
            raise DataError(
                f"{path}: expected one .inter file in the directory, found {found}; "
                "pass the .inter file itself"
            )
        path = inters[0]
    if path.suffix != ".inter":
        raise DataError(f"{path}: an atomic interaction file ends with .inter")
    side = {kind: path.with_suffix(f".{kind}") for kind in ("item", "user")}
    return read_table(
        path,
        encoding=encoding,
        item_features=side["item"] if side["item"].is_file() else None,
        user_features=side["user"] if side["user"].is_file() else None,
    )


# ------------------------------------------------------------------------------ dispatch
def load_dataset(spec: str | Path) -> Interactions | Split:
    """Load a dataset by name or path; a saved split comes back as the :class:`Split`.

    ``spec`` is one of

    - a MovieLens name (``"movielens-100k"``, ``"movielens-1m"``, ``"movielens-20m"``,
      ``"movielens-25m"``, ``"movielens-latest-small"``), downloaded on first use;
    - a directory holding a split (``train.*``, optional ``valid.*``, ``test.*``);
    - a directory of atomic files (one ``NAME.inter``), or a ``.inter`` file;
    - a MovieLens release (its zip or extracted directory, as GroupLens ships it);
    - a CSV/TSV/TXT/Parquet event file (columns detected).
    """
    # imported here: both modules build on this one
    import recstack.data.movielens as movielens
    import recstack.data.split_io as split_io

    path = Path(spec).expanduser()
    if not path.exists():
        if str(spec) in movielens.RELEASES:
            return movielens.load_movielens(str(spec))
        raise DataError(
            f"{str(spec)!r} is neither an existing file or directory nor a known dataset name "
            f"({', '.join(movielens.RELEASES)})"
        )
    if path.is_dir():
        if split_io.is_split_dir(path):
            return split_io.load_split(path)
        if any(path.glob("*.inter")):
            return read_atomic(path)
        if movielens.is_release(path):
            return movielens.read_movielens(path)
        raise DataError(
            f"{path}: the directory holds no split (train.*, test.*), atomic files (*.inter) "
            "or MovieLens release (u.data, ratings.dat or ratings.csv)"
        )
    if path.suffix.lower() == ".zip":
        return movielens.read_movielens(path)
    if path.suffix == ".inter":
        return read_atomic(path)
    return read_table(path)
