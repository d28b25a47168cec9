"""What the models that read item text share: the encoder, the catalog's text vectors, and
adding new items from their text alone (cold items, without retraining).

A model mixes :class:`TextItems` in beside :class:`~recstack.models.base.Recommender`,
declares the ``encoder``, ``text_columns`` and ``encode_batch_size`` parameters, calls
:meth:`TextItems._fit_text` in its ``_fit`` and :meth:`TextItems._add_text_items` in its
``add_items`` (then extends its own per-item state).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import pandas as pd

from recstack.data import Histories, Interactions
from recstack.data.idmap import IdMap, as_id_array
from recstack.errors import ConfigError, DataError
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


class TextItems:
    """Mixin: item text vectors from a text encoder (see the module docstring).

    Attributes (after fit)
    ----------------------
    text_vectors_ : (n_items, d) float32
        Unit text vector of each catalog item (zero rows for items without text).
    has_text_ : (n_items,) bool
        Which items have text (and a vector).
    text_columns_ : list of str
        The feature columns the texts were read from.
    """

    encoder: str
    text_columns: str | list[str] | None
    encode_batch_size: int
    items_: IdMap
    item_features_: pd.DataFrame | None
    history_: Histories
    text_vectors_: np.ndarray
    has_text_: np.ndarray
    text_columns_: list[str]
    #: the fitted encoder (derived state: rebuilt from the parameters and saved arrays)
    _enc: TextEncoder | TfidfEncoder | None = None

    def _validate_text_params(self) -> None:
        if not isinstance(self.encoder, str) or not self.encoder.strip():
            raise ConfigError(
                f"encoder must be 'minilm', 'tfidf', 'tfidf:DIM' or a sentence-transformers "
                f"model name or path, got {self.encoder!r}"
            )
        parse_columns(self.text_columns)
        b = self.encode_batch_size
        if not isinstance(b, numbers.Integral) or isinstance(b, bool) or b <= 0:
            raise ConfigError(f"encode_batch_size must be a positive integer, got {b!r}")
        make_encoder(self.encoder, batch_size=int(b))  # a bad spec fails before any work

    def _encoder(self) -> TextEncoder | TfidfEncoder:
        """The fitted encoder (after loading, rebuilt from the saved TF-IDF state)."""
        enc = self._enc
        if enc is None:
            enc = make_encoder(self.encoder, batch_size=int(self.encode_batch_size))
            state = {k[len(_TFIDF) : -1]: v for k, v in vars(self).items() if k.startswith(_TFIDF)}
            if isinstance(enc, TfidfEncoder) and state:
                enc = TfidfEncoder.from_state(state, dim=enc.dim)
            self._enc = enc
        return enc

    def _fit_text(self, train: Interactions) -> None:
        """Embed the catalog's items (``train.item_features``, item-map order)."""
        features = train.item_features
        if features is None:
            raise DataError(
                f"{type(self).__name__} needs item text, but the data has no item features; "
                "read the data with an item file (NAME.item beside NAME.inter, items.* in a "
                "split directory, item_features= in Interactions.from_frame)"
            )
        try:
            emb = item_embeddings(
                features, self.text_columns, self.encoder, batch_size=int(self.encode_batch_size)
            )
        except (ConfigError, DataError) as exc:
            raise type(exc)(f"{type(self).__name__}: {exc}") from None
        self._enc = emb.encoder
        self.text_vectors_, self.has_text_ = emb.vectors, emb.has_text
        self.text_columns_ = emb.columns
        if isinstance(emb.encoder, TfidfEncoder):
            for key, arr in emb.encoder.state().items():
                setattr(self, f"{_TFIDF}{key}_", arr)

    def _after_load(self) -> None:
        self._enc = None
        super()._after_load()  # type: ignore[misc]

    def _add_text_items(self, item_features: pd.DataFrame) -> int:
        """Append the items of ``item_features`` (indexed by new external IDs) to the
        catalog: the item map, the feature table, ``text_vectors_``/``has_text_`` (encoded
        with the fitted encoder) and the stored histories' item count. Existing indices
        are unchanged. Returns how many items were added.

        Raises
        ------
        DataError
            An ID is already in the catalog or repeated, or a text column is missing.
        """
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
        vectors = np.zeros((len(ids), self.text_vectors_.shape[1]), dtype=np.float32)
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
        self.text_vectors_ = np.vstack([self.text_vectors_, vectors])
        self.has_text_ = np.concatenate([self.has_text_, has_text])
        h = self.history_
        self.history_ = Histories(h.indptr, h.items, h.values, h.times, len(items), h.users)
        return len(ids)


def extend_rows(array: np.ndarray, n_new: int, fill: Any = 0) -> np.ndarray:
    """``array`` with ``n_new`` rows of ``fill`` appended (per-item state of added items)."""
    extra = np.full((n_new, *array.shape[1:]), fill, dtype=array.dtype)
    return np.concatenate([array, extra])
