"""Each threat-table row's test must fail when its defence is switched off (issue 7).

For seven rows of docs/security.md, each test here
1. tries the attack against the real app and sees it refused,
2. switches the one defence off (a setting, or the one function that decides),
3. tries the same attack again and sees it SUCCEED,
4. runs the row's own test with the defence still off and sees it FAIL (an assertion,
   or a lookup of the error it expected and did not get).

So a row's test cannot pass for some reason other than its defence.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from auth import ratelimit
from core.settings import Settings
from kabinet.app import create_app
from kabinet.web.graphql import GraphQLEndpoint
from models import Contract
from tests import test_access, test_limits
from tests.conftest import gql, gql_raw, production_settings
from tests.factories import LOGIN, assert_session_ended, make_subscriber, sign_in
from tests.money import test_webhook
from tests.security import test_threats

# How a row's test fails: an assertion, or a lookup of the error it expected and did not get.
ROW_TEST_FAILED = (AssertionError, LookupError)
DEEP = "{" + " tvPackages {" * 11 + " id" + " }" * 11 + " }"
ELEVEN_ALIASES = "{ " + " ".join(f"a{i}: regions {{ code }}" for i in range(11)) + " }"


@asynccontextmanager
async def client_for(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The real app (create_app) with other settings, on the test's database."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http
    finally:
        await app.state.engine.dispose()


def codes(body: dict[str, Any]) -> list[str | None]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors", [])]


async def balance(session_factory: Any, number: str) -> Decimal:
    async with session_factory() as session:
        value = await session.scalar(sa.select(Contract.balance).where(Contract.number == number))
    return Decimal(value).quantize(Decimal("0.01"))


# -- query limits ------------------------------------------------------------------------------


async def test_depth_limit_off(client: Any, settings: Any, engine: Any) -> None:
    """Row "Deep queries". The schema has no cycle today (its deepest real path is 9
    levels), so with the limit raised the 12-level document is no longer refused for its
    depth and goes on to field validation: the depth rule was what stopped it."""
    # defence on
    body = (await gql_raw(client, DEEP)).json()
    assert "depth" in body["errors"][0]["message"].lower()
    # defence off: the limit raised to 1000
    async with client_for(settings.model_copy(update={"max_query_depth": 1000})) as off:
        body = (await gql_raw(off, DEEP)).json()
        assert all("depth" not in e["message"].lower() for e in body["errors"])
        assert "Cannot query field" in body["errors"][0]["message"]
        with pytest.raises(ROW_TEST_FAILED):
            await test_limits.test_too_deep_is_refused(off)


async def test_alias_limit_off(client: Any, settings: Any, engine: Any) -> None:
    """Row "Alias flooding": eleven aliased fields in one request."""
    body = (await gql_raw(client, ELEVEN_ALIASES)).json()
    assert body.get("data") is None and "alias" in body["errors"][0]["message"].lower()
    async with client_for(settings.model_copy(update={"max_aliases": 1000})) as off:
        body = (await gql_raw(off, ELEVEN_ALIASES)).json()
        assert "errors" not in body
        assert len(body["data"]) == 11 and body["data"]["a10"]
        with pytest.raises(ROW_TEST_FAILED):
            await test_limits.test_too_many_aliases_is_refused(off)


# -- introspection ------------------------------------------------------------------------------


async def test_introspection_gate_off(
    migrated_url: str, engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row "Schema discovery": a signed-out caller asks a production service for its
    schema, staff types and all."""
    query = "{ __schema { types { name } } }"
    async with client_for(production_settings(migrated_url)) as production:
        body = (await gql_raw(production, query)).json()
        assert "data" not in body and codes(body) == ["FORBIDDEN"]
        monkeypatch.setattr(GraphQLEndpoint, "_introspection_allowed", lambda self, context: True)
        body = (await gql_raw(production, query)).json()
        names = {t["name"] for t in body["data"]["__schema"]["types"]}
        assert {"AuditEntry", "AdjustBalanceInput"} <= names
    with pytest.raises(ROW_TEST_FAILED):
        await test_limits.test_introspection_is_closed_to_anonymous_callers_in_production(
            migrated_url, engine
        )


# -- CSRF ----------------------------------------------------------------------------------------


async def test_cross_site_check_off(
    client: Any, session_factory: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row "CSRF": a page on evil.example makes the victim's browser POST a mutation with
    the session cookie; with the Origin / Sec-Fetch-Site check gone, it signs the victim
    out everywhere."""
    made = await make_subscriber(session_factory, settings)
    victim = await sign_in(client, made.login)
    response = await gql_raw(
        client, LOGIN, {"input": {"identifier": made.login, "password": made.password}}
    )
    cookie = response.headers["set-cookie"].split(";")[0]
    forged = {
        "cookie": cookie,
        "origin": "https://evil.example",
        "sec-fetch-site": "cross-site",
    }
    attack = {"query": "mutation { logoutEverywhere { ok } }"}
    # defence on
    refused = await client.post("/graphql", json=attack, headers=forged)
    assert refused.status_code == 403
    assert (await gql(client, "{ me { login } }", headers=victim))["me"] is not None
    # defence off
    monkeypatch.setattr(GraphQLEndpoint, "_check_origin", lambda self, request: None)
    ran = await client.post("/graphql", json=attack, headers=forged)
    assert ran.status_code == 200 and ran.json()["data"]["logoutEverywhere"]["ok"] is True
    await assert_session_ended(client, victim)
    with pytest.raises(ROW_TEST_FAILED):
        await test_limits.test_cross_site_posts_are_refused(client)


# -- credential stuffing -----------------------------------------------------------------------


async def test_login_rate_limit_off(
    client: Any, session_factory: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row "Credential stuffing / brute force": the 11th guess gets in."""

    async def eleven_guesses(identifier: str, password: str) -> dict[str, Any]:
        for _ in range(10):
            await gql(client, LOGIN, {"input": {"identifier": identifier, "password": "no" * 8}})
        return (
            await gql(client, LOGIN, {"input": {"identifier": identifier, "password": password}})
        )["login"]

    guarded = await make_subscriber(session_factory, settings)
    payload = await eleven_guesses(guarded.login, guarded.password)
    assert payload["errors"][0]["code"] == "RATE_LIMITED" and payload["accessToken"] is None

    async def always_allow(*args: Any, **kwargs: Any) -> None:
        return None

    monkeypatch.setattr(ratelimit, "take", always_allow)
    exposed = await make_subscriber(session_factory, settings)
    payload = await eleven_guesses(exposed.login, exposed.password)
    assert payload["errors"] == [] and payload["accessToken"]
    with pytest.raises(ROW_TEST_FAILED):
        await test_access.test_the_eleventh_attempt_is_rate_limited_even_with_the_right_password(
            client, session_factory, settings
        )


# -- IDOR --------------------------------------------------------------------------------------


async def test_contract_ownership_check_off(
    client: Any, session_factory: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row "IDOR": another subscriber reads the owner's balance and ledger and starts a
    top-up on the owner's contract."""
    owner = await make_subscriber(session_factory, settings, balance=Decimal("1234.50"))
    stranger = await make_subscriber(session_factory, settings)
    theirs = await sign_in(client, stranger.login)
    number = owner.contract_numbers[0]
    read = (
        "query($n: String!) { contract(number: $n) {"
        " balance { amount } ledger { edges { node { amount } } } } }"
    )
    top_up = {
        "input": {
            "contractNumber": number,
            "amount": "100.00",
            "method": "BANK_CARD",
            "idempotencyKey": "stranger-key-0001",
        }
    }
    # defence on
    assert (await gql(client, read, {"n": number}, headers=theirs))["contract"] is None
    refused = (await gql(client, test_threats.TOP_UP, top_up, headers=theirs))["createTopUp"]
    assert refused["errors"] == [{"field": "contractNumber", "code": "NOT_FOUND"}]
    # defence off: every ownership check says yes
    for where in ("resolvers.accounts", "kabinet.web.payments", "kabinet.web.statements"):
        monkeypatch.setattr(f"{where}.may_see_contract", lambda principal, contract: True)
    seen = (await gql(client, read, {"n": number}, headers=theirs))["contract"]
    assert seen["balance"]["amount"] == "1234.50" and seen["ledger"]["edges"]
    done = (await gql(client, test_threats.TOP_UP, top_up, headers=theirs))["createTopUp"]
    assert done["errors"] == [] and done["payment"]["id"]
    with pytest.raises(ROW_TEST_FAILED):
        await test_threats.test_idor_matrix(client, session_factory, settings)


# -- forged payment confirmation -------------------------------------------------------------


async def test_webhook_signature_check_off(
    client: Any, session_factory: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row "Forged payment confirmation": an unsigned "SUCCEEDED" for an unpaid top-up
    credits the balance."""
    made = await make_subscriber(session_factory, settings)
    headers = await sign_in(client, made.login)
    number = made.contract_numbers[0]
    created = (
        await gql(
            client,
            test_threats.TOP_UP,
            {
                "input": {
                    "contractNumber": number,
                    "amount": "5000.00",
                    "method": "BANK_CARD",
                    "idempotencyKey": "unpaid-top-up-0001",
                }
            },
            headers=headers,
        )
    )["createTopUp"]
    forged = json.dumps(
        {"paymentId": created["payment"]["id"], "status": "SUCCEEDED", "providerReference": "x"}
    ).encode()
    post = {
        "content": forged,
        "headers": {"content-type": "application/json", "x-signature": "0" * 64},
    }
    # defence on
    assert (await client.post("/webhooks/payments", **post)).status_code == 401
    assert await balance(session_factory, number) == Decimal("0.00")
    # defence off
    monkeypatch.setattr("kabinet.web.payments.verify_signature", lambda *args: True)
    accepted = await client.post("/webhooks/payments", **post)
    assert accepted.status_code == 200, accepted.text
    assert await balance(session_factory, number) == Decimal("5000.00")
    with pytest.raises(ROW_TEST_FAILED):
        await test_webhook.test_a_bad_signature_is_401_and_changes_nothing(
            client, session_factory, settings
        )
