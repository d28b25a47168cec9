"""Catalog embeddings: one unit text vector per item of a feature table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recstack.errors import DataError
from recstack.text.columns import item_texts, resolve_columns
from recstack.text.encoders import TextEncoder, TfidfEncoder, make_encoder


@dataclass(frozen=True, eq=False)
class ItemEmbeddings:
    """What :func:`item_embeddings` returns.

    Attributes
    ----------
    vectors : (n_items, d) float32
        Unit text vector of each row of the feature table; zero rows for items without text.
    has_text : (n_items,) bool
        Which items have text.
    columns : list of str
        The feature columns the texts were read from.
    encoder : TextEncoder or TfidfEncoder
        The fitted encoder, to embed new items in the same space.
    """

    vectors: np.ndarray
    has_text: np.ndarray
    columns: list[str]
    encoder: TextEncoder | TfidfEncoder


def item_embeddings(
    features: pd.DataFrame,
    columns: str | Sequence[str] | None = None,
    encoder: str | TextEncoder | TfidfEncoder = "minilm",
    *,
    batch_size: int = 64,
) -> ItemEmbeddings:
    """Embed every item of ``features`` (e.g. ``Interactions.item_features``, in item-map
    order) from the text of ``columns`` (:func:`~recstack.text.resolve_columns`).

    ``encoder`` is a spec for :func:`~recstack.text.make_encoder` (``"minilm"``,
    ``"tfidf"``, ``"tfidf:DIM"``, a model name or path) or an encoder object; it is fitted
    on the texts of the items that have one (a no-op for pretrained models).

    Raises
    ------
    DataError
        No item has text in those columns.
    """
    cols = resolve_columns(features, columns)
    texts = item_texts(features, cols)
    has_text = texts != ""
    if not has_text.any():
        raise DataError(f"no item has text in the columns {cols}")
    enc = make_encoder(encoder, batch_size=batch_size) if isinstance(encoder, str) else encoder
    present = texts[has_text].tolist()
    found = enc.fit(present).encode(present)
    vectors = np.zeros((len(texts), found.shape[1]), dtype=np.float32)
    vectors[has_text] = found
    return ItemEmbeddings(vectors, has_text, cols, enc)
