"""Leave-one-out of a causal Transformer (SASRec) with the older items' states shared.

Removing a history item shifts every older item one position towards the end, so no
variant can reuse the full history's pass. But it shifts them the same way whichever
newer item is removed: with a causal mask an item's state at every layer depends only on
itself, the older items and their positions, so the older items of *every* variant have
the states they have in one pass over the history without its latest event (``S``). A
variant then computes only the items newer than the removed one, attending to ``S``'s keys
and values for the older columns: the variant removing the item ``d`` events from the end
costs ``d - 1`` tokens instead of ``max_len``. The scores are the re-scored ones (to float
rounding); an item with several events in the history (all of them are removed) does not
have this structure and takes the plain path.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from recstack.data import Histories
from recstack.models.neural.sequences import last_items


def shares_prefix(model: Any) -> bool:
    """The model's network is a causal :class:`TransformerSequenceNet` reading the latest
    ``max_len`` items (SASRec and its text variant) in one order, without their time gaps
    (removing an item changes the gap of the one after it)."""
    from recstack.models.neural.transformer import TransformerSequenceNet

    net = getattr(model, "_net", None)
    one_order = getattr(model, "tie_orders", 1) == 1
    return (
        isinstance(net, TransformerSequenceNet) and net.causal and one_order and not net.token_base
    )


@torch.no_grad()
def prefix_shared_states(model: Any, histories: Histories, rows: np.ndarray,
                         distance: np.ndarray) -> torch.Tensor:  # fmt: skip
    """Scored-position states of each history ``rows[c]`` without its item whose only
    event is ``distance[c]`` events from the end (1 = the latest), (c, D) float32.

    Requires :func:`shares_prefix`; ``distance`` at most ``max_len`` (items the network
    reads).
    """
    net = model._net
    if net.training:
        net.eval()
    device = next(net.parameters()).device
    length = int(net.pos_emb.num_embeddings)
    older = torch.from_numpy(last_items(_without_latest(histories), length)).to(device)
    x, padding = net.inputs(older)
    s_last, cache = net.encoder.causal_cache(x, padding)
    out = torch.empty(len(rows), s_last.shape[-1], device=device)
    # removing the latest item leaves S itself (zero when S is empty, as the model scores)
    latest = distance == 1
    out[torch.from_numpy(latest)] = s_last[torch.from_numpy(rows[latest])]
    if latest.all():
        return out
    newest = torch.from_numpy(last_items(histories, length)).to(device)
    for s in np.unique(distance[~latest] - 1):  # the newer items' count
        sel = np.flatnonzero(distance - 1 == s)
        r = torch.from_numpy(rows[sel]).to(device)
        split = length - int(s)  # S's columns [0, split) are the variant's older items
        y, _ = net.inputs(newest[r, split:])  # the window's last s columns
        out[torch.from_numpy(sel).to(device)] = net.encoder.resume(cache, r, y, split, padding)
    return out


def _without_latest(histories: Histories) -> Histories:
    """Each history without its latest event."""
    has = histories.lengths > 0
    keep = np.ones(len(histories.items), dtype=bool)
    keep[histories.indptr[1:][has] - 1] = False
    indptr = np.zeros(len(histories) + 1, dtype=np.int64)
    np.cumsum(histories.lengths - has, out=indptr[1:])
    return Histories(
        indptr,
        histories.items[keep],
        histories.values[keep],
        histories.times[keep],
        histories.n_items,
        histories.users,
    )
