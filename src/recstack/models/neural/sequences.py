"""Padded sequence arrays from histories, built once and vectorized (numpy, no torch).

Item indices are shifted by one inside the networks: ``0`` is padding, item ``i`` is
``i + 1``. Sequences are right-aligned (left-padded), so the latest event is always in the
last column, where scoring reads the network's output.
"""

from __future__ import annotations

import numpy as np

from recstack.data import Histories

PAD = 0


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
    # offset of each taken event inside its row's window of `take` events
    within = np.arange(int(take.sum())) - np.repeat(np.cumsum(take) - take, take)
    src = np.repeat(histories.indptr[1:] - take, take) + within
    out[rows, length - np.repeat(take, take) + within] = histories.items[src].astype(np.int64) + 1
    return out


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
    lengths = histories.lengths
    # targets per history: all events but the first; one window per `length` targets
    n_win = np.where(lengths >= 2, -(-(lengths - 1) // length), 0)
    total = int(n_win.sum())
    if total == 0:
        return np.zeros((0, length + 1), dtype=np.int64)
    owner = np.repeat(np.arange(len(histories)), n_win)
    k = np.arange(total) - np.repeat(np.cumsum(n_win) - n_win, n_win)  # 0 = latest window
    end = histories.indptr[owner + 1] - k * length  # exclusive end of each window's events
    start = np.maximum(end - (length + 1), histories.indptr[owner])
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
    times = histories.times
    owner = np.repeat(np.arange(len(histories)), histories.lengths)
    new_run = np.ones(len(times), dtype=bool)
    new_run[1:] = (times[1:] != times[:-1]) | (owner[1:] != owner[:-1])
    run = np.cumsum(new_run)
    order = np.lexsort((rng.random(len(times)), run))
    return Histories(
        histories.indptr,
        histories.items[order],
        histories.values[order],
        times[order],
        histories.n_items,
        histories.users,
    )
