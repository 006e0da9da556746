"""Prometheus metrics: requests and latency by GraphQL operation name."""

from __future__ import annotations

import re

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response

_OPERATION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_OPERATION_LABELS = 200


class Metrics:
    """One registry per app, so that tests and several apps in one process do not collide."""

    def __init__(self) -> None:
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

    def operation_label(self, name: object) -> str:
        """A bounded label: client-chosen names could otherwise grow the series forever."""
        if not isinstance(name, str) or not _OPERATION_NAME.match(name):
            return "anonymous" if name is None else "invalid"
        if name in self._operations:
            return name
        if len(self._operations) >= MAX_OPERATION_LABELS:
            return "other"
        self._operations.add(name)
        return name

    async def endpoint(self, _request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
