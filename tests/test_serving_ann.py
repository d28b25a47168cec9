"""The service on an approximate item index: a dot-product model above ``ann_from`` items is
served through faiss (cached beside the model), its lists agree with the exact ones, and
seen items are still excluded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recstack.data import Interactions
from recstack.models import ALS
from serving_support import pair_log

pytest.importorskip("fastapi")
pytest.importorskip("faiss")

from fastapi.testclient import TestClient

from recstack.serving import ServeConfig, create_app
from recstack.serving.live import ServedModel
from recstack.serving.rankers import INDEX_FILE, IndexRanker


@pytest.fixture(scope="module")
def als_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = Interactions.from_frame(pair_log())
    model = ALS(factors=8, iterations=10, solver="cholesky").fit(data)
    return model.save(tmp_path_factory.mktemp("models") / "als")


def test_large_catalogs_go_through_the_index(als_dir: Path, tmp_path: Path) -> None:
    exact = ServedModel.load(als_dir)  # 40 items: below the default threshold
    assert not isinstance(exact.ranker, IndexRanker)
    served = ServedModel.load(als_dir, ann_from=10)
    assert isinstance(served.ranker, IndexRanker) and (als_dir / INDEX_FILE).is_file()
    again = ServedModel.load(als_dir, ann_from=10)  # read back from the cache
    assert isinstance(again.ranker, IndexRanker) and again.ranker.index.kind == "ivf"
    config = ServeConfig(
        variants={"default": str(als_dir)}, db=f"sqlite:///{tmp_path / 'e.db'}", ann_from=10
    )
    model = exact.model
    users = model.users_.ids[:30].tolist()
    want = model.recommend(users, k=5)
    overlap = []
    with TestClient(create_app(config)) as client:
        for r, user in enumerate(users):
            body = client.get(f"/recommend/{user}", params={"k": 5}).json()
            got = [x["item"] for x in body["items"]]
            hist = model.user_histories([user])
            seen = set(model.items_.ids[hist.items])
            assert not seen & set(got)  # seen items are excluded inside the search
            overlap.append(len(set(got) & set(want.item_ids[r])) / 5)
            scores = [x["score"] for x in body["items"]]
            assert scores == sorted(scores, reverse=True)
    assert np.mean(overlap) >= 0.95
