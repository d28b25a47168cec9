"""Micro-batching: the ranking of concurrent requests done in one scoring call.

A model's scoring call has a fixed cost that a batch shares: a SASRec forward pass takes
about 1.6 ms for one history and 4 ms for eight on one core, so one request at a time
caps a worker near 600 requests/s before any HTTP work, and eight at a time near 2,000.
:class:`MicroBatcher` collects the requests that arrive while a batch is being scored (in
a worker thread, so the event loop keeps accepting them) and scores them together next.
No request waits for a timer: alone, a request is scored at once as a batch of one; under
load the batches grow to the number of requests in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from recstack.serving.rankers import Ranker, RankRequest, rank_batch

#: the most requests one scoring call takes (bounds its memory: rows x catalog floats)
MAX_BATCH = 64


class MicroBatcher:
    """Ranks :class:`~recstack.serving.live.RankRequest` from coroutines in batches.

    Parameters
    ----------
    ranker : Ranker
        The scoring path; called from a worker thread, one batch at a time.
    max_batch : int
        The most requests per scoring call.
    on_batch : callable, optional
        Called with each batch's size (the service counts them in ``/metrics``).
    """

    def __init__(
        self,
        ranker: Ranker,
        max_batch: int = MAX_BATCH,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.ranker = ranker
        self.max_batch = max_batch
        self.on_batch = on_batch
        self._queue: list[tuple[RankRequest, asyncio.Future[tuple[np.ndarray, np.ndarray]]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def rank(self, request: RankRequest) -> tuple[np.ndarray, np.ndarray]:
        """``(index, scores)`` of shape (request.n,), as :func:`rank_batch` answers."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[np.ndarray, np.ndarray]] = loop.create_future()
        self._queue.append((request, future))
        if self._drainer is None:
            self._drainer = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        """Score queued requests, a batch at a time, until none is left."""
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                live = [(r, f) for r, f in batch if not f.done()]  # skip cancelled requests
                if not live:
                    continue
                if self.on_batch is not None:
                    self.on_batch(len(live))
                try:
                    answers = await loop.run_in_executor(
                        None, rank_batch, self.ranker, [r for r, _ in live]
                    )
                except Exception as exc:  # every request of the batch gets the error
                    for _, future in live:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), answer in zip(live, answers, strict=True):
                    if not future.done():
                        future.set_result(answer)
        finally:
            self._drainer = None
