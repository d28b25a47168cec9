"""An on-disk cache of text embeddings, keyed by model and text hash.

Each model has a folder (named after a hash of its key: model name or path and the settings
that change its output); each :meth:`EmbeddingCache.store` writes one shard there, a
``.safetensors`` file holding the SHA-256 digests of the texts, (n, 32) uint8, and their
vectors, (n, d) float32. Shards are written to a temporary name and renamed, so a reader
never sees half a file, and nothing is pickled.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from recstack.errors import DataError

#: environment variable naming the embedding cache directory
CACHE_ENV = "RECSTACK_CACHE"
_DIGEST = 32  # bytes of a SHA-256 digest


def default_cache_dir() -> Path:
    """``$RECSTACK_CACHE``, else ``embeddings`` under recstack's home (``$RECSTACK_HOME``,
    default ``~/.cache/recstack``)."""
    from recstack.data.movielens import data_home

    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else data_home() / "embeddings"


def text_digests(texts: Sequence[str]) -> np.ndarray:
    """SHA-256 of each text (UTF-8), shape (n, 32) uint8."""
    out = np.empty((len(texts), _DIGEST), dtype=np.uint8)
    for i, t in enumerate(texts):  # hashlib has no batch API; cheap next to encoding
        out[i] = np.frombuffer(hashlib.sha256(t.encode("utf-8")).digest(), dtype=np.uint8)
    return out


class EmbeddingCache:
    """The cached vectors of one model (``key``) under ``directory``.

    Examples
    --------
    >>> import tempfile
    >>> cache = EmbeddingCache(tempfile.mkdtemp(), "demo-model")
    >>> keys = text_digests(["a", "b"])
    >>> cache.store(keys, np.eye(2, dtype=np.float32))
    >>> found, vecs = cache.lookup(text_digests(["b", "c"]))
    >>> found.tolist(), vecs[0].tolist()
    ([True, False], [0.0, 1.0])
    """

    def __init__(self, directory: str | Path, key: str) -> None:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", key.rsplit("/", 1)[-1])[:40].strip("-")
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
        self.key = key
        self.path = Path(directory).expanduser() / f"{slug or 'model'}-{digest}"

    def _shards(self) -> list[Path]:
        return sorted(self.path.glob("*.safetensors")) if self.path.is_dir() else []

    def lookup(self, digests: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Which of the ``digests`` (n, 32) are cached, (n,) bool, and their vectors,
        (n, d) float32 (rows of the missing ones are zero; None when nothing is found)."""
        from safetensors.numpy import load_file

        found = np.zeros(len(digests), dtype=bool)
        out: np.ndarray | None = None
        wanted = {bytes(d): i for i, d in enumerate(digests)}
        for shard in self._shards():
            if not wanted:
                break
            try:
                arrays = load_file(str(shard))
                keys, vecs = arrays["keys"], arrays["vectors"]
            except Exception as exc:  # safetensors raises its own error types
                raise DataError(
                    f"{shard}: not a readable embedding cache shard ({exc}); delete it"
                ) from exc
            for row, k in enumerate(keys):
                i = wanted.pop(bytes(k), None)
                if i is None:
                    continue
                if out is None:
                    out = np.zeros((len(digests), vecs.shape[1]), dtype=np.float32)
                out[i], found[i] = vecs[row], True
        return found, out

    def store(self, digests: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors (n, d) of texts with ``digests`` (n, 32) as one new shard."""
        from safetensors.numpy import save_file

        if len(digests) == 0:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        note = self.path / "model.txt"
        if not note.is_file():
            note.write_text(self.key + "\n", encoding="utf-8")
        name = uuid.uuid4().hex
        tmp = self.path / f".{name}.tmp"
        arrays: dict[str, np.ndarray] = {
            "keys": np.ascontiguousarray(digests, dtype=np.uint8),
            "vectors": np.ascontiguousarray(vectors, dtype=np.float32),
        }
        save_file(arrays, str(tmp), metadata={"model": self.key})
        tmp.replace(self.path / f"{name}.safetensors")
