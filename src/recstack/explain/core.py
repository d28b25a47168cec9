"""Explanations of recommendations: which history items drove each one, by how much, and
one readable sentence ("Because you watched Toy Story and Aladdin").

:func:`attribute` gives the numbers (internal indices, batched), :func:`explain` the
:class:`Explanation` objects (external IDs, titles). The explainer of a model comes from
:mod:`recstack.explain.registry`:

==========================  ===============================================================
model                       explanation (``method``)
==========================  ===============================================================
ItemKNN, EASE, PureSVD      exact decomposition of the score into per-item terms (exact)
NMF                         exact decomposition of the fold-in's own coordinate-descent
                            steps, which are linear in the history between clips (exact)
ALS                         Hu-Koren-Volinsky terms of the folded-in user vector (hkv)
BPR                         influence-function estimate of the leave-one-out drop of its
                            SGD fold-in, without re-running it per item (influence)
BiasedMF, UserKNN           leave-one-out without re-scoring the catalog: Sherman-Morrison
                            updates of the ridge solve, downdated user similarities
                            (leave-one-out; NMF's batched coordinate descent on request)
Popularity                  a plain statement of the item's popularity (popularity)
sequential (torch) models   leave-one-out over the items of the latest 5 events (recent),
                            batched through the network for the targets only; over every
                            item they read (leave-one-out) or the Transformers' attention
                            weights (attention) on request
any other model             leave-one-out: score drop when the item is removed
ContentKNN                  most similar history items by text, shared words (content)
==========================  ===============================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from recstack.data import Histories
from recstack.errors import ConfigError, DataError
from recstack.explain.attribution import Attribution
from recstack.explain.registry import explainer_for
from recstack.explain.text import item_labels, sentence
from recstack.models.base import Recommender, batch_rows

#: history items a sentence names at most (the item list may hold more)
NAMED = 3
#: bound on ``entries x targets`` of one explainer call (attribute() splits larger batches)
_ENTRY_BUDGET = 1 << 21


@dataclass(frozen=True)
class Explanation:
    """Why one item was recommended to one history.

    Attributes
    ----------
    item : str
        External ID of the recommended item.
    score : float
        Its score.
    text : str
        One sentence naming the top history items (or the note of an explainer that has
        no driving item, e.g. popularity).
    items : tuple of (str, float)
        The history items that drove it, largest first: external ID and signed share
        (see :meth:`Attribution.shares`; only items with a positive share are listed).
    method : str
        The explainer: ``"exact"``, ``"hkv"``, ``"leave-one-out"``,
        ``"recent-leave-one-out"``, ``"influence"``, ``"attention"``, ``"popularity"``,
        ``"content"``.
    """

    item: str
    score: float
    text: str
    items: tuple[tuple[str, float], ...]
    method: str

    def to_dict(self) -> dict[str, Any]:
        """``{"text": ..., "items": [{"item": ID, "share": float}, ...]}`` (JSON-ready)."""
        return {
            "text": self.text,
            "items": [{"item": i, "share": round(s, 6)} for i, s in self.items],
        }


def attribute(
    model: Recommender, histories: Histories, targets: np.ndarray, method: str = "auto"
) -> Attribution:
    """Contributions of each distinct history item to the scores of the targets.

    Parameters
    ----------
    model : Recommender
        A fitted model.
    histories : Histories
        ``n`` histories over the model's catalog.
    targets : (n, K) or (n,) int
        Internal indices of the items to explain for each history.
    method : {"auto", "leave-one-out", "attention", "recent", "recent:N"}
        ``"auto"``: the model's registered explainer (exact where one exists), else
        leave-one-out (through the model's faster path where it has one). ``"recent"``:
        leave-one-out over the items of the latest N (default 5) events, for the sequential
        models (their default).

    Returns
    -------
    Attribution
        Rows in the order of ``histories``; ``K`` columns.

    Examples
    --------
    >>> import pandas as pd
    >>> from recstack.data import Interactions
    >>> from recstack.models import EASE
    >>> log = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": list("ababa")})
    >>> model = EASE(l2=1.0).fit(Interactions.from_frame(log))
    >>> attr = attribute(model, model.user_histories(["1"]), [[1]])
    >>> bool(np.isclose(attr.terms.sum(), model.score(model.user_histories(["1"]))[0, 1]))
    True
    """
    model._check_fitted()
    explainer = explainer_for(model, method)
    if histories.n_items != model.n_items:
        raise DataError(
            f"histories refer to {histories.n_items} items, the model knows {model.n_items}"
        )
    targets = np.asarray(targets)
    if targets.ndim == 1:
        targets = targets[:, None]
    if targets.ndim != 2 or len(targets) != len(histories) or targets.dtype.kind not in "iu":
        raise ConfigError(
            f"targets must be integer item indices of shape (n, K) with n = {len(histories)} "
            f"histories, got {targets.dtype} {targets.shape}"
        )
    targets = targets.astype(np.int64)
    if targets.size and (targets.min() < 0 or targets.max() >= model.n_items):
        raise DataError(f"a target item index is outside the catalog [0, {model.n_items})")
    n, k = targets.shape
    mean_len = int(np.ceil(histories.lengths.mean())) if n else 1
    step = max(1, min(batch_rows(model.n_items), _ENTRY_BUDGET // max(1, k * mean_len)))
    if n <= step:
        return explainer(model, histories, targets)
    parts = [
        explainer(model, histories.select(slice(s, s + step)), targets[s : s + step])
        for s in range(0, n, step)
    ]
    return Attribution.concat(parts)


def explain(
    model: Recommender,
    histories: Histories,
    items: np.ndarray,
    *,
    scores: np.ndarray | None = None,
    k_items: int = 3,
    method: str = "auto",
    verb: str = "watched",
) -> list[list[Explanation]]:
    """Explain recommended ``items`` of each history.

    Parameters
    ----------
    model : Recommender
        A fitted model.
    histories : Histories
        ``n`` histories (``model.user_histories(users)`` for known users,
        ``Histories.from_ids`` for new ones).
    items : (n, K) or (n,) int
        Internal indices of the recommended items (``Recommendations.index``); ``-1``
        (padding) is skipped.
    scores : (n, K) float, optional
        The items' scores to show (``Recommendations.scores``); default: the model's.
    k_items : int
        History items listed per explanation, at most (the sentence names up to
        :data:`NAMED` of them).
    method : {"auto", "leave-one-out", "attention", "recent", "recent:N"}
        See :func:`attribute`.
    verb : str
        The sentence's verb: "Because you *watched* ..." ("bought", "read", ...).

    Returns
    -------
    list of lists of Explanation
        One list per history, one explanation per (non-padding) item, in ``items`` order.

    Examples
    --------
    >>> import pandas as pd
    >>> from recstack.data import Interactions
    >>> from recstack.models import ItemKNN
    >>> log = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": list("ababa")})
    >>> model = ItemKNN(neighbors=5).fit(Interactions.from_frame(log))
    >>> hist = model.user_histories(["3"])
    >>> recs = model.recommend(["3"], k=1)
    >>> explain(model, hist, recs.index, scores=recs.scores)[0][0].text
    'Because you watched a'
    """
    if not isinstance(k_items, int | np.integer) or isinstance(k_items, bool) or k_items <= 0:
        raise ConfigError(f"k_items must be a positive integer, got {k_items!r}")
    items = np.asarray(items)
    if items.ndim == 1:
        items = items[:, None]
    valid = items >= 0
    attr = attribute(model, histories, np.where(valid, items, 0), method)
    shown = attr.scores if scores is None else np.asarray(scores, dtype=np.float64)
    if shown.shape != items.shape:
        raise ConfigError(f"scores have shape {shown.shape}, items {items.shape}")
    labels = item_labels(model)
    ids = np.asarray(model.items_.ids, dtype=object)
    notes = np.full(items.shape, "", dtype=object) if attr.notes is None else attr.notes
    longest = int(np.diff(attr.indptr).max()) if len(attr) else 0
    top, den = _top_terms(attr.indptr, attr.terms, max(1, min(int(k_items), longest)))
    n_listed = (top >= 0).sum(axis=2)
    # the listed entries, by history then target: (history r, target c)'s are at
    # bounds[r K + c] : bounds[r K + c + 1]
    bounds = np.concatenate([[0], np.cumsum(n_listed.ravel())]).tolist()
    listed = top[top >= 0]
    rows, cols, _ = np.nonzero(top >= 0)
    listed_ids = ids[attr.items[listed]].tolist()
    listed_labels = labels[attr.items[listed]].tolist()
    listed_shares = (attr.terms[listed, cols] / den[rows, cols]).tolist()  # den >= term > 0
    item_ids = ids[np.where(valid, items, 0)].tolist()
    shown_l, notes_l, valid_l = shown.tolist(), notes.tolist(), valid.tolist()
    n_targets = items.shape[1]
    out: list[list[Explanation]] = []
    for r in range(len(items)):  # one object per explained item
        row = []
        for c, ok in enumerate(valid_l[r]):
            if not ok:
                continue
            lo, hi = bounds[r * n_targets + c], bounds[r * n_targets + c + 1]
            row.append(
                Explanation(
                    item=item_ids[r][c],
                    score=float(shown_l[r][c]),
                    text=sentence(
                        listed_labels[lo : min(hi, lo + NAMED)], verb, notes_l[r][c] or ""
                    ),
                    items=tuple(zip(listed_ids[lo:hi], listed_shares[lo:hi], strict=True)),
                    method=attr.method,
                )
            )
        out.append(row)
    return out


@numba.njit(cache=True, nogil=True)
def _top_terms(indptr: np.ndarray, terms: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The (at most) ``k`` entries with the largest positive terms of each row and target,
    largest first (ties: the earlier entry), ``-1`` padded, (n, K, k) int64; and each row's
    sum of ``|term|`` per target, (n, K) float64 (the denominator of
    :meth:`Attribution.shares`)."""
    n, n_targets = len(indptr) - 1, terms.shape[1]
    top = np.full((n, n_targets, k), -1, dtype=np.int64)
    den = np.zeros((n, n_targets))
    count = np.zeros(n_targets, dtype=np.int64)
    for r in range(n):
        count[:] = 0
        for e in range(indptr[r], indptr[r + 1]):
            for c in range(n_targets):
                v = terms[e, c]
                den[r, c] += abs(v)
                last = count[c] - 1
                if v <= 0.0 or (count[c] == k and not v > terms[top[r, c, last], c]):
                    continue
                pos = min(count[c], k - 1)  # insert, shifting the smaller terms down
                while pos > 0 and terms[top[r, c, pos - 1], c] < v:
                    top[r, c, pos] = top[r, c, pos - 1]
                    pos -= 1
                top[r, c, pos] = e
                count[c] = min(count[c] + 1, k)
    return top, den
