"""Recovery, written requests and rate limits through HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from typing import Any

import httpx
import sqlalchemy as sa

from kabinet.app import create_app
from models import OutboxMessage
from tests.conftest import gql, gql_raw
from tests.factories import LOGIN, assert_session_ended, make_staff, make_subscriber, sign_in

REQUEST = """
mutation($input: RequestPasswordRecoveryInput!) {
  requestPasswordRecovery(input: $input) { ok errors { code message retryAfterSeconds } }
}
"""
RESET = """
mutation($input: ResetPasswordInput!) {
  resetPassword(input: $input) { ok errors { field code message retryAfterSeconds } }
}
"""
SUBMIT = """
mutation($input: SubmitSupportRequestInput!) {
  submitSupportRequest(input: $input) { ok errors { field code message } }
}
"""
REQUESTS = """
query($first: Int, $after: String) {
  supportRequests(first: $first, after: $after) {
    edges { cursor node { id contact message status } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
CLOSE = """
mutation($input: CloseSupportRequestInput!) {
  closeSupportRequest(input: $input) { ok errors { field code } }
}
"""
ME = "{ me { login } }"


async def latest_code(session_factory: Any) -> str:
    async with session_factory() as session:
        letter = await session.scalar(
            sa.select(OutboxMessage)
            .where(OutboxMessage.kind == "RECOVERY_CODE")
            .order_by(OutboxMessage.id.desc())  # type: ignore[union-attr]
        )
    assert letter is not None
    match = re.search(r"\b(\d{6})\b", letter.body_text)
    assert match, letter.body_text
    return match.group(1)


async def test_recovery_answers_byte_equal_for_known_and_unknown(
    client: Any, session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(session_factory, settings)
    known = await gql_raw(client, REQUEST, {"input": {"identifier": made.login}})
    unknown = await gql_raw(client, REQUEST, {"input": {"identifier": "770099999999"}})
    assert known.content == unknown.content
    assert known.json()["data"]["requestPasswordRecovery"] == {"ok": True, "errors": []}


async def test_recover_by_email_code_then_sign_in(
    client: Any, session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(session_factory, settings)
    old_session = await sign_in(client, made.login)
    # when
    await gql(client, REQUEST, {"input": {"identifier": made.phone}})
    code = await latest_code(session_factory)
    done = await gql(
        client,
        RESET,
        {
            "input": {
                "identifier": made.phone,
                "code": code,
                "newPassword": "a brand new sunny morning",
            }
        },
    )
    # then
    assert done["resetPassword"] == {"ok": True, "errors": []}
    await assert_session_ended(client, old_session)
    assert await sign_in(client, made.login, "a brand new sunny morning")
    # the code is single use
    again = await gql(
        client,
        RESET,
        {
            "input": {
                "identifier": made.phone,
                "code": code,
                "newPassword": "another new sunny evening",
            }
        },
    )
    assert again["resetPassword"]["errors"][0]["code"] == "INVALID"


async def test_wrong_codes_are_limited(client: Any, session_factory: Any, settings: Any) -> None:
    made = await make_subscriber(session_factory, settings)
    await gql(client, REQUEST, {"input": {"identifier": made.login}})
    code = await latest_code(session_factory)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(settings.recovery_code_attempts):
        result = await gql(
            client,
            RESET,
            {
                "input": {
                    "identifier": made.login,
                    "code": wrong,
                    "newPassword": "a brand new sunny morning",
                }
            },
        )
        assert result["resetPassword"]["errors"][0]["code"] == "INVALID"
    locked = await gql(
        client,
        RESET,
        {
            "input": {
                "identifier": made.login,
                "code": code,
                "newPassword": "a brand new sunny morning",
            }
        },
    )
    error = locked["resetPassword"]["errors"][0]
    assert error["code"] == "RATE_LIMITED" and error["retryAfterSeconds"] > 0


async def test_support_requests_from_anyone_closed_by_staff(
    client: Any, session_factory: Any, settings: Any
) -> None:
    bad = await gql(client, SUBMIT, {"input": {"contact": "x", "message": "short"}})
    assert {e["field"] for e in bad["submitSupportRequest"]["errors"]} <= {"contact", "message"}
    for i in range(3):
        sent = await gql(
            client,
            SUBMIT,
            {
                "input": {
                    "contact": f"user{i}@example.org",
                    "message": "I lost my phone and cannot sign in, please help.",
                }
            },
        )
        assert sent["submitSupportRequest"] == {"ok": True, "errors": []}
    _, username, password = await make_staff(session_factory, settings)
    staff = await sign_in(client, username, password)
    page = (await gql(client, REQUESTS, {"first": 2}, headers=staff))["supportRequests"]
    assert len(page["edges"]) == 2 and page["pageInfo"]["hasNextPage"] is True
    rest = (
        await gql(
            client, REQUESTS, {"first": 2, "after": page["pageInfo"]["endCursor"]}, headers=staff
        )
    )["supportRequests"]
    assert len(rest["edges"]) == 1 and rest["pageInfo"]["hasNextPage"] is False
    first_id = page["edges"][0]["node"]["id"]
    closed = await gql(
        client, CLOSE, {"input": {"id": first_id, "resolution": "Called back"}}, headers=staff
    )
    assert closed["closeSupportRequest"] == {"ok": True, "errors": []}
    twice = await gql(
        client, CLOSE, {"input": {"id": first_id, "resolution": "Again"}}, headers=staff
    )
    assert twice["closeSupportRequest"]["errors"][0]["code"] == "CONFLICT"
    left = (await gql(client, REQUESTS, {"first": 10}, headers=staff))["supportRequests"]
    assert first_id not in {e["node"]["id"] for e in left["edges"]}
    too_many = (await gql_raw(client, REQUESTS, {"first": 101}, headers=staff)).json()
    assert too_many["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_login_limits_hold_across_two_app_processes(
    settings: Any, session_factory: Any, engine: Any
) -> None:
    """Two apps (two engines, as two processes would have) on one database share counts."""
    made = await make_subscriber(session_factory, settings)
    apps = [create_app(settings), create_app(settings)]
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://testserver")
        for a in apps
    ]
    try:
        for attempt in range(10):
            http = clients[attempt % 2]
            body = (
                await gql_raw(
                    http,
                    LOGIN,
                    {"input": {"identifier": made.login, "password": "wrong wrong wrong"}},
                )
            ).json()
            assert body["data"]["login"]["errors"][0]["code"] == "INVALID_CREDENTIALS"
        for http in clients:
            body = (
                await gql_raw(
                    http, LOGIN, {"input": {"identifier": made.login, "password": made.password}}
                )
            ).json()
            assert body["data"]["login"]["errors"][0]["code"] == "RATE_LIMITED"
    finally:
        for http in clients:
            await http.aclose()
        for a in apps:
            await a.state.engine.dispose()


async def test_forwarded_for_is_believed_only_from_trusted_proxies(
    settings: Any, session_factory: Any, engine: Any
) -> None:
    """50 failures per address: spoofed X-Forwarded-For from an untrusted peer does not
    spread them over many addresses; behind a trusted proxy each client is counted apart."""
    limited = settings.model_copy(update={"login_max_failures_per_address": 3})
    app = create_app(limited)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        for i in range(3):
            await gql_raw(
                http,
                LOGIN,
                {"input": {"identifier": f"nobody{i}", "password": "x" * 20}},
                headers={"x-forwarded-for": f"198.51.100.{i}"},
            )
        body = (
            await gql_raw(
                http,
                LOGIN,
                {"input": {"identifier": "nobody9", "password": "x" * 20}},
                headers={"x-forwarded-for": "198.51.100.99"},
            )
        ).json()
        assert body["data"]["login"]["errors"][0]["code"] == "RATE_LIMITED"
    await app.state.engine.dispose()

    proxied = create_app(limited.model_copy(update={"trusted_proxies": ["203.0.113.0/24"]}))
    transport = httpx.ASGITransport(app=proxied, client=("203.0.113.8", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        for i in range(3):
            body = (
                await gql_raw(
                    http,
                    LOGIN,
                    {"input": {"identifier": f"other{i}", "password": "x" * 20}},
                    headers={"x-forwarded-for": f"192.0.2.{i}"},
                )
            ).json()
            assert body["data"]["login"]["errors"][0]["code"] == "INVALID_CREDENTIALS"
    await proxied.state.engine.dispose()
