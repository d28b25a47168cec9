"""Readable names and sentences: item titles when the data has them, else external IDs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

#: columns of an item feature table that hold a display title, in order of preference
TITLE_COLUMNS = ("title", "movie_title", "name")
#: a catalog-style title with its article moved to the end ("Fish Called Wanda, A")
_TRAILING_ARTICLE = r"^(?P<rest>.+), (?P<article>The|A|An)$"


def title_column(features: pd.DataFrame | None) -> str | None:
    """The first of :data:`TITLE_COLUMNS` in ``features``, or None."""
    if features is None:
        return None
    return next((c for c in TITLE_COLUMNS if c in features.columns), None)


def item_labels(model: Any) -> np.ndarray:
    """A display name for each catalog item of a fitted model, (n_items,) object: its title
    when the model kept item features with a title column (and the title is not empty),
    else its external ID. Catalog-style titles read naturally: "Fish Called Wanda, A"
    becomes "A Fish Called Wanda" (MovieLens writes them so)."""
    ids = np.asarray(model.items_.ids, dtype=object)
    features = model.item_features_
    col = title_column(features)
    if col is None:
        return ids
    titles = features[col].astype(str).str.strip()
    ok = (features[col].notna() & (titles != "")).to_numpy()
    natural = titles.str.replace(_TRAILING_ARTICLE, r"\g<article> \g<rest>", regex=True)
    return np.where(ok, natural.to_numpy(dtype=object), ids)


def join_names(names: Sequence[str]) -> str:
    """``"A"``, ``"A and B"``, ``"A, B and C"``."""
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} and {names[-1]}"


def sentence(names: Sequence[str], verb: str, note: str = "") -> str:
    """One sentence: ``"Because you watched A and B"``, then ``"; note"`` when there is
    one; the note alone (capitalized) when no history item is named."""
    if names:
        text = f"Because you {verb} {join_names(names)}"
        return f"{text}; {note}" if note else text
    if note:
        return note[0].upper() + note[1:]
    return "No item of your history drove this recommendation"
