"""ContentKNN: the classic content-based recommender over item text embeddings.

Each catalog item with text (columns of the item feature table joined by
:func:`recstack.text.item_texts`) gets a unit vector from a text encoder (pretrained
MiniLM by default, or TF-IDF). A history's profile is the recency-weighted mean of its
items' vectors, and every item scores the cosine between its vector and the profile
(Pazzani & Billsus, "Content-Based Recommendation Systems", The Adaptive Web, 2007;
Lops, de Gemmis & Semeraro, "Content-based Recommender Systems: State of the Art and
Trends", Recommender Systems Handbook, 2011). No interaction is needed to score an item, so
items without any event (listed in the item file, or added later by :meth:`add_items`) are
ranked like the others: the cold-item case.
"""

from __future__ import annotations

import numbers
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recstack.data import Histories, Interactions
from recstack.data.idmap import as_id_array
from recstack.errors import ConfigError, DataError
from recstack.models.base import Recommender
from recstack.text import (
    TextEncoder,
    TfidfEncoder,
    item_embeddings,
    item_texts,
    make_encoder,
    parse_columns,
)

#: prefix of the learned arrays holding a fitted TF-IDF encoder's state
_TFIDF = "tfidf_"


class ContentKNN(Recommender):
    """Content-based k-NN: cosine between item text embeddings and a history's profile.

    The profile of a history is ``p = sum_e w_e v[item_e]`` over its events, with
    ``w_e = 0.5 ** (age_e / half_life)`` (``age_e`` = events after it; all 1 without
    ``half_life``), and item ``i`` scores ``cos(p, v[i])`` in [-1, 1]. Event values
    (ratings) are not used: every event counts as a positive. Items without text score
    ``-inf`` (never recommended). A history whose profile is zero (empty, or only items
    without text) is scored by training popularity (the share of users who used each
    item), so a user with no events gets the popular items.

    Parameters
    ----------
    encoder : str
        ``"minilm"`` (all-MiniLM-L6-v2, packaged, offline; the ``text`` extra), ``"tfidf"``
        (TF-IDF over the catalog's texts, scikit-learn), ``"tfidf:DIM"`` (reduced by SVD),
        or any sentence-transformers model name or local path.
    text_columns : str, list of str or None
        Item feature columns whose values form each item's text (``"title,genres"``; a
        role such as ``title`` or ``genres`` also finds ``movie_title`` or ``class``, see
        :func:`recstack.text.resolve_columns`); None takes every text-like column (title,
        genres/categories, year, description, ...).
    half_life : float or None
        Recency of the history in events: the ``p``-th last event (``p = 0`` the latest)
        weighs ``0.5 ** (p / half_life)`` in the profile; None weighs all the same.
    batch_size : int
        Texts per forward pass of a pretrained encoder.

    Attributes
    ----------
    item_vectors_ : (n_items, d) float32
        Unit text vector of each catalog item (zero rows for items without text).
    has_text_ : (n_items,) bool
        Which items have text (and a vector).
    popularity_ : (n_items,) float32
        Share of training users who used each item (the score of empty histories).
    text_columns_ : list of str
        The feature columns the texts were read from.

    Examples
    --------
    >>> import pandas as pd
    >>> from recstack.data import Interactions
    >>> log = pd.DataFrame({"user_id": [1, 1, 2], "item_id": ["a", "b", "c"]})
    >>> text = pd.DataFrame({"title": ["space rocket", "rocket launch", "love story",
    ...                                "space station"]}, index=["a", "b", "c", "d"])
    >>> model = ContentKNN(encoder="tfidf").fit(Interactions.from_frame(log, item_features=text))
    >>> model.recommend(histories=[["a"]], k=2).item_ids.tolist()  # "d" has no event
    [['b', 'd']]
    """

    name = "content-knn"
    #: the fitted encoder (derived state: rebuilt from the parameters and saved arrays)
    _enc: TextEncoder | TfidfEncoder | None = None
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {
        "half_life": ("categorical", [None, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]),
    }

    def __init__(
        self,
        encoder: str = "minilm",
        text_columns: str | list[str] | None = None,
        half_life: float | None = None,
        batch_size: int = 64,
    ) -> None:
        self.encoder = encoder
        self.text_columns = text_columns
        self.half_life = half_life
        self.batch_size = batch_size

    def _validate_params(self) -> None:
        if not isinstance(self.encoder, str) or not self.encoder.strip():
            raise ConfigError(
                f"encoder must be 'minilm', 'tfidf', 'tfidf:DIM' or a sentence-transformers "
                f"model name or path, got {self.encoder!r}"
            )
        parse_columns(self.text_columns)
        h = self.half_life
        if h is not None and (not isinstance(h, numbers.Real) or isinstance(h, bool) or not h > 0):
            raise ConfigError(f"half_life must be a positive number or None, got {h!r}")
        b = self.batch_size
        if not isinstance(b, numbers.Integral) or isinstance(b, bool) or b <= 0:
            raise ConfigError(f"batch_size must be a positive integer, got {b!r}")
        make_encoder(self.encoder, batch_size=int(b))  # a bad spec fails before any work

    # ------------------------------------------------------------------ encoding
    def _encoder(self) -> TextEncoder | TfidfEncoder:
        """The fitted encoder (after loading, rebuilt from the saved TF-IDF state)."""
        enc = self._enc
        if enc is None:
            enc = make_encoder(self.encoder, batch_size=int(self.batch_size))
            state = {k[len(_TFIDF) : -1]: v for k, v in vars(self).items() if k.startswith(_TFIDF)}
            if isinstance(enc, TfidfEncoder) and state:
                enc = TfidfEncoder.from_state(state, dim=enc.dim)
            self._enc = enc
        return enc

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        features = train.item_features
        if features is None:
            raise DataError(
                f"{type(self).__name__} needs item text, but the data has no item features; "
                "read the data with an item file (NAME.item beside NAME.inter, items.* in a "
                "split directory, item_features= in Interactions.from_frame)"
            )
        try:
            emb = item_embeddings(
                features, self.text_columns, self.encoder, batch_size=int(self.batch_size)
            )
        except (ConfigError, DataError) as exc:
            raise type(exc)(f"{type(self).__name__}: {exc}") from None
        self._enc = emb.encoder
        self.item_vectors_, self.has_text_ = emb.vectors, emb.has_text
        self.text_columns_ = emb.columns
        n_users = max(1, int(np.count_nonzero(train.user_lengths)))
        self.popularity_ = (train.item_user_counts / n_users).astype(np.float32)
        if isinstance(emb.encoder, TfidfEncoder):
            for key, arr in emb.encoder.state().items():
                setattr(self, f"{_TFIDF}{key}_", arr)

    def _after_load(self) -> None:
        self._enc = None

    # ------------------------------------------------------------------ scoring
    def profiles(self, histories: Histories) -> np.ndarray:
        """Unit profile of each history, (n, d) float32 (zero rows where there is none)."""
        self._check_fitted()
        h = histories if self.half_life is None else histories.decayed(self.half_life, True)
        weights = np.ones(len(h.items), np.float32) if self.half_life is None else h.values
        # duplicates (a repeated item) add up: the profile is a mean over events
        x = sp.csr_matrix((weights, h.items, h.indptr), shape=(len(h), self.n_items))
        p = np.asarray(x @ self.item_vectors_, dtype=np.float32)
        norm = np.linalg.norm(p, axis=1, keepdims=True)
        return p / np.where(norm > 0, norm, 1.0).astype(np.float32)

    def _score(self, histories: Histories) -> np.ndarray:
        p = self.profiles(histories)
        scores = p @ self.item_vectors_.T
        empty = ~p.any(axis=1)
        scores[empty] = self.popularity_
        scores[:, ~self.has_text_] = -np.inf
        return scores

    def item_vectors(self) -> np.ndarray:
        return self.item_vectors_

    # ------------------------------------------------------------------ cold items
    def add_items(self, item_features: pd.DataFrame) -> ContentKNN:
        """Add new items to the catalog from their text alone, without retraining.

        ``item_features`` (indexed by the new external item IDs) needs the columns of
        :attr:`text_columns_`. The new items are appended to the item map (existing
        indices, vectors and scores unchanged), get a vector from the fitted encoder and
        popularity 0, and are scored like any other item from then on.

        Returns
        -------
        ContentKNN
            self.

        Raises
        ------
        DataError
            An ID is already in the catalog or repeated, or a text column is missing.
        """
        self._check_fitted()
        if not isinstance(item_features, pd.DataFrame):
            raise DataError(f"add_items expects a DataFrame, got {type(item_features).__name__}")
        ids = as_id_array(item_features.index)
        known = self.items_.index(ids, unknown="ignore") >= 0
        if known.any():
            raise DataError(
                f"add_items: item {ids[np.flatnonzero(known)[0]]!r} is already in the catalog; "
                "only new items can be added"
            )
        if len(set(ids.tolist())) != len(ids):
            raise DataError("add_items: an item ID appears in more than one row")
        missing = [c for c in self.text_columns_ if c not in item_features.columns]
        if missing:
            raise DataError(
                f"add_items: the new items' features lack the text column {missing[0]!r} "
                f"(the model reads {self.text_columns_})"
            )
        texts = item_texts(item_features, self.text_columns_)
        has_text = texts != ""
        vectors = np.zeros((len(ids), self.item_vectors_.shape[1]), dtype=np.float32)
        if has_text.any():
            vectors[has_text] = self._encoder().encode(texts[has_text].tolist())
        items = self.items_.extend(ids)
        old = self.item_features_
        assert old is not None  # fit needs item features
        new = item_features.reindex(columns=old.columns).set_axis(
            pd.Index(ids, name=old.index.name), axis=0
        )
        self.items_ = items
        self.item_features_ = pd.concat([old, new])
        self.item_vectors_ = np.vstack([self.item_vectors_, vectors])
        self.has_text_ = np.concatenate([self.has_text_, has_text])
        self.popularity_ = np.concatenate([self.popularity_, np.zeros(len(ids), np.float32)])
        h = self.history_
        self.history_ = Histories(h.indptr, h.items, h.values, h.times, len(items), h.users)
        return self
