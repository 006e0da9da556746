"""The audit log: entries written in the caller's transaction, secrets redacted, newest first."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col

from core.db import RequestReader, begin_write
from core.errors import DomainError, ErrorCode
from core.settings import Settings
from models import AuditEntry
from resolvers.audit import list_audit_log, record_audit, redact
from resolvers.pagination import decode_id_cursor
from tests.factories import make_staff


def test_redact_drops_every_key_that_may_hold_a_secret() -> None:
    values = {
        "password": "p",
        "new_password": "p",
        "passwordHash": "h",
        "security_code": "12345678",
        "securityCode": "12345678",
        "security_code_hash": "h",
        "access_token": "t",
        "refreshToken": "t",
        "document_number": "4510123456",
        "documentNumber": "4510123456",
        "document_hash": "h",
        "document_last4": "3456",
        "must_change_password": True,
        "amount": Decimal("10.50"),
        "nested": {"temporary_password": "p", "login": "demo"},
        "items": [{"code_hash": "h", "id": 1}, "plain"],
    }

    assert redact(values) == {
        "document_last4": "3456",
        "must_change_password": True,
        "amount": Decimal("10.50"),
        "nested": {"login": "demo"},
        "items": [{"id": 1}, "plain"],
    }


async def entries(session_factory: Any) -> list[AuditEntry]:
    async with session_factory() as session:
        return list(
            (await session.scalars(sa.select(AuditEntry).order_by(col(AuditEntry.id)))).all()
        )


async def test_record_audit_writes_json_without_secrets(
    session_factory: Any, settings: Settings
) -> None:
    # given
    staff_id, _, _ = await make_staff(session_factory, settings)

    # when
    async with session_factory() as session:
        await begin_write(session)
        await record_audit(
            session,
            actor_staff_id=staff_id,
            action="adjustBalance",
            target_type="Contract",
            target_id=42,
            before={"balance": Decimal("150.00"), "password_hash": "$argon2id$secret"},
            after={
                "balance": Decimal("50.00"),
                "when": datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
                "on": date(2025, 3, 1),
                "address": "Москва",
                "security_code": "12345678",
            },
            reason="Возврат ошибочного платежа",
            client_address="203.0.113.9",
        )
        await session.commit()

    # then
    (entry,) = await entries(session_factory)
    assert entry.actor_staff_id == staff_id
    assert entry.actor == f"staff:{staff_id}"
    assert entry.action == "adjustBalance"
    assert (entry.target_type, entry.target_id) == ("Contract", "42")
    assert entry.reason == "Возврат ошибочного платежа"
    assert entry.client_address == "203.0.113.9"
    assert entry.created_at.tzinfo is not None
    assert entry.before == '{"balance": "150.00"}'
    assert entry.after == (
        '{"address": "Москва", "balance": "50.00", "on": "2025-03-01", '
        '"when": "2025-03-01T12:00:00+00:00"}'
    )
    assert json.loads(entry.after)["balance"] == "50.00"
    assert "secret" not in (entry.before or "") and "12345678" not in entry.after


async def test_record_audit_commits_and_rolls_back_with_the_caller(
    session_factory: Any, settings: Settings
) -> None:
    staff_id, _, _ = await make_staff(session_factory, settings)

    async with session_factory() as session:
        await begin_write(session)
        await record_audit(
            session,
            actor_staff_id=staff_id,
            action="staffResetAccess",
            target_type="Contract",
            target_id="1",
            before=None,
            after=None,
            reason=None,
            client_address=None,
        )
        await session.rollback()

    assert await entries(session_factory) == []


async def add_entries(session_factory: Any, staff_id: int, actions: list[str]) -> list[int]:
    ids = []
    async with session_factory() as session:
        await begin_write(session)
        for n, action in enumerate(actions):
            await record_audit(
                session,
                actor_staff_id=staff_id,
                action=action,
                target_type="Contract",
                target_id=n,
                before=None,
                after={"n": n},
                reason=None,
                client_address=None,
            )
            await session.flush()
        await session.commit()
    for entry in await entries(session_factory):
        assert entry.id is not None
        ids.append(entry.id)
    return ids


async def test_list_audit_log_newest_first_in_pages(
    session_factory: Any, settings: Settings
) -> None:
    # given
    staff_id, _, _ = await make_staff(session_factory, settings)
    ids = await add_entries(
        session_factory,
        staff_id,
        ["staffCreateContract", "adjustBalance", "staffResetAccess", "adjustBalance", "x"],
    )
    newest_first = list(reversed(ids))

    # when
    async with session_factory() as session:
        first = await list_audit_log(session, first=2, after=None)
        second = await list_audit_log(session, first=2, after=decode_id_cursor(first.cursors[-1]))
        third = await list_audit_log(session, first=2, after=decode_id_cursor(second.cursors[-1]))
        everything = await list_audit_log(session, first=100, after=None)
        balance = await list_audit_log(session, first=10, after=None, action="adjustBalance")

    # then
    pages = [first, second, third]
    assert [row.id for page in pages for row in page.items] == newest_first
    assert [p.has_next_page for p in pages] == [True, True, False]
    assert [p.has_previous_page for p in pages] == [False, True, True]
    assert [row.id for row in everything.items] == newest_first
    assert not everything.has_next_page
    assert [row.id for row in balance.items] == [ids[3], ids[1]]
    row = first.items[0]
    assert row.action == "x" and row.actor_staff_id == staff_id
    assert json.loads(row.after) == {"n": 4}
    assert row.created_at.tzinfo is not None


async def test_list_audit_log_through_a_request_reader(
    session_factory: Any, settings: Settings, engine: Any
) -> None:
    staff_id, _, _ = await make_staff(session_factory, settings)
    ids = await add_entries(session_factory, staff_id, ["a", "b"])
    reader = RequestReader(engine)
    try:
        page = await list_audit_log(reader, first=1, after=None)
    finally:
        await reader.close()
    assert [row.id for row in page.items] == [ids[1]]
    assert page.has_next_page


@pytest.mark.parametrize("first", [-1, 101])
async def test_list_audit_log_refuses_a_page_size_out_of_range(
    session_factory: Any, first: int
) -> None:
    async with session_factory() as session:
        with pytest.raises(DomainError) as raised:
            await list_audit_log(session, first=first, after=None)
    assert (raised.value.code, raised.value.field) == (ErrorCode.INVALID, "first")
