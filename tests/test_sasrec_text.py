"""SASRec-text: the conformance suite, the item representation's closed form, the training
softmax over items with events, cold items ranked from their text (listed in the item
table, and added later by add_items), save/load, bad parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conformance import planted_data
from recstack.data import Histories, Interactions
from recstack.errors import ConfigError, DataError
from recstack.models import Recommender
from test_content import TextConformance, category_data

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from recstack.models.neural.sasrec_text import SASRecText  # noqa: E402
from recstack.models.neural.training import catalog_loss  # noqa: E402

FAST = {"dim": 16, "heads": 2, "layers": 1, "epochs": 3, "verbose": False, "device": "cpu"}


@pytest.fixture(autouse=True)
def cache_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSTACK_CACHE", str(tmp_path / "cache"))


class TestSASRecText(TextConformance):
    def make_model(self) -> Recommender:
        return SASRecText(encoder="tfidf", max_len=10, **FAST)


def cold_catalog(seed: int = 0) -> tuple[Interactions, pd.DataFrame, dict[str, str]]:
    """category_data with the cold items listed in the item table (no events)."""
    data, cold, category = category_data(n_warm=6, n_cold=3, users_per=12, seed=seed)
    feats = pd.concat([data.item_features, cold])
    return Interactions.from_frame(data.to_frame(), item_features=feats), cold, category


@pytest.fixture(scope="module")
def fitted() -> tuple[SASRecText, pd.DataFrame, dict[str, str]]:
    data, cold, category = cold_catalog()
    params = {**FAST, "epochs": 40, "dim": 32, "learning_rate": 1e-2}
    model = SASRecText(encoder="tfidf", id_dropout=0.5, **params).fit(data)
    return model, cold, category


def test_item_representation_is_id_plus_projected_text(fitted: tuple) -> None:
    model = fitted[0]
    net = model._net
    w = net.text_proj.weight.detach().numpy()
    ids = net.item_emb.weight.detach().numpy()[1 : model.n_items + 1]
    want = ids * model.has_id_[:, None] + model.text_vectors_ @ w.T
    np.testing.assert_allclose(model.item_vectors(), want, rtol=1e-5, atol=1e-6)
    # items without events are represented by their text alone
    assert not model.has_id_.all()
    cold = ~model.has_id_
    np.testing.assert_allclose(
        model.item_vectors()[cold], (model.text_vectors_ @ w.T)[cold], rtol=1e-5, atol=1e-6
    )


def test_training_softmax_skips_items_without_events() -> None:
    gen = torch.Generator().manual_seed(0)
    hidden, weights = torch.randn(5, 4), torch.randn(7, 4)
    targets = torch.tensor([0, 2, 2, 5, 6])
    keep = torch.tensor([True, False, True, False, True, True, True])
    got = catalog_loss(
        hidden, targets, weights, loss="ce", negatives=1, log_q=None, generator=gen, catalog=keep
    )
    # the same cross-entropy over the kept items only (targets renumbered)
    sub = torch.nonzero(keep).ravel()
    renumber = torch.full((7,), -1, dtype=torch.long)
    renumber[sub] = torch.arange(len(sub))
    want = torch.nn.functional.cross_entropy(hidden @ weights[sub].T, renumber[targets])
    torch.testing.assert_close(got, want)


def test_cold_items_are_ranked_from_their_text(fitted: tuple) -> None:
    model, cold, category = fitted
    users = model.users_.ids
    among = model.recommend(users, k=3, items=cold.index.to_numpy())
    hits = [
        np.mean([category[i] == user.split("-")[0] for i in row])
        for user, row in zip(users, among.item_ids, strict=True)
    ]
    # four categories: random among the cold items would give 1/4
    assert np.mean(hits) > 0.9


def test_add_items_scores_new_items_from_text_and_keeps_the_rest(fitted: tuple) -> None:
    model, _, category = fitted
    users = model.users_.ids[:: len(model.users_) // 8]
    before = model.score(model.user_histories(users))
    rng = np.random.default_rng(5)
    new = pd.DataFrame(
        {"description": [" ".join(rng.choice(["rocket", "galaxy", "orbit"], 3)), "oven bread"]},
        index=["new-space", "new-baking"],
    )
    with pytest.raises(DataError, match="already in the catalog"):
        model.add_items(pd.DataFrame({"description": ["x"]}, index=[model.items_.ids[0]]))
    model.add_items(new)
    assert model.n_items == len(category) + 2 and not model.has_id_[-2:].any()
    after = model.score(model.user_histories(users))
    np.testing.assert_allclose(after[:, :-2], before, rtol=1e-5, atol=1e-5)
    space = [r for r, u in enumerate(users) if u.startswith("space")]
    baking = [r for r, u in enumerate(users) if u.startswith("baking")]
    assert space and baking
    assert (after[space, -2] > after[space, -1]).all()
    assert (after[baking, -1] > after[baking, -2]).all()


def test_save_load_after_add_items(fitted: tuple, tmp_path: Path) -> None:
    model = fitted[0]
    if "late" not in set(model.items_.ids):
        model.add_items(pd.DataFrame({"description": ["piano melody"]}, index=["late"]))
    hist = Histories.from_ids(model.items_, [["late"], list(model.items_.ids[:3])])
    loaded = Recommender.load(model.save(tmp_path / "m"))
    assert isinstance(loaded, SASRecText) and loaded.n_items == model.n_items
    np.testing.assert_allclose(loaded.score(hist), model.score(hist), rtol=1e-5, atol=1e-6)


def test_sampled_softmax_never_draws_items_without_events() -> None:
    data, _, _ = cold_catalog(seed=1)
    model = SASRecText(encoder="tfidf", loss="sampled", negatives=8, **FAST).fit(data)
    assert np.isfinite(model.score(model.user_histories(model.users_.ids[:3]))).all()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"id_dropout": 1.0}, "id_dropout must be a number in"),
        ({"id_dropout": "a"}, "id_dropout must be a number in"),
        ({"encode_batch_size": 0}, "encode_batch_size must be a positive integer"),
        ({"encoder": ""}, "encoder must be"),
    ],
)
def test_bad_parameters(params: dict, message: str) -> None:
    data, _, _ = cold_catalog()
    with pytest.raises(ConfigError, match=message):
        SASRecText(**{**FAST, **params}).fit(data)


def test_needs_item_text() -> None:
    with pytest.raises(DataError, match="SASRecText needs item text"):
        SASRecText(encoder="tfidf", **FAST).fit(planted_data())


def test_leave_one_out_on_shared_older_states_equals_rescoring() -> None:
    """The text items go through the shared-prefix leave-one-out (its input stage is the
    network's own ``embed``): the generic path's re-scored drops."""
    from recstack.explain import attribute, leave_one_out

    data, _, _ = cold_catalog()
    model = SASRecText(encoder="tfidf", max_len=6, **{**FAST, "layers": 2}).fit(data)
    hist = data.histories(np.arange(12))
    targets = model.recommend(histories=hist, k=3).index
    fast = attribute(model, hist, targets, method="leave-one-out")
    generic = leave_one_out(model, hist, targets)
    assert np.abs(generic.terms).max() > 1e-4
    np.testing.assert_allclose(fast.terms, generic.terms, atol=2e-5)
