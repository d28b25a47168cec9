"""Item text from feature tables: which columns, and how their values become one string.

A feature table (``Interactions.item_features``: one row per catalog item, index = external
ID) holds the catalog's metadata. :func:`item_texts` joins the chosen columns of each row
into one text (``"Toy Story. 1995. Animation Children's Comedy"``), which encoders embed.
Columns are named exactly or by a common role (``title`` finds ``movie_title``, ``genres``
finds ``class``; :data:`COLUMN_ROLES`), so one setting works across data sets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from recstack.errors import ConfigError, DataError

#: a role -> the column names that play it, in order of preference (compared lower-cased)
COLUMN_ROLES: dict[str, tuple[str, ...]] = {
    "title": ("title", "movie_title", "name", "item_name", "product_title"),
    "year": ("year", "release_year"),
    "genres": ("genres", "genre", "class", "categories", "category", "tags"),
    "description": ("description", "overview", "plot", "summary", "text"),
}
#: what joins the values of one item's columns
SEPARATOR = ". "


def parse_columns(spec: str | Sequence[str] | None) -> list[str] | None:
    """``"title,genres"``, ``["title", "genres"]`` or None (all text-like columns)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        names = [s.strip() for s in spec.split(",")]
    elif isinstance(spec, Sequence) and all(isinstance(s, str) for s in spec):
        names = [s.strip() for s in spec]
    else:
        raise ConfigError(
            f"text_columns must be a comma-separated string, a list of column names or None, "
            f"got {spec!r}"
        )
    if not names or any(not s for s in names):
        raise ConfigError(f"text_columns has an empty column name: {spec!r}")
    return names


def _is_year(name: str) -> bool:
    return name.lower() in COLUMN_ROLES["year"]


def default_text_columns(features: pd.DataFrame) -> list[str]:
    """The text-like columns of ``features`` in table order: every non-numeric column, and
    numeric year columns (``year``, ``release_year``); other numbers (prices, counts, genre
    flags) are left out."""
    return [
        str(c)
        for c in features.columns
        if not pd.api.types.is_numeric_dtype(features[c]) or _is_year(str(c))
    ]


def resolve_columns(features: pd.DataFrame, columns: str | Sequence[str] | None) -> list[str]:
    """The feature columns to read text from: :func:`default_text_columns` for None, else each
    requested name as a column (case-insensitive) or, failing that, the first column of its
    role in :data:`COLUMN_ROLES`.

    Raises
    ------
    ConfigError
        A name that matches no column (the message lists the table's columns).
    DataError
        ``columns`` is None and the table has no text-like column.
    """
    names = parse_columns(columns)
    available = [str(c) for c in features.columns]
    if names is None:
        found = default_text_columns(features)
        if not found:
            raise DataError(f"the item features have no text-like column; columns: {available}")
        return found
    lower = {c.lower(): c for c in available}
    out = []
    for name in names:
        key = name.lower()
        roles = COLUMN_ROLES.get(key, ())
        match = lower.get(key) or next((lower[r] for r in roles if r in lower), None)
        if match is None:
            raise ConfigError(
                f"text column {name!r} is not in the item features (columns: {available})"
            )
        out.append(match)
    return list(dict.fromkeys(out))


def _as_text(s: pd.Series) -> pd.Series:
    """A column as stripped str, NaN for missing; integral floats without ``.0`` (years)."""
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        values = s.to_numpy(dtype=np.float64, na_value=np.nan)
        ok = np.isfinite(values)
        whole = ok & (values == np.round(values)) & (np.abs(values) < 2.0**53)
        out = np.full(len(values), None, dtype=object)
        out[whole] = values[whole].astype(np.int64).astype(str)
        out[ok & ~whole] = values[ok & ~whole].astype(str)
        return pd.Series(out, index=s.index)
    text = s.astype("str").str.strip()
    return text.where(s.notna() & (text != ""))


def item_texts(features: pd.DataFrame, columns: str | Sequence[str] | None = None) -> np.ndarray:
    """One text per row of ``features``: the values of ``columns`` (see
    :func:`resolve_columns`), missing ones skipped, joined by ``". "``.

    Returns
    -------
    (n_rows,) object array of str
        ``""`` for a row without any value (an item with no text).

    Examples
    --------
    >>> f = pd.DataFrame({"title": ["Toy Story", None], "year": [1995.0, 1994.0],
    ...                   "genres": ["Animation Comedy", None]}, index=["1", "2"])
    >>> item_texts(f).tolist()
    ['Toy Story. 1995. Animation Comedy', '1994']
    >>> item_texts(f, "title,genres").tolist()
    ['Toy Story. Animation Comedy', '']
    """
    cols = resolve_columns(features, columns)
    parts = [_as_text(features[c]).to_numpy(dtype=object) for c in cols]
    out = np.full(len(features), "", dtype=object)
    for values in parts:  # a handful of columns: vectorized over items
        present = pd.notna(values)
        glue = np.where(out != "", SEPARATOR, "")
        out[present] = out[present] + glue[present] + values[present]
    return out
