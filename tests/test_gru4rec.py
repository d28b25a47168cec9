"""GRU4Rec: left padding never reaches a real position's state (against the RNN run on each
unpadded sequence), scores independent of ``max_len`` padding, the planted next-item rule
(GRU and LSTM), reproducibility, exact save/load, bad parameters, the conformance suite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conformance import RecommenderConformance, cycle_data
from recstack.data import Histories, Interactions
from recstack.errors import ConfigError
from recstack.models import Recommender

torch = pytest.importorskip("torch")

from recstack.models.neural.gru4rec import GRU4Rec, GRU4RecNet  # noqa: E402

FAST = {"dim": 16, "hidden_dim": None, "max_len": 20, "verbose": False, "device": "cpu"}


class TestGRU4Rec(RecommenderConformance):
    def make_model(self) -> Recommender:
        return GRU4Rec(epochs=3, **FAST)


class TestGRU4RecLSTM(RecommenderConformance):
    def make_model(self) -> Recommender:
        return GRU4Rec(**{**FAST, "cell": "lstm", "layers": 2, "hidden_dim": 24, "epochs": 3})


@pytest.fixture(scope="module", params=["gru", "lstm"])
def cycle_model(request: pytest.FixtureRequest) -> tuple[GRU4Rec, Interactions, dict]:
    data, succ = cycle_data()
    params = {**FAST, "learning_rate": 1e-2, "batch_size": 32, "warmup_steps": 10}
    model = GRU4Rec(cell=request.param, epochs=8, dropout=0.0, **params).fit(data)
    return model, data, succ


def random_inputs(n: int, length: int, n_items: int, seed: int = 0) -> torch.Tensor:
    """(n, length) left-padded inputs of 0..length real items, row 0 empty, row 1 full."""
    rng = np.random.default_rng(seed)
    items = rng.integers(1, n_items + 1, size=(n, length))
    real = rng.integers(0, length + 1, size=n)
    real[:2] = [0, length]
    pad = np.arange(length)[None, :] < (length - real)[:, None]
    return torch.from_numpy(np.where(pad, 0, items))


# ---------------------------------------------------------------------------- padding
@pytest.mark.parametrize(
    ("cell", "layers", "hidden"), [("gru", 1, 8), ("gru", 2, 12), ("lstm", 1, 8), ("lstm", 3, 5)]
)
def test_padding_never_reaches_real_positions(cell: str, layers: int, hidden: int) -> None:
    torch.manual_seed(layers)
    net = GRU4RecNet(n_items=25, dim=8, hidden_dim=hidden, layers=layers, cell=cell, dropout=0.3)
    net = net.double().eval()
    inputs = random_inputs(12, 9, 25)
    out = net(inputs).detach()
    assert out.shape == (12, 9, 8)
    with torch.no_grad():
        for r, row in enumerate(inputs):
            real = row[row > 0]
            pads = len(row) - len(real)
            assert torch.all(out[r, :pads] == 0)  # padded positions output nothing
            if len(real):
                # the reference: the RNN over the unpadded sequence alone
                alone, _ = net.rnn(net.item_emb(real)[None])
                torch.testing.assert_close(out[r, pads:], net.proj(alone)[0])


@pytest.mark.parametrize(("cell", "layers"), [("gru", 1), ("gru", 2), ("lstm", 2)])
def test_last_only_reads_packed_sequences_exactly(cell: str, layers: int) -> None:
    """Scoring's packed pass (no step on padding) gives the full pass's latest state."""
    torch.manual_seed(0)
    net = GRU4RecNet(n_items=25, dim=8, hidden_dim=6, layers=layers, cell=cell, dropout=0.3)
    net = net.double().eval()
    inputs = random_inputs(40, 11, 25, seed=layers)
    with torch.no_grad():
        last = net(inputs, last_only=True)
        assert last.shape == (40, 8)
        torch.testing.assert_close(last, net(inputs)[:, -1])
        assert torch.all(last[0] == 0)  # the empty row


def test_traced_scoring_equals_eager(cycle_model) -> None:
    model, data, _ = cycle_model
    hist = data.histories()
    model._traced = None
    eager = model.score(hist)
    try:
        assert model.optimize_inference()
        np.testing.assert_allclose(model.score(hist), eager, rtol=1e-5, atol=1e-5)
        mixed = Histories.from_lists([[], [3], [4, 5, 6]], data.n_items)
        traced = model.score(mixed)
        model._traced = None
        np.testing.assert_allclose(traced, model.score(mixed), rtol=1e-5, atol=1e-5)
    finally:
        model._traced = None


def test_scores_do_not_depend_on_max_len(cycle_model) -> None:
    model, data, _ = cycle_model
    hist = data.histories()  # 5 to 20 events each
    assert hist.lengths.max() <= 20
    try:
        full = model.score(hist)
        model.max_len = 35  # more padding before the same histories
        np.testing.assert_allclose(model.score(hist), full, rtol=1e-5, atol=1e-5)
        # a longer history is read through its last max_len items
        model.max_len = 4
        short = [hist.items[hist.indptr[r + 1] - 4 : hist.indptr[r + 1]] for r in range(20)]
        cut = model.score(hist.select(np.arange(20)))
        model.max_len = 35
        alone = model.score(Histories.from_lists(short, data.n_items))
        np.testing.assert_allclose(cut, alone, rtol=1e-5, atol=1e-5)
    finally:
        model.max_len = FAST["max_len"]


def test_empty_history_scores_zero(cycle_model) -> None:
    model, data, _ = cycle_model
    np.testing.assert_array_equal(model.score(Histories.from_lists([[]], data.n_items)), 0.0)


# ---------------------------------------------------------------------------- learning
def test_learns_the_planted_successor(cycle_model) -> None:
    model, data, succ = cycle_model
    # every user's history: the next item is its last item's successor
    recs = model.recommend(data.users.ids, k=1)
    last = data.items.ids[data.item[data.indptr[1:] - 1]]
    hit = np.mean(recs.item_ids[:, 0] == np.array([succ[i] for i in last]))
    assert hit >= 0.95, hit
    # and a brand-new one-item history
    one = model.recommend(histories=[[i] for i in data.items.ids], k=1)
    assert np.mean(one.item_ids[:, 0] == [succ[i] for i in data.items.ids]) >= 0.95


def test_exclude_seen_trains_the_ranking_of_unseen_items(cycle_model) -> None:
    """Trained with ``exclude_seen`` (the default), a position's earlier items leave its
    softmax: the rule holds among unseen items, but seen items, never pushed down, crowd
    in when scoring keeps them; a model trained with them ranks both."""
    model, data, succ = cycle_model
    last = data.items.ids[data.item[data.indptr[1:] - 1]]
    want = np.array([succ[i] for i in last])

    def hit(m: GRU4Rec, exclude_seen: bool) -> float:
        top = m.recommend(data.users.ids, k=1, exclude_seen=exclude_seen).item_ids[:, 0]
        return float(np.mean(top == want))

    assert model.exclude_seen
    repeats = GRU4Rec(**{**model.get_params(), "exclude_seen": False}).fit(data)
    assert hit(model, True) >= 0.95 and hit(repeats, True) >= 0.95
    assert hit(repeats, False) >= 0.95
    assert hit(model, False) <= hit(repeats, False) - 0.1


def test_seed_reproducible() -> None:
    data, _ = cycle_data(n_users=60)
    hist = data.histories()
    first = GRU4Rec(epochs=2, seed=3, **FAST).fit(data).score(hist)
    again = GRU4Rec(epochs=2, seed=3, **FAST).fit(data).score(hist)
    other = GRU4Rec(epochs=2, seed=4, **FAST).fit(data).score(hist)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_save_load_exact(cycle_model, tmp_path: Path) -> None:
    model, data, _ = cycle_model
    loaded = Recommender.load(model.save(tmp_path / "gru4rec"))
    assert isinstance(loaded, GRU4Rec) and loaded.cell == model.cell
    hist = data.histories()
    np.testing.assert_array_equal(loaded.score(hist), model.score(hist))


# ---------------------------------------------------------------------------- parameters
@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"cell": "rnn"}, "cell must be one of .*got 'rnn'"),
        ({"cell": None}, "cell must be one of .*got None"),
        ({"layers": 0}, "layers must be an integer >= 1, got 0"),
        ({"layers": 1.5}, "layers must be an integer >= 1, got 1.5"),
        ({"hidden_dim": 0}, "hidden_dim must be an integer >= 1, got 0"),
        ({"hidden_dim": "64"}, "hidden_dim must be an integer >= 1, got '64'"),
        ({"dropout": 1.0}, r"dropout must be a number in \[0, 1\), got 1.0"),
        ({"max_len": 0}, "max_len must be an integer >= 1, got 0"),
        ({"exclude_seen": 1}, "exclude_seen must be True or False, got 1"),
    ],
)
def test_bad_parameters(params: dict, match: str) -> None:
    data, _ = cycle_data(n_users=10)
    with pytest.raises(ConfigError, match=match):
        GRU4Rec(**{**FAST, **params}).fit(data)
