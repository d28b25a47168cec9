"""The HTTP service: a FastAPI app over served models, live histories and the event store.

Endpoints (wire formats in :mod:`recstack.serving.schemas`, OpenAPI at ``/docs``):

- ``GET /recommend/{user_id}?k=10&exclude_seen=true&explain=false&rerank=``: a known user
  is scored from their stored history plus the clicks and conversions received since
  (live, no retraining); a user with neither gets the popularity fallback
  (``"fallback": true``), never an error.
- ``POST /recommend``: the same for a posted history (``{"history": [...], "k": ...}``);
  unknown item IDs are left out and listed in ``unknown_items``.
- ``GET /similar/{item_id}?k=10``: the most similar items (404 for an unknown item).
- ``POST /events``: impressions, clicks, conversions; answered once durable; idempotent
  by ``event_id``.
- ``GET /experiments/report``: per variant CTR and conversion rate with Wilson intervals,
  and two-proportion tests between variants.
- ``POST /admin/reload`` (bearer token): load a model directory, then swap it in.
- ``GET /health``, ``GET /metrics`` (Prometheus text format).
- The web page at ``/`` (``/?user=ID`` opens a user; assets under ``/static``) and what it
  reads: ``GET /items?q=`` (title search, or ``?id=`` look-ups), ``GET /users?q=`` (ID
  prefix search), ``GET /users/{user_id}/history``, ``GET /variants``.

Each list served is logged (request ID, variant, user, items) so events that carry its
``request_id`` count for the variant that served it. Users are assigned to variants by a
hash of their ID and the experiment's salt (sticky across restarts); a ``POST`` without
a ``user_id`` is assigned by its request ID. A request may name a ``variant`` instead
(the web page compares two side by side); its list is logged under that variant.
"""

from __future__ import annotations

import hmac
import os
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import StringConstraints

from recstack import __version__
from recstack.errors import ConfigError, RecstackError
from recstack.serving import schemas
from recstack.serving._http import BodyLimit, Instrument, Metrics
from recstack.serving.config import CONFIG_ENV, ServeConfig
from recstack.serving.experiment import Experiment, experiment_report
from recstack.serving.live import Catalog, LiveHistories, Served, ServedModel
from recstack.serving.store import Event, RequestLog, RequestLogBuffer, StoreError, open_store

# query and path parameters (module level: the annotations are resolved by name)
IdPath = Annotated[str, PathParam(min_length=1, max_length=schemas.MAX_ID)]
KQuery = Annotated[int, Query(ge=1, le=schemas.MAX_K, description="List length.")]
RerankQuery = Annotated[
    str | None,
    Query(max_length=schemas.MAX_SPEC, description="Re-ranker spec, e.g. mmr:0.3 (empty: none)."),
]

CategoryQuery = Annotated[
    str | None,
    Query(
        max_length=schemas.MAX_ID,
        description="Only items of this category (the items' genre feature; case-insensitive).",
    ),
]
VariantQuery = Annotated[
    str | None, Query(max_length=64, description="A variant by name (default: see each endpoint).")
]
#: the most items or users a search answers
MAX_SEARCH = 100
#: the web page's files (package data)
STATIC = Path(__file__).with_name("static")
#: the page loads nothing from elsewhere (no CDN); nothing may frame it
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

AdminCredentials = Annotated[
    HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))
]


class Service:
    """Everything the endpoints share: models by variant, the experiment, live histories,
    the store, the request log and the metrics. Built (models loaded, live histories
    replayed from the store) when the app is created."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.experiment = Experiment(config.shares, config.salt)
        self.metrics = Metrics()
        self.store = open_store(config.db)  # first: a bad URL fails before any loading
        try:
            #: variant -> served model; replaced as a whole on reload (one reference swap)
            self.models: dict[str, ServedModel] = {
                name: self._load(path) for name, path in config.variants.items()
            }
        except BaseException:
            self.store.close()
            raise
        self.live = LiveHistories()
        self.live.sync(self.store, since=config.history_since)
        self.request_log = RequestLogBuffer(self.store)
        self._reload_lock = threading.Lock()
        #: the page's catalog of each served model, built on first use; a model swapped
        #: out by a reload takes its catalog with it
        self._catalogs: weakref.WeakKeyDictionary[ServedModel, Catalog] = (
            weakref.WeakKeyDictionary()
        )
        self._catalog_lock = threading.Lock()
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None

    def _load(self, path: str | Path) -> ServedModel:
        config = self.config
        return ServedModel.load(
            path,
            candidates=config.candidates,
            ann_from=config.ann_from,
            max_batch=config.max_batch,
            on_batch=self.metrics.batch_size.observe,
        )

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start reading other workers' events (when ``sync_seconds`` > 0)."""
        if self.config.sync_seconds > 0 and self._syncer is None:
            self._syncer = threading.Thread(
                target=self._sync_loop, name="recstack-sync", daemon=True
            )
            self._syncer.start()

    def _sync_loop(self) -> None:
        while not self._stop.wait(self.config.sync_seconds):
            try:
                self.live.sync(self.store, since=self.config.history_since)
            except StoreError:
                continue  # a database hiccup: the next round reads from the same cursor

    def close(self) -> None:
        """Stop the threads, write the pending request logs, close the store."""
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join()
            self._syncer = None
        try:
            self.request_log.close()
        finally:
            self.store.close()

    # ------------------------------------------------------------------ recommending
    async def recommend(
        self,
        key: str,
        user_id: str | None,
        history: list[str] | None,
        k: int,
        exclude_seen: bool,
        explain: bool,
        rerank: str | None,
        variant: str | None = None,
        exclude: list[str] | None = None,
        category: str | None = None,
        times: list[float] | None = None,
    ) -> dict[str, Any]:
        """The response of a list: for ``user_id``'s stored + live history, or for a
        posted ``history`` (scored alone, its events at ``times`` when given: unix seconds,
        else one second apart). ``variant`` serves that variant, else ``key``
        chooses one. ``exclude`` and ``category`` filter the items (see
        :meth:`ServedModel.recommend`). Concurrent requests to one variant are scored in
        micro-batches."""
        request_id = uuid.uuid4().hex
        where = "query" if history is None else "body"
        models = self.models  # one reference: a reload swaps the whole dict
        if variant is not None and variant not in models:
            msg = f"no variant {variant!r} (variants: {', '.join(models)})"
            raise _invalid((where, "variant"), msg, variant)
        variant = variant or self.experiment.assign(key)
        served = models[variant]
        rerank = rerank or None  # `rerank=` (empty) is no re-ranker
        category = category or None
        if category is not None:
            try:
                served.category_mask(category)
            except ConfigError as exc:
                raise _invalid((where, "category"), str(exc), category) from None
        if history is None and user_id is not None:
            items, times = self.live.get(user_id)
            call = partial(served.recommend_async, user_id, items, times)
        else:
            call = partial(served.recommend_async, None, history or [], times)
        try:
            result = await call(
                k=k,
                exclude_seen=exclude_seen,
                explain=explain,
                rerank=rerank,
                exclude_items=exclude or (),
                category=category,
            )
        except ConfigError as exc:  # a bad or unusable re-ranker spec
            raise _invalid((where, "rerank"), str(exc), rerank) from None
        self.request_log.put(RequestLog(request_id, variant, user_id, result.items))
        self.metrics.recommendations.labels(variant, str(result.fallback).lower()).inc()
        body = _response(request_id, variant, user_id, result)
        if history is not None:
            body["unknown_items"] = list(result.unknown_items)
        return body

    # ------------------------------------------------------------------ the web page
    def catalog(self, variant: str | None) -> tuple[str, Catalog]:
        """``variant`` (default: the first) and the catalog of the model serving it."""
        models = self.models
        name = variant or next(iter(models))
        served = models.get(name)
        if served is None:
            raise HTTPException(404, f"no variant {name!r} (variants: {', '.join(models)})")
        with self._catalog_lock:
            found = self._catalogs.get(served)
        if found is None:
            found = Catalog(served)  # outside the lock: a second build is only wasted work
            with self._catalog_lock:
                found = self._catalogs.setdefault(served, found)
        return name, found

    def user_history(self, user_id: str, limit: int, variant: str | None) -> dict[str, Any]:
        """The latest ``limit`` events of ``user_id`` as scored: the stored history of the
        model of ``variant`` (default: the user's assigned one), then the live events."""
        name, catalog = self.catalog(variant or self.experiment.assign(user_id))
        items, times = catalog.stored_history(user_id)
        live_items, live_times = self.live.get(user_id)
        n_stored, all_items, all_times = len(items), items + live_items, times + live_times
        latest = range(len(all_items) - 1, max(len(all_items) - limit, 0) - 1, -1)
        shown = catalog.lookup([all_items[i] for i in latest])
        for entry, i in zip(shown, latest, strict=True):
            entry["timestamp"] = all_times[i]
            entry["live"] = i >= n_stored
        return {
            "user_id": user_id,
            "variant": name,
            "known": n_stored > 0,
            "n_events": len(all_items),
            "items": shown,
        }

    def variants(self) -> dict[str, Any]:
        """Each variant's traffic share, model, and whether its items have titles and
        genres (building the page's catalogs, so the page's first search is quick)."""
        out = []
        for name, served in self.models.items():
            _, catalog = self.catalog(name)
            info = served.describe()
            out.append(
                {
                    "name": name,
                    "traffic": self.experiment.traffic[name],
                    "model": info["model"],
                    "n_items": info["n_items"],
                    "n_users": info["n_users"],
                    "titles": catalog.titles is not None,
                    "genres": catalog.has_genres,
                }
            )
        return {"variants": out}

    # ------------------------------------------------------------------ admin
    def reload(self, variant: str | None, model_dir: str | None) -> dict[str, Any]:
        """Load ``model_dir`` (default: the variant's current directory) completely, then
        swap it in for ``variant``: a request is answered by the old or the new model."""
        if variant is None:
            if len(self.models) > 1:
                raise _invalid(("body", "variant"), "name the variant to reload", None)
            variant = next(iter(self.models))
        if variant not in self.models:
            raise HTTPException(404, f"no variant {variant!r} (variants: {', '.join(self.models)})")
        with self._reload_lock:
            current = self.models[variant]
            path = Path(model_dir) if model_dir else current.path
            if path is None:
                raise _invalid(("body", "model_dir"), "the variant has no model directory", None)
            t0 = time.perf_counter()
            try:
                served = self._load(path)
            except (RecstackError, OSError) as exc:
                raise _invalid(("body", "model_dir"), f"cannot load {path}: {exc}", None) from None
            self.models = {**self.models, variant: served}
        return {
            "variant": variant,
            "seconds": time.perf_counter() - t0,
            "served": served.describe(),
        }

    def health(self) -> dict[str, Any]:
        problem = None if self.request_log.error is None else str(self.request_log.error)
        return {
            "status": "ok" if problem is None else "degraded",
            "variants": {name: m.describe() for name, m in self.models.items()},
            "traffic": self.experiment.traffic,
            "live_users": self.live.n_users,
            "live_events": self.live.n_events,
            "problem": problem,
        }


def _response(request_id: str, variant: str, user_id: str | None, result: Served) -> dict[str, Any]:
    items: list[dict[str, Any]] = [
        {"item": item, "rank": rank, "score": score}
        for rank, (item, score) in enumerate(zip(result.items, result.scores, strict=True), 1)
    ]
    if result.explanations is not None:
        for entry, why in zip(items, result.explanations, strict=True):
            entry["explanation"] = why
    return {
        "request_id": request_id,
        "variant": variant,
        "user_id": user_id,
        "fallback": result.fallback,
        "items": items,
    }


def _invalid(loc: tuple[str, ...], msg: str, value: Any) -> RequestValidationError:
    """A 422 in FastAPI's own shape (``{"detail": [{"loc", "msg", "type"}]}``)."""
    return RequestValidationError([{"loc": loc, "msg": msg, "type": "value_error", "input": value}])


def _validation_message(errors: list[dict[str, Any]]) -> str:
    """``"query.k: Input should be less than or equal to 1000"``, one per error."""
    parts = [
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
        for e in errors[:5]
    ]
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


# ---------------------------------------------------------------------------- the app
def create_app(config: ServeConfig) -> FastAPI:
    """The FastAPI app serving ``config``'s models (loaded now; errors raise here).

    Run it with uvicorn (``recstack serve`` does). The store's threads start and stop with
    the app's lifespan; without one (a ``TestClient`` outside ``with``) the request log
    still writes from a daemon thread.
    """
    service = Service(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            service.close()

    app = FastAPI(
        title="recstack",
        version=__version__,
        summary="Recommendations with live updates and A/B tests.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    app.add_middleware(Instrument, metrics=service.metrics)  # outermost: counts 413s too

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        return JSONResponse(
            {"detail": jsonable_encoder(errors), "message": _validation_message(errors)},
            status_code=422,
        )

    @app.exception_handler(StoreError)
    async def store_down(request: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    not_found: dict[int | str, dict[str, Any]] = {404: {"model": schemas.Error}}
    body_errors: dict[int | str, dict[str, Any]] = {
        400: {"model": schemas.Error, "description": "The body is not valid JSON."},
        413: {"model": schemas.Error, "description": "The body is larger than the limit."},
    }

    @app.get("/recommend/{user_id}", response_model=schemas.RecommendResponse)
    async def recommend_user(
        user_id: IdPath,
        k: KQuery = 10,
        exclude_seen: bool = True,
        explain: bool = False,
        rerank: RerankQuery = None,
        variant: Annotated[
            str | None,
            Query(max_length=64, description="Serve this variant (default: the A/B assignment)."),
        ] = None,
        exclude: Annotated[
            list[Annotated[str, StringConstraints(min_length=1, max_length=schemas.MAX_ID)]] | None,
            Query(
                max_length=schemas.MAX_K,
                description="Item IDs never to return (repeatable: out of stock, in the cart).",
            ),
        ] = None,
        category: CategoryQuery = None,
    ) -> JSONResponse:
        """Top-k for a user: stored history + live events; popularity for an unknown user."""
        body = await service.recommend(
            user_id, user_id, None, k, exclude_seen, explain, rerank, variant, exclude, category
        )
        return JSONResponse(body)

    @app.post("/recommend", response_model=schemas.RecommendResponse, responses=body_errors)
    async def recommend_history(body: schemas.RecommendRequest) -> JSONResponse:
        """Top-k for a posted history (new or anonymous users)."""
        key = body.user_id if body.user_id is not None else uuid.uuid4().hex
        answer = await service.recommend(
            key, body.user_id, body.history, body.k,
            body.exclude_seen, body.explain, body.rerank, body.variant,
            body.exclude, body.category, body.times,
        )  # fmt: skip
        return JSONResponse(answer)

    @app.get("/similar/{item_id}", response_model=schemas.SimilarResponse, responses=not_found)
    async def similar(
        item_id: IdPath,
        k: KQuery = 10,
        variant: Annotated[str | None, Query(description="Default: the first.")] = None,
    ) -> JSONResponse:
        """The items most similar to an item (the served model's similarity)."""
        name = variant or next(iter(service.models))
        served = service.models.get(name)
        if served is None:
            raise HTTPException(404, f"no variant {name!r}")
        found = await run_in_threadpool(served.similar, item_id, k)
        if found is None:
            raise HTTPException(404, f"unknown item {item_id!r}")
        items = [
            {"item": i, "rank": r, "score": s}
            for r, (i, s) in enumerate(zip(*found, strict=True), 1)
        ]
        return JSONResponse({"item_id": item_id, "variant": name, "items": items})

    @app.post(
        "/events",
        response_model=schemas.EventsResponse,
        responses={503: {"model": schemas.Error}, **body_errors},
    )
    def post_events(body: schemas.EventsRequest) -> dict[str, int]:
        """Store a batch of events (durable before the answer; duplicates by event_id are
        skipped); clicks and conversions extend their user's history at once."""
        events = [
            Event(e.event_id, e.user_id, e.item_id, e.type, _unix(e.timestamp), e.request_id)
            for e in body.events
        ]
        stored = service.store.add_events(events)
        service.live.add(events)  # only once durable: live never holds a lost event
        m = service.metrics
        for kind in ("impression", "click", "conversion"):
            n = sum(1 for e in events if e.type == kind)
            if n:
                m.events_received.labels(kind).inc(n)
        m.events_stored.inc(stored)
        return {"received": len(events), "stored": stored, "duplicates": len(events) - stored}

    @app.get("/experiments/report", response_model=schemas.ExperimentReport)
    def report() -> dict[str, Any]:
        """Per variant impressions, CTR and conversion rate (95% Wilson intervals) and
        two-proportion z-tests between variants."""
        service.request_log.flush()  # count every list served so far
        return experiment_report(service.store.counts_by_variant(), list(service.models))

    def admin(credentials: AdminCredentials) -> None:
        token = config.token
        if token is None:
            raise HTTPException(
                403, "reloading is disabled: no admin token (--admin-token or RECSTACK_ADMIN_TOKEN)"
            )
        if credentials is None:
            raise HTTPException(
                401, "an admin bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )
        if not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
            raise HTTPException(403, "wrong admin token")

    @app.post(
        "/admin/reload",
        response_model=schemas.ReloadResponse,
        dependencies=[Depends(admin)],
        responses={
            401: {"model": schemas.Error},
            403: {"model": schemas.Error},
            **not_found,
            **body_errors,
        },
    )
    def reload(body: schemas.ReloadRequest | None = None) -> dict[str, Any]:
        """Load a model directory completely, then swap it in atomically."""
        if body is None:
            return service.reload(None, None)
        return service.reload(body.variant, body.model_dir)

    # ------------------------------------------------------------------ the web page
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page() -> FileResponse:
        """The web page (``/?user=ID`` opens that user)."""
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    @app.get("/items", response_model=schemas.ItemsResponse, responses=not_found)
    def items(
        q: Annotated[
            str | None, Query(max_length=schemas.MAX_SPEC, description="Title substring.")
        ] = None,
        ids: Annotated[
            list[str] | None,
            Query(alias="id", description="Look these item IDs up instead (repeatable)."),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_SEARCH)] = 20,
        variant: VariantQuery = None,
    ) -> dict[str, Any]:
        """Items whose title contains ``q`` (case-insensitive; titles starting with it
        first, then the most popular; no ``q``: the most popular), or the items
        ``id=...`` in order (an unknown one without title). Titles and genres come from
        the model's item features: without them they are null and empty, and ``q``
        matches IDs."""
        if ids is not None and len(ids) > schemas.MAX_K:
            msg = f"at most {schemas.MAX_K} IDs, got {len(ids)}"
            raise _invalid(("query", "id"), msg, None)
        _, catalog = service.catalog(variant)
        if ids is not None:
            return {"items": catalog.lookup(ids)}
        return {"items": catalog.search_items(q or "", limit)}

    @app.get("/users", response_model=schemas.UsersResponse, responses=not_found)
    def users(
        q: Annotated[str, Query(max_length=schemas.MAX_ID, description="ID prefix.")] = "",
        limit: Annotated[int, Query(ge=1, le=MAX_SEARCH)] = 20,
        variant: VariantQuery = None,
    ) -> dict[str, Any]:
        """Users of the model's training data whose ID starts with ``q`` (shortest
        first), with their number of training events."""
        _, catalog = service.catalog(variant)
        return {"users": catalog.search_users(q, limit)}

    @app.get(
        "/users/{user_id}/history", response_model=schemas.HistoryResponse, responses=not_found
    )
    def history(
        user_id: IdPath,
        limit: Annotated[int, Query(ge=1, le=schemas.MAX_K)] = 50,
        variant: VariantQuery = None,
    ) -> dict[str, Any]:
        """The user's latest events, latest first: training history, then the clicks and
        conversions received while serving (``live``); empty for an unknown user."""
        return service.user_history(user_id, limit, variant)

    @app.get("/variants", response_model=schemas.VariantsResponse)
    def variants() -> dict[str, Any]:
        """The served variants, their traffic shares and models."""
        return service.variants()

    @app.get("/health", response_model=schemas.Health)
    async def health() -> dict[str, Any]:
        return service.health()

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """Prometheus text format: requests, latency histogram, events, lists served."""
        return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    served_names = list(config.variants)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _with_variant_names(get_openapi_schema(), served_names)
        return app.openapi_schema

    get_openapi_schema = app.openapi
    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _with_variant_names(doc: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The OpenAPI document with every ``variant`` parameter and body or response field
    limited to the served variant names (fixed for the app's life: a reload swaps a
    variant's model, never its name), so clients and generated tests know the valid
    values."""

    def restrict(schema: dict[str, Any]) -> None:
        options = schema.get("anyOf", [schema])
        for option in options:
            if option.get("type") == "string":
                option["enum"] = list(names)

    for item in doc.get("paths", {}).values():
        for operation in item.values():
            for param in operation.get("parameters", []):
                if param.get("name") == "variant":
                    restrict(param["schema"])
    for component in doc.get("components", {}).get("schemas", {}).values():
        field = component.get("properties", {}).get("variant")
        if field is not None:
            restrict(field)
    return doc


def _unix(ts: float | Any) -> float:
    """Unix seconds of a number or a datetime (naive ones are UTC)."""
    if isinstance(ts, int | float):
        return float(ts)
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return float(ts.timestamp())


def app_from_env() -> FastAPI:
    """The app of the configuration in ``$RECSTACK_SERVE_CONFIG`` (JSON): the factory
    each uvicorn worker calls when ``recstack serve --workers N`` runs several."""
    text = os.environ.get(CONFIG_ENV)
    if not text:
        raise ConfigError(f"{CONFIG_ENV} is not set: run the service with `recstack serve`")
    return create_app(ServeConfig.from_json(text))
