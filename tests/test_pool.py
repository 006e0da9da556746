"""A request holds at most one pooled connection (issue 13, item 1).

Every read and write of a GraphQL request goes through its RequestReader: a mutation's verb
runs in `reader.write()`, a session on the request's own connection, and the reads it makes
meanwhile (the ownership check, a loader) run inside that write. Before, a mutation gave the
read connection back, opened a session (a second connection), then read through the reader
again: five mutations in flight held the pool's five connections and waited for a sixth,
and every other request waited with them until the pool's timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import event

from kabinet.app import create_app
from models.access import AuthSession
from models.base import utcnow
from tests.conftest import gql
from tests.factories import make_subscriber, make_touch_due, sign_in

TOP_UP = """
mutation($input: CreateTopUpInput!) {
  createTopUp(input: $input) { payment { id status } errors { field code message } }
}
"""
ACTIVATE_OPTION = """
mutation($i: ActivateOptionInput!) {
  activateOption(input: $i) { contract { number } errors { field code message } }
}
"""
REGIONS = "{ regions { code } }"
CONTRACT = "query($n: String!) { contract(number: $n) { number balance { amount } } }"

# More mutations at once than the pool has connections (5, no overflow: the defaults).
IN_FLIGHT = 12


@contextmanager
def checked_out_per_task(engine: Any) -> Iterator[dict[int, int]]:
    """The most connections any one task held at once. The ASGI transport serves each
    request in its own task, and a request's loaders run in tasks of their own: so the
    count is per request when only one request runs, which is how it is used below."""
    held: dict[int, int] = {}
    most: dict[int, int] = {0: 0}

    def checkout(*_: Any) -> None:
        held[0] = held.get(0, 0) + 1
        most[0] = max(most[0], held[0])

    def checkin(*_: Any) -> None:
        held[0] = held.get(0, 0) - 1

    pool = engine.sync_engine.pool
    event.listen(pool, "checkout", checkout)
    event.listen(pool, "checkin", checkin)
    try:
        yield most
    finally:
        event.remove(pool, "checkout", checkout)
        event.remove(pool, "checkin", checkin)


@pytest.fixture
async def pooled(settings: Any) -> Any:
    """The app with the production pool defaults and its own engine."""
    assert settings.database_pool_size == 5 and settings.database_max_overflow == 0
    application = create_app(settings)
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield application, client
    await application.state.engine.dispose()


async def test_one_request_never_holds_two_connections(
    pooled: Any, engine: Any, session_factory: Any, settings: Any
) -> None:
    # given: a subscriber signed in (the sign-in itself is checked too)
    app, client = pooled
    made = await make_subscriber(session_factory, settings, balance=Decimal("100.00"))
    number = made.contract_numbers[0]
    with checked_out_per_task(app.state.engine) as most:
        headers = await sign_in(client, made.login or number)
    assert most[0] == 1, "sign-in"

    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("a read", CONTRACT, {"n": number}),
        (
            "createTopUp",
            TOP_UP,
            {
                "input": {
                    "contractNumber": number,
                    "amount": "100.00",
                    "method": "BANK_CARD",
                    "idempotencyKey": "pool-test-key-1",
                }
            },
        ),
        (
            "activateOption, unknown option",
            ACTIVATE_OPTION,
            {"i": {"contractNumber": number, "optionId": "U2VydmljZU9wdGlvbjo5OTk5OQ=="}},
        ),
        (
            "a stranger's contract",
            TOP_UP,
            {
                "input": {
                    "contractNumber": "770000000000",
                    "amount": "100.00",
                    "method": "BANK_CARD",
                    "idempotencyKey": "pool-test-key-2",
                }
            },
        ),
    ]
    for name, document, variables in requests:
        # when: the request runs alone (the first with its session's per-minute touch due)
        if name == "a read":
            await make_touch_due(session_factory)
        with checked_out_per_task(app.state.engine) as most:
            response = await client.post(
                "/graphql", json={"query": document, "variables": variables}, headers=headers
            )
        # then: it answered, with one connection at most at any moment
        assert response.status_code == 200, (name, response.text)
        assert "errors" not in response.json(), (name, response.json())
        assert most[0] == 1, name
        if name == "a read":  # the touch was made, on the request's one connection
            async with session_factory() as session:
                last_used = await session.scalar(sa.select(sa.func.max(AuthSession.last_used_at)))
            assert last_used is not None and utcnow() - last_used < timedelta(minutes=1)


async def test_mutations_beyond_the_pool_do_not_stall_a_bystander(
    pooled: Any, session_factory: Any, settings: Any
) -> None:
    # given: one subscriber, and the pool's defaults (5 connections, no overflow)
    _, client = pooled
    made = await make_subscriber(session_factory, settings, balance=Decimal("100.00"))
    number = made.contract_numbers[0]
    headers = await sign_in(client, made.login or number)

    async def top_up(index: int) -> Any:
        variables = {
            "input": {
                "contractNumber": number,
                "amount": "100.00",
                "method": "BANK_CARD",
                "idempotencyKey": f"stall-test-{index:04d}",
            }
        }
        return await client.post(
            "/graphql", json={"query": TOP_UP, "variables": variables}, headers=headers
        )

    async def unknown_option() -> Any:
        variables = {"i": {"contractNumber": number, "optionId": "U2VydmljZU9wdGlvbjo5OTk5OQ=="}}
        return await client.post(
            "/graphql", json={"query": ACTIVATE_OPTION, "variables": variables}, headers=headers
        )

    async def bystander() -> float:
        await asyncio.sleep(0.01)  # the mutations are in flight
        started = time.perf_counter()
        data = await gql(client, REGIONS)
        assert data["regions"]
        return time.perf_counter() - started

    # when: twelve top-ups and twelve refused option activations at once, and a bystander
    mutations = [top_up(i) for i in range(IN_FLIGHT)] + [unknown_option() for _ in range(IN_FLIGHT)]
    *answers, waited = await asyncio.wait_for(asyncio.gather(*mutations, bystander()), timeout=20)

    # then: the bystander answered at once, and every mutation answered as it should
    assert waited < 2.0, f"the bystander waited {waited:.1f} s"
    for response in answers[:IN_FLIGHT]:
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body
        assert body["data"]["createTopUp"]["errors"] == []
        assert body["data"]["createTopUp"]["payment"]["status"] == "PENDING"
    for response in answers[IN_FLIGHT:]:
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body
        assert [e["code"] for e in body["data"]["activateOption"]["errors"]] == ["NOT_FOUND"]
