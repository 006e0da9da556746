"""Sign-in and sessions through HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from models import AuthSession, OutboxMessage, RefreshToken
from models.base import utcnow
from tests.conftest import gql, gql_raw
from tests.factories import LOGIN, assert_session_ended, make_staff, make_subscriber, sign_in

ME = "{ me { id login displayName email contracts { number status balance { amount currency } } } }"
REFRESH = """
mutation($input: RefreshSessionInput!) {
  refreshSession(input: $input) { accessToken refreshToken expiresAt errors { code message } }
}
"""
LOGOUT = "mutation { logout { ok errors { code } } }"
LOGOUT_EVERYWHERE = "mutation { logoutEverywhere { ok errors { code } } }"
CHANGE = """
mutation($input: ChangePasswordInput!) {
  changePassword(input: $input) { ok errors { field code message retryAfterSeconds } }
}
"""
SESSIONS = "{ mySessions { id current clientAddress userAgent createdAt lastUsedAt } }"
REVOKE = """
mutation($input: RevokeSessionInput!) { revokeSession(input: $input) { ok errors { code } } }
"""


async def login_payload(client: Any, identifier: str, password: str, **kw: Any) -> dict[str, Any]:
    data = await gql(
        client, LOGIN, {"input": {"identifier": identifier, "password": password}}, **kw
    )
    return data["login"]


async def test_login_by_login_contract_phone_and_email(
    client: Any, session_factory: Any, settings: Any
) -> None:
    # given
    made = await make_subscriber(session_factory, settings, login="ivanov")
    # when / then
    for identifier in ("ivanov", made.contract_numbers[0], made.phone, made.email.upper()):
        payload = await login_payload(client, identifier, made.password)
        assert payload["errors"] == [], identifier
        assert len(payload["accessToken"]) >= 43 and payload["refreshToken"]
        assert payload["subscriber"]["login"] == "ivanov"
        assert payload["mustChangePassword"] is False
    # the token is stored only as a hash
    async with session_factory() as session:
        hashes = (await session.execute(sa.select(AuthSession.access_token_hash))).scalars().all()
    assert len(hashes) == 4 and payload["accessToken"] not in hashes


async def test_me_with_bearer_and_with_cookie(
    client: Any, session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(session_factory, settings, contracts=2)
    payload = await login_payload(client, made.login, made.password)
    bearer = {"Authorization": f"Bearer {payload['accessToken']}"}
    me = (await gql(client, ME, headers=bearer))["me"]
    assert me["login"] == made.login
    assert sorted(c["number"] for c in me["contracts"]) == sorted(made.contract_numbers)
    assert me["contracts"][0]["balance"] == {"amount": "0.00", "currency": "RUB"}
    # the login response set the __Host- cookie: Secure, HttpOnly, SameSite=Lax, Path=/
    response = await gql_raw(
        client, LOGIN, {"input": {"identifier": made.login, "password": made.password}}
    )
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("__Host-kabinet_session=")
    for attribute in ("HttpOnly", "Path=/", "SameSite=lax", "Secure"):
        assert attribute in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    cookie_header = {"cookie": f"__Host-kabinet_session={token}"}
    via_cookie = await client.post("/graphql", json={"query": ME}, headers=cookie_header)
    assert via_cookie.json()["data"]["me"]["login"] == made.login
    # a cross-site POST carrying the cookie is refused before it runs
    forged = await client.post(
        "/graphql",
        json={"query": LOGOUT},
        headers={**cookie_header, "sec-fetch-site": "cross-site"},
    )
    assert forged.status_code == 403


async def test_signed_out_callers_get_null_me_and_unauthenticated(client: Any) -> None:
    assert (await gql(client, ME))["me"] is None
    body = (await gql_raw(client, SESSIONS)).json()
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    # a token that names no live session is told apart from signing out (SPEC §4)
    await assert_session_ended(client, {"Authorization": "Bearer nonsense"})


async def test_wrong_password_and_unknown_identifier_answer_the_same(
    client: Any, session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(session_factory, settings)
    wrong = await gql_raw(
        client, LOGIN, {"input": {"identifier": made.login, "password": "x" * 20}}
    )
    unknown = await gql_raw(
        client, LOGIN, {"input": {"identifier": "nobody-here", "password": "x" * 20}}
    )
    assert wrong.content == unknown.content
    assert wrong.json()["data"]["login"]["errors"][0]["code"] == "INVALID_CREDENTIALS"


async def test_the_eleventh_attempt_is_rate_limited_even_with_the_right_password(
    client: Any, session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(session_factory, settings)
    for _ in range(10):
        payload = await login_payload(client, made.login, "wrong password, wrong")
        assert payload["errors"][0]["code"] == "INVALID_CREDENTIALS"
    payload = await login_payload(client, made.login, made.password)
    error = payload["errors"][0]
    assert error["code"] == "RATE_LIMITED"
    assert 0 < error["retryAfterSeconds"] <= settings.login_window_seconds
    assert payload["accessToken"] is None


async def test_a_success_resets_the_identifier_count(
    client: Any, session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(session_factory, settings)
    for _ in range(9):
        await login_payload(client, made.login, "wrong password, wrong")
    assert (await login_payload(client, made.login, made.password))["errors"] == []
    for _ in range(9):
        await login_payload(client, made.login, "wrong password, wrong")
    assert (await login_payload(client, made.login, made.password))["errors"] == []


def spellings_of(made: Any) -> list[str]:
    """Every identifier of one account, in several spellings (SPEC §3)."""
    digits = made.phone[2:]  # +7 916 ...
    number = made.contract_numbers[0]
    return [
        made.login,
        f"{number[:4]} {number[4:8]} {number[8:]}",
        made.email.upper(),
        f"+7 {digits[:3]} {digits[3:]}",
        f"8 ({digits[:3]}) {digits[3:6]}-{digits[6:8]}-{digits[8:]}",
        f"7{digits}",
        f" {made.email} ",
        f"+7-{digits}",
        f"{number[:6]}-{number[6:]}",
        made.phone,
    ]


async def test_every_identifier_and_spelling_of_an_account_shares_one_count(
    client: Any, session_factory: Any, settings: Any
) -> None:
    """Issue 13: after `demo` was locked, "+7 916 0000101" signed in with the right password."""
    # given: 10 wrong guesses, each through another identifier or spelling of the account
    made = await make_subscriber(session_factory, settings)
    for identifier in spellings_of(made):
        payload = await login_payload(client, identifier, "wrong password, wrong")
        assert payload["errors"][0]["code"] == "INVALID_CREDENTIALS", identifier
    # when: the right password, through one more spelling of the phone
    digits = made.phone[2:]
    payload = await login_payload(client, f"+7 ({digits[:3]}) {digits[3:]}", made.password)
    # then
    assert payload["errors"][0]["code"] == "RATE_LIMITED"
    assert payload["accessToken"] is None


async def test_an_unknown_identifier_is_counted_by_its_one_form(
    client: Any, session_factory: Any, settings: Any
) -> None:
    """Spellings of a number no one has share one count too, as those of a known one do: a
    locked unknown number and a locked account answer the same."""
    known = await make_subscriber(session_factory, settings)
    answers = []
    for phone in (known.phone, "+79169998877"):
        digits = phone[2:]
        for i in range(settings.login_max_failures_per_identifier):
            spelling = (f"+7 {digits}", f"8 {digits}", f"7-{digits}")[i % 3]
            await login_payload(client, spelling, "wrong password, wrong")
        response = await gql_raw(
            client,
            LOGIN,
            {"input": {"identifier": f"8 ({digits[:3]}) {digits[3:]}", "password": "x" * 20}},
        )
        answers.append(response.json()["data"]["login"])
    assert [a["errors"][0]["code"] for a in answers] == ["RATE_LIMITED", "RATE_LIMITED"]
    for answer in answers:
        answer["errors"][0].pop("retryAfterSeconds")
    assert answers[0] == answers[1]


async def test_refresh_rotates_and_reuse_revokes_the_family(
    client: Any, session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(session_factory, settings)
    first = await login_payload(client, made.login, made.password)
    # when: refreshed once
    second = (await gql(client, REFRESH, {"input": {"refreshToken": first["refreshToken"]}}))[
        "refreshSession"
    ]
    assert second["errors"] == [] and second["refreshToken"] != first["refreshToken"]
    # the old access token no longer works; the new one does
    old = {"Authorization": f"Bearer {first['accessToken']}"}
    new = {"Authorization": f"Bearer {second['accessToken']}"}
    await assert_session_ended(client, old)
    assert (await gql(client, ME, headers=new))["me"]["login"] == made.login
    # when: the spent refresh token is presented again (a thief)
    reused = (await gql(client, REFRESH, {"input": {"refreshToken": first["refreshToken"]}}))[
        "refreshSession"
    ]
    # then: refused, and the whole family is revoked
    assert reused["errors"][0]["code"] == "INVALID_CREDENTIALS"
    await assert_session_ended(client, new)
    third = (await gql(client, REFRESH, {"input": {"refreshToken": second["refreshToken"]}}))[
        "refreshSession"
    ]
    assert third["errors"][0]["code"] == "INVALID_CREDENTIALS"
    async with session_factory() as session:
        revoked = await session.scalar(sa.select(AuthSession.revoked_at))
        used = (await session.execute(sa.select(RefreshToken.used_at))).scalars().all()
    assert revoked is not None and sum(u is not None for u in used) == 1


async def test_idle_and_absolute_expiry(client: Any, session_factory: Any, settings: Any) -> None:
    made = await make_subscriber(session_factory, settings)
    headers = await sign_in(client, made.login)
    async with session_factory() as session:
        await session.execute(
            sa.update(AuthSession).values(access_expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    await assert_session_ended(client, headers)
    headers = await sign_in(client, made.login)
    async with session_factory() as session:
        await session.execute(
            sa.update(AuthSession).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    await assert_session_ended(client, headers)


async def test_logout_and_logout_everywhere(
    client: Any, session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(session_factory, settings)
    a = await sign_in(client, made.login)
    b = await sign_in(client, made.login)
    c = await sign_in(client, made.login)
    assert (await gql(client, LOGOUT, headers=a))["logout"]["ok"] is True
    await assert_session_ended(client, a)
    assert (await gql(client, ME, headers=b))["me"] is not None
    assert (await gql(client, LOGOUT_EVERYWHERE, headers=b))["logoutEverywhere"]["ok"] is True
    await assert_session_ended(client, b)
    await assert_session_ended(client, c)


async def test_my_sessions_and_revoke_session(
    client: Any, session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(session_factory, settings)
    other = await make_subscriber(session_factory, settings)
    mine = await sign_in(client, made.login)
    await sign_in(client, made.login)
    theirs = await sign_in(client, other.login)
    sessions = (await gql(client, SESSIONS, headers={**mine, "user-agent": "phone-app/1.0"}))[
        "mySessions"
    ]
    assert len(sessions) == 2 and sum(s["current"] for s in sessions) == 1
    other_session = next(s for s in sessions if not s["current"])
    # another subscriber cannot revoke my session
    foreign = (
        await gql(client, REVOKE, {"input": {"sessionId": other_session["id"]}}, headers=theirs)
    )["revokeSession"]
    assert foreign["errors"][0]["code"] == "NOT_FOUND"
    done = (await gql(client, REVOKE, {"input": {"sessionId": other_session["id"]}}, headers=mine))[
        "revokeSession"
    ]
    assert done["ok"] is True
    assert len((await gql(client, SESSIONS, headers=mine))["mySessions"]) == 1


async def test_temporary_password_forces_change_first(
    client: Any, session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(session_factory, settings, must_change_password=True)
    payload = await login_payload(client, made.login, made.password)
    assert payload["mustChangePassword"] is True
    headers = {"Authorization": f"Bearer {payload['accessToken']}"}
    blocked = (await gql_raw(client, ME, headers=headers)).json()
    assert blocked["errors"][0]["extensions"]["code"] == "PASSWORD_CHANGE_REQUIRED"
    # a weak password is refused with the reason
    weak = (
        await gql(
            client,
            CHANGE,
            {"input": {"currentPassword": made.password, "newPassword": "password123456789"}},
            headers=headers,
        )
    )["changePassword"]
    assert weak["errors"][0]["code"] == "PASSWORD_REJECTED"
    assert weak["errors"][0]["field"] == "newPassword"
    with_login = (
        await gql(
            client,
            CHANGE,
            {
                "input": {
                    "currentPassword": made.password,
                    "newPassword": f"my {made.login} secret x",
                }
            },
            headers=headers,
        )
    )["changePassword"]
    assert with_login["errors"][0]["code"] == "PASSWORD_REJECTED"
    done = (
        await gql(
            client,
            CHANGE,
            {
                "input": {
                    "currentPassword": made.password,
                    "newPassword": "violet tram under the bridge",
                }
            },
            headers=headers,
        )
    )["changePassword"]
    assert done == {"ok": True, "errors": []}
    assert (await gql(client, ME, headers=headers))["me"]["login"] == made.login
    async with session_factory() as session:
        letters = (await session.execute(sa.select(OutboxMessage))).scalars().all()
    assert [m.kind for m in letters] == ["PASSWORD_CHANGED"] and letters[0].recipient == made.email


async def test_change_password_revokes_other_sessions(
    client: Any, session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(session_factory, settings)
    current = await sign_in(client, made.login)
    other = await sign_in(client, made.login)
    wrong = (
        await gql(
            client,
            CHANGE,
            {
                "input": {
                    "currentPassword": "not it at all, no",
                    "newPassword": "violet tram under the bridge",
                }
            },
            headers=current,
        )
    )["changePassword"]
    assert wrong["errors"][0]["code"] == "INVALID_CREDENTIALS"
    done = (
        await gql(
            client,
            CHANGE,
            {
                "input": {
                    "currentPassword": made.password,
                    "newPassword": "violet tram under the bridge",
                }
            },
            headers=current,
        )
    )["changePassword"]
    assert done["ok"] is True
    assert (await gql(client, ME, headers=current))["me"] is not None
    await assert_session_ended(client, other)
    old = await login_payload(client, made.login, made.password)
    assert old["errors"][0]["code"] == "INVALID_CREDENTIALS"
    assert (await login_payload(client, made.login, "violet tram under the bridge"))["errors"] == []


def change(current: str) -> dict[str, Any]:
    return {"input": {"currentPassword": current, "newPassword": "violet tram under the bridge"}}


async def test_wrong_current_passwords_are_sign_in_failures_of_the_account(
    client: Any, session_factory: Any, settings: Any
) -> None:
    """Issue 13: 60 wrong current passwords in 2.8 s, then the right one ended every other
    session. Now they count with the account's sign-ins (SPEC §3)."""
    # given: a stolen session guesses the current password
    made = await make_subscriber(session_factory, settings)
    stolen = await sign_in(client, made.login)
    owner = await sign_in(client, made.email)
    for i in range(settings.login_max_failures_per_identifier):
        payload = await gql(client, CHANGE, change(f"a guess number {i:04d}"), headers=stolen)
        assert payload["changePassword"]["errors"][0]["code"] == "INVALID_CREDENTIALS"

    # when: the right current password
    payload = (await gql(client, CHANGE, change(made.password), headers=stolen))["changePassword"]

    # then: refused, nothing changed, the owner's session lives, and sign-in is locked too
    error = payload["errors"][0]
    assert (payload["ok"], error["code"]) == (False, "RATE_LIMITED")
    assert 0 < error["retryAfterSeconds"] <= settings.login_window_seconds
    assert (await gql(client, ME, headers=owner))["me"] is not None
    locked = await login_payload(client, made.phone, made.password)
    assert locked["errors"][0]["code"] == "RATE_LIMITED"


async def test_the_right_current_password_clears_the_count_even_when_the_new_one_is_weak(
    client: Any, session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(session_factory, settings)
    headers = await sign_in(client, made.login)
    for _ in range(settings.login_max_failures_per_identifier - 1):
        await gql(client, CHANGE, change("not it at all, no"), headers=headers)
    weak = {"input": {"currentPassword": made.password, "newPassword": "short"}}
    refused = (await gql(client, CHANGE, weak, headers=headers))["changePassword"]
    assert refused["errors"][0]["code"] == "PASSWORD_REJECTED"
    for _ in range(settings.login_max_failures_per_identifier - 1):
        await gql(client, CHANGE, change("not it at all, no"), headers=headers)
    done = (await gql(client, CHANGE, change(made.password), headers=headers))["changePassword"]
    assert done == {"ok": True, "errors": []}


async def test_two_password_changes_in_one_document_are_refused(
    client: Any, session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(session_factory, settings)
    headers = await sign_in(client, made.login)
    query = """mutation {
      a: changePassword(input: {currentPassword: "a guess 1", newPassword: "x"}) { ok }
      b: changePassword(input: {currentPassword: "a guess 2", newPassword: "x"}) { ok }
    }"""
    body = (await gql_raw(client, query, headers=headers)).json()
    assert body["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED"
    assert body.get("data") is None


async def test_staff_sign_in_with_the_same_mutation(
    client: Any, session_factory: Any, settings: Any
) -> None:
    _, username, password = await make_staff(session_factory, settings, role="ADMIN")
    payload = await login_payload(client, username, password)
    assert payload["errors"] == [] and payload["subscriber"] is None
    headers = {"Authorization": f"Bearer {payload['accessToken']}"}
    assert (await gql(client, ME, headers=headers))["me"] is None
    assert len((await gql(client, SESSIONS, headers=headers))["mySessions"]) == 1


async def test_two_secret_guessing_mutations_in_one_document_are_refused(client: Any) -> None:
    query = """mutation {
      a: login(input: {identifier: "a", password: "b"}) { accessToken }
      b: login(input: {identifier: "a", password: "c"}) { accessToken }
    }"""
    body = (await gql_raw(client, query)).json()
    assert body["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED"
    assert body.get("data") is None
