"""SASRec and the sequential framework: windows, the planted next-item rule, causality,
reproducibility, save/load, sampled softmax, bad parameters, the conformance suite."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conformance import RecommenderConformance, cycle_data
from recstack.data import Histories, Interactions
from recstack.errors import ConfigError, DataError
from recstack.models import Recommender

torch = pytest.importorskip("torch")

from recstack.models.neural.sasrec import SASRec  # noqa: E402
from recstack.models.neural.sequences import (  # noqa: E402
    GAP_EDGES,
    gap_buckets,
    gap_tokens,
    items_before_windows,
    last_items,
    shuffle_ties,
    tie_orders,
    training_windows,
)
from recstack.models.neural.training import (  # noqa: E402
    catalog_loss,
    earlier_items,
    trim_padding,
)

FAST = {"dim": 16, "heads": 2, "layers": 1, "epochs": 3, "verbose": False, "device": "cpu"}


class TestSASRec(RecommenderConformance):
    def make_model(self) -> Recommender:
        return SASRec(max_len=10, **FAST)


# ---------------------------------------------------------------------------- windows
def test_last_items_right_aligns_and_shifts() -> None:
    h = Histories.from_lists([[3, 1, 4, 1, 5], [], [2]], 6)
    np.testing.assert_array_equal(
        last_items(h, 3), [[5, 2, 6], [0, 0, 0], [0, 0, 3]]
    )  # items + 1, latest last
    np.testing.assert_array_equal(last_items(h, 6)[0], [0, 4, 2, 5, 2, 6])


def test_training_windows_cover_every_target_once() -> None:
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 50, size=n) for n in (1, 2, 7, 10, 11, 23)]
    h = Histories.from_lists(seqs, 50)
    length = 5
    w = training_windows(h, length)
    assert w.shape[1] == length + 1
    # brute force: each window's (input, target) pairs, collected per sequence
    got = sorted((int(a), int(b)) for row in w for a, b in itertools.pairwise(row) if a > 0)
    want = sorted((int(a) + 1, int(b) + 1) for s in seqs for a, b in itertools.pairwise(s))
    assert got == want
    # windows are contiguous slices of a history: no padding after a real item
    real = w > 0
    assert not np.any(real[:, :-1] & ~real[:, 1:])
    assert training_windows(Histories.from_lists([[1], []], 5), 4).shape == (0, 5)


def test_items_before_windows_are_the_history_before_each_window() -> None:
    rng = np.random.default_rng(1)
    seqs = [rng.integers(0, 30, size=n) for n in (1, 2, 7, 12, 23)]
    h = Histories.from_lists(seqs, 30)
    windows = training_windows(h, 5)
    before = items_before_windows(h, 5)
    assert before.shape == (len(windows), 30)
    # brute force: find each window in its history (windows run latest first per history)
    row = 0
    for s in (s for s in seqs if len(s) >= 2):
        ends = range(len(s), 1, -5)  # a window ends at the last event, then every 5 earlier
        for end in ends:
            first = max(end - 6, 0)
            got = windows[row][windows[row] > 0] - 1
            np.testing.assert_array_equal(got, s[first:end])
            np.testing.assert_array_equal(
                before[row].toarray()[0], np.isin(np.arange(30), s[:first])
            )
            row += 1
    assert row == len(windows)


def test_shuffle_ties_reorders_only_events_of_equal_time() -> None:
    h = Histories.from_lists([[0, 1, 2, 3, 4], [5, 6, 7], [8, 9]], 10)
    times = np.array([1.0, 2, 2, 2, 3, 7, 7, 7, 4, 5])  # the last history has no tie
    h = Histories(h.indptr, h.items, h.values, times, h.n_items, h.users)
    seen = set()
    for seed in range(200):
        out = shuffle_ties(h, np.random.default_rng(seed))
        np.testing.assert_array_equal(out.indptr, h.indptr)
        np.testing.assert_array_equal(out.times, times)  # each event keeps its time
        np.testing.assert_array_equal(out.items[[0, 4, 8, 9]], [0, 4, 8, 9])
        assert sorted(out.items[1:4]) == [1, 2, 3] and sorted(out.items[5:8]) == [5, 6, 7]
        seen.add((tuple(out.items[1:4]), tuple(out.items[5:8])))
    # every order of both runs turns up (36 pairs of orders; 200 draws miss one rarely)
    assert len({a for a, _ in seen}) == 6 and len({b for _, b in seen}) == 6
    # no timestamps: times are positions, there are no ties and nothing moves
    plain = Histories.from_lists([[3, 1, 4, 1, 5]], 6)
    np.testing.assert_array_equal(shuffle_ties(plain, np.random.default_rng(0)).items, plain.items)


def test_tie_orders_reorder_the_events_tied_with_the_latest_one() -> None:
    h = Histories.from_lists([[0, 1, 2, 3, 4], [5, 6, 7], [8, 9]], 10)
    times = np.array([1.0, 1, 2, 2, 2, 7, 7, 7, 4, 5])  # the last history has no tie
    h = Histories(h.indptr, h.items, h.values, times, h.n_items, h.users)
    orders = tie_orders(h, 12)
    assert len(orders) == 12 and orders[0] is h  # the log's order first
    for out in orders:
        np.testing.assert_array_equal(out.times, times)
        # an earlier run and the history without ties stay as logged
        np.testing.assert_array_equal(out.items[[0, 1, 8, 9]], [0, 1, 8, 9])
        assert sorted(out.items[2:5]) == [2, 3, 4] and sorted(out.items[5:8]) == [5, 6, 7]
    assert len({tuple(o.items[2:5]) for o in orders}) >= 4  # of 6 orders, 12 draws
    # a history's orders do not depend on the others beside it, nor on how many are asked
    alone = tie_orders(h.select(np.array([1])), 5)
    for a, b in zip(alone, orders[:5], strict=True):
        np.testing.assert_array_equal(a.items, b.items[5:8])
    assert tie_orders(h, 1) == [h]


def test_gap_buckets_and_tokens() -> None:
    day = 86400.0
    times = np.array([5.0, 5, 65, 70, 2 * day, 30 * day, 0, 3600])
    h = Histories.from_lists([[0, 1, 2, 3, 4, 5], [6, 7], []], 8, times=[times[:6], times[6:], []])
    # first event; same second; 60 s (up to a minute); 5 s; ~2 days; 4 weeks | first; an hour
    assert gap_buckets(h).tolist() == [1, 2, 3, 3, 7, 8, 1, 5]
    assert gap_buckets(h).max() == len(GAP_EDGES) + 2  # the last bucket: longer than a week
    tokens = gap_tokens(h)
    np.testing.assert_array_equal(tokens.items % 10, h.items)  # n_items + 2 = 10
    np.testing.assert_array_equal(tokens.items // 10, gap_buckets(h))
    window = last_items(tokens, 4)[0]  # shifted items keep their bucket
    np.testing.assert_array_equal(window % 10, [3, 4, 5, 6])
    np.testing.assert_array_equal(window // 10, [3, 3, 7, 8])


def test_time_gaps_let_sasrec_read_how_long_ago_the_last_event_was() -> None:
    """Planted: the next item is the last one + 1 when the last event came within the same
    second as the one before it, + 7 when it came two weeks later. Only the gaps tell the
    two apart: with ``time_gaps`` SASRec predicts both; without, at most one of each pair."""
    rng = np.random.default_rng(0)
    n_items, week = 20, 7 * 86400.0
    rows = []
    for u in range(400):
        item, t, burst = int(rng.integers(n_items)), 0.0, bool(rng.integers(2))
        for _ in range(10):
            rows.append((f"u{u}", f"i{item:02d}", t))
            item = (item + (1 if burst else 7)) % n_items
            burst = bool(rng.integers(2))
            t += 0.0 if burst else 2 * week
    data = Interactions.from_frame(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))

    def hit_rate(time_gaps: bool) -> float:
        model = SASRec(dim=16, heads=1, layers=1, max_len=8, epochs=30, batch_size=16,
                       dropout=0.1, verbose=False, exclude_seen=False,
                       time_gaps=time_gaps).fit(data)  # fmt: skip
        hits = []
        for gap, step in ((0.0, 1), (2 * week, 7)):
            starts = np.arange(n_items)
            lists = [[f"i{a:02d}", f"i{(a + 1) % n_items:02d}"] for a in starts]
            recs = model.recommend(histories=lists, times=[[0.0, gap]] * n_items, k=1)
            want = [f"i{(a + 1 + step) % n_items:02d}" for a in starts]
            hits.append(np.mean(recs.item_ids[:, 0] == np.array(want)))
        return float(np.mean(hits))

    assert hit_rate(True) >= 0.9  # 1.0
    assert hit_rate(False) <= 0.6  # one rule per last item: half the cases at best (0.5)


def paired_sessions(n_users: int = 300) -> tuple[Interactions, dict[str, str]]:
    """Sessions of two partner items logged in the same second, always in the order
    (lower, higher); each user's next session is a random pair. Returns the data and each
    higher item's partner."""
    rng = np.random.default_rng(0)
    pairs = [(f"i{2 * k:02d}", f"i{2 * k + 1:02d}") for k in range(10)]
    rows = []
    for u in range(n_users):
        for t, k in enumerate(rng.integers(0, len(pairs), size=6)):
            rows += [(f"u{u}", pairs[k][0], t), (f"u{u}", pairs[k][1], t)]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return Interactions.from_frame(df), {b: a for a, b in pairs}


def test_shuffled_ties_teach_that_the_log_order_within_a_second_is_arbitrary() -> None:
    """Partners are logged in the same second, always lower first. Trained on the log's
    order, a model has never seen the lower one follow the higher; with ``shuffle_ties``
    each epoch sees both orders, so a session that starts with the higher item gets its
    partner next. (``exclude_seen=False``: left out of the softmax after the lower item,
    the partner would get no training signal either way.)"""
    data, partner = paired_sessions()
    highs = sorted(partner)

    def partner_hit_rate(shuffle: bool) -> float:
        model = SASRec(dim=16, heads=1, layers=1, max_len=12, epochs=15, verbose=False,
                       exclude_seen=False, shuffle_ties=shuffle).fit(data)  # fmt: skip
        top = model.recommend(histories=[[b] for b in highs], k=1).item_ids[:, 0]
        return float(np.mean(top == np.array([partner[b] for b in highs])))

    assert partner_hit_rate(True) >= 0.9  # 1.0 for seeds 0-2
    # a state the log never shows: the partner wins 3-6 times in 10 for seeds 0-2
    assert partner_hit_rate(False) <= 0.6


# ---------------------------------------------------------------------------- learning
def successor_hit_rate(model: SASRec, succ: dict[str, str], exclude_seen: bool = False) -> float:
    """HR@1 of the successor for 100 new histories: chains of 2 to 8 items along ``succ``
    (the history's items ranked too unless ``exclude_seen``)."""
    rng = np.random.default_rng(1)
    items = sorted(succ)
    chains = []
    for _ in range(100):
        chain = [items[int(rng.integers(len(items)))]]
        for _ in range(int(rng.integers(1, 8))):
            chain.append(succ[chain[-1]])
        chains.append(chain)
    top = model.recommend(histories=chains, k=1, exclude_seen=exclude_seen).item_ids[:, 0]
    return float(np.mean(top == np.array([succ[c[-1]] for c in chains])))


def test_sasrec_learns_a_planted_next_item_rule() -> None:
    data, succ = cycle_data()
    model = SASRec(
        dim=32, heads=2, layers=1, max_len=20, epochs=40, exclude_seen=False, verbose=False
    )
    model.fit(data)
    assert successor_hit_rate(model, succ) >= 0.95


def test_training_without_seen_items_learns_the_rule_among_unseen_ones() -> None:
    """With ``exclude_seen`` (the default) a position's earlier items leave its softmax:
    the rule is learned among the items a history has not seen, which is what scoring
    ranks by default; seen items get no training signal, so ``recommend(...,
    exclude_seen=False)`` needs a model trained with ``exclude_seen=False`` (above)."""
    data, succ = cycle_data()
    model = SASRec(dim=32, heads=2, layers=1, max_len=20, epochs=40, verbose=False).fit(data)
    assert successor_hit_rate(model, succ, exclude_seen=True) >= 0.95
    assert successor_hit_rate(model, succ) < 0.8  # seen items, never pushed down, crowd in


def test_earlier_items_are_what_each_position_has_seen() -> None:
    inputs = torch.tensor([[0, 0, 3, 1, 4], [2, 5, 6, 7, 1]])
    targets = torch.tensor([[0, 3, 1, 4, 9], [5, 6, 7, 1, 3]])
    got = earlier_items(inputs, targets)
    assert got.shape == (2, 5, 5)
    for b, t in itertools.product(range(2), range(5)):
        own = int(targets[b, t]) - 1
        seen = {int(i) - 1 for i in inputs[b, : t + 1] if i > 0}
        assert set(got[b, t].tolist()) - {own} == seen - {own}


def test_excluded_items_leave_the_softmax_but_the_target_stays() -> None:
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(6, 4, dtype=torch.float64)
    targets = torch.tensor([1, 4, 0])
    exclude = torch.tensor([[2, 3, 1], [4, 4, 4], [0, 5, 5]])  # rows 0, 2 list their target
    excluded = torch.zeros(3, 6, dtype=torch.bool)  # the history before the window
    excluded[0, 5] = excluded[1, [0, 4]] = excluded[2, 0] = True  # rows 1, 2: their target
    got = catalog_loss(
        hidden, targets, weights, loss="ce", negatives=1, log_q=None, generator=gen,
        exclude=exclude, excluded=excluded,
    )  # fmt: skip
    logits = (hidden @ weights.T).detach().numpy()
    want = 0.0
    for r, t in enumerate(targets.tolist()):
        out = set(exclude[r].tolist()) | set(np.flatnonzero(excluded[r].numpy()).tolist())
        keep = [j for j in range(6) if j == t or j not in out]
        want -= logits[r, t] - np.log(np.exp(logits[r, keep]).sum())
    assert got.item() == pytest.approx(want / 3, rel=1e-12)
    got.backward()  # the left-out logits carry no gradient, and nothing is NaN
    assert hidden.grad is not None and torch.isfinite(hidden.grad).all()


def test_sampled_softmax_learns_the_rule_too() -> None:
    data, succ = cycle_data()
    model = SASRec(
        dim=32, layers=1, max_len=20, epochs=40, loss="sampled", negatives=10, verbose=False
    )
    assert successor_hit_rate(model.fit(data), succ) >= 0.9


def test_causal_model_never_sees_the_future() -> None:
    model = SASRec(max_len=8, **FAST).fit(cycle_data()[0])
    net = model._net.eval()
    x = torch.tensor([[0, 0, 3, 5, 7, 9, 11, 13]])
    y = x.clone()
    y[0, 5:] = torch.tensor([2, 4, 6])
    with torch.no_grad():
        a, b = net(x), net(y)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_scores_do_not_depend_on_the_batch_padding() -> None:
    # a batch is cut to its longest history: a short history scored beside a long one
    # (little padding cut) must score as when scored alone (all its padding cut)
    model = SASRec(max_len=12, **FAST).fit(cycle_data()[0])
    h = Histories.from_lists([[1, 2], [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]], 30)
    together = model.score(h)
    alone = np.vstack([model.score(h.select(np.array([i]))) for i in range(2)])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-5)


def test_tie_orders_average_the_scores_of_each_order() -> None:
    """Scores with ``tie_orders=k`` are the mean of the scores of the k reordered histories
    (linear in the averaged hidden states); a history without ties scores as before, and a
    history scores the same alone as in a batch."""
    data, _ = paired_sessions(60)
    # 2 layers: the reordered tails read the log order's prefix in each block
    model = SASRec(max_len=8, tie_orders=1, **{**FAST, "layers": 2}).fit(data)
    h = data.histories(np.arange(6))
    plain = Histories.from_lists([[1, 2, 3]], data.n_items)  # times are positions: no tie
    single = model.score(h)
    want = np.mean([model.score(o) for o in tie_orders(h, 4)], axis=0)
    model.tie_orders = 4
    got = model.score(h)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    items = [[1, 2, 3, 4], [5, 6, 7], [2, 4, 6, 8, 9]]
    times = [[0, 9, 9, 9], [0, 1, 2], [0, 1, 5, 5, 6]]  # only the first ends with a tie
    mixed = Histories.from_lists(items, data.n_items, times=times)
    model.tie_orders = 1
    want = np.mean([model.score(o) for o in tie_orders(mixed, 4)], axis=0)
    model.tie_orders = 4
    np.testing.assert_allclose(model.score(mixed), want, rtol=1e-5, atol=1e-5)
    assert not np.allclose(got, single, atol=1e-4)  # every history here has ties
    alone = np.vstack([model.score(h.select(np.array([i]))) for i in range(len(h))])
    np.testing.assert_allclose(alone, got, rtol=1e-5, atol=1e-5)
    with_ties = model.score(plain)
    model.tie_orders = 1
    np.testing.assert_array_equal(with_ties, model.score(plain))


def test_trim_padding_cuts_only_shared_leading_padding() -> None:
    x = torch.tensor([[0, 0, 0, 4, 5], [0, 0, 2, 3, 1]])
    t = torch.tensor([[0, 0, 0, 6, 7], [0, 0, 8, 9, 4]])
    a, b = trim_padding(x, t)
    np.testing.assert_array_equal(a.numpy(), [[0, 4, 5], [2, 3, 1]])
    np.testing.assert_array_equal(b.numpy(), [[0, 6, 7], [8, 9, 4]])
    (empty,) = trim_padding(torch.zeros((2, 4), dtype=torch.long))
    assert empty.shape == (2, 1)  # an all-padding batch keeps one column to score


def test_early_stopping_keeps_the_best_epoch() -> None:
    data = cycle_data(n_users=200)[0]
    hist = data.histories()
    last = hist.indptr[1:] - 1
    is_last = np.zeros(data.n_events, dtype=bool)
    is_last[last] = True
    train, valid = data.select(~is_last), data.select(is_last)
    model = SASRec(dim=16, layers=1, max_len=10, epochs=30, patience=3, verbose=False)
    model.fit(train, valid)
    assert 1 <= model.best_epoch_ <= model.epochs_run_ <= 30
    assert model.best_valid_ndcg_ is not None and model.best_valid_ndcg_ > 0.5
    assert model.epochs_run_ - model.best_epoch_ <= 3


def test_fit_is_reproducible_with_a_seed() -> None:
    data = cycle_data(n_users=80)[0]
    h = data.histories(np.arange(10))
    a = SASRec(max_len=10, seed=3, **FAST).fit(data).score(h)
    b = SASRec(max_len=10, seed=3, **FAST).fit(data).score(h)
    c = SASRec(max_len=10, seed=4, **FAST).fit(data).score(h)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_save_load_gives_identical_scores(tmp_path: Path) -> None:
    data = cycle_data(n_users=80)[0]
    model = SASRec(max_len=10, **FAST).fit(data)
    model.save(tmp_path / "m")
    assert (tmp_path / "m" / "weights.safetensors").is_file()
    loaded = Recommender.load(tmp_path / "m")
    h = data.histories(np.arange(20))
    np.testing.assert_array_equal(model.score(h), loaded.score(h))
    (tmp_path / "m" / "weights.safetensors").unlink()
    with pytest.raises(DataError, match=r"weights\.safetensors"):
        Recommender.load(tmp_path / "m")


def test_attention_weights_view() -> None:
    model = SASRec(max_len=6, **FAST).fit(cycle_data(n_users=60)[0])
    weights = model.attention(Histories.from_lists([[1, 2, 3]], model.n_items))
    assert len(weights) == 1 and weights[0].shape == (1, 2, 6, 6)
    w = weights[0][0]
    np.testing.assert_allclose(w[:, -3:, -3:].sum(-1), 1.0, rtol=1e-5)  # real queries
    assert np.all(np.triu(w[0, -3:, -3:], 1) == 0)  # causal: no weight on later items


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("dim", 0),
        ("layers", 0),
        ("heads", 3),  # 64 is not a multiple of 3
        ("dropout", 1.0),
        ("learning_rate", 0.0),
        ("loss", "bpr"),
        ("epochs", 2.5),
        ("device", "tpu"),
        ("verbose", "yes"),
        ("exclude_seen", 1),
        ("shuffle_ties", "no"),
        ("tie_orders", 0),
        ("time_gaps", "yes"),
    ],
)
def test_bad_parameters_name_themselves(param: str, value: object) -> None:
    with pytest.raises(ConfigError, match=param):
        SASRec(**{param: value}).fit(cycle_data(n_users=20)[0])  # type: ignore[arg-type]


def test_no_sequence_to_learn_from() -> None:
    one_each = Interactions.from_frame(pd.DataFrame({"user_id": [1, 2], "item_id": [1, 2]}))
    with pytest.raises(DataError, match="2 events"):
        SASRec(**FAST).fit(one_each)
