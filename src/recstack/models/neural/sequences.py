"""Padded sequence arrays from histories, built once and vectorized (numpy, no torch).

Item indices are shifted by one inside the networks: ``0`` is padding, item ``i`` is
``i + 1``. Sequences are right-aligned (left-padded), so the latest event is always in the
last column, where scoring reads the network's output.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recstack.data import Histories

PAD = 0

#: upper ends (seconds) of the time-gap buckets (``time_gaps``): the same second, a minute,
#: ten minutes, an hour, a day, a week; then longer
GAP_EDGES = np.array([0.0, 60.0, 600.0, 3600.0, 86400.0, 604800.0])
#: bucket 0: padding; 1: a history's first event; 2 + i: a gap up to GAP_EDGES[i]; the last:
#: longer than a week
N_GAP_BUCKETS = len(GAP_EDGES) + 3


def last_items(histories: Histories, length: int) -> np.ndarray:
    """The last ``length`` items of each history, shifted by one, left-padded with 0.

    Returns
    -------
    (n, length) int64
        Row ``r`` ends with history ``r``'s latest item (``+ 1``); an empty history is all 0.
    """
    n = len(histories)
    out = np.zeros((n, length), dtype=np.int64)
    take = np.minimum(histories.lengths, length)
    if take.sum() == 0:
        return out
    rows = np.repeat(np.arange(n), take)
    within = _offsets_within(take)  # each taken event's place among its row's `take`
    src = np.repeat(histories.indptr[1:] - take, take) + within
    out[rows, length - np.repeat(take, take) + within] = histories.items[src].astype(np.int64) + 1
    return out


def _offsets_within(counts: np.ndarray) -> np.ndarray:
    """(counts.sum(),) int64: 0, 1, ..., counts[0] - 1, then 0, ..., counts[1] - 1, ...:
    each element's offset inside its group, for groups of ``counts`` elements laid end to
    end."""
    return np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)


def gap_buckets(histories: Histories) -> np.ndarray:
    """Each event's time-gap bucket (:data:`GAP_EDGES`): how long after the history's
    previous event it came, (nnz,) int64 in [1, N_GAP_BUCKETS).

    Times without timestamps are positions, so every gap reads as one second.
    """
    gaps = np.diff(histories.times, prepend=-np.inf)
    buckets = np.searchsorted(GAP_EDGES, gaps, side="left") + 2
    buckets[histories.indptr[:-1][histories.lengths > 0]] = 1
    return buckets


def gap_tokens(histories: Histories) -> Histories:
    """``histories`` whose items are tokens ``item + (n_items + 2) * gap bucket``, so that
    :func:`last_items` and :func:`training_windows` of it carry each event's gap as well:
    shifted by one, a token is ``item + 1 + (n_items + 2) * bucket``, 0 stays padding, and
    ``token % (n_items + 2)`` is the shifted item again."""
    tokens = histories.items.astype(np.int64)
    tokens += (histories.n_items + 2) * gap_buckets(histories)
    return Histories(
        histories.indptr,
        tokens,
        histories.values,
        histories.times,
        histories.n_items,
        histories.users,
    )


def _window_spans(histories: Histories, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The history (n_windows,) of each of :func:`training_windows`'s windows and the span
    ``[start, end)`` of its events in ``histories.items``."""
    lengths = histories.lengths
    # targets per history: all events but the first; one window per `length` targets
    n_win = np.where(lengths >= 2, -(-(lengths - 1) // length), 0)
    total = int(n_win.sum())
    owner = np.repeat(np.arange(len(histories)), n_win)
    k = np.arange(total) - np.repeat(np.cumsum(n_win) - n_win, n_win)  # 0 = latest window
    end = histories.indptr[owner + 1] - k * length  # exclusive end of each window's events
    start = np.maximum(end - (length + 1), histories.indptr[owner])
    return owner, start, end


def items_before_windows(histories: Histories, length: int) -> sp.csr_matrix:
    """(n_windows, n_items) bool: for each of :func:`training_windows`'s windows, the items
    its history had before the window's first event (``exclude_seen`` leaves them out of
    the window's training softmax, as scoring leaves out a whole history)."""
    owner, start, _ = _window_spans(histories, length)
    first = histories.indptr[owner]
    counts = start - first
    rows = np.repeat(np.arange(len(owner)), counts)
    cols = histories.items[np.repeat(first, counts) + _offsets_within(counts)]
    return sp.csr_matrix(
        (np.ones(len(rows), dtype=bool), (rows, cols)), shape=(len(owner), histories.n_items)
    )


def training_windows(histories: Histories, length: int) -> np.ndarray:
    """Every history cut into windows of ``length + 1`` events (shifted by one, left-padded),
    so that inputs ``w[:, :-1]`` predict targets ``w[:, 1:]`` at every position and every
    event except each history's first is a target exactly once.

    Windows end at the history's last event and then every ``length`` events earlier (the
    earliest window is padded). Histories with fewer than 2 events give none.

    Returns
    -------
    (n_windows, length + 1) int64
    """
    owner, start, end = _window_spans(histories, length)
    if len(owner) == 0:
        return np.zeros((0, length + 1), dtype=np.int64)
    offsets = np.arange(-(length + 1), 0)
    pos = end[:, None] + offsets[None, :]
    valid = pos >= start[:, None]
    out = np.where(valid, histories.items[np.where(valid, pos, 0)].astype(np.int64) + 1, PAD)
    return out.astype(np.int64, copy=False)


def shuffle_ties(histories: Histories, rng: np.random.Generator) -> Histories:
    """``histories`` with each run of consecutive events of equal time (within a history)
    in a fresh random order; the other events keep their places.

    Events logged in the same second (half of ML-100K's consecutive pairs) have no order
    of their own: the log's order among them is arbitrary.
    """
    return _reorder_runs(histories, rng.random(len(histories.items)))


def latest_run(histories: Histories) -> np.ndarray:
    """(nnz,) bool: the events that share their history's latest event's time (times are
    sorted within a history, so these are its last run of ties)."""
    latest = histories.times[np.maximum(histories.indptr[1:] - 1, 0)]
    return histories.times == np.repeat(latest, histories.lengths)


def tie_orders(histories: Histories, n: int) -> list[Histories]:
    """``n`` orders of ``histories``: the log's, then ``n - 1`` others, each putting the
    events that share the latest event's time in a pseudo-random order keyed on their
    items and the order's number (the other events keep their places).

    The run of the latest events is the one the scored position reads most closely, and
    reordering it alone gains as much as reordering every run on ML-100K while running
    fewer histories again (BENCHMARKS.md). Unlike :func:`shuffle_ties`, a history gets the same
    orders wherever it is scored (alone, or in any batch), so scores averaged over them
    are a function of the history.
    """
    orders = [histories]
    if n < 2 or not len(histories.items):
        return orders
    in_latest = latest_run(histories)
    position = np.arange(len(histories.items), dtype=np.uint64)  # the others stay put
    items = histories.items.astype(np.uint64)
    for j in range(1, n):
        step = np.uint64((j * 0x9E3779B97F4A7C15) % 2**64)  # SplitMix64's increment, j times
        orders.append(_reorder_runs(histories, np.where(in_latest, _mix(items + step), position)))
    return orders


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: uint64 keys -> well-spread uint64 (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _reorder_runs(histories: Histories, keys: np.ndarray) -> Histories:
    """``histories`` with each run of consecutive equal-time events sorted by ``keys``
    (one per event); the other events keep their places."""
    times = histories.times
    owner = np.repeat(np.arange(len(histories)), histories.lengths)
    new_run = np.ones(len(times), dtype=bool)
    new_run[1:] = (times[1:] != times[:-1]) | (owner[1:] != owner[:-1])
    run = np.cumsum(new_run)
    order = np.lexsort((keys, run))
    return Histories(
        histories.indptr,
        histories.items[order],
        histories.values[order],
        times[order],
        histories.n_items,
        histories.users,
    )
