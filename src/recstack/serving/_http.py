"""HTTP plumbing: Prometheus metrics and two ASGI middlewares (request metrics, body size).

Both middlewares are plain ASGI (no per-request task or body copy, unlike Starlette's
``BaseHTTPMiddleware``), so they add microseconds to a request.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: latency histogram buckets, seconds: fine below the 20 ms target, coarse above
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (several apps in one
    process do not collide). With ``PROMETHEUS_MULTIPROC_DIR`` set (several uvicorn
    workers) values go to that directory and the exposition sums every worker."""

    def __init__(self) -> None:
        multiproc = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry()
        # multiprocess values live in files (not in a registry); the collector reads them
        reg = None if multiproc else self.registry
        self.requests = Counter(
            "recstack_http_requests",
            "HTTP requests by route template, method and status code.",
            ["endpoint", "method", "status"],
            registry=reg,
        )
        self.latency = Histogram(
            "recstack_http_request_seconds",
            "HTTP request latency by route template, seconds.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.events_received = Counter(
            "recstack_events_received",
            "Events received by POST /events, by type (duplicates included).",
            ["type"],
            registry=reg,
        )
        self.events_stored = Counter(
            "recstack_events_stored",
            "New events stored durably (duplicates excluded).",
            registry=reg,
        )
        self.recommendations = Counter(
            "recstack_recommendations",
            "Lists served by variant and whether the popularity fallback answered.",
            ["variant", "fallback"],
            registry=reg,
        )
        self.batch_size = Histogram(
            "recstack_score_batch_size",
            "Requests scored together in one micro-batch.",
            buckets=BATCH_BUCKETS,
            registry=reg,
        )
        if multiproc:
            from prometheus_client import multiprocess

            multiprocess.MultiProcessCollector(self.registry)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class Instrument:
    """Counts each request by route template (``/recommend/{user_id}``, bounded label
    values; ``unmatched`` for a 404 of the router) and status, and times it."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]  # an exception the app did not turn into a response

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route: Any = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            m = self.metrics
            m.requests.labels(endpoint, scope["method"], str(status[0])).inc()
            m.latency.labels(endpoint).observe(time.perf_counter() - start)


class BodyLimit:
    """Answers 413 to a request body larger than ``max_bytes``: at once when its
    Content-Length says so, else (chunked upload) once that many bytes arrived."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> JSONResponse:
        return JSONResponse(
            {"detail": f"request body larger than {self.max_bytes:,} bytes"}, status_code=413
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                length = value
                break
        if length is not None:
            if length.isdigit() and int(length) > self.max_bytes:
                await self._too_large()(scope, receive, send)
                return
            await self.app(scope, receive, send)  # the server reads no more than declared
            return
        if scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        # no length: read the body up to the limit first, then hand it on
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._too_large()(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)
