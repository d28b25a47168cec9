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
from recstack.errors import ConfigError
from recstack.models.base import Recommender
from recstack.models.text_items import TextItems, extend_rows


class ContentKNN(TextItems, Recommender):
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
    encode_batch_size : int
        Texts per forward pass of a pretrained encoder.

    Attributes
    ----------
    text_vectors_ : (n_items, d) float32
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
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {
        "half_life": ("categorical", [None, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]),
    }

    def __init__(
        self,
        encoder: str = "minilm",
        text_columns: str | list[str] | None = None,
        half_life: float | None = None,
        encode_batch_size: int = 64,
    ) -> None:
        self.encoder = encoder
        self.text_columns = text_columns
        self.half_life = half_life
        self.encode_batch_size = encode_batch_size

    def _validate_params(self) -> None:
        self._validate_text_params()
        h = self.half_life
        if h is not None and (not isinstance(h, numbers.Real) or isinstance(h, bool) or not h > 0):
            raise ConfigError(f"half_life must be a positive number or None, got {h!r}")

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self._fit_text(train)
        n_users = max(1, int(np.count_nonzero(train.user_lengths)))
        self.popularity_ = (train.item_user_counts / n_users).astype(np.float32)

    # ------------------------------------------------------------------ scoring
    def profiles(self, histories: Histories) -> np.ndarray:
        """Unit profile of each history, (n, d) float32 (zero rows where there is none)."""
        self._check_fitted()
        h = histories if self.half_life is None else histories.decayed(self.half_life, True)
        weights = np.ones(len(h.items), np.float32) if self.half_life is None else h.values
        # duplicates (a repeated item) add up: the profile is a mean over events
        x = sp.csr_matrix((weights, h.items, h.indptr), shape=(len(h), self.n_items))
        p = np.asarray(x @ self.text_vectors_, dtype=np.float32)
        norm = np.linalg.norm(p, axis=1, keepdims=True)
        return p / np.where(norm > 0, norm, 1.0).astype(np.float32)

    def _score(self, histories: Histories) -> np.ndarray:
        p = self.profiles(histories)
        scores = p @ self.text_vectors_.T
        empty = ~p.any(axis=1)
        scores[empty] = self.popularity_
        scores[:, ~self.has_text_] = -np.inf
        return scores

    def item_vectors(self) -> np.ndarray:
        return self.text_vectors_

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
        self.popularity_ = extend_rows(self.popularity_, self._add_text_items(item_features))
        return self
