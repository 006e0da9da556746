"""SPEC §4 "GraphQL over HTTP", what every client may rely on (issue 13, items 7, 8, 10):
an ended session is told apart from a signed-out one, cross-site front ends with a Bearer
token, the security headers, redirects that never name the Host header, and /metrics."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from auth.sessions import COOKIE_NAME
from kabinet.app import create_app
from models import AuthSession
from models.base import utcnow
from tests.conftest import (
    PRODUCTION_SECRET_KEY,
    fast_settings,
    gql,
    gql_raw,
    production_settings,
)
from tests.factories import DEFAULT_PASSWORD, LOGIN, make_subscriber, sign_in

ME = "{ me { login } }"
CONTRACT = "query($number: String!) { contract(number: $number) { number } }"
NODE = "query($id: ID!) { node(id: $id) { id } }"
SESSIONS = "{ mySessions { id } }"
LOGOUT = "mutation { logout { ok errors { code } } }"
TOP_UP = """mutation($input: CreateTopUpInput!) {
  createTopUp(input: $input) { payment { id } errors { code } } }"""
REGIONS = "{ regions { code } }"


def _codes(body: dict[str, Any]) -> list[str]:
    return [error.get("extensions", {}).get("code") for error in body.get("errors", [])]


async def _ended_session_answers(client: Any, headers: dict[str, str], made: Any, ids: Any) -> None:
    """Every field for the caller says UNAUTHENTICATED; public fields and sign-in answer."""
    number = made.contract_numbers[0]
    asked = [
        (ME, {}),
        (CONTRACT, {"number": number}),
        (NODE, {"id": ids["contract"]}),
        (NODE, {"id": ids["subscriber"]}),
        (SESSIONS, {}),
        (LOGOUT, {}),
        (
            TOP_UP,
            {
                "input": {
                    "contractNumber": number,
                    "amount": "100.00",
                    "method": "BANK_CARD",
                    "idempotencyKey": "k-ended-session-1",
                }
            },
        ),
    ]
    for query, variables in asked:
        response = await gql_raw(client, query, variables, headers=headers)
        assert response.status_code == 200
        body = response.json()
        assert _codes(body) == ["UNAUTHENTICATED"], (query, body)
    # public fields and the sign-in mutations answer as for a signed-out caller
    assert (await gql(client, REGIONS, headers=headers))["regions"]
    signed = await gql(
        client,
        LOGIN,
        {"input": {"identifier": made.login, "password": DEFAULT_PASSWORD}},
        headers=headers,
    )
    assert signed["login"]["errors"] == [] and signed["login"]["accessToken"]


async def _ids(client: Any, headers: dict[str, str]) -> dict[str, str]:
    me = await gql(client, "{ me { id contracts { id } } }", headers=headers)
    return {"subscriber": me["me"]["id"], "contract": me["me"]["contracts"][0]["id"]}


async def test_an_ended_bearer_token_is_unauthenticated_not_signed_out(
    client: Any, session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(session_factory, settings)
    # an unknown token
    await _ended_session_answers(
        client,
        {"Authorization": "Bearer nope"},
        made,
        await _ids(client, await sign_in(client, made.login)),
    )
    # an expired one
    expired = await sign_in(client, made.login)
    ids = await _ids(client, expired)
    async with session_factory() as session:
        await session.execute(
            sa.update(AuthSession).values(access_expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    await _ended_session_answers(client, expired, made, ids)
    # a revoked one (signed out)
    revoked = await sign_in(client, made.login)
    assert (await gql(client, LOGOUT, headers=revoked))["logout"]["ok"] is True
    await _ended_session_answers(client, revoked, made, ids)
    # a signed-out caller (nothing presented) still gets null, not an error
    assert (await gql(client, ME))["me"] is None
    assert (await gql(client, CONTRACT, {"number": made.contract_numbers[0]}))["contract"] is None


def _cookie_headers(response: httpx.Response) -> list[str]:
    return [
        value
        for name, value in response.headers.multi_items()
        if name == "set-cookie" and value.startswith(f"{COOKIE_NAME}=")
    ]


async def test_an_ended_session_cookie_is_unauthenticated_and_cleared(
    client: Any, session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(session_factory, settings)
    ids = await _ids(client, await sign_in(client, made.login))
    dead = {"cookie": f"{COOKIE_NAME}=nope"}
    response = await gql_raw(client, ME, headers=dead)
    assert _codes(response.json()) == ["UNAUTHENTICATED"]
    [cleared] = _cookie_headers(response)
    assert 'kabinet_session=""' in cleared and "Max-Age=0" in cleared
    await _ended_session_answers(client, dead, made, ids)
    # signing in with the dead cookie sets the new one and does not clear it
    signed = await gql_raw(
        client,
        LOGIN,
        {"input": {"identifier": made.login, "password": DEFAULT_PASSWORD}},
        headers=dead,
    )
    [fresh] = _cookie_headers(signed)
    token = signed.json()["data"]["login"]["accessToken"]
    assert fresh.startswith(f"{COOKIE_NAME}={token};")
    # a live cookie is not touched; a dead Bearer token next to it does not clear it
    live = {"cookie": f"{COOKIE_NAME}={token}"}
    ok = await gql_raw(client, ME, headers=live)
    assert ok.json()["data"]["me"]["login"] == made.login and _cookie_headers(ok) == []
    both = await gql_raw(client, ME, headers={**live, "Authorization": "Bearer nope"})
    assert _codes(both.json()) == ["UNAUTHENTICATED"] and _cookie_headers(both) == []


# -- item 8: cross-site front ends with a Bearer token ----------------------------------------

VITE = "http://localhost:5173"


async def test_an_allowlisted_front_end_calls_with_a_bearer_token(
    settings: Any, engine: Any, session_factory: Any
) -> None:
    # given the API on 127.0.0.1:8000 and a Vite front end on localhost:5173 in the allowlist
    app = create_app(settings.model_copy(update={"cors_origins": [VITE]}))
    made = await make_subscriber(session_factory, settings)
    transport = httpx.ASGITransport(app=app)
    browser = {"origin": VITE, "sec-fetch-site": "cross-site", "sec-fetch-mode": "cors"}
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
        # the preflight allows Authorization and Content-Type
        preflight = await http.options(
            "/graphql",
            headers={
                **browser,
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == VITE
        allowed = preflight.headers["access-control-allow-headers"].lower()
        assert "authorization" in allowed and "content-type" in allowed
        # signing in and reading with the Bearer token work from the other site
        signed = await gql_raw(
            http,
            LOGIN,
            {"input": {"identifier": made.login, "password": DEFAULT_PASSWORD}},
            headers=browser,
        )
        assert signed.status_code == 200, signed.text
        token = signed.json()["data"]["login"]["accessToken"]
        bearer = {**browser, "authorization": f"Bearer {token}"}
        me = await gql_raw(http, ME, headers=bearer)
        assert me.status_code == 200 and me.json()["data"]["me"]["login"] == made.login
        # the page may read the request id
        assert me.headers["access-control-allow-origin"] == VITE
        assert "x-request-id" in me.headers["access-control-expose-headers"].lower()
        assert me.headers["x-request-id"]
        # a cross-site request that carries the session cookie is still refused
        with_cookie = await gql_raw(
            http, ME, headers={**bearer, "cookie": f"{COOKIE_NAME}={token}"}
        )
        assert with_cookie.status_code == 403
        assert with_cookie.json()["errors"][0]["message"] == "Cross-site requests are not allowed."
        # and an origin that is not in the allowlist is refused, Bearer token or not
        foreign = await gql_raw(http, ME, headers={**bearer, "origin": "https://evil.example"})
        assert foreign.status_code == 403
        assert "access-control-allow-origin" not in foreign.headers
    await app.state.engine.dispose()


# -- item 10: headers, redirects, metrics ------------------------------------------------------


async def test_every_answer_carries_nosniff_and_graphql_answers_are_not_stored(
    client: Any, session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(session_factory, settings)
    bearer = await sign_in(client, made.login)
    answers = [
        await gql_raw(client, ME, headers=bearer),  # signed in
        await gql_raw(client, REGIONS),  # signed out
        await client.post("/graphql", content=b"[]", headers={"content-type": "application/json"}),
        await client.get("/healthz"),
        await client.get("/no-such-page"),
        await client.get("/metrics"),
    ]
    for response in answers:
        assert response.headers["x-content-type-options"] == "nosniff", response.url
        assert response.headers.get_list("x-content-type-options") == ["nosniff"]
        assert "strict-transport-security" not in response.headers  # development: plain HTTP
    for response in answers[:3]:
        assert response.headers["cache-control"] == "no-store"
    # a route that says how it may be cached keeps its word (public explorer assets)
    asset = await client.get("/explorer/assets/explorer.js")
    assert asset.status_code == 200 and "no-store" not in asset.headers["cache-control"]


async def test_production_answers_carry_hsts(migrated_url: str, engine: Any) -> None:
    app = create_app(production_settings(migrated_url))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        for response in (await gql_raw(http, REGIONS), await http.get("/healthz")):
            assert response.headers["strict-transport-security"].startswith("max-age=31536000")
            assert response.headers["x-content-type-options"] == "nosniff"
    await app.state.engine.dispose()


async def test_no_redirect_is_built_from_the_host_header(client: Any) -> None:
    for path in ("/explorer/", "/graphql/", "/healthz/", "/metrics/"):
        response = await client.get(path, headers={"host": "evil.example"})
        location = response.headers.get("location", "")
        assert "evil.example" not in location, (path, location)
        assert "evil.example" not in response.text
    explorer = await client.get("/explorer/", headers={"host": "evil.example"})
    assert explorer.status_code == 308 and explorer.headers["location"] == "/explorer"


async def test_metrics_want_the_token_in_production(migrated_url: str, engine: Any) -> None:
    token = "Zx8" + PRODUCTION_SECRET_KEY[3:]
    for configured, without, expected in (
        (production_settings(migrated_url), 404, None),
        (production_settings(migrated_url, metrics_token=token), 401, token),
        (fast_settings(migrated_url, metrics_token=token), 401, token),
    ):
        app = create_app(configured)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
            assert (await http.get("/metrics")).status_code == without
            wrong = await http.get("/metrics", headers={"authorization": "Bearer nope"})
            assert wrong.status_code == without
            if expected is not None:
                right = await http.get("/metrics", headers={"authorization": f"Bearer {expected}"})
                assert right.status_code == 200 and "kabinet_graphql" in right.text
        await app.state.engine.dispose()


async def test_anonymous_callers_cannot_fill_the_operation_labels(
    client: Any, session_factory: Any, settings: Any
) -> None:
    # given anonymous callers sending 250 junk operation names
    for n in range(250):
        name = f"Junk{n}"
        await client.post(
            "/graphql",
            json={"query": f"query {name} {{ regions {{ code }} }}", "operationName": name},
        )
    # and a signed-in caller whose operation fails
    made = await make_subscriber(session_factory, settings)
    bearer = await sign_in(client, made.login)
    await client.post(
        "/graphql",
        json={"query": "query Broken { mySessions { nope } }", "operationName": "Broken"},
        headers=bearer,
    )
    # when a signed-in caller's operation succeeds
    ok = await client.post(
        "/graphql",
        json={"query": "query MyAccount { me { login } }", "operationName": "MyAccount"},
        headers=bearer,
    )
    assert ok.json()["data"]["me"]["login"] == made.login
    text = (await client.get("/metrics")).text
    # then only its name is a label; the rest share one
    assert 'kabinet_graphql_request_seconds_count{operation="MyAccount"} 1.0' in text
    assert 'kabinet_graphql_request_seconds_count{operation="other"} 251.0' in text
    assert "Junk" not in text and 'operation="Broken"' not in text
