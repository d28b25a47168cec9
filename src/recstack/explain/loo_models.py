"""Leave-one-out for models whose re-scoring can skip most of the work.

:func:`~recstack.explain.loo.leave_one_out` re-scores each history once per distinct
history item over the whole catalog. The drops it needs are only those of the ``K``
targets, and some models fold a history in by a computation that the removal of one item
changes in a known way. These explainers give the same drops (up to float rounding; the
tests compare them with the generic path) at a fraction of the cost:

- :class:`~recstack.models.BiasedMF`: the user solve is a ridge regression, and without
  item ``j`` its system loses the rank-one term ``z_j z_j^T`` (and one rating's worth of
  regularization, the same for every ``j``). One Cholesky factor per history and the
  Sherman-Morrison formula give every ``j``'s solution: the classic leave-one-out update
  ``x_-j = x + B^-1 z_j (z_j . x - y_j) / (1 - z_j^T B^-1 z_j)``.
- :class:`~recstack.models.NMF` (``method="leave-one-out"``; its default explanation is the
  exact decomposition of :mod:`recstack.explain.factors`): the fold-in's coordinate descent
  starts from zero with a fixed Gram and ``x H``, which loses item ``j``'s row of ``H``; it
  is re-run for all variants at once (with the gradient kept up to date, which skips the
  work of the many coordinates that stay 0), and only the targets are scored.
- the torch sequence models: the variants' input windows go through the network in large
  batches of similar length, and only the targets' output embeddings are read (not the
  catalog's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numba
import numpy as np

from recstack.data import Histories
from recstack.explain.attribution import Attribution, target_scores, without_items
from recstack.explain.loo import _in_window, events_from_end
from recstack.models import _als_kernels as K

if TYPE_CHECKING:
    from recstack.models.biased_mf import BiasedMF
    from recstack.models.nmf import NMF

#: network input windows per forward pass (the torch models)
_SEQUENCE_BATCH = 2048


def _event_count_and_distance(
    histories: Histories, rows: np.ndarray, items: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each (``rows[c]``, ``items[c]``): how many events the item has in that history,
    and how far its latest one is from the history's end (1 = the latest event)."""
    n = np.int64(histories.n_items)
    keys = histories.rows.astype(np.int64) * n + histories.items
    from_end = events_from_end(histories)
    order = np.lexsort((from_end, keys))  # by key, then nearest the end first
    uniq, first, counts = np.unique(keys[order], return_index=True, return_counts=True)
    at = np.searchsorted(uniq, rows.astype(np.int64) * n + items)
    return counts[at], from_end[order[first[at]]]


def _attribution(histories: Histories, terms: np.ndarray, base: np.ndarray,
                 targets: np.ndarray, method: str = "leave-one-out") -> Attribution:  # fmt: skip
    x = histories.to_csr()
    return Attribution(
        x.indptr.astype(np.int64), x.indices.astype(np.int32), terms, base, targets,
        method, False,
    )  # fmt: skip


# ---------------------------------------------------------------------------- BiasedMF
@numba.njit(cache=True, fastmath=True, nogil=True)
def _forward(ell: np.ndarray, b: np.ndarray) -> None:
    """In place ``b <- L^-1 b`` for the lower factor ``L``."""
    for i in range(ell.shape[0]):
        s = b[i]
        for m in range(i):
            s -= ell[i, m] * b[m]
        b[i] = s / ell[i, i]


@numba.njit(cache=True, fastmath=True, nogil=True)
def _ridge_loo(
    indptr: np.ndarray,
    indices: np.ndarray,
    ratings: np.ndarray,
    mu: float,
    item_bias: np.ndarray,
    item_factors: np.ndarray,
    bias_reg: float,
    reg: float,
    targets: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out[e, c]``: the score of row ``u``'s target ``c`` once entry ``e`` of ``u`` is left
    out of the user solve (see :meth:`BiasedMF.fold_in`).

    With ``z_i = [1, q_i]``, ``y_i = r_i - mu - b_i`` over the row's ``n`` entries and
    ``D = diag(bias_reg, reg, ..., reg)``, leaving ``j`` out solves ``A_j x = b - y_j z_j``
    with ``A_j = B - z_j z_j^T``, ``B = Z^T Z + (n - 1) D``. Sherman-Morrison on ``B = L L^T``
    gives, with ``w_i = L^-1 z_i``, ``g = L^-1 (Z^T y)`` and ``v_t = L^-1 z_t``::

        z_t . x_-j = v_t . g + (v_t . w_j) (w_j . g - y_j) / (1 - |w_j|^2)

    A row of one entry leaves an empty history: user bias and factors 0.
    """
    d = item_factors.shape[1] + 1
    n_targets = targets.shape[1]
    a = np.empty((d, d))
    z = np.empty(d)
    g = np.empty(d)
    v = np.empty((n_targets, d))
    w = np.empty(d)
    for u in range(len(indptr) - 1):
        lo, hi = indptr[u], indptr[u + 1]
        n = hi - lo
        if n == 0:
            continue
        if n == 1:
            for c in range(n_targets):
                out[lo, c] = mu + item_bias[targets[u, c]]
            continue
        a[:] = 0.0
        g[:] = 0.0
        for e in range(lo, hi):
            i = indices[e]
            z[0] = 1.0
            for f in range(1, d):
                z[f] = item_factors[i, f - 1]
            y = ratings[e] - mu - item_bias[i]
            for s in range(d):
                g[s] += z[s] * y
                for t in range(s + 1):
                    a[s, t] += z[s] * z[t]
        a[0, 0] += (n - 1) * bias_reg
        for f in range(1, d):
            a[f, f] += (n - 1) * reg
        K._cholesky(a)
        _forward(a, g)
        for c in range(n_targets):
            t = targets[u, c]
            v[c, 0] = 1.0
            for f in range(1, d):
                v[c, f] = item_factors[t, f - 1]
            _forward(a, v[c])
        for e in range(lo, hi):
            i = indices[e]
            w[0] = 1.0
            for f in range(1, d):
                w[f] = item_factors[i, f - 1]
            _forward(a, w)
            leverage, fitted = 0.0, 0.0
            for f in range(d):
                leverage += w[f] * w[f]
                fitted += w[f] * g[f]
            step = (fitted - (ratings[e] - mu - item_bias[i])) / (1.0 - leverage)
            for c in range(n_targets):
                vg, vw = 0.0, 0.0
                for f in range(d):
                    vg += v[c, f] * g[f]
                    vw += v[c, f] * w[f]
                out[e, c] = mu + item_bias[targets[u, c]] + vg + vw * step


def biased_mf_leave_one_out(
    model: BiasedMF, histories: Histories, targets: np.ndarray
) -> Attribution:
    """:func:`~recstack.explain.loo.leave_one_out` of :class:`~recstack.models.BiasedMF`
    by the Sherman-Morrison update of the user solve (one ``(factors + 1)``-square Cholesky
    factor per history, no catalog scoring)."""
    x = histories.to_csr()
    left_out = np.zeros((x.nnz, targets.shape[1]))
    _ridge_loo(
        x.indptr.astype(np.int64), x.indices.astype(np.int64), x.data.astype(np.float64),
        float(model.global_mean_), model.item_bias_.astype(np.float64),
        model.item_factors_.astype(np.float64), float(model.bias_reg), float(model.reg),
        targets, left_out,
    )  # fmt: skip
    base = target_scores(model, histories, targets)
    rows = np.repeat(np.arange(len(histories)), np.diff(x.indptr))
    return _attribution(histories, base[rows] - left_out, base, targets)


# ---------------------------------------------------------------------------- NMF
@numba.njit(parallel=True, cache=True, nogil=True, fastmath=True)
def _cd_from_zero(
    gram: np.ndarray, xh: np.ndarray, l1: float, l2: float, sweeps: int
) -> np.ndarray:
    """NMF's fold-in (``recstack.models.nmf._cd_rows`` from ``w = 0``): ``sweeps`` cyclic
    coordinate-descent passes per row of ``xh`` (n, k), rows in parallel.

    The same steps, with the gradient's ``gram @ w`` kept up to date (``k`` multiply-adds
    when a coordinate moves) instead of recomputed (``k`` per coordinate visited): a folded-in
    ``w`` has few non-zero coordinates (17 of 64 on ML-100K), so most visits cost nothing.
    """
    n, k = xh.shape
    out = np.zeros((n, k))
    for i in numba.prange(n):
        row = out[i]
        gw = np.zeros(k)  # gram @ row
        for _ in range(sweeps):
            for t in range(k):
                hess = gram[t, t] + l2
                if hess <= 0.0:  # a dead component: the loss does not depend on it
                    continue
                grad = l1 + l2 * row[t] - xh[i, t] + gw[t]
                new = max(0.0, row[t] - grad / hess)
                delta = new - row[t]
                if delta != 0.0:
                    row[t] = new
                    for r in range(k):
                        gw[r] += delta * gram[t, r]
    return out


def nmf_leave_one_out(model: NMF, histories: Histories, targets: np.ndarray) -> Attribution:
    """:func:`~recstack.explain.loo.leave_one_out` of :class:`~recstack.models.NMF`: the
    fold-in's coordinate descent for every variant ``x H - x_j h_j`` at once, then the
    targets' scores ``w_-j . h_t`` only."""
    x = model._matrix(histories.to_csr())
    h = model._factors  # (n_items, k) float64, what fold-in reads
    rows = np.repeat(np.arange(len(histories)), np.diff(x.indptr))
    xh = np.asarray(x @ h)  # (n, k)
    variants = xh[rows] - x.data[:, None] * h[x.indices]  # (nnz, k): x H without item j
    w = _cd_from_zero(
        model._item_gram, variants, float(model.l1), float(model.l2), int(model.fold_in_sweeps)
    )
    w = w.astype(np.float32).astype(np.float64)  # fold_in's float32 user vectors
    left_out = np.einsum("ef,ekf->ek", w, h[targets[rows]])
    base = target_scores(model, histories, targets)
    return _attribution(histories, base[rows] - left_out, base, targets)


# ---------------------------------------------------------------------------- sequences
def _latest_run_lengths(histories: Histories) -> np.ndarray:
    """(n,) events of each history that share its latest event's time."""
    from recstack.models.neural.sequences import latest_run

    owner = np.repeat(np.arange(len(histories)), histories.lengths)
    counts = np.bincount(owner, weights=latest_run(histories), minlength=len(histories))
    return counts.astype(np.int64)


def sequential_leave_one_out(
    model: Any, histories: Histories, targets: np.ndarray, *, recent: int | None = None
) -> Attribution:
    """:func:`~recstack.explain.loo.leave_one_out` of a torch
    :class:`~recstack.models.neural.base.SequentialRecommender`.

    Only the items among a history's latest events that the network reads (``max_len``,
    Caser's ``window``; with ``time_gaps`` the event before them too, which sets the oldest
    one's gap; with ``tie_orders`` every event tied with the latest) are re-scored: the
    others cannot change its input. With
    ``recent``, only the items among the latest ``recent`` events are (method
    ``"recent-leave-one-out"``): their drops are exact, older items get 0, and the cost
    falls in proportion. A causal Transformer (SASRec) computes only the items newer than
    the removed one, on the older items' shared states (:mod:`.loo_causal`). Other
    variants' input windows are sorted by length and go through the network in batches of
    :data:`_SEQUENCE_BATCH`, with the padding that a batch's rows share cut off when the
    model allows it; the last hidden state is dotted with the ``K`` targets' output
    embeddings only.
    """
    import torch

    from recstack.explain.loo_causal import prefix_shared_states, shares_prefix
    from recstack.models.neural.training import trim_padding

    x = histories.to_csr()
    rows = np.repeat(np.arange(len(histories)), np.diff(x.indptr))
    base = target_scores(model, histories, targets)
    terms = np.zeros((x.nnz, targets.shape[1]))
    width = model._score_inputs(histories.select(slice(0, 1))).shape[1]  # items read, at most
    if model.time_gaps:  # the event before the window sets the gap of the window's oldest
        width += 1
    if model.tie_orders > 1:  # the events tied with the latest may be reordered into it
        width = max(width, int(_latest_run_lengths(histories).max(initial=0)))
    method = "leave-one-out"
    if recent is not None and recent < width:
        width, method = recent, "recent-leave-one-out"
    seen = np.flatnonzero(_in_window(histories, x, width))
    net = model._net
    if net.training:  # eval mode before the output side (ID dropout) is read
        net.eval()
    device = next(net.parameters()).device
    with torch.no_grad():
        out_items = model._output_items(net).float()  # (n_items, D)

        def drops(entries: np.ndarray, states: torch.Tensor) -> np.ndarray:
            wanted = torch.from_numpy(targets[rows[entries]]).to(device)  # (B, K)
            scores = torch.einsum("bd,bkd->bk", states, out_items[wanted])
            return base[rows[entries]] - scores.double().cpu().numpy()

        if len(seen) and shares_prefix(model):
            count, distance = _event_count_and_distance(histories, rows[seen], x.indices[seen])
            once = count == 1  # an item with several events has no shared prefix
            if once.any():
                states = prefix_shared_states(model, histories, rows[seen[once]], distance[once])
                terms[seen[once]] = drops(seen[once], states)
            seen = seen[~once]
        if len(seen) == 0:
            return _attribution(histories, terms, base, targets, method)
        variants = without_items(histories, rows[seen], x.indices[seen])
        if model.tie_orders > 1:  # each variant's states averaged over orders, as it scores
            for start in range(0, len(seen), _SEQUENCE_BATCH):
                part = np.arange(start, min(start + _SEQUENCE_BATCH, len(seen)))
                terms[seen[part]] = drops(seen[part], model._last_states(variants.select(part)))
            return _attribution(histories, terms, base, targets, method)
        inputs = model._score_inputs(variants)
        order = np.argsort((inputs > 0).sum(axis=1), kind="stable")  # by window length
        for start in range(0, len(order), _SEQUENCE_BATCH):
            chunk = order[start : start + _SEQUENCE_BATCH]
            batch = torch.from_numpy(inputs[chunk]).to(device)
            if model.trims_padding:  # the rows' shared left padding: outputs ignore it
                (batch,) = trim_padding(batch)
            # (B, D), traced after model.optimize_inference()
            terms[seen[chunk]] = drops(seen[chunk], model._states(batch))
    return _attribution(histories, terms, base, targets, method)
