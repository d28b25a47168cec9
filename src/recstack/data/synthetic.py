"""Synthetic shop logs with planted structure that models should recover.

:func:`make_shop` plants four things, all stored in the returned feature tables so tests
can check that a model learned them:

- taste clusters: each user mostly buys from one category
  (``user_features["cluster"]`` == ``item_features["category"]``);
- Zipf popularity inside each category (``popularity_skew``);
- sequential habits: the next item is often the previous item's fixed successor
  (``item_features["successor"]``, an item of the same category);
- late launches: some items exist only in the last part of the time range
  (``item_features["launched"]``), so temporal and cold-item splits make them cold.

Generation is vectorized over users and events; only the successor chain loops, over
positions in the sequences (not over users or events).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recstack.data.idmap import IdMap
from recstack.data.interactions import Interactions
from recstack.errors import ConfigError

#: 2020-01-01T00:00:00Z; events span one year from there
START = 1_577_836_800
SPAN = 365 * 86_400
#: late items launch at this fraction of the time range
LAUNCH_AT = 0.8

#: category name -> title words (comma separated); a text encoder can tell categories apart
_CATEGORIES: dict[str, str] = {
    "books": "novel, paperback, hardcover, mystery, poetry, biography, atlas, comic",
    "electronics": "laptop, headphones, charger, monitor, keyboard, speaker, camera, tablet",
    "kitchen": "skillet, knife, blender, kettle, saucepan, spatula, toaster, cutlery",
    "garden": "hose, shovel, planter, seeds, fertilizer, rake, pruner, lawnmower",
    "sports": "football, racket, dumbbell, yoga mat, sneakers, bicycle, helmet, treadmill",
    "toys": "puzzle, doll, building blocks, plush bear, robot, board game, kite, yo-yo",
    "beauty": "lipstick, shampoo, perfume, moisturizer, mascara, serum, lotion, nail polish",
    "music": "guitar, vinyl record, piano, drum kit, violin, ukulele, amplifier, microphone",
    "pets": "dog leash, catnip, aquarium, kibble, collar, birdcage, cat litter, chew toy",
    "office": "stapler, notebook, fountain pen, binder, desk lamp, printer, envelopes, calculator",
    "fashion": "jacket, dress, jeans, scarf, handbag, boots, sweater, sunglasses",
    "grocery": "coffee, green tea, chocolate, pasta, cereal, olive oil, honey, spices",
    "automotive": "car wax, motor oil, tire gauge, wipers, jump starter, seat cover, dash cam",
    "health": "vitamins, thermometer, bandages, first aid kit, protein powder, massager, scale",
    "travel": "suitcase, backpack, neck pillow, luggage tag, packing cubes, duffel bag, adapter",
    "baby": "diapers, stroller, pacifier, baby bottle, crib sheet, bib, rattle, baby monitor",
}
_ADJECTIVES = np.array(
    ["classic", "premium", "compact", "deluxe", "essential", "vintage", "modern", "portable",
     "eco", "pro", "mini", "ultra"],
    dtype=object,
)  # fmt: skip


def make_shop(
    n_users: int = 1000,
    n_items: int = 500,
    n_events: int | None = None,
    n_clusters: int = 8,
    popularity_skew: float = 1.0,
    seq_strength: float = 0.5,
    cold_item_fraction: float = 0.0,
    with_text: bool = True,
    seed: int = 0,
    *,
    cluster_strength: float = 0.8,
) -> Interactions:
    """A synthetic shop log with planted taste clusters, popularity, sequences and launches.

    Each user belongs to a taste cluster; items belong to clusters (categories, balanced
    sizes). A user's event is, with probability ``seq_strength``, the fixed successor of
    their previous item (an item of the same category), otherwise a fresh draw: from the
    user's cluster with probability ``cluster_strength`` (else from a uniformly random
    cluster), by Zipf popularity ``(rank + 1) ** -popularity_skew`` inside the cluster.
    Ratings 1-5 are ~4 for items of the user's cluster and ~2.5 for others (rounded
    Gaussians). Timestamps (integer unix seconds within 2020) increase along each user's
    sequence over a random activity window.

    With ``cold_item_fraction > 0`` that fraction of the items (never a category's most
    popular item) launches late, at ``START + LAUNCH_AT * SPAN``: all their events come
    after it, and no earlier event follows a successor link to them.

    Parameters
    ----------
    n_users, n_items : int
        Users ``"u0" .. f"u{n_users - 1}"`` and items ``"i0" ..`` (all in the maps, even
        an item nobody bought).
    n_events : int or None
        Total events (default ``20 * n_users``). User activity is log-normal; every user
        has at least ``min(5, n_events // n_users)`` events.
    n_clusters : int
        Taste clusters = categories, ``1 <= n_clusters <= n_items``.
    popularity_skew : float >= 0
        Zipf exponent of popularity inside a category (0: uniform).
    seq_strength : float in [0, 1]
        Probability that an event follows the successor link of the previous one.
    cold_item_fraction : float in [0, 1)
        Fraction of items launched late.
    with_text : bool
        Add a ``title`` column built from per-category vocabularies.
    seed : int >= 0
        Same seed, same log.
    cluster_strength : float in [0, 1]
        Probability that a fresh draw comes from the user's own cluster.

    Returns
    -------
    Interactions
        ``item_features`` columns: ``title`` (str, if ``with_text``), ``category`` (str),
        ``price`` (float), ``successor`` (external item ID), ``launched`` (unix seconds).
        ``user_features`` column: ``cluster`` (the category name of the user's taste).

    Examples
    --------
    >>> data = make_shop(n_users=50, n_items=20, seed=0)
    >>> data.n_events, data.n_users, data.n_items
    (1000, 50, 20)
    >>> data.item_features.columns.tolist()
    ['title', 'category', 'price', 'successor', 'launched']
    """
    n_events = 20 * n_users if n_events is None else n_events
    _check_int("n_users", n_users, 1)
    _check_int("n_items", n_items, 1)
    _check_int("n_events", n_events, n_users)
    _check_int("n_clusters", n_clusters, 1)
    if n_clusters > n_items:
        raise ConfigError(f"n_clusters must be at most n_items={n_items}, got {n_clusters!r}")
    _check_int("seed", seed, 0)
    _check_real("popularity_skew", popularity_skew, 0.0, np.inf, "a finite number >= 0")
    _check_real("seq_strength", seq_strength, 0.0, 1.0, "a number in [0, 1]")
    _check_real("cluster_strength", cluster_strength, 0.0, 1.0, "a number in [0, 1]")
    _check_real("cold_item_fraction", cold_item_fraction, 0.0, 1.0, "a number in [0, 1)", True)
    if not isinstance(with_text, bool | np.bool_):
        raise ConfigError(f"with_text must be True or False, got {with_text!r}")
    rng = np.random.default_rng(seed)

    # ---- items: cluster, popularity rank inside it, successor, launch time
    item_cluster = rng.permutation(np.arange(n_items) % n_clusters)
    by_cluster = np.lexsort((rng.random(n_items), item_cluster))  # random order inside a cluster
    seg = np.zeros(n_clusters + 1, dtype=np.int64)
    np.cumsum(np.bincount(item_cluster, minlength=n_clusters), out=seg[1:])
    rank = np.empty(n_items, dtype=np.int64)
    rank[by_cluster] = np.arange(n_items) - seg[item_cluster[by_cluster]]
    size = np.diff(seg)[item_cluster]
    jump = 1 + np.floor(rng.random(n_items) * (size - 1)).astype(np.int64)
    successor = by_cluster[seg[item_cluster] + (rank + jump) % size]
    launch_time = START + int(LAUNCH_AT * SPAN)
    launched = np.full(n_items, START, dtype=np.int64)
    candidates = np.flatnonzero(rank > 0)  # a category's top item is never late
    n_late = min(len(candidates), int(np.floor(cold_item_fraction * n_items + 0.5)))
    launched[rng.choice(candidates, n_late, replace=False)] = launch_time
    weight = (rank + 1.0) ** -float(popularity_skew)
    cum_all = _cluster_cdf(weight[by_cluster], seg)
    cum_early = _cluster_cdf(np.where(launched == START, weight, 0.0)[by_cluster], seg)

    # ---- users: cluster, number of events, activity window
    user_cluster = rng.integers(0, n_clusters, n_users)
    min_len = min(5, n_events // n_users)
    activity = rng.lognormal(0.0, 0.6, n_users)
    lengths = min_len + rng.multinomial(n_events - min_len * n_users, activity / activity.sum())
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    user = np.repeat(np.arange(n_users, dtype=np.int32), lengths)
    begin = rng.uniform(0.0, 0.6, n_users)
    end = begin + (1.0 - begin) * rng.uniform(0.4, 1.0, n_users)

    # ---- times: sorted uniforms inside each window, from cumulated exponential gaps
    gaps = np.cumsum(rng.standard_exponential(n_events))
    before = np.concatenate([[0.0], gaps])[indptr[:-1]]
    total = np.concatenate([[0.0], gaps])[indptr[1:]] - before + rng.standard_exponential(n_users)
    frac = (gaps - before[user]) / total[user]
    time = np.floor(START + SPAN * (begin[user] + (end - begin)[user] * frac)).astype(np.int64)

    # ---- fresh draws (respecting launches), then the successor chain along positions
    own = rng.random(n_events) < cluster_strength
    cluster = np.where(own, user_cluster[user], rng.integers(0, n_clusters, n_events))
    u = rng.random(n_events)
    pos = _draw(cum_early, seg, cluster, u)
    if n_late:
        late = np.flatnonzero(time >= launch_time)
        pos[late] = _draw(cum_all, seg, cluster[late], u[late])
    item = by_cluster[pos].astype(np.int32)
    follow = rng.random(n_events) < seq_strength
    _chain(item, follow, successor, launched, time, indptr)
    match = item_cluster[item] == user_cluster[user]
    noise = rng.normal(0.0, 0.9, n_events)
    value = np.clip(np.rint(np.where(match, 4.0, 2.5) + noise), 1, 5)

    # ---- ID maps and feature tables
    users = IdMap(_ids("u", n_users), "user")
    items = IdMap(_ids("i", n_items), "item")
    names, words, word_start = _vocabulary(n_clusters)
    base_price = np.exp(rng.uniform(2.0, 5.0, n_clusters))
    price = np.round(base_price[item_cluster] * rng.lognormal(0.0, 0.3, n_items), 2)
    columns: dict[str, np.ndarray] = {}
    if with_text:
        adjective = _ADJECTIVES[rng.integers(0, len(_ADJECTIVES), n_items)]
        n_words = np.diff(word_start)[item_cluster]
        w1, w2 = word_start[item_cluster] + (rng.random((2, n_items)) * n_words).astype(np.int64)
        columns["title"] = adjective + " " + words[w1] + " " + words[w2]
    columns |= {
        "category": names[item_cluster],
        "price": price,
        "successor": items.ids[successor],
        "launched": launched,
    }
    item_features = pd.DataFrame(columns, index=pd.Index(items.ids, name="item_id"))
    user_features = pd.DataFrame(
        {"cluster": names[user_cluster]}, index=pd.Index(users.ids, name="user_id")
    )
    return Interactions(
        users,
        items,
        user,
        item,
        value,
        time,
        item_features=item_features,
        user_features=user_features,
        presorted=True,
    )


def _cluster_cdf(weight: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """For items sorted by cluster with ``weight``, cluster ``c``'s cumulative distribution
    shifted into ``(c, c + 1]``: drawing ``c + u`` picks an item of ``c``. (n_items,)."""
    cs = np.cumsum(weight)
    start = np.concatenate([[0.0], cs])[seg[:-1]]
    total = np.concatenate([[0.0], cs])[seg[1:]] - start
    cluster = np.repeat(np.arange(len(seg) - 1), np.diff(seg))
    cum = cluster + (cs - start[cluster]) / total[cluster]
    cum[seg[1:] - 1] = np.arange(1, len(seg))  # exact segment ends: no draw leaks out
    return cum


def _draw(cum: np.ndarray, seg: np.ndarray, cluster: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Positions (in cluster order) drawn from ``cluster``'s distribution with uniforms ``u``."""
    pos = np.searchsorted(cum, cluster + u, side="right")
    return np.minimum(pos, seg[cluster + 1] - 1)  # c + u can round up to c + 1


def _chain(
    item: np.ndarray,
    follow: np.ndarray,
    successor: np.ndarray,
    launched: np.ndarray,
    time: np.ndarray,
    indptr: np.ndarray,
) -> None:
    """Replace ``item[e]`` by the successor of ``item[e - 1]`` where ``follow[e]`` and the
    successor is launched by then, in place, one sequence position at a time (all users at
    once: users sorted by length, so the ones still active are a prefix)."""
    lengths = np.diff(indptr)
    by_length = np.argsort(-lengths, kind="stable")
    neg_len = -lengths[by_length]
    starts = indptr[:-1][by_length]
    for s in range(1, int(lengths.max())):
        idx = starts[: np.searchsorted(neg_len, -s, side="left")] + s
        idx = idx[follow[idx]]
        nxt = successor[item[idx - 1]]
        ok = launched[nxt] <= time[idx]
        item[idx[ok]] = nxt[ok]


def _ids(prefix: str, n: int) -> np.ndarray:
    """``prefix0 .. prefix{n-1}`` as an object array (one string per ID, none per event)."""
    return np.array([f"{prefix}{i}" for i in range(n)], dtype=object)


def _vocabulary(n_clusters: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Category names (n_clusters,), all title words (object arrays) and where each
    category's words start in them (n_clusters + 1,); clusters past the built-in list get
    made-up names and words."""
    builtin = list(_CATEGORIES.items())
    names, words = [], []
    for c in range(n_clusters):
        name, vocab = builtin[c] if c < len(builtin) else (f"category{c}", "")
        names.append(name)
        words.append(vocab.split(", ") if vocab else [f"{name}-item{j}" for j in range(8)])
    start = np.zeros(n_clusters + 1, dtype=np.int64)
    np.cumsum([len(w) for w in words], out=start[1:])
    flat = np.array([w for ws in words for w in ws], dtype=object)
    return np.array(names, dtype=object), flat, start


def _check_int(name: str, value: object, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lo:
        raise ConfigError(f"{name} must be an integer >= {lo}, got {value!r}")


def _check_real(
    name: str, value: object, lo: float, hi: float, expected: str, open_hi: bool = False
) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.integer | np.floating)
        or not np.isfinite(value)
        or not lo <= value <= hi
        or (open_hi and value == hi)
    ):
        raise ConfigError(f"{name} must be {expected}, got {value!r}")
