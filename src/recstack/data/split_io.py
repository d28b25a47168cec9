"""Saving and loading splits: one file per part, one ID space.

A saved split is a directory::

    train.inter  valid.inter  test.inter      (or .csv, .parquet; valid when present)
    items.item   users.user                   (or items.csv / users.csv, ...)
    split.json         format, events per part, item_types, user_types, info

Event files have the columns ``user_id``, ``item_id``, ``rating``, ``timestamp`` (atomic
header ``user_id:token item_id:token rating:float timestamp:float``); numbers are written
in their shortest exact form, so times and ratings round-trip bit for bit. ``items.*`` and
``users.*`` list the whole ID maps in map order (with the feature columns, when there are
features), so a loaded split has the same maps as the saved one, including items that only
appear in the feature table. ``split.json`` keeps ``Split.info``, the event counts (checked
on load) and the features' atomic types.

:func:`load_split` also reads directories without ``split.json``: ``train.*``, optional
``valid.*`` and ``test.*`` event files in any format :func:`read_events` reads (the shared
peers' ``train.tsv`` files, for one).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from recstack.data._columns import Columns
from recstack.data.idmap import IdMap
from recstack.data.interactions import Interactions
from recstack.data.readers import encode_ids, feature_text, infer_types, read_events, read_features
from recstack.data.splits import Split
from recstack.errors import ConfigError, DataError

FORMATS: tuple[str, ...] = ("atomic", "csv", "parquet")
PARTS = ("train", "valid", "test")
META = "split.json"
_EVENT_EXT = {"atomic": ".inter", "csv": ".csv", "parquet": ".parquet"}
_FEATURE_EXT = {"atomic": {"item": ".item", "user": ".user"}, "csv": ".csv", "parquet": ".parquet"}
#: event file extensions looked for, in order, in a directory without split.json
_PART_EXT = (".inter", ".tsv", ".csv", ".txt", ".parquet")
_ATOMIC_EVENTS = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
#: characters a field of an (unquoted) atomic file cannot hold
_STRUCTURAL = ("\t", "\n", "\r")


def _feature_name(fmt: str, kind: str) -> str:
    ext = _FEATURE_EXT[fmt]
    return f"{kind}s{ext[kind] if isinstance(ext, dict) else ext}"


# ------------------------------------------------------------------------------ save
def save_split(split: Split, directory: str | Path, format: str = "atomic") -> Path:
    """Write ``split`` to ``directory`` (created if needed) in ``format``.

    Parameters
    ----------
    split : Split
    directory : str or Path
    format : {"atomic", "csv", "parquet"}
        ``"atomic"`` writes RecBole atomic files (tab-separated, unquoted: IDs and text
        features must not hold tabs or line breaks, and IDs no double quotes).

    Returns
    -------
    Path
        The directory.
    """
    if format not in FORMATS:
        raise ConfigError(f"format must be one of {FORMATS}, got {format!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    parts = {name: p for name in PARTS if (p := getattr(split, name)) is not None}
    data = split.train
    if format == "atomic":  # pyarrow cannot write these unquoted
        for idmap in (data.users, data.items):
            _check_atomic_text(idmap.ids, f"{idmap.name} ID", directory, extra=('"',))
    for name, part in parts.items():
        _write_events(part.to_frame(), directory / f"{name}{_EVENT_EXT[format]}", format)
    types = {
        kind: _write_features(idmap, feats, directory / _feature_name(format, kind), format, kind)
        for kind, idmap, feats in (
            ("item", data.items, data.item_features),
            ("user", data.users, data.user_features),
        )
    }
    meta = {
        "format": format,
        "events": {name: part.n_events for name, part in parts.items()},
        "item_types": types["item"],
        "user_types": types["user"],
        "info": split.info,
    }
    try:
        text = json.dumps(meta, indent=1, default=_json_default)
    except TypeError as exc:
        raise DataError(f"split.info cannot be written as JSON: {exc}") from exc
    (directory / META).write_text(text + "\n")
    return directory


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON serializable")


def _check_atomic_text(
    values: np.ndarray, what: str, path: Path, extra: tuple[str, ...] = ()
) -> None:
    """Raise if a value cannot be written to an unquoted tab-separated file."""
    text = pd.Series(values, dtype="str")
    for ch in _STRUCTURAL + extra:
        bad = text.str.contains(ch, regex=False).fillna(False).to_numpy(dtype=bool)
        if bad.any():
            raise DataError(
                f"{path}: {what} {values[np.flatnonzero(bad)[0]]!r} holds {ch!r}, which an "
                "atomic file cannot store; save the split as csv or parquet"
            )


def _write_events(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    """One part's events (columns user_id, item_id, rating, timestamp)."""
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
        return
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if fmt == "csv":
        pacsv.write_csv(table, path)
        return
    with path.open("wb") as f:
        f.write(_ATOMIC_EVENTS.encode())
        options = pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
        pacsv.write_csv(table, f, options)


def _write_features(
    idmap: IdMap, features: pd.DataFrame | None, path: Path, fmt: str, kind: str
) -> dict[str, str]:
    """The ID map in order with its feature columns; returns the columns' atomic types."""
    id_col = f"{kind}_id"
    columns: dict[str, Any] = {id_col: idmap.ids}
    types: dict[str, str] = {}
    if features is not None:
        types = infer_types(features)
        if id_col in types:
            raise DataError(f"{kind} features: a feature column is named {id_col!r}")
        for col, t in types.items():
            s = features[col]
            columns[col] = (
                s.to_numpy(dtype=np.float64, na_value=np.nan) if t == "float" else feature_text(s)
            )
    table = pd.DataFrame({k: np.asarray(v) for k, v in columns.items()})
    if fmt == "parquet":
        table.to_parquet(path, index=False)
    elif fmt == "csv":
        table.to_csv(path, index=False, na_rep="")
    else:
        for col, t in {id_col: "token", **types}.items():
            if t != "float":
                _check_atomic_text(table[col].to_numpy(), f"{col} value", path)
        header = "\t".join(f"{c}:{t}" for c, t in {id_col: "token", **types}.items())
        with path.open("w", encoding="utf-8", newline="") as f:
            f.write(header + "\n")
            table.to_csv(f, sep="\t", index=False, header=False, quoting=csv.QUOTE_NONE)
    return types


# ------------------------------------------------------------------------------ load
def _part_file(directory: Path, part: str, fmt: str | None) -> Path | None:
    exts = (_EVENT_EXT[fmt],) if fmt else _PART_EXT
    return next((p for e in exts if (p := directory / f"{part}{e}").is_file()), None)


def _feature_file(directory: Path, kind: str, fmt: str | None) -> Path | None:
    names = [_feature_name(f, kind) for f in ((fmt,) if fmt else FORMATS)]
    return next((p for n in names if (p := directory / n).is_file()), None)


def is_split_dir(path: str | Path) -> bool:
    """Whether ``path`` is a directory holding a split (``split.json`` or train + test files)."""
    path = Path(path)
    return path.is_dir() and (
        (path / META).is_file()
        or (
            _part_file(path, "train", None) is not None
            and _part_file(path, "test", None) is not None
        )
    )


def _load_features(
    directory: Path, kind: str, meta: dict[str, Any]
) -> tuple[IdMap | None, pd.DataFrame | None]:
    """The ID map of ``items.*``/``users.*`` (None without the file) and its feature table
    (None without feature columns)."""
    fmt = meta.get("format")
    path = _feature_file(directory, kind, fmt)
    if path is None:
        return None, None
    feats = read_features(
        path,
        "item" if kind == "item" else "user",
        types=meta.get(f"{kind}_types"),
        sep="," if fmt == "csv" else None,
    )
    return IdMap(feats.index, kind), feats if len(feats.columns) else None


def load_split(directory: str | Path) -> Split:
    """Read a split saved by :func:`save_split`, or a directory of ``train.*``, optional
    ``valid.*`` and ``test.*`` event files, into one ID space.

    The maps start from ``items.*``/``users.*`` when present (so their order and the items
    without events survive) and grow by the events' IDs in part order. Without timestamps,
    the row order across train, valid and test is the time order.

    Raises
    ------
    DataError
        A part file is missing or does not hold the number of events ``split.json``
        records; the parts disagree on having ratings or timestamps; any reader error.
    """
    directory = Path(directory)
    meta: dict[str, Any] = {}
    if (directory / META).is_file():
        try:
            meta = json.loads((directory / META).read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{directory / META}: not valid JSON ({exc})") from exc
    fmt = meta.get("format")
    names = list(meta["events"]) if "events" in meta else PARTS
    files = {name: _part_file(directory, name, fmt) for name in names}
    for name in ("train", "test"):
        if files.get(name) is None:
            looked = (
                f"{name}{_EVENT_EXT[fmt]}"
                if fmt
                else f"{name}.{{{','.join(e[1:] for e in _PART_EXT)}}}"
            )
            raise DataError(f"{directory}: no {looked} file; a split needs train and test parts")
    sep = "," if fmt == "csv" else None  # a one-column part must not defeat sniffing
    frames = {name: read_events(p, sep=sep) for name, p in files.items() if p is not None}
    for name, n in meta.get("events", {}).items():
        if len(frames[name]) != n:
            raise DataError(
                f"{files[name]}: {len(frames[name])} events, but {META} records {n}; "
                "the file was changed or cut short"
            )
    whole = pd.concat(frames.values(), ignore_index=True)
    for col in (Columns.VALUE, Columns.TIME):
        has = [name for name, f in frames.items() if col in f]
        if has and len(has) < len(frames):
            raise DataError(
                f"{directory}: the {col!r} column is in {', '.join(has)} but not in every part"
            )
    maps, features = {}, {}
    for kind in ("item", "user"):
        maps[kind], features[kind] = _load_features(directory, kind, meta)
    users, user = encode_ids(whole[Columns.USER], maps["user"], features["user"], "user")
    items, item = encode_ids(whole[Columns.ITEM], maps["item"], features["item"], "item")
    n = len(whole)
    value = whole[Columns.VALUE].to_numpy() if Columns.VALUE in whole else np.ones(n)
    time = whole[Columns.TIME].to_numpy() if Columns.TIME in whole else np.arange(n)
    bounds = np.cumsum([0, *(len(f) for f in frames.values())])
    parts = {
        name: Interactions(
            users,
            items,
            user[lo:hi],
            item[lo:hi],
            value[lo:hi],
            time[lo:hi],
            item_features=features["item"],
            user_features=features["user"],
        )
        for name, lo, hi in zip(frames, bounds[:-1], bounds[1:], strict=True)
    }
    info = meta["info"] if "info" in meta else {"source": str(directory)}
    return Split(parts["train"], parts.get("valid"), parts["test"], info)
