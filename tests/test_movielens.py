"""MovieLens: the three raw layouts (fake files written here), downloads, checksums, cache."""

from __future__ import annotations

import hashlib
import io
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recstack.data import movielens
from recstack.data.movielens import (
    Release,
    cached_path,
    download_movielens,
    load_movielens,
    read_movielens,
)
from recstack.data.readers import load_dataset
from recstack.errors import DataError

FLAGS = ["0"] * 19


def _flags(*on: int) -> str:
    f = list(FLAGS)
    for i in on:
        f[i] = "1"
    return "|".join(f)


ML100K = {
    "u.data": "1\t10\t4\t881250949\n2\t10\t3\t881250950\n1\t20\t5\t881250948\n"
    "3\t30\t1\t881250000\n",
    "u.item": (
        f"10|Toy Story (1995)|01-Jan-1995||http://x|{_flags(3, 4, 5)}\n"
        f"20|Misérables, Les (1995)|01-Jan-1995||http://y|{_flags(8, 12)}\n"
        f"30|unknown|||http://z|{_flags(0)}\n"
        f"40|Only Listed|01-Jan-1997||http://w|{_flags()}\n"
    ),
    "u.genre": "".join(f"{g}|{i}\n" for i, g in enumerate(movielens.GENRES_100K)) + "\n",
    "u.user": "1|24|M|technician|85711\n2|53|F|other|01234\n3|23|M|writer|32067\n",
}
ML1M = {
    "ratings.dat": "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n",
    "movies.dat": (
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "3::Café au lait (1993)::Comedy\n"
    ),
    "users.dat": "1::F::1::10::48067\n2::M::56::16::70072\n",
}
MLCSV = {
    "ratings.csv": "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n"
    "2,1,0.5,1445714835\n",
    "movies.csv": "movieId,title,genres\n1,Toy Story (1995),Adventure|Animation|Children\n"
    '3,"American President, The (1995)",Comedy|Drama|Romance\n'
    "9,1941 (1979),(no genres listed)\n"
    '10,"""Great Performances"" Cats (1998)",Musical\n',
}


def _write_dir(root: Path, files: dict[str, str], encoding: str) -> Path:
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).write_bytes(text.encode(encoding))
    return root


def _zip_bytes(folder: str, files: dict[str, str], encoding: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(f"{folder}/", b"")
        for name, text in files.items():
            z.writestr(f"{folder}/{name}", text.encode(encoding))
    return buf.getvalue()


def _check_100k(data) -> None:
    assert (data.n_users, data.n_items, data.n_events) == (3, 4, 4)
    assert data.items.ids.tolist() == ["10", "20", "30", "40"]  # 40: catalog-only
    f = data.item_features
    assert f.loc["10"].tolist() == ["Toy Story", 1995.0, "Animation Children's Comedy"]
    assert f.loc["20"].tolist() == ["Misérables, Les", 1995.0, "Drama Musical"]  # latin-1
    assert f.loc["30", "title"] == "unknown" and np.isnan(f.loc["30", "year"])
    assert f.loc["30", "genres"] == "unknown"
    assert f.loc["40", "year"] == 1997.0 and pd.isna(f.loc["40", "genres"])  # release date
    assert f.attrs["types"] == {"title": "token_seq", "year": "float", "genres": "token_seq"}
    u = data.user_features
    assert u.loc["2"].tolist() == [53.0, "F", "other", "01234"]
    # user 1: events by time (item 20 at ...948 before item 10 at ...949)
    assert data.items.ids[data.item[:2]].tolist() == ["20", "10"]
    assert data.value[:2].tolist() == [5.0, 4.0]


def test_100k_directory_and_zip(tmp_path: Path) -> None:
    _check_100k(read_movielens(_write_dir(tmp_path / "ml-100k", ML100K, "latin-1")))
    z = tmp_path / "ml-100k.zip"
    z.write_bytes(_zip_bytes("ml-100k", ML100K, "latin-1"))
    _check_100k(read_movielens(z))
    _check_100k(load_dataset(z))


def test_100k_extracted_one_level_down(tmp_path: Path) -> None:
    _write_dir(tmp_path / "download" / "ml-100k", ML100K, "latin-1")
    _check_100k(load_dataset(tmp_path / "download"))


def test_1m(tmp_path: Path) -> None:
    z = tmp_path / "ml-1m.zip"
    z.write_bytes(_zip_bytes("ml-1m", ML1M, "latin-1"))
    data = read_movielens(z)
    assert (data.n_users, data.n_items, data.n_events) == (2, 3, 3)
    f = data.item_features
    assert f.loc["661"].tolist() == [
        "James and the Giant Peach",
        1996.0,
        "Animation Children's Musical",
    ]
    assert f.loc["3", "title"] == "Café au lait"
    assert data.user_features.loc["2"].tolist() == [56.0, "M", "16", "70072"]
    np.testing.assert_array_equal(data.time[:2], [978300760.0, 978302109.0])


def test_csv_release(tmp_path: Path) -> None:
    data = read_movielens(_write_dir(tmp_path / "ml-latest-small", MLCSV, "utf-8"))
    assert (data.n_users, data.n_items, data.n_events) == (2, 4, 3)
    f = data.item_features
    assert f.loc["3"].tolist() == ["American President, The", 1995.0, "Comedy Drama Romance"]
    assert f.loc["9", "title"] == "1941" and pd.isna(f.loc["9", "genres"])
    assert f.loc["10", "title"] == '"Great Performances" Cats'
    assert data.value.tolist() == [4.5, 4.0, 0.5]  # user 1 by time, then user 2
    assert data.user_features is None


def test_bad_rating_names_file_and_line(tmp_path: Path) -> None:
    files = dict(MLCSV, **{"ratings.csv": "userId,movieId,rating,timestamp\n1,1,4,5\n1,2,x,6\n"})
    with pytest.raises(DataError, match=r"ratings\.csv: column 'rating' has 'x' at line 3"):
        read_movielens(_write_dir(tmp_path / "ml", files, "utf-8"))


def test_not_a_release(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    with pytest.raises(DataError, match=r"not a MovieLens release"):
        read_movielens(tmp_path / "x")


# ------------------------------------------------------------------------------ downloads
class _Response(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


@pytest.fixture
def fake_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """RECSTACK_HOME in tmp_path and a 100K release whose checksum is the fake zip's."""
    data = _zip_bytes("ml-100k", ML100K, "latin-1")
    monkeypatch.setenv("RECSTACK_HOME", str(tmp_path / "home"))
    sha = hashlib.sha256(data).hexdigest()
    monkeypatch.setitem(movielens.RELEASES, "movielens-100k", Release("ml-100k", sha, len(data)))
    return data


def _serve(monkeypatch: pytest.MonkeyPatch, data: bytes | Exception) -> list[str]:
    calls: list[str] = []

    def urlopen(url: str, timeout: float = 0) -> _Response:
        calls.append(url)
        if isinstance(data, Exception):
            raise data
        return _Response(data)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return calls


def test_download_checks_and_caches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_release: bytes
) -> None:
    calls = _serve(monkeypatch, fake_release)
    _check_100k(load_movielens("movielens-100k"))
    assert calls == ["https://files.grouplens.org/datasets/movielens/ml-100k.zip"]
    assert cached_path("movielens-100k") == tmp_path / "home" / "datasets" / "ml-100k.zip"
    assert cached_path("movielens-100k").read_bytes() == fake_release
    # the second load reads the cache
    _serve(monkeypatch, AssertionError("no download expected"))
    _check_100k(load_dataset("movielens-100k"))


def test_checksum_mismatch_deletes_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_release: bytes
) -> None:
    _serve(monkeypatch, fake_release + b"tampered")
    sha = hashlib.sha256(fake_release + b"tampered").hexdigest()
    with pytest.raises(DataError, match=rf"ml-100k\.zip: the downloaded file has sha256 {sha}"):
        download_movielens("movielens-100k")
    assert list((tmp_path / "home" / "datasets").iterdir()) == []


def test_corrupt_cached_file_is_reported(
    monkeypatch: pytest.MonkeyPatch, fake_release: bytes
) -> None:
    path = cached_path("movielens-100k")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not the zip")
    _serve(monkeypatch, AssertionError("no download expected"))
    with pytest.raises(DataError, match=r"ml-100k\.zip: sha256 .* delete the file"):
        load_movielens("movielens-100k")


def test_offline_error_names_url_and_destination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_release: bytes
) -> None:
    _serve(monkeypatch, urllib.error.URLError("Name or service not known"))
    dest = tmp_path / "home" / "datasets" / "ml-100k.zip"
    with pytest.raises(DataError) as err:
        load_movielens("movielens-100k")
    msg = str(err.value)
    assert "could not download https://files.grouplens.org/datasets/movielens/ml-100k.zip" in msg
    assert "Name or service not known" in msg
    assert f"put it at {dest} " in msg
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []
    # following the message works
    dest.write_bytes(fake_release)
    _check_100k(load_movielens("movielens-100k"))


def test_unknown_release_name() -> None:
    with pytest.raises(DataError, match=r"unknown MovieLens release 'movielens-7m'; known: "):
        download_movielens("movielens-7m")


def test_registry_urls() -> None:
    for name, release in movielens.RELEASES.items():
        assert release.url == f"https://files.grouplens.org/datasets/movielens/{release.folder}.zip"
        assert name.removeprefix("movielens-") == release.folder.removeprefix("ml-")
        assert len(release.sha256) == 64 and int(release.sha256, 16) >= 0
