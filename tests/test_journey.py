"""The whole journey over a real socket and a real SMTP server (SPEC §3):
staff creates a contract → register → the letter arrives → login with the temporary
password → forced changePassword → me. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from kabinet.app import create_app
from models import AuditEntry, Contract, OutboxMessage
from tests.factories import LOGIN, make_staff
from tests.live import serve_in_thread
from tests.test_mail import SmtpServer, free_port

TARIFFS = '{ tariffs(region: "SPB") { id code } }'
CREATE = """
mutation($input: StaffCreateContractInput!) {
  staffCreateContract(input: $input) {
    contract { id number status region { code } tariff { code } balance { amount } }
    securityCode
    errors { field code message }
  }
}
"""
REGISTER = """
mutation($input: RegisterInput!) {
  register(input: $input) { login errors { field code message retryAfterSeconds } }
}
"""
CHANGE = """
mutation($input: ChangePasswordInput!) { changePassword(input: $input) { ok errors { code } } }
"""
ME = "{ me { login displayName legalStatus email contracts { number address } } }"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port())
    server.start()
    yield server
    server.stop()


async def post(
    http: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await http.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


async def wait_for_letters(smtp: SmtpServer, count: int, seconds: float = 20) -> list[Any]:
    for _ in range(int(seconds * 10)):
        if len(smtp.inbox.envelopes) >= count:
            return smtp.inbox.messages()
        await asyncio.sleep(0.1)
    raise AssertionError(f"expected {count} letters, got {len(smtp.inbox.envelopes)}")


async def test_staff_contract_to_first_sign_in(
    settings: Any, session_factory: Any, smtp: SmtpServer, engine: Any
) -> None:
    # given: a real server with its outbox worker delivering to a real SMTP server
    live_settings = settings.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "outbox_poll_seconds": 0.2}
    )
    _, staff_login, staff_password = await make_staff(session_factory, settings)
    app = create_app(live_settings)
    with serve_in_thread(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            # staff signs in and opens a contract
            staff = (
                await post(
                    http, LOGIN, {"input": {"identifier": staff_login, "password": staff_password}}
                )
            )["login"]
            assert staff["errors"] == []
            tariff = (await post(http, TARIFFS))["tariffs"][0]
            created = (
                await post(
                    http,
                    CREATE,
                    {
                        "input": {
                            "legalStatus": "INDIVIDUAL",
                            "displayName": "Сидоров Семён Семёнович",
                            "documentNumber": "4011 223344",
                            "email": "Sidorov@Example.org",
                            "phone": "+7 921 000-11-22",
                            "region": "SPB",
                            "address": "Санкт-Петербург, Невский пр., д. 1, кв. 5",
                            "tariffId": tariff["id"],
                        }
                    },
                    staff["accessToken"],
                )
            )["staffCreateContract"]
            assert created["errors"] == []
            contract = created["contract"]
            assert re.fullmatch(r"78\d{10}", contract["number"])
            assert (
                contract["region"]["code"] == "SPB" and contract["tariff"]["code"] == tariff["code"]
            )
            code = created["securityCode"]
            assert re.fullmatch(r"\d{8}", code)

            # a wrong code is refused without saying why
            wrong = (
                await post(
                    http,
                    REGISTER,
                    {
                        "input": {
                            "contractNumber": contract["number"],
                            "securityCode": "00000000",
                            "legalStatus": "INDIVIDUAL",
                            "documentNumber": "4011 223344",
                            "email": "sidorov@example.org",
                        }
                    },
                )
            )["register"]
            assert wrong["errors"][0]["code"] == "INVALID" and wrong["login"] is None

            # the subscriber registers with the paper contract and the passport
            registered = (
                await post(
                    http,
                    REGISTER,
                    {
                        "input": {
                            "contractNumber": contract["number"],
                            "securityCode": code,
                            "legalStatus": "INDIVIDUAL",
                            "documentNumber": "4011 223344",
                            "email": "sidorov@example.org",
                            "phone": "+79210001122",
                        }
                    },
                )
            )["register"]
            assert registered["errors"] == [] and registered["login"] == contract["number"]

            # the letter arrives over SMTP with the login and a temporary password
            (letter,) = await wait_for_letters(smtp, 1)
            assert letter["To"] == "sidorov@example.org"
            text = letter.get_body(preferencelist=("plain",)).get_content()
            assert contract["number"] in text
            temporary = re.search(r"([A-Za-z0-9]{5}(?:-[A-Za-z0-9]{5}){3})", text)
            assert temporary, text
            password = temporary.group(1)

            # the code is burnt: registering again is ALREADY_REGISTERED
            again = (
                await post(
                    http,
                    REGISTER,
                    {
                        "input": {
                            "contractNumber": contract["number"],
                            "securityCode": code,
                            "legalStatus": "INDIVIDUAL",
                            "documentNumber": "4011 223344",
                            "email": "sidorov@example.org",
                        }
                    },
                )
            )["register"]
            assert again["errors"][0]["code"] == "ALREADY_REGISTERED"

            # first sign-in with the temporary password: change it before anything else
            first = (
                await post(
                    http, LOGIN, {"input": {"identifier": contract["number"], "password": password}}
                )
            )["login"]
            assert first["errors"] == [] and first["mustChangePassword"] is True
            blocked = await http.post(
                "/graphql",
                json={"query": ME},
                headers={"Authorization": f"Bearer {first['accessToken']}"},
            )
            assert blocked.json()["errors"][0]["extensions"]["code"] == "PASSWORD_CHANGE_REQUIRED"
            changed = (
                await post(
                    http,
                    CHANGE,
                    {
                        "input": {
                            "currentPassword": password,
                            "newPassword": "белые ночи над Невой 1703",
                        }
                    },
                    first["accessToken"],
                )
            )["changePassword"]
            assert changed == {"ok": True, "errors": []}
            me = (await post(http, ME, token=first["accessToken"]))["me"]
            assert me["login"] == contract["number"] and me["email"] == "sidorov@example.org"
            assert [c["number"] for c in me["contracts"]] == [contract["number"]]

            # and the notice of the change is mailed too
            letters = await wait_for_letters(smtp, 2)
            assert len(letters) == 2
    # then, in the database: the code is burnt, the staff write is audited, letters are sent
    async with session_factory() as session:
        row = await session.scalar(sa.select(Contract).where(Contract.number == contract["number"]))
        assert row is not None and row.security_code_hash is None
        assert row.security_code_used_at is not None
        audit = (await session.execute(sa.select(AuditEntry))).scalars().all()
        assert [a.action for a in audit] == ["staffCreateContract"]
        assert code not in (audit[0].after or "") and "223344" not in (audit[0].after or "")
        outbox = (await session.execute(sa.select(OutboxMessage))).scalars().all()
        assert {m.kind for m in outbox} == {"REGISTRATION", "PASSWORD_CHANGED"}
        assert all(m.sent_at is not None for m in outbox)
