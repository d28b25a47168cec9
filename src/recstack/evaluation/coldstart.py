"""Cold-start evaluation: new items (held out entirely) and users with few events.

Cold items
----------
:func:`cold_item_table` splits a log with :func:`recstack.data.cold_items` (a random
``fraction`` of the items with events is held out: every event of theirs is test, none is
in train, and the items stay in the catalog with their features), fits each model on the
train part and ranks the *whole* catalog for every user with a cold test event, from their
train history (excluded). HR@K and NDCG@K then measure how well new items are ranked
against everything else (``hr@K``), and, with the candidates restricted to the cold items,
how well the model orders new items among themselves (``hr@K among cold``). A model that learns
only from interactions (EASE, popularity) cannot place a cold item: ``cold_share@K``, the
share of list slots holding cold items, shows it.

Two baselines come in closed form (expected values, :func:`expected_random_metrics`):
``random``, a uniformly random order of every item not in the history (the floor of the
whole-catalog ranking), and ``random among cold`` (:func:`random_among_cold`), which puts
the cold items first, in uniformly random order: it knows which items are new but nothing
about them. It is the floor of ``hr@K among cold``, and a high bar for ``hr@K`` (no model that
ranks warm items too is told which items are new). Beating it among the cold items means
the model ranks new items by what they are.

Cold users
----------
:func:`cold_user_table` measures quality as a function of how many events a user has: a
model fitted as usual (on the split's train part) scores each test user from the *last*
``n`` events of their history only (the events right before the held-out one, as a new
user's first events right before their next one), for ``n`` in 1, 3, 5. The same users are
evaluated at every ``n``: those with at least ``max(ns)`` history events. Only the last
``n`` events are excluded from the ranking. The model did see these users' full histories
in training (item-item and sequence models barely depend on that; per-user factor models
fold in the short history); for users never seen in training, use
:func:`recstack.data.cold_users` and :func:`evaluate`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.special import gammaln

from recstack.data import Histories, Interactions
from recstack.data.splits import Split, cold_items
from recstack.errors import ConfigError, DataError
from recstack.evaluation.evaluator import _check_ks, _relevant, evaluate
from recstack.models.base import Recommender
from recstack.models.baselines import Random

#: the row label of the random-among-cold baseline in :func:`cold_item_table`
RANDOM_AMONG_COLD = "random among cold"


def _log_comb(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``log C(n, k)`` elementwise (``-inf`` where ``k > n``)."""
    n, k = np.asarray(n, np.float64), np.asarray(k, np.float64)
    with np.errstate(invalid="ignore"):
        out = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)
    return np.where(k <= n, out, -np.inf)


def expected_random_metrics(
    n_candidates: np.ndarray, n_hit: np.ndarray, n_relevant: np.ndarray, k: int
) -> dict[str, np.ndarray]:
    """Expected HR@k and NDCG@k of a uniformly random order of ``n_candidates`` items of
    which ``n_hit`` are relevant, per user (arrays of one value per user).

    ``HR = 1 - C(N - R, k') / C(N, k')`` with ``k' = min(k, N)``; by linearity each rank
    ``r <= k'`` holds a relevant item with probability ``R / N``, so
    ``E[DCG] = R / N * sum_r 1 / log2(r + 1)``, divided by the ideal DCG of
    ``min(n_relevant, k)`` items (trec_eval's NDCG, where ``n_relevant >= n_hit`` counts
    relevant items that are not candidates too).
    """
    n = np.asarray(n_candidates, np.int64)
    r = np.asarray(n_hit, np.int64)
    discount = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))])
    ok = n > 0
    kk = np.minimum(n, k)  # a list of all the candidates when there are fewer than k
    miss = np.exp(_log_comb(n - r, kk) - _log_comb(n, kk))
    hr = np.where(ok & (r > 0), 1.0 - miss, 0.0)
    dcg = np.where(ok, r / np.maximum(n, 1), 0.0) * discount[np.minimum(n, k)]
    idcg = discount[np.minimum(np.asarray(n_relevant, np.int64), k)]
    ndcg = np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), np.nan)
    return {f"hr@{k}": hr, f"ndcg@{k}": ndcg}


def cold_item_mask(split: Split) -> np.ndarray:
    """Items with a test event and no event in the scoring history (train + valid),
    (n_items,) bool: the cold items of the test."""
    history = split.test_history()
    seen = np.bincount(history.item, minlength=history.n_items) > 0
    tested = np.bincount(split.test.item, minlength=history.n_items) > 0
    return tested & ~seen


class _Restricted(Recommender):
    """A fitted model's ranking restricted to the ``allowed`` items, for :func:`evaluate`:
    their scores become ranks (0 = worst), the others ``-inf``.

    Equal scores are ordered by a fitted ``tiebreak`` model's scores (a :class:`Random`:
    a different random order for each history), not by item index: an item's index follows
    its first appearance in the log, which leaks popularity, so a model that scores every
    new item the same (0) would look far better than random. ``-inf`` stays ``-inf``.
    """

    def __init__(self, model: Recommender, allowed: np.ndarray, tiebreak: Recommender) -> None:
        self.model, self.tiebreak = model, tiebreak
        self.columns = np.flatnonzero(allowed)
        self.items_ = model.items_

    def _score(self, histories: Histories) -> np.ndarray:
        sub = self.model.score(histories)[:, self.columns]  # (n, C)
        key = self.tiebreak.score(histories)[:, self.columns]
        order = np.lexsort((key, sub), axis=-1)
        ranks = np.empty(sub.shape, dtype=np.float32)
        np.put_along_axis(ranks, order, np.arange(sub.shape[1], dtype=np.float32), axis=-1)
        ranks[sub == -np.inf] = -np.inf
        out = np.full((len(histories), self.n_items), -np.inf, dtype=np.float32)
        out[:, self.columns] = ranks
        return out


def _expected_row(split: Split, ks: tuple[int, ...], only_cold: bool) -> dict[str, float]:
    """Expected HR/NDCG of a uniformly random order of the candidates: every item not in
    the history, or only the cold ones (``only_cold``)."""
    history = split.test_history()
    allowed = cold_item_mask(split) if only_cold else np.ones(history.n_items, dtype=bool)
    relevant = _relevant(split.test, history)
    n_rel = np.diff(relevant.indptr)
    users = np.flatnonzero(n_rel > 0)
    if len(users) == 0:
        raise DataError("no user has a rankable test event")
    weights = allowed.astype(np.float64)
    n_hit = np.rint(relevant[users] @ weights).astype(np.int64)
    seen = history.matrix[users].copy()
    seen.data[:] = 1.0  # the structure: stored ratings may be any value
    n_cand = int(allowed.sum()) - np.rint(seen @ weights).astype(np.int64)
    out: dict[str, float] = {}
    for k in ks:
        for key, v in expected_random_metrics(n_cand, n_hit, n_rel[users], k).items():
            out[key] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
    out["n_users"] = float(len(users))
    return out


def random_among_cold(split: Split, ks: Sequence[int] | int = (10,)) -> dict[str, float]:
    """Expected HR@K and NDCG@K (means over the users :func:`evaluate` scores) of ranking the
    cold items (:func:`cold_item_mask`) first, in uniformly random order, for each K; and
    ``n_users``.

    Per user the candidates are the cold items not in the history and the hits the relevant
    ones among them; relevant items are those :func:`evaluate` counts (test items minus
    history), so the numbers compare with its metrics.
    """
    return _expected_row(split, _check_ks(ks), only_cold=True)


def _clone(model: Recommender) -> Recommender:
    return type(model)(**model.get_params())


def _whole(data: Interactions | Split) -> Interactions:
    """The full log of a split (history + test), or the log itself."""
    if isinstance(data, Split):
        return data.test_history().concat(data.test)
    return data


def cold_item_table(
    models: Mapping[str, Recommender],
    data: Interactions | Split,
    *,
    fraction: float = 0.1,
    seed: int = 0,
    ks: Sequence[int] | int = (10,),
    progress: bool = False,
) -> pd.DataFrame:
    """The cold-item protocol (see the module doc) for several models on one cold split.

    Parameters
    ----------
    models : {name: Recommender}
        Templates: each is copied with its parameters and fitted on the cold split's train
        part (the given objects are left as they are).
    data : Interactions or Split
        The log to split (a Split is first merged back into one log).
    fraction, seed
        Of :func:`recstack.data.cold_items`.
    ks : ints
        Cut-offs.

    Returns
    -------
    DataFrame
        One row per model (index ``model``) after two baselines: ``random`` (a uniformly
        random order of every item not in the history) and :data:`RANDOM_AMONG_COLD`
        (the cold items first, in random order). For each k: ``hr@k``, ``ndcg@k`` (the
        whole catalog ranked), ``cold_share@k`` (share of the top-k slots holding cold
        items; expected value for ``random``) and ``hr@k among cold``, ``ndcg@k among cold`` (the
        ranking restricted to the cold items: how well the model orders new items among
        themselves, equal scores in random order; both baselines are then random among
        cold); and ``n_users``.
        ``attrs`` holds ``n_cold``, ``fraction`` and ``seed``.
    """
    ks = _check_ks(ks)
    split = cold_items(_whole(data), fraction=fraction, seed=seed)
    cold = cold_item_mask(split)
    among = _expected_row(split, ks, only_cold=True)
    uniform = _expected_row(split, ks, only_cold=False)
    n_cold = int(cold.sum())
    rows: dict[str, dict[str, float]] = {}
    for name, full, share in (
        ("random", uniform, n_cold / split.train.n_items),
        (RANDOM_AMONG_COLD, among, 1.0),
    ):
        row = {}
        for k in ks:
            row.update({f"hr@{k}": full[f"hr@{k}"], f"ndcg@{k}": full[f"ndcg@{k}"]})
            row[f"cold_share@{k}"] = share
            row.update(
                {f"hr@{k} among cold": among[f"hr@{k}"], f"ndcg@{k} among cold": among[f"ndcg@{k}"]}
            )
        rows[name] = {**row, "n_users": full["n_users"]}
    tiebreak = Random(seed=seed).fit(split.train)
    for name, template in models.items():
        model = _clone(template).fit(split.train, split.valid)
        result = evaluate(model, split, ks=ks, progress=progress)
        only = evaluate(_Restricted(model, cold, tiebreak), split, ks=ks, progress=progress)
        top = result.recs.index
        row = {}
        for k in ks:
            row[f"hr@{k}"] = result.metrics[f"hr@{k}"]
            row[f"ndcg@{k}"] = result.metrics[f"ndcg@{k}"]
            row[f"cold_share@{k}"] = float(
                np.mean(np.where(top[:, :k] >= 0, cold[top[:, :k]], False))
            )
            row[f"hr@{k} among cold"] = only.metrics[f"hr@{k}"]
            row[f"ndcg@{k} among cold"] = only.metrics[f"ndcg@{k}"]
        rows[name] = {**row, "n_users": float(result.n_users)}
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")
    table["n_users"] = table["n_users"].astype(int)
    table.attrs.update(n_cold=n_cold, fraction=fraction, seed=seed)
    return table


def last_events(data: Interactions, n: int, users: np.ndarray | None = None) -> Interactions:
    """Each user's last ``n`` events (time order), same ID space; with ``users``
    ((n_users,) bool), only those users' events."""
    if not isinstance(n, int | np.integer) or isinstance(n, bool) or n <= 0:
        raise ConfigError(f"n must be a positive integer, got {n!r}")
    from_end = np.repeat(data.indptr[1:], data.user_lengths) - 1 - np.arange(data.n_events)
    keep = from_end < n
    if users is not None:
        keep &= users[data.user]
    return data.select(keep)


def cold_user_table(
    model: Recommender,
    split: Split,
    *,
    ns: Sequence[int] = (1, 3, 5),
    ks: Sequence[int] | int = (10,),
    progress: bool = False,
) -> pd.DataFrame:
    """Quality of a fitted ``model`` for test users scored from only their last ``n``
    history events, for each ``n`` in ``ns`` (see the module doc).

    Returns
    -------
    DataFrame
        One row per ``n`` (index ``events``), columns ``hr@k``, ``ndcg@k`` for each k and
        ``n_users`` (the same users in every row: those with at least ``max(ns)`` events in
        their history).
    """
    ks = _check_ks(ks)
    ns = sorted({int(n) for n in ns})
    if not ns or ns[0] <= 0:
        raise ConfigError(f"ns must be positive integers, got {ns!r}")
    history = split.test_history()
    eligible = history.user_lengths >= ns[-1]
    test = split.test.select(eligible[split.test.user])
    if test.n_events == 0:
        raise DataError(f"cold_user_table: no test user has {ns[-1]} or more history events")
    rows = {}
    for n in ns:
        short = Split(last_events(history, n, eligible), None, test, {"method": f"last-{n}"})
        result = evaluate(model, short, ks=ks, progress=progress)
        rows[n] = {
            **{key: result.metrics[key] for k in ks for key in (f"hr@{k}", f"ndcg@{k}")},
            "n_users": result.n_users,
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("events")


def cold_user_summary(
    models: Mapping[str, Recommender],
    split: Split,
    *,
    ns: Sequence[int] = (1, 3, 5),
    ks: Sequence[int] | int = (10,),
    progress: bool = False,
) -> pd.DataFrame:
    """:func:`cold_user_table` of several fitted models, one row per model (index
    ``model``): columns ``"hr@k n=1"``, ``"ndcg@k n=1"``, ... and ``n_users``."""
    rows: dict[str, dict[str, float]] = {}
    for name, model in models.items():
        t = cold_user_table(model, split, ns=ns, ks=ks, progress=progress)
        metrics = [c for c in t.columns if c != "n_users"]
        values = t[metrics].to_numpy(dtype=np.float64)
        rows[name] = {
            f"{c} n={n}": float(values[i, j])
            for i, n in enumerate(t.index)
            for j, c in enumerate(metrics)
        }
        rows[name]["n_users"] = float(t["n_users"].iloc[0])
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")
    table["n_users"] = table["n_users"].astype(int)
    return table
