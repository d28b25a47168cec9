"""MovieLens from GroupLens: checked downloads into a cache, and readers of the raw formats.

Three layouts are read, from a release's zip or its extracted directory:

- 100K: ``u.data`` (tab-separated), ``u.item`` and ``u.user`` (``|``-separated, latin-1),
  genre flags named by ``u.genre``;
- 1M: ``ratings.dat``, ``movies.dat``, ``users.dat`` (``::``-separated, latin-1);
- 20M, 25M, latest: ``ratings.csv``, ``movies.csv`` (UTF-8).

Movies become item features ``title`` (without the year), ``year`` and ``genres``
(space-separated genre names), users of 100K/1M user features ``age``, ``gender``,
``occupation``, ``zip_code``. Downloads go to ``$RECSTACK_HOME/datasets`` (default
``~/.cache/recstack/datasets``) and are checked against SHA-256 sums before use.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from recstack.data._columns import Columns
from recstack.data.interactions import Interactions
from recstack.data.readers import events_to_interactions
from recstack.errors import DataError

log = logging.getLogger(__name__)

BASE_URL = "https://files.grouplens.org/datasets/movielens/"


@dataclass(frozen=True)
class Release:
    """A GroupLens release: ``{folder}.zip`` with its SHA-256 and size in bytes."""

    folder: str
    sha256: str
    size: int

    @property
    def url(self) -> str:
        return f"{BASE_URL}{self.folder}.zip"


#: Known releases. SHA-256 sums and sizes are those recorded by TensorFlow Datasets
#: (tensorflow_datasets/url_checksums/movielens.txt); they could not be recomputed here.
RELEASES: dict[str, Release] = {
    "movielens-100k": Release(
        "ml-100k", "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229", 4924029
    ),
    "movielens-1m": Release(
        "ml-1m", "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20", 5917549
    ),
    "movielens-20m": Release(
        "ml-20m", "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3", 198702078
    ),
    "movielens-25m": Release(
        "ml-25m", "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa", 261978986
    ),
    "movielens-latest-small": Release(
        "ml-latest-small",
        "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
        978202,
    ),
}

#: genres of the 100K release in flag order (used when ``u.genre`` is absent)
GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
_ITEM_TYPES = {"title": "token_seq", "year": "float", "genres": "token_seq"}
_USER_TYPES = {"age": "float", "gender": "token", "occupation": "token", "zip_code": "token"}
#: columns kept as text even where they look numeric (a title "1941", zip codes)
_TEXT = {c: pa.string() for c in ("title", "genres", "release_date", *_USER_TYPES) if c != "age"}
_EVENTS = [Columns.USER, Columns.ITEM, Columns.VALUE, Columns.TIME]
#: "Title (1995)", "Title (2006) ", "Title (1993-1994)": the title and the first year
_TITLE_YEAR = r"^(?P<title>.*?)\s*(?:\((?P<year>\d{4})(?:[-–]\d{0,4})?\))?\s*$"


def data_home() -> Path:
    """recstack's cache directory: ``$RECSTACK_HOME``, default ``~/.cache/recstack``."""
    return Path(os.environ.get("RECSTACK_HOME") or "~/.cache/recstack").expanduser()


def _release(name: str) -> Release:
    if name not in RELEASES:
        raise DataError(f"unknown MovieLens release {name!r}; known: {', '.join(RELEASES)}")
    return RELEASES[name]


def cached_path(name: str) -> Path:
    """Where the zip of release ``name`` is kept: ``data_home()/datasets/{folder}.zip``."""
    return data_home() / "datasets" / f"{_release(name).folder}.zip"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _fetch(url: str, dest: Path) -> str:
    """Stream ``url`` into ``dest``; returns the SHA-256 of what was written."""
    from tqdm.auto import tqdm

    h = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=60) as resp, dest.open("wb") as out:
        total = int(resp.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=None) as bar:
            while chunk := resp.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
                bar.update(len(chunk))
    return h.hexdigest()


def download_movielens(name: str) -> Path:
    """The cached zip of release ``name``, downloaded from GroupLens if not cached yet.

    The zip (cached or downloaded) must match the release's SHA-256; a download that does
    not is deleted. Returns the path of the zip.

    Raises
    ------
    DataError
        Unknown name; the download failed (the message names the URL and where to put a
        copy fetched by other means); checksum mismatch.
    """
    release = _release(name)
    dest = cached_path(name)
    if dest.is_file():
        digest = _sha256(dest)
        if digest != release.sha256:
            raise DataError(
                f"{dest}: sha256 {digest} does not match {release.url} (expected "
                f"{release.sha256}); delete the file to download it again"
            )
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    log.info("downloading %s to %s", release.url, dest)
    try:
        digest = _fetch(release.url, part)
    except (urllib.error.URLError, OSError) as exc:  # offline, refused, timeout, HTTP error
        part.unlink(missing_ok=True)
        raise DataError(
            f"could not download {release.url} ({getattr(exc, 'reason', exc)}). Without "
            f"network access, fetch that file ({release.size:,} bytes, sha256 "
            f"{release.sha256}) elsewhere and put it at {dest} , or pass the zip or its "
            "extracted directory to read_movielens() / load_dataset()"
        ) from exc
    if digest != release.sha256:
        part.unlink(missing_ok=True)
        raise DataError(
            f"{release.url}: the downloaded file has sha256 {digest}, expected "
            f"{release.sha256}; it was deleted (a partial or altered download)"
        )
    part.replace(dest)
    return dest


def load_movielens(name: str) -> Interactions:
    """Release ``name`` (see :data:`RELEASES`), downloaded and checked on first use."""
    return read_movielens(download_movielens(name))


# ------------------------------------------------------------------------------ reading
class _Files:
    """The files of a release, in a zip or a directory (possibly one level down)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        if path.is_file():
            try:
                self.zip = zipfile.ZipFile(path)
            except zipfile.BadZipFile as exc:
                raise DataError(f"{path}: not a zip file") from exc
            names = [n for n in self.zip.namelist() if not n.endswith("/")]
            self.members = {n.rsplit("/", 1)[-1]: n for n in sorted(names, key=len, reverse=True)}
        elif path.is_dir():
            found = [*path.glob("*"), *path.glob("*/*")]
            ordered = sorted(found, key=lambda p: len(p.parts), reverse=True)
            self.members = {p.name: str(p) for p in ordered if p.is_file()}
        else:
            raise DataError(f"{path}: no such file or directory")

    def __contains__(self, name: str) -> bool:
        return name in self.members

    def where(self, name: str) -> str:
        return f"{self.path}:{self.members[name]}" if self.zip else self.members[name]

    def read(self, name: str) -> bytes:
        if name not in self.members:
            raise DataError(f"{self.path}: the release has no {name}")
        if self.zip is not None:
            return self.zip.read(self.members[name])
        return Path(self.members[name]).read_bytes()


def is_release(path: str | Path) -> bool:
    """Whether ``path`` (a directory or zip) holds a MovieLens release."""
    try:
        files = _Files(Path(path))
    except DataError:
        return False
    return any(name in files for name in ("u.data", "ratings.dat", "ratings.csv"))


def read_movielens(path: str | Path) -> Interactions:
    """A MovieLens release from its zip or extracted directory (no checksum: local data).

    Returns Interactions with ratings and unix-second timestamps, item features ``title``,
    ``year``, ``genres`` and, for 100K and 1M, user features.
    """
    files = _Files(Path(path))
    try:
        if "u.data" in files:
            return _read_100k(files)
        if "ratings.dat" in files:
            return _read_1m(files)
        if "ratings.csv" in files:
            return _read_csv_release(files)
    finally:
        if files.zip is not None:
            files.zip.close()
    raise DataError(f"{path}: not a MovieLens release (no u.data, ratings.dat or ratings.csv)")


def _table(
    files: _Files, name: str, sep: str, names: list[str] | None, encoding: str = "utf-8"
) -> pd.DataFrame:
    """A delimited file of the release; ``names`` for files without a header; ``::`` files
    are read as tab-separated (no field holds a tab)."""
    data = files.read(name)
    if sep == "::":
        data, sep = data.replace(b"::", b"\t"), "\t"
    quote = '"' if sep == "," else False  # only the CSV releases quote fields
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=names, encoding=encoding),
            parse_options=pacsv.ParseOptions(delimiter=sep, quote_char=quote),
            convert_options=pacsv.ConvertOptions(
                null_values=[""], strings_can_be_null=True, column_types=_TEXT
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise DataError(f"{files.where(name)}: cannot parse ({exc})") from exc
    return table.to_pandas()


def _events(files: _Files, name: str, df: pd.DataFrame, header: bool) -> pd.DataFrame:
    """Ratings validated: IDs present, ratings and times finite numbers (errors name the line)."""
    df = df.set_axis(_EVENTS, axis=1)
    out: dict[str, Any] = {}
    for col in _EVENTS:
        raw = df[col]
        if col in (Columns.USER, Columns.ITEM):
            out[col] = raw
            bad = raw.isna().to_numpy()
        else:
            num = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64, na_value=np.nan)
            out[col] = num
            bad = ~np.isfinite(num)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{files.where(name)}: column {col!r} has {raw.iloc[row]!r} at line "
                f"{row + 1 + header}"
            )
    return pd.DataFrame(out)


def _titles(titles: pd.Series) -> pd.DataFrame:
    """``title`` without the trailing "(year)" and ``year`` (float, NaN when absent)."""
    parts = titles.str.extract(_TITLE_YEAR)
    return pd.DataFrame(
        {"title": parts["title"], "year": pd.to_numeric(parts["year"]).astype(np.float64)}
    )


def _features(ids: pd.Series, columns: dict[str, pd.Series], types: dict[str, str]) -> pd.DataFrame:
    out = pd.DataFrame({k: v.to_numpy() for k, v in columns.items()}, index=ids.astype("str"))
    out.index.name = None
    out.attrs["types"] = dict(types)
    return out


def _read_100k(files: _Files) -> Interactions:
    events = _events(files, "u.data", _table(files, "u.data", "\t", _EVENTS), header=False)
    genres = list(GENRES_100K)
    if "u.genre" in files:
        g = _table(files, "u.genre", "|", ["genre", "flag"], "latin-1")
        genres = g.sort_values("flag")["genre"].astype("str").tolist()
    names = ["item_id", "title", "release_date", "video_release_date", "imdb_url"]
    items = _table(files, "u.item", "|", names + genres, "latin-1")
    flags = items[genres].fillna(0).to_numpy(dtype=bool)
    labels = np.array(genres, dtype=object)
    titled = _titles(items["title"].astype("str"))
    # a title without "(year)" takes the year of its release date ("01-Jan-1995")
    released = pd.to_numeric(items["release_date"].astype("str").str[-4:], errors="coerce")
    item_features = _features(
        items["item_id"],
        {
            "title": titled["title"],
            "year": titled["year"].fillna(released),
            "genres": pd.Series([" ".join(labels[row]) or None for row in flags]),
        },
        _ITEM_TYPES,
    )
    user_features = None
    if "u.user" in files:
        users = _table(files, "u.user", "|", ["user_id", *_USER_TYPES], "latin-1")
        user_features = _features(users["user_id"], {c: users[c] for c in _USER_TYPES}, _USER_TYPES)
    return events_to_interactions(events, item_features=item_features, user_features=user_features)


def _read_1m(files: _Files) -> Interactions:
    events = _events(files, "ratings.dat", _table(files, "ratings.dat", "::", _EVENTS), False)
    movies = _table(files, "movies.dat", "::", ["item_id", "title", "genres"], "latin-1")
    user_features = None
    if "users.dat" in files:
        cols = ["user_id", "gender", "age", "occupation", "zip_code"]
        users = _table(files, "users.dat", "::", cols, "latin-1")
        user_features = _features(users["user_id"], {c: users[c] for c in _USER_TYPES}, _USER_TYPES)
    return events_to_interactions(
        events, item_features=_movies(movies), user_features=user_features
    )


def _read_csv_release(files: _Files) -> Interactions:
    ratings = _table(files, "ratings.csv", ",", None)
    events = _events(files, "ratings.csv", ratings, header=True)
    movies = _table(files, "movies.csv", ",", None).set_axis(["item_id", "title", "genres"], axis=1)
    return events_to_interactions(events, item_features=_movies(movies))


def _movies(movies: pd.DataFrame) -> pd.DataFrame:
    """Item features of ``movies.dat``/``movies.csv``: genres ``A|B`` become ``"A B"``."""
    titled = _titles(movies["title"].astype("str"))
    genres = movies["genres"].astype("str").str.replace("|", " ", regex=False)
    genres = genres.where(movies["genres"] != "(no genres listed)")
    return _features(
        movies["item_id"],
        {"title": titled["title"], "year": titled["year"], "genres": genres},
        _ITEM_TYPES,
    )
