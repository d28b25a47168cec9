"""Popularity's explanation: a plain statement of how popular the item is.

Its score does not depend on the history, so no history item drove it: every term is 0
and the note says how many users had the item and where that ranks it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from recstack.data import Histories
from recstack.explain.attribution import Attribution

if TYPE_CHECKING:
    from recstack.models.baselines import Popularity


def popularity_attribution(
    model: Popularity, histories: Histories, targets: np.ndarray
) -> Attribution:
    """Zero terms; notes like ``"popular with 583 users (#1 of 1,682 items)"`` (with
    ``half_life_days``, the recency-weighted count)."""
    counts = model.item_scores_.astype(np.float64)
    scores = counts[targets]
    ascending = np.sort(counts)
    rank = len(counts) - np.searchsorted(ascending, scores, side="right") + 1  # 1 = most
    if model.half_life_days is None:
        fmt = "popular with {:,.0f} users (#{:,} of {:,} items)"
    else:
        fmt = "popular lately: {:,.1f} recency-weighted users (#{:,} of {:,} items)"
    notes = np.array(
        [
            fmt.format(s, int(k), len(counts))
            for s, k in zip(scores.ravel(), rank.ravel(), strict=True)
        ],
        dtype=object,
    ).reshape(targets.shape)
    x = histories.to_csr()
    terms = np.zeros((x.nnz, targets.shape[1]))
    indptr = x.indptr.astype(np.int64)
    return Attribution(
        indptr, x.indices.astype(np.int32), terms, scores, targets, "popularity", False, notes
    )
