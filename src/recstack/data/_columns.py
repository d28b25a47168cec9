"""Column names, defined once."""

from __future__ import annotations


class Columns:
    """Canonical column names of interaction tables (readers map file columns onto these)."""

    USER = "user_id"
    ITEM = "item_id"
    VALUE = "rating"
    TIME = "timestamp"
    #: recommendation tables (``--recs`` CSV, :meth:`Recommendations.to_frame`)
    REC = ("user", "item", "rank", "score")
