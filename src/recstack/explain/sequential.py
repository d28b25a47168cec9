"""The attention view of the Transformer sequence models (SASRec, BERT4Rec).

A cheap look at which history items the network reads when it scores: the last layer's
attention of the scored position (the latest item for SASRec, the mask token for
BERT4Rec) over the history positions, averaged over heads, summed over the positions of a
repeated item. One forward pass serves every target, and the weights are the same for all
of them: attention says what the model looked at, not why one item outscored another
(Jain & Wallace, "Attention is not Explanation", NAACL 2019), which is why leave-one-out
is the default explanation of these models.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recstack.data import Histories
from recstack.errors import ConfigError
from recstack.explain.attribution import Attribution, target_scores


def attention_attribution(model: Any, histories: Histories, targets: np.ndarray) -> Attribution:
    """Attention weights of the scored position over each distinct history item, (nnz, K)
    (equal across targets; a row's weights sum to at most 1, the rest goes to the mask
    token or padding); ``method="attention"``, not exact.

    Raises
    ------
    ConfigError
        The model has no attention weights (only :class:`TransformerRecommender` has).
    """
    if not callable(getattr(model, "attention", None)):
        raise ConfigError(
            f"method='attention' needs a model with attention weights (sasrec, bert4rec); "
            f"{type(model).__name__} has none: use method='leave-one-out'"
        )
    n_items = model.n_items
    # the network's inputs, aligned with the attention's key columns: item + 1, 0 = padding,
    # n_items + 1 = BERT4Rec's mask token (the models' own input builder, so they line up)
    inputs = model._items_of(model._score_inputs(histories))  # tokens: their items
    last_layer = model.attention(histories)[-1]  # (n, heads, L, L)
    weights = last_layer[:, :, -1, :].mean(axis=1)  # the scored (last) position's row
    r, c = np.nonzero((inputs > 0) & (inputs <= n_items))
    x = histories.to_csr()
    keys = np.repeat(np.arange(len(histories), dtype=np.int64), np.diff(x.indptr)) * n_items
    keys += x.indices  # sorted: rows ascend, items ascend within a row
    entry = np.searchsorted(keys, r.astype(np.int64) * n_items + inputs[r, c] - 1)
    per_item = np.bincount(entry, weights=weights[r, c], minlength=x.nnz)
    terms = np.repeat(per_item[:, None], targets.shape[1], axis=1)
    scores = target_scores(model, histories, targets)
    indptr = x.indptr.astype(np.int64)
    return Attribution(
        indptr, x.indices.astype(np.int32), terms, scores, targets, "attention", False
    )
