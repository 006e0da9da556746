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
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.db import create_engine, create_session_factory
from core.logs import request_id_var
from core.outbox import run_worker
from core.settings import Settings, get_settings
from kabinet.web.explorer import explorer_routes
from kabinet.web.graphql import GraphQLEndpoint
from kabinet.web.health import healthz, readyz
from kabinet.web.metrics import Metrics
from kabinet.web.payments import payment_routes
from kabinet.web.statements import statement_routes
from resolvers.billing import run_billing_scheduler
from schema import build_schema

log = logging.getLogger("kabinet.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestIdMiddleware:
    """Takes a sane `X-Request-ID` or makes one; it is logged with every line of the
    request and returned in the response."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

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
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
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


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    settings.check_production()
    metrics = Metrics()
    graphql = GraphQLEndpoint(schema=build_schema(settings), settings=settings, metrics=metrics)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The outbox worker runs inside `serve` (one per worker process: claims are safe
        # between them). Test clients that skip the lifespan run no worker.
        # So does the billing day when KABINET_BILLING_IN_SERVE is on (a rerun of a day that
        # another process billed charges nothing).
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(run_worker(app.state.session_factory, settings, stop)),
            asyncio.create_task(run_billing_scheduler(app.state.session_factory, settings, stop)),
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
        *explorer_routes(enabled=True, staff_only=settings.is_production),
    ]
    middleware = [Middleware(RequestIdMiddleware, metrics=metrics)]
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
    # The engine is made here, not in the lifespan, so that test clients without lifespan
    # support work too; it connects lazily.
    app.state.settings = settings
    app.state.engine = create_engine(settings)
    app.state.session_factory = create_session_factory(app.state.engine)
    app.state.metrics = metrics
    return app
