"""`create_app(settings)`: the Starlette application, assembled explicitly."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.db import create_engine, create_session_factory
from core.logs import request_id_var
from core.outbox import run_worker
from core.settings import Settings, get_settings
from core.webhooks_out import run_deliverer
from kabinet.web.explorer import explorer_routes
from kabinet.web.graphql import GraphQLEndpoint
from kabinet.web.health import healthz, readyz
from kabinet.web.metrics import Metrics
from kabinet.web.payments import payment_routes
from kabinet.web.statements import statement_routes
from kabinet.web.yookassa import yookassa_routes
from resolvers.billing import run_billing_scheduler
from resolvers.payments import run_top_up_expiry
from schema import build_schema

log = logging.getLogger("kabinet.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


# Every answer: no content sniffing; no caching unless the route says otherwise (answers
# to signed-in requests must never be stored); HSTS in production (SPEC §4).
_NOSNIFF = (b"x-content-type-options", b"nosniff")
_NO_STORE = (b"cache-control", b"no-store")
_HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")


class RequestIdMiddleware:
    """Takes a sane `X-Request-ID` or makes one; it is logged with every line of the
    request and returned in the response, with the headers every answer carries."""

    def __init__(self, app: ASGIApp, metrics: Metrics, production: bool = False) -> None:
        self.app = app
        self.metrics = metrics
        self.production = production

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(8)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
                names = {name.lower() for name, _ in headers}
                if b"x-content-type-options" not in names:
                    headers.append(_NOSNIFF)
                if b"cache-control" not in names:
                    headers.append(_NO_STORE)
                if self.production and b"strict-transport-security" not in names:
                    headers.append(_HSTS)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.http_responses.labels(path, f"{status // 100}xx").inc()
            if status >= 500:
                log.warning(
                    "request failed",
                    extra={
                        "path": path,
                        "status": status,
                        "ms": round((time.perf_counter() - started) * 1000, 1),
                    },
                )
            request_id_var.reset(token)


async def _to_explorer(_request: Request) -> Response:
    return RedirectResponse("/explorer", status_code=308)  # relative: no Host header in it


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    settings.check_production()
    metrics = Metrics(token=settings.metrics_token, closed_without_token=settings.is_production)
    graphql = GraphQLEndpoint(schema=build_schema(settings), settings=settings, metrics=metrics)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The outbox worker runs inside `serve` (one per worker process: claims are safe
        # between them). Test clients that skip the lifespan run no worker.
        # So does the billing day when KABINET_BILLING_IN_SERVE is on (a rerun of a day that
        # another process billed charges nothing), and, always, the expiry of abandoned
        # top-ups (each is canceled once, whichever process gets there).
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(run_worker(app.state.session_factory, settings, stop)),
            asyncio.create_task(run_billing_scheduler(app.state.session_factory, settings, stop)),
            asyncio.create_task(run_top_up_expiry(app.state.session_factory, settings, stop)),
            # Events to the operator's systems (SPEC §9): deliverers in several processes
            # claim different deliveries.
            asyncio.create_task(run_deliverer(app.state.session_factory, settings, stop)),
        ]
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            await app.state.engine.dispose()

    routes = [
        Route("/graphql", graphql.handle, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics.endpoint, methods=["GET"]),
        *statement_routes(),
        *payment_routes(settings),
        *yookassa_routes(settings),
        *explorer_routes(enabled=True, staff_only=settings.is_production),
        Route("/explorer/", _to_explorer, methods=["GET"]),
    ]
    middleware = [
        Middleware(RequestIdMiddleware, metrics=metrics, production=settings.is_production)
    ]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["POST"],
                allow_headers=["Authorization", "Content-Type"],
                allow_credentials=True,
                # A front end reads the request id of a failed call to quote it (SPEC §4).
                expose_headers=["X-Request-ID"],
            )
        )
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    # Starlette's trailing-slash redirect builds its Location from the Host header (SPEC §5:
    # never); the one path people type with a slash gets a relative redirect instead.
    app.router.redirect_slashes = False
    # The engine is made here, not in the lifespan, so that test clients without lifespan
    # support work too; it connects lazily.
    app.state.settings = settings
    app.state.engine = create_engine(settings)
    app.state.session_factory = create_session_factory(app.state.engine)
    app.state.metrics = metrics
    return app
