"""Operations: health, readiness, metrics, request ids, JSON logs."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx

from core.logs import JsonFormatter, request_id_var
from kabinet.app import create_app
from tests.conftest import fast_settings, gql
from tests.factories import make_subscriber, sign_in


async def test_healthz(client: Any) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_readyz_when_migrated(client: Any) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["migrations"] == "current"


async def _get(settings: Any, path: str) -> httpx.Response:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return await http.get(path)
    finally:
        await app.state.engine.dispose()


async def test_readyz_when_not_migrated(tmp_path: Path) -> None:
    settings = fast_settings(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    response = await _get(settings, "/readyz")
    assert response.status_code == 503
    assert response.json()["migrations"] == "behind"


async def test_readyz_when_the_database_is_unreachable() -> None:
    settings = fast_settings("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    response = await _get(settings, "/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "unreachable"}


async def test_metrics_count_graphql_operations(
    client: Any, session_factory: Any, settings: Any
) -> None:
    # a signed-in caller's named operation is a label of its own (signed-out names share
    # "other": tests/web/test_http_contract.py)
    made = await make_subscriber(session_factory, settings)
    bearer = await sign_in(client, made.login)
    await client.post(
        "/graphql",
        json={"query": "query Regions { regions { code } }", "operationName": "Regions"},
        headers=bearer,
    )
    await gql(client, "{ channels { id } }")
    text = (await client.get("/metrics")).text
    assert 'kabinet_graphql_request_seconds_count{operation="Regions"} 1.0' in text
    # no operationName: the sign-in and the channels
    assert 'kabinet_graphql_request_seconds_count{operation="anonymous"} 2.0' in text
    assert 'kabinet_http_responses_total{route="/graphql",status="2xx"}' in text


async def test_request_id_is_echoed_or_made(client: Any) -> None:
    mine = await client.get("/healthz", headers={"x-request-id": "abc12345-req"})
    assert mine.headers["x-request-id"] == "abc12345-req"
    made = await client.get("/healthz", headers={"x-request-id": "bad id\n"})
    assert made.headers["x-request-id"] != "bad id\n" and len(made.headers["x-request-id"]) == 16


def test_json_logs_carry_the_request_id() -> None:
    token = request_id_var.set("req-12345678")
    try:
        record = logging.LogRecord(
            "kabinet", logging.INFO, __file__, 1, "hello %s", ("world",), None
        )
        record.operation = "Regions"
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["message"] == "hello world"
    assert line["request_id"] == "req-12345678"
    assert line["operation"] == "Regions" and line["level"] == "INFO"
