"""Caser: the one-pass causal convolutions against a float64 reference written window by
window, scoring from the last ``window`` items only, the planted next-item rule,
reproducibility, exact save/load, bad parameters, the conformance suite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conformance import RecommenderConformance, cycle_data
from recstack.data import Histories, Interactions
from recstack.errors import ConfigError
from recstack.models import Recommender

torch = pytest.importorskip("torch")

from recstack.models.neural.caser import Caser, CaserNet  # noqa: E402
from recstack.models.neural.sequences import last_items  # noqa: E402

FAST = {"dim": 16, "horizontal": 4, "vertical": 2, "verbose": False, "device": "cpu"}


class TestCaser(RecommenderConformance):
    def make_model(self) -> Recommender:
        return Caser(window=3, max_len=10, epochs=3, **FAST)


@pytest.fixture(scope="module")
def cycle_model() -> tuple[Caser, Interactions, dict]:
    data, succ = cycle_data()
    params = {**FAST, "learning_rate": 1e-2, "batch_size": 32, "warmup_steps": 10}
    model = Caser(max_len=20, epochs=8, dropout=0.0, **params).fit(data)
    return model, data, succ


def reference(net: CaserNet, items: np.ndarray) -> np.ndarray:
    """The paper's network written out for every position of every row, in float64: the
    ``window x dim`` image of the latest items (zero rows before the start), horizontal
    filters slid over it, ReLU, max; vertical filters; concatenate, Linear, ReLU."""
    emb = net.item_emb.weight.detach().double().numpy()
    w, dim = net.window, emb.shape[1]
    vert_w = net.vertical.weight.detach().double().numpy()[:, 0, :, 0]  # (n_v, w)
    vert_b = net.vertical.bias.detach().double().numpy()
    fc_w = net.fc.weight.detach().double().numpy()
    fc_b = net.fc.bias.detach().double().numpy()
    out = np.zeros((*items.shape, dim))
    for b, row in enumerate(items):
        padded = np.concatenate([np.zeros(w - 1, np.int64), row])
        for t in range(len(row)):
            if row[t] == 0:
                continue  # padded positions output zeros
            image = emb[padded[t : t + w]]  # (w, D), latest item last
            vertical = (vert_w @ image + vert_b[:, None]).ravel()  # (n_v * D,)
            horizontal = []
            for h, conv in enumerate(net.horizontal, start=1):
                kernel = conv.weight.detach().double().numpy()  # (n_h, D, h)
                bias = conv.bias.detach().double().numpy()
                starts = [
                    np.einsum("fdk,kd->f", kernel, image[s : s + h]) + bias
                    for s in range(w - h + 1)
                ]
                horizontal.append(np.maximum(np.max(starts, axis=0), 0.0))
            features = np.concatenate([vertical, *horizontal])
            out[b, t] = np.maximum(fc_w @ features + fc_b, 0.0)
    return out


def random_inputs(n: int, length: int, n_items: int, seed: int = 0) -> torch.Tensor:
    """(n, length) left-padded inputs of 0..length real items, row 0 empty, row 1 full."""
    rng = np.random.default_rng(seed)
    items = rng.integers(1, n_items + 1, size=(n, length))
    real = rng.integers(0, length + 1, size=n)
    real[:2] = [0, length]
    pad = np.arange(length)[None, :] < (length - real)[:, None]
    return torch.from_numpy(np.where(pad, 0, items))


# ---------------------------------------------------------------------------- network
@pytest.mark.parametrize(("window", "length"), [(1, 4), (3, 7), (5, 5), (4, 11)])
def test_one_pass_matches_the_window_by_window_reference(window: int, length: int) -> None:
    torch.manual_seed(window)
    net = CaserNet(n_items=20, dim=6, window=window, horizontal=3, vertical=2, dropout=0.5)
    net = net.double().eval()
    with torch.no_grad():  # random biases: ReLU and max see both signs
        for conv in net.horizontal:
            conv.bias.normal_()
    inputs = random_inputs(8, length, 20, seed=length)
    got = net(inputs).detach().numpy()
    np.testing.assert_allclose(got, reference(net, inputs.numpy()), rtol=1e-10, atol=1e-12)


def test_scoring_reads_the_last_window_items(cycle_model) -> None:
    model, data, _ = cycle_model
    hist = data.histories()
    net = model._net
    with torch.no_grad():
        full = net(torch.from_numpy(last_items(hist, model.max_len)))[:, -1]
        window = net(torch.from_numpy(last_items(hist, model.window)))[:, -1]
        expected = (full @ model._output_items(net).T).numpy()
    torch.testing.assert_close(window, full)
    np.testing.assert_allclose(model.score(hist), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(model.score(Histories.from_lists([[]], data.n_items)), 0.0)


# ---------------------------------------------------------------------------- learning
def test_learns_the_planted_successor(cycle_model) -> None:
    model, data, succ = cycle_model
    recs = model.recommend(data.users.ids, k=1)
    last = data.items.ids[data.item[data.indptr[1:] - 1]]
    hit = np.mean(recs.item_ids[:, 0] == np.array([succ[i] for i in last]))
    assert hit >= 0.95, hit
    one = model.recommend(histories=[[i] for i in data.items.ids], k=1)
    assert np.mean(one.item_ids[:, 0] == [succ[i] for i in data.items.ids]) >= 0.95


def test_exclude_seen_leaves_earlier_items_out_of_the_training_softmax() -> None:
    """One step over all windows from the same initial weights: leaving each position's
    earlier items out of its softmax (``exclude_seen``, the default) removes competitors,
    so the loss is lower than over the whole catalog."""
    data, _ = cycle_data(n_users=60)
    one_step = {**FAST, "max_len": 20, "epochs": 1, "batch_size": 10_000}
    loss = {
        flag: Caser(exclude_seen=flag, **one_step).fit(data).training_log_[0][1]
        for flag in (True, False)
    }
    assert loss[True] < loss[False] - 0.05, loss


def test_seed_reproducible() -> None:
    data, _ = cycle_data(n_users=60)
    hist = data.histories()
    first = Caser(max_len=10, epochs=2, seed=3, **FAST).fit(data).score(hist)
    again = Caser(max_len=10, epochs=2, seed=3, **FAST).fit(data).score(hist)
    other = Caser(max_len=10, epochs=2, seed=4, **FAST).fit(data).score(hist)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_save_load_exact(cycle_model, tmp_path: Path) -> None:
    model, data, _ = cycle_model
    loaded = Recommender.load(model.save(tmp_path / "caser"))
    assert isinstance(loaded, Caser) and loaded.window == model.window
    hist = data.histories()
    np.testing.assert_array_equal(loaded.score(hist), model.score(hist))


# ---------------------------------------------------------------------------- parameters
@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"window": 0}, "window must be an integer >= 1, got 0"),
        ({"window": 2.0}, "window must be an integer >= 1, got 2.0"),
        ({"exclude_seen": "yes"}, "exclude_seen must be True or False, got 'yes'"),
        ({"window": 30, "max_len": 20}, r"window \(30\) must be at most max_len \(20\)"),
        ({"horizontal": 0}, "horizontal must be an integer >= 1, got 0"),
        ({"vertical": True}, "vertical must be an integer >= 1, got True"),
        ({"dropout": -0.1}, r"dropout must be a number in \[0, 1\), got -0.1"),
        ({"learning_rate": 0.0}, r"learning_rate must be a number in \(0, inf\], got 0.0"),
    ],
)
def test_bad_parameters(params: dict, match: str) -> None:
    data, _ = cycle_data(n_users=10)
    with pytest.raises(ConfigError, match=match):
        Caser(**{**FAST, **params}).fit(data)
