"""BERT4Rec: cloze masking (rate, padding, last-item masks), scoring inputs, the mask token
never scored, bidirectional attention, the planted next-item rule, reproducibility,
save/load, bad parameters, the conformance suite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conformance import RecommenderConformance, cycle_data
from recstack.data import Histories, Interactions
from recstack.errors import ConfigError, DataError
from recstack.models import Recommender

torch = pytest.importorskip("torch")

from recstack.models.neural.bert4rec import BERT4Rec  # noqa: E402

FAST = {"dim": 16, "heads": 2, "layers": 1, "epochs": 3, "verbose": False, "device": "cpu"}


class TestBERT4Rec(RecommenderConformance):
    def make_model(self) -> Recommender:
        return BERT4Rec(max_len=10, **FAST)


def fitted_for_masking(n_items: int = 40, **params: object) -> BERT4Rec:
    """A model whose ``_pairs`` can run (it needs the catalog size, set by ``fit``)."""
    model = BERT4Rec(max_len=8, **{**FAST, "epochs": 1, **params})  # type: ignore[arg-type]
    return model.fit(cycle_data(n_items=n_items, n_users=20)[0])


def random_windows(n: int, length: int, n_items: int, seed: int = 0) -> torch.Tensor:
    """(n, length + 1) left-padded windows of 1..length + 1 real items (indices 1..n_items)."""
    rng = np.random.default_rng(seed)
    items = rng.integers(1, n_items + 1, size=(n, length + 1))
    real = rng.integers(1, length + 2, size=n)
    pad = np.arange(length + 1)[None, :] < (length + 1 - real)[:, None]
    return torch.from_numpy(np.where(pad, 0, items))


# ---------------------------------------------------------------------------- masking
@pytest.mark.parametrize("mask_prob", [0.1, 0.2, 0.5])
def test_masking_rate_is_as_configured(mask_prob: float) -> None:
    model = fitted_for_masking(mask_prob=mask_prob, last_mask_prob=0.0)
    mask = model.n_items + 1
    # full windows of 50 items: a window draws no mask with probability (1 - p)^50 <= 0.005
    windows = torch.randint(
        1, model.n_items + 1, (4000, 51), generator=torch.Generator().manual_seed(5)
    )
    inputs, targets = model._pairs(windows, torch.Generator().manual_seed(0))
    masked = inputs == mask
    n = masked.numel()
    rate = masked.float().mean().item()
    # binomial: 5 standard deviations (plus the rare no-draw windows' extra mask)
    assert abs(rate - mask_prob) <= 5 * np.sqrt(mask_prob * (1 - mask_prob) / n) + 0.005 / 50
    # every position is masked at the same rate (no position is favoured)
    per_position = masked.float().mean(0)
    assert per_position.min() > mask_prob - 6 * np.sqrt(mask_prob / 4000)
    assert per_position.max() < mask_prob + 6 * np.sqrt(mask_prob / 4000) + 0.01
    # masked positions carry the mask token as input and the original item as target
    torch.testing.assert_close(targets[masked], windows[:, 1:][masked])
    torch.testing.assert_close(inputs[~masked], windows[:, 1:][~masked])
    assert torch.all(targets[~masked] == 0)


def test_padding_never_becomes_a_target_nor_a_mask() -> None:
    model = fitted_for_masking(mask_prob=0.5, last_mask_prob=0.3)
    windows = random_windows(3000, 12, model.n_items)
    inputs, targets = model._pairs(windows, torch.Generator().manual_seed(1))
    items = windows[:, 1:]  # the model's input columns: the first column is dropped
    assert inputs.shape == targets.shape == items.shape
    pad = items == 0
    assert torch.all(targets[pad] == 0) and torch.all(inputs[pad] == 0)
    assert torch.all((targets > 0) == (inputs == model.n_items + 1))
    # every window trains: at least one target each
    assert torch.all((targets > 0).any(1))
    # masks per window: 1 for a last-only window, else Binomial(real items, p) with a forced
    # last-item mask when none was drawn; padding does not count
    p, q = 0.5, 0.3
    r = (~pad).sum(1).double()
    expected = (q + (1 - q) * (p * r + (1 - p) ** r)).sum().item()
    sd = float(np.sqrt((r * p * (1 - p)).sum().item() + len(r) * q * (1 - q) * r.mean().item()))
    assert abs((targets > 0).sum().item() - expected) < 5 * sd


def test_last_item_masks() -> None:
    mask_prob, last_prob = 0.2, 0.3
    model = fitted_for_masking(mask_prob=mask_prob, last_mask_prob=last_prob)
    windows = torch.randint(
        1, model.n_items + 1, (5000, 41), generator=torch.Generator().manual_seed(6)
    )
    _, targets = model._pairs(windows, torch.Generator().manual_seed(2))
    masked = targets > 0
    only_last = masked[:, -1] & ~masked[:, :-1].any(1)
    # chosen windows, plus random draws that hit the last item alone (or nothing: forced)
    p_random = mask_prob * (1 - mask_prob) ** 39 + (1 - mask_prob) ** 40
    expected = last_prob + (1 - last_prob) * p_random
    assert abs(only_last.float().mean().item() - expected) < 5 * np.sqrt(expected / 5000)
    # the other windows keep the configured rate
    rate = masked[~only_last].float().mean().item()
    assert abs(rate - mask_prob) < 0.01
    # last_mask_prob = 1: every window masks exactly its last item, as scoring does
    model.set_params(last_mask_prob=1.0)
    inputs, targets = model._pairs(windows, torch.Generator().manual_seed(3))
    torch.testing.assert_close(targets[:, -1], windows[:, -1])
    assert torch.all(targets[:, :-1] == 0) and torch.all(inputs[:, -1] == model.n_items + 1)


def test_windows_without_a_drawn_mask_mask_their_last_item() -> None:
    model = fitted_for_masking(mask_prob=1e-9, last_mask_prob=0.0)
    windows = random_windows(200, 7, model.n_items, seed=3)
    inputs, targets = model._pairs(windows, torch.Generator().manual_seed(0))
    torch.testing.assert_close(targets[:, -1], windows[:, -1])
    assert torch.all(targets[:, :-1] == 0) and torch.all(inputs[:, -1] == model.n_items + 1)


# ---------------------------------------------------------------------------- scoring
def test_score_inputs_end_with_the_mask_token() -> None:
    model = fitted_for_masking(n_items=40)
    mask = model.n_items + 1
    h = Histories.from_lists([list(range(10)), [], [5, 7]], model.n_items)
    got = model._score_inputs(h)
    assert got.shape == (3, 8) and got.dtype == np.int64
    np.testing.assert_array_equal(got[0], [4, 5, 6, 7, 8, 9, 10, mask])  # last 7, shifted
    np.testing.assert_array_equal(got[1], [0] * 7 + [mask])
    np.testing.assert_array_equal(got[2], [0] * 5 + [6, 8, mask])


def test_mask_token_is_never_scored_or_recommended() -> None:
    data = cycle_data(n_users=60)[0]
    model = BERT4Rec(max_len=10, **FAST).fit(data)
    net = model._net
    with torch.no_grad():  # make the mask token's embedding the best match for everything
        net.item_emb.weight[model.n_items + 1] = 100 * net.item_emb.weight[1:].sum(0)
    h = data.histories(np.arange(12))
    scores = model.score(h)
    assert scores.shape == (12, data.n_items)
    # brute force: last position's hidden state times the item rows 1..n_items only
    inputs = torch.from_numpy(model._score_inputs(h))
    with torch.no_grad():
        hidden = net(inputs)[:, -1]
        want = hidden @ net.item_emb.weight[1 : data.n_items + 1].T
    np.testing.assert_allclose(scores, want.numpy(), rtol=1e-5, atol=1e-5)
    recs = model.recommend(data.users.ids[:12], k=data.n_items + 3, exclude_seen=False)
    assert np.all(recs.index[:, : data.n_items] >= 0) and np.all(recs.index < data.n_items)
    assert np.all(recs.index[:, data.n_items :] == -1)
    assert model.item_vectors().shape == (data.n_items, 16)


def test_attention_is_bidirectional() -> None:
    model = BERT4Rec(max_len=8, **FAST).fit(cycle_data(n_users=60)[0])
    net = model._net.eval()
    x = torch.tensor([[0, 0, 3, 5, 7, 9, 11, 13]])
    y = x.clone()
    y[0, 6] = 2  # a later item changes earlier positions' outputs too
    with torch.no_grad():
        a, b = net(x), net(y)
    assert not torch.allclose(a[:, 2:6], b[:, 2:6])
    weights = model.attention(Histories.from_lists([[1, 2, 3]], model.n_items))
    assert len(weights) == 1 and weights[0].shape == (1, 2, 8, 8)
    w = weights[0][0]
    np.testing.assert_allclose(w[:, -4:, -4:].sum(-1), 1.0, rtol=1e-5)  # real queries
    assert np.all(w[:, -4:, :4] == 0)  # padded keys get no weight
    assert np.all(w[:, -4, -3:] > 0)  # the first item reads the later ones (and the mask)


# ---------------------------------------------------------------------------- learning
def test_bert4rec_learns_a_planted_next_item_rule() -> None:
    data = cycle_data()[0]
    hist = data.histories()
    is_last = np.zeros(data.n_events, dtype=bool)
    is_last[hist.indptr[1:] - 1] = True
    train, test = data.select(~is_last), data.select(is_last)
    model = BERT4Rec(
        dim=32, heads=1, layers=1, max_len=20, mask_prob=0.3, dropout=0.1, epochs=60,
        batch_size=64, learning_rate=1e-2, warmup_steps=10, verbose=False, device="cpu", seed=0,
    )  # fmt: skip
    model.fit(train)
    users = test.users.ids[test.user]
    recs = model.recommend(users, k=1)
    hit_rate = np.mean(recs.item_ids[:, 0] == test.items.ids[test.item])
    assert hit_rate >= 0.95, hit_rate


def test_early_stopping_on_validation() -> None:
    data = cycle_data(n_users=150)[0]
    hist = data.histories()
    is_last = np.zeros(data.n_events, dtype=bool)
    is_last[hist.indptr[1:] - 1] = True
    model = BERT4Rec(max_len=10, **{**FAST, "epochs": 6, "patience": 2})
    model.fit(data.select(~is_last), data.select(is_last))
    assert 1 <= model.best_epoch_ <= model.epochs_run_ <= 6
    assert model.epochs_run_ - model.best_epoch_ <= 2
    assert model.best_valid_ndcg_ is not None and 0 < model.best_valid_ndcg_ <= 1


def test_fit_is_reproducible_with_a_seed() -> None:
    data = cycle_data(n_users=80)[0]
    h = data.histories(np.arange(10))
    a = BERT4Rec(max_len=10, seed=3, **FAST).fit(data).score(h)
    b = BERT4Rec(max_len=10, seed=3, **FAST).fit(data).score(h)
    c = BERT4Rec(max_len=10, seed=4, **FAST).fit(data).score(h)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_save_load_gives_identical_scores(tmp_path: Path) -> None:
    data = cycle_data(n_users=80)[0]
    model = BERT4Rec(max_len=10, **FAST).fit(data)
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert isinstance(loaded, BERT4Rec)
    h = data.histories(np.arange(20))
    np.testing.assert_array_equal(model.score(h), loaded.score(h))
    new = Histories.from_lists([[], [3], [4, 5, 6]], data.n_items)
    np.testing.assert_array_equal(model.score(new), loaded.score(new))


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("mask_prob", 0.0),
        ("mask_prob", 1.5),
        ("mask_prob", "0.2"),
        ("last_mask_prob", -0.1),
        ("last_mask_prob", 1.01),
        ("max_len", 1),
        ("layers", 0),
        ("heads", 3),  # 64 is not a multiple of 3
        ("dropout", 1.0),
        ("epochs", 2.5),
        ("loss", "bpr"),
        ("device", "tpu"),
    ],
)
def test_bad_parameters_name_themselves(param: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"{param}.*{value!r}|{param}.*\({value}\)"):
        BERT4Rec(**{param: value}).fit(cycle_data(n_users=20)[0])  # type: ignore[arg-type]


def test_no_sequence_to_learn_from() -> None:
    one_each = Interactions.from_frame(pd.DataFrame({"user_id": [1, 2], "item_id": [1, 2]}))
    with pytest.raises(DataError, match="2 events"):
        BERT4Rec(**FAST).fit(one_each)
