"""The hook for content and hybrid models, which score items by their text or features.

Their explanation names the history items most similar to the recommended one (cosine of
the items' content vectors: text embeddings, TF-IDF rows, genre indicators) and the words
or genres the recommended item shares with the most similar of them. A model joins with a
line like ContentKNN's (in :mod:`recstack.explain`)::

    register("recstack.models.content:ContentKNN", content_explainer("text_vectors_"))
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from recstack.data import Histories
from recstack.explain.attribution import (
    Attribution,
    entry_targets,
    target_scores,
    top_entries,
)
from recstack.explain.registry import Explainer
from recstack.explain.text import title_column
from recstack.models.base import Recommender

_TOKEN = re.compile(r"[^\s,;|]+")


def similarity_attribution(
    vectors: np.ndarray, histories: Histories, targets: np.ndarray, scores: np.ndarray
) -> Attribution:
    """Cosine similarity of each distinct history item's vector to each target's, (nnz, K);
    ``method="content"``, not exact (similarities, not parts of the score).

    Parameters
    ----------
    vectors : (n_items, d) float
        Content vectors of the catalog's items.
    histories : Histories
    targets : (n, K) int
    scores : (n, K) float
        The model's scores of the targets (shown beside the explanation).
    """
    v = np.asarray(vectors, dtype=np.float64)
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    unit = v / np.where(norm > 0, norm, 1.0)
    x = histories.to_csr()
    cols = entry_targets(x.indptr, targets)
    terms = np.einsum("ed,ekd->ek", unit[x.indices], unit[cols])
    indptr = x.indptr.astype(np.int64)
    return Attribution(indptr, x.indices.astype(np.int32), terms, scores, targets, "content", False)


def shared_tokens(
    features: pd.DataFrame | None, a: int, b: int, columns: Sequence[str] | None = None
) -> list[str]:
    """Words or tokens (genres, tags) that items ``a`` and ``b`` (internal indices, rows of
    the map-aligned ``features``) share, in ``b``'s order, compared case-insensitively.

    ``columns`` defaults to every text column but the title.
    """
    if features is None:
        return []
    if columns is None:
        title = title_column(features)
        columns = [
            c
            for c in features.columns
            if c != title and not pd.api.types.is_numeric_dtype(features[c])
        ]
    seen_a = {t.lower() for c in columns for t in _tokens(features[c].iloc[a])}
    out: list[str] = []
    for c in columns:
        for token in _tokens(features[c].iloc[b]):
            if token.lower() in seen_a and token not in out:
                out.append(token)
    return out


def _tokens(value: Any) -> list[str]:
    return [] if value is None or pd.isna(value) else _TOKEN.findall(str(value))


def content_explainer(vectors: str, columns: Sequence[str] | None = None) -> Explainer:
    """An explainer for a content model whose attribute ``vectors`` holds its items'
    content vectors, (n_items, d): :func:`similarity_attribution`, with notes naming the
    tokens of ``columns`` (default: text columns but the title) that each recommended item
    shares with its most similar history item (``"shared: Animation, Comedy"``)."""

    def explain_content(
        model: Recommender, histories: Histories, targets: np.ndarray
    ) -> Attribution:
        scores = target_scores(model, histories, targets)
        attr = similarity_attribution(getattr(model, vectors), histories, targets, scores)
        top = top_entries(attr.indptr, attr.terms)
        notes = np.full(targets.shape, "", dtype=object)
        for (r, k), e in np.ndenumerate(top):  # one phrase per explained item
            if e >= 0:
                a, b = int(attr.items[e]), int(targets[r, k])
                common = shared_tokens(model.item_features_, a, b, columns)
                notes[r, k] = f"shared: {', '.join(common)}" if common else ""
        return replace(attr, notes=notes)

    return explain_content
