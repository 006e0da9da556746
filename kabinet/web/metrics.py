"""Prometheus metrics: requests and latency by GraphQL operation name.

`/metrics` answers anyone in development; with `KABINET_METRICS_TOKEN` set it wants
`Authorization: Bearer <token>` (401 otherwise), and in production without a token it is
not there at all (404): the names and rates of operations are nobody else's business.
"""

from __future__ import annotations

import hmac
import re

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

_OPERATION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_OPERATION_LABELS = 200


class Metrics:
    """One registry per app, so that tests and several apps in one process do not collide."""

    def __init__(self, *, token: str | None = None, closed_without_token: bool = False) -> None:
        self._token = token.encode() if token else None
        self._closed = closed_without_token and self._token is None
        self.registry = CollectorRegistry()
        self.graphql_requests = Counter(
            "kabinet_graphql_requests_total",
            "GraphQL requests by operation name and outcome.",
            ["operation", "outcome"],
            registry=self.registry,
        )
        self.graphql_seconds = Histogram(
            "kabinet_graphql_request_seconds",
            "GraphQL request latency by operation name.",
            ["operation"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self.http_responses = Counter(
            "kabinet_http_responses_total",
            "HTTP responses by route and status class.",
            ["route", "status"],
            registry=self.registry,
        )
        self._operations: set[str] = set()

    def operation_label(self, name: object, *, signed_in_success: bool = True) -> str:
        """A bounded label: client-chosen names could otherwise grow the series forever.
        A name takes one of the MAX_OPERATION_LABELS slots only from a signed-in caller's
        successful operation; anyone else's goes to "other", so that anonymous callers
        cannot fill the slots with junk names."""
        if not isinstance(name, str) or not _OPERATION_NAME.match(name):
            return "anonymous" if name is None else "invalid"
        if name in self._operations:
            return name
        if not signed_in_success or len(self._operations) >= MAX_OPERATION_LABELS:
            return "other"
        self._operations.add(name)
        return name

    async def endpoint(self, request: Request) -> Response:
        if self._closed:
            return PlainTextResponse("Not Found\n", status_code=404)
        if self._token is not None:
            scheme, _, presented = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                presented.strip().encode(), self._token
            ):
                return PlainTextResponse(
                    "Unauthorized\n", status_code=401, headers={"WWW-Authenticate": "Bearer"}
                )
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
