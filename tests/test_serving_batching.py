"""Micro-batching: concurrent requests ranked in one scoring call give each request the
answer it would get alone; batches form from the requests in flight; errors and
cancellations stay with their requests."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

import httpx

from recstack.data import Histories, Interactions
from recstack.models import EASE
from recstack.serving import ServeConfig, create_app
from recstack.serving.batching import MicroBatcher
from recstack.serving.rankers import ExactRanker, RankRequest, rank_batch
from serving_support import pair_log


@pytest.fixture(scope="module")
def data() -> Interactions:
    return Interactions.from_frame(pair_log())


@pytest.fixture(scope="module")
def model(data: Interactions) -> EASE:
    return EASE(l2=10.0).fit(data)


def requests_of(data: Interactions, users: list[int], ns: list[int]) -> list[RankRequest]:
    """One request per user, excluding the history's items for every other one."""
    out = []
    for i, (u, n) in enumerate(zip(users, ns, strict=True)):
        hist = data.histories(np.array([u], dtype=np.int32))
        out.append(RankRequest(hist, n, hist.items if i % 2 == 0 else hist.items[:0]))
    return out


class SlowRanker:
    """An exact ranker whose every call takes ``delay`` seconds; records batch sizes."""

    def __init__(self, model: EASE, delay: float = 0.05, fail: bool = False) -> None:
        self.inner = ExactRanker(model)
        self.delay = delay
        self.fail = fail
        self.sizes: list[int] = []
        self.threads: set[str] = set()

    def rank(
        self, hist: Histories, n: int, exclude: object, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        self.sizes.append(len(hist))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("scoring failed")
        return self.inner.rank(hist, n, exclude, allowed)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- stacking
def test_histories_stack_restores_the_batch(data: Interactions) -> None:
    whole = data.histories(np.arange(6, dtype=np.int32))
    parts = [whole.select([0, 1]), whole.select([2]), whole.select([3, 4, 5])]
    stacked = Histories.stack(parts)
    for name in ("indptr", "items", "values", "times", "users"):
        np.testing.assert_array_equal(getattr(stacked, name), getattr(whole, name))
    assert stacked.n_items == whole.n_items
    anonymous = Histories.from_lists([[1, 2]], n_items=whole.n_items)
    np.testing.assert_array_equal(Histories.stack([whole.select([0]), anonymous]).users, [0, -1])
    a = anonymous
    no_users = Histories(a.indptr, a.items, a.values, a.times, whole.n_items)
    assert Histories.stack([whole.select([0]), no_users]).users is None
    with pytest.raises(ValueError, match="different catalogs"):
        Histories.stack([whole, Histories.from_lists([[1]], n_items=whole.n_items + 1)])


def test_rank_batch_equals_brute_force_per_request(model: EASE, data: Interactions) -> None:
    users, ns = [0, 3, 7, 11, 19], [5, 1, 10, 3, 7]
    reqs = requests_of(data, users, ns)
    answers = rank_batch(ExactRanker(model), reqs)
    for req, (index, scores) in zip(reqs, answers, strict=True):
        full = model.score(req.hist)[0].astype(np.float64)
        full[req.exclude] = -np.inf
        want = np.sort(full)[::-1][: req.n]
        assert index.shape == (req.n,)
        np.testing.assert_allclose(scores, want, rtol=1e-6)
        np.testing.assert_allclose(full[index], scores, rtol=1e-6)  # the items carry them
        assert not np.isin(index, req.exclude).any()


def test_rank_batch_groups_requests_by_filter(model: EASE, data: Interactions) -> None:
    """Requests with category masks: one ranker call per distinct mask, each answer
    within its mask and equal to brute force."""
    rng = np.random.default_rng(0)
    a, b = (rng.random(model.n_items) < 0.5 for _ in range(2))
    base = requests_of(data, [0, 1, 2, 3, 4], [4] * 5)
    masks = [a, None, a, b, None]
    reqs = [RankRequest(r.hist, r.n, r.exclude, m) for r, m in zip(base, masks, strict=True)]
    ranker = SlowRanker(model, delay=0.0)
    answers = rank_batch(ranker, reqs)
    assert sorted(ranker.sizes) == [1, 2, 2]
    for req, (index, scores) in zip(reqs, answers, strict=True):
        full = model.score(req.hist)[0].astype(np.float64)
        full[req.exclude] = -np.inf
        if req.allowed is not None:
            full[~req.allowed] = -np.inf
            assert req.allowed[index].all()
        np.testing.assert_allclose(scores, np.sort(full)[::-1][: req.n], rtol=1e-6)


# ---------------------------------------------------------------------------- the batcher
def test_requests_in_flight_form_the_next_batch(model: EASE, data: Interactions) -> None:
    reqs = requests_of(data, list(range(10)), [5] * 10)
    ranker = SlowRanker(model)
    batcher = MicroBatcher(ranker, max_batch=4)

    async def main() -> list[tuple[np.ndarray, np.ndarray]]:
        return await asyncio.gather(*(batcher.rank(r) for r in reqs))

    answers = asyncio.run(main())
    # every request queues before the first batch is taken: then batches of at most 4
    assert ranker.sizes == [4, 4, 2]
    assert not any(name == threading.current_thread().name for name in ranker.threads)
    for req, (index, scores) in zip(reqs, answers, strict=True):
        want_index, want_scores = rank_batch(ExactRanker(model), [req])[0]
        np.testing.assert_array_equal(index, want_index)
        np.testing.assert_array_equal(scores, want_scores)


def test_arrivals_during_a_batch_wait_for_the_next(model: EASE, data: Interactions) -> None:
    reqs = requests_of(data, list(range(6)), [3] * 6)
    ranker = SlowRanker(model, delay=0.2)
    batcher = MicroBatcher(ranker)

    async def main() -> None:
        first = asyncio.create_task(batcher.rank(reqs[0]))
        await asyncio.sleep(0.05)  # the first batch (one request) is being scored
        rest = [asyncio.create_task(batcher.rank(r)) for r in reqs[1:]]
        await asyncio.gather(first, *rest)

    asyncio.run(main())
    assert ranker.sizes == [1, 5]


def test_an_error_reaches_each_request_of_its_batch(model: EASE, data: Interactions) -> None:
    reqs = requests_of(data, [0, 1, 2], [3, 3, 3])
    ranker = SlowRanker(model, delay=0.0, fail=True)
    batcher = MicroBatcher(ranker)

    async def main() -> list[object]:
        return await asyncio.gather(*(batcher.rank(r) for r in reqs), return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) for r in results)
    ranker.fail = False  # the batcher keeps working after a failed batch
    index, _ = asyncio.run(batcher.rank(reqs[0]))
    assert len(index) == 3


def test_a_cancelled_request_is_not_scored(model: EASE, data: Interactions) -> None:
    reqs = requests_of(data, [0, 1, 2], [3, 3, 3])
    ranker = SlowRanker(model, delay=0.1)
    batcher = MicroBatcher(ranker)

    async def main() -> tuple[np.ndarray, np.ndarray]:
        first = asyncio.create_task(batcher.rank(reqs[0]))
        await asyncio.sleep(0.02)
        gone = asyncio.create_task(batcher.rank(reqs[1]))
        kept = asyncio.create_task(batcher.rank(reqs[2]))
        await asyncio.sleep(0)
        gone.cancel()  # the client went away while waiting for the next batch
        await first
        return await kept

    index, _ = asyncio.run(main())
    assert ranker.sizes == [1, 1] and len(index) == 3


def test_max_batch_must_be_positive(model: EASE) -> None:
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(ExactRanker(model), max_batch=0)


# ---------------------------------------------------------------------------- the service
@pytest.mark.parametrize("max_batch", [64, 1])
def test_concurrent_requests_get_their_own_lists(
    model: EASE, data: Interactions, tmp_path: Path, max_batch: int
) -> None:
    """Concurrent GET /recommend through the app: the same lists as one at a time, scored
    in fewer calls than requests (the batch-size histogram in /metrics says so); with
    ``max_batch=1`` each alone, and no batch at all."""
    model_dir = model.save(tmp_path / "ease")
    db = f"sqlite:///{tmp_path / 'events.db'}"
    config = ServeConfig.single(model_dir, db=db, max_batch=max_batch)
    app = create_app(config)
    users = [str(u) for u in data.users.ids[:20]]

    async def main() -> tuple[list[list[str]], list[list[str]], str]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

            async def get(user: str) -> list[str]:
                r = await client.get(f"/recommend/{user}", params={"k": 5})
                assert r.status_code == 200, r.text
                return [x["item"] for x in r.json()["items"]]

            alone = [await get(u) for u in users]
            together = await asyncio.gather(*(get(u) for u in users))
            metrics = (await client.get("/metrics")).text
        return alone, list(together), metrics

    alone, together, metrics = asyncio.run(main())
    assert together == alone
    ref = model.recommend(users, k=5).item_ids.tolist()
    assert alone == ref

    def value(name: str) -> float:
        line = next(x for x in metrics.splitlines() if x.startswith(name + " "))
        return float(line.split()[-1])

    if max_batch == 1:
        assert value("recstack_score_batch_size_count") == 0
        return
    # 20 alone + 20 together were scored; the 20 together in fewer calls
    assert value("recstack_score_batch_size_sum") == 40
    assert value("recstack_score_batch_size_count") < 40
