"""Written support requests (SPEC §3 "Recovery"): submitted without sign-in, listed and
closed by staff."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col

from core.db import begin_write, unit_of_work
from core.errors import DomainError, ErrorCode
from core.settings import Settings
from models import AuditEntry, RateLimitCounter, StaffUser, SupportRequest
from resolvers.pagination import decode_id_cursor
from resolvers.support import (
    close_support_request,
    list_support_requests,
    submit_support_request,
)

CONTACT = "Петров Пётр, +7 916 000-02-02"
MESSAGE = "Не могу войти: нет доступа ни к почте, ни к телефону. Договор 770000000202."
ADDRESS = "198.51.100.4"


async def submit(
    session_factory: Any,
    settings: Settings,
    *,
    contact: str = CONTACT,
    message: str = MESSAGE,
    address: str = ADDRESS,
) -> int:
    async with unit_of_work(session_factory) as session:
        return await submit_support_request(
            session, settings=settings, contact=contact, message=message, client_address=address
        )


async def close(
    session_factory: Any, staff_id: int, request_id: int, resolution: str = "Доступ восстановлен."
) -> SupportRequest:
    async with unit_of_work(session_factory) as session:
        return await close_support_request(
            session,
            staff_id=staff_id,
            request_id=request_id,
            resolution=resolution,
            client_address="10.0.0.5",
        )


async def make_staff(session_factory: Any) -> int:
    async with session_factory() as session:
        await begin_write(session)
        staff = StaffUser(username="operator1", role="OPERATOR", password_hash="!")
        session.add(staff)
        await session.commit()
        assert staff.id is not None
        return staff.id


async def stored(session_factory: Any) -> list[SupportRequest]:
    async with session_factory() as session:
        return list(
            (
                await session.execute(sa.select(SupportRequest).order_by(col(SupportRequest.id)))
            ).scalars()
        )


async def audit_entries(session_factory: Any) -> list[AuditEntry]:
    async with session_factory() as session:
        return list((await session.execute(sa.select(AuditEntry))).scalars())


# -- submitting -----------------------------------------------------------------------------


async def test_a_request_is_stored_open(session_factory: Any, settings: Settings) -> None:
    # when
    request_id = await submit(
        session_factory, settings, contact=f"  {CONTACT}  ", message=f"\n {MESSAGE} \n"
    )

    # then
    (request,) = await stored(session_factory)
    assert request.id == request_id
    assert (request.contact, request.message, request.status) == (CONTACT, MESSAGE, "OPEN")
    assert request.client_address == ADDRESS
    assert request.created_at is not None
    assert (request.closed_at, request.closed_by_staff_id, request.resolution) == (None, None, None)


@pytest.mark.parametrize(
    ("contact", "message", "field"),
    [
        ("ab", MESSAGE, "contact"),
        ("  ab  ", MESSAGE, "contact"),
        ("x" * 255, MESSAGE, "contact"),
        ("ivan@example.org\nBcc: x", MESSAGE, "contact"),
        (CONTACT, "  too short  ", "message"),
        (CONTACT, "x" * 4001, "message"),
    ],
)
async def test_invalid_input_names_its_field_and_stores_nothing(
    session_factory: Any, settings: Settings, contact: str, message: str, field: str
) -> None:
    # when
    with pytest.raises(DomainError) as caught:
        await submit(session_factory, settings, contact=contact, message=message)

    # then
    assert (caught.value.code, caught.value.field) == (ErrorCode.INVALID, field)
    assert await stored(session_factory) == []
    async with session_factory() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(RateLimitCounter)) == 0


async def test_the_longest_allowed_request_is_stored(
    session_factory: Any, settings: Settings
) -> None:
    await submit(session_factory, settings, contact="x" * 254, message="y" * 4000)
    (request,) = await stored(session_factory)
    assert (len(request.contact), len(request.message)) == (254, 4000)


async def test_requests_are_limited_per_client_address(
    session_factory: Any, settings: Settings
) -> None:
    # given
    for _ in range(settings.support_requests_per_address_per_hour):
        await submit(session_factory, settings)

    # when
    with pytest.raises(DomainError) as caught:
        await submit(session_factory, settings)
    other_address = await submit(session_factory, settings, address="198.51.100.5")

    # then
    assert caught.value.code == ErrorCode.RATE_LIMITED
    assert 0 < (caught.value.retry_after_seconds or 0) <= 3600
    requests = await stored(session_factory)
    assert len(requests) == settings.support_requests_per_address_per_hour + 1
    assert requests[-1].id == other_address


# -- listing --------------------------------------------------------------------------------


async def test_requests_are_listed_newest_first_a_page_at_a_time(
    session_factory: Any, settings: Settings
) -> None:
    # given: five requests, the second one closed
    ids = [await submit(session_factory, settings, address=f"198.51.100.{n}") for n in range(1, 6)]
    staff_id = await make_staff(session_factory)
    await close(session_factory, staff_id, ids[1])

    # when: two at a time
    pages = []
    after = None
    async with session_factory() as session:
        while True:
            page = await list_support_requests(session, status=None, first=2, after=after)
            pages.append(page)
            if not page.has_next_page:
                break
            after = decode_id_cursor(page.cursors[-1])

    # then
    assert [[row.id for row in page.items] for page in pages] == [
        ids[4:2:-1],
        ids[2:0:-1],
        ids[:1],
    ]
    assert [p.has_next_page for p in pages] == [True, True, False]
    assert [p.has_previous_page for p in pages] == [False, True, True]
    assert pages[1].items[1].status == "CLOSED"

    # and filtered by status
    async with session_factory() as session:
        open_page = await list_support_requests(session, status="OPEN", first=10, after=None)
        closed_page = await list_support_requests(session, status="CLOSED", first=10, after=None)
    assert [row.id for row in open_page.items] == [ids[4], ids[3], ids[2], ids[0]]
    assert [row.id for row in closed_page.items] == [ids[1]]
    assert not open_page.has_next_page


@pytest.mark.parametrize(
    ("first", "status", "field"), [(101, None, "first"), (-1, None, "first"), (5, "LOST", "status")]
)
async def test_a_bad_page_request_is_invalid(
    session_factory: Any, first: int, status: str | None, field: str
) -> None:
    async with session_factory() as session:
        with pytest.raises(DomainError) as caught:
            await list_support_requests(session, status=status, first=first, after=None)
    assert (caught.value.code, caught.value.field) == (ErrorCode.INVALID, field)


# -- closing --------------------------------------------------------------------------------


async def test_closing_a_request_records_who_and_how_and_is_audited(
    session_factory: Any, settings: Settings
) -> None:
    # given
    request_id = await submit(session_factory, settings)
    staff_id = await make_staff(session_factory)

    # when
    closed = await close(session_factory, staff_id, request_id, "  Выдан новый пароль в офисе.  ")

    # then
    (request,) = await stored(session_factory)
    assert request.status == closed.status == "CLOSED"
    assert request.closed_at is not None
    assert request.closed_by_staff_id == staff_id
    assert request.resolution == closed.resolution == "Выдан новый пароль в офисе."
    (entry,) = await audit_entries(session_factory)
    assert (entry.actor_staff_id, entry.action, entry.target_type, entry.target_id) == (
        staff_id,
        "closeSupportRequest",
        "SupportRequest",
        str(request_id),
    )
    assert json.loads(entry.before or "") == {"status": "OPEN"}
    assert json.loads(entry.after or "")["status"] == "CLOSED"


async def test_closing_twice_is_a_conflict(session_factory: Any, settings: Settings) -> None:
    # given
    request_id = await submit(session_factory, settings)
    staff_id = await make_staff(session_factory)
    await close(session_factory, staff_id, request_id, "Первое решение.")

    # when
    with pytest.raises(DomainError) as caught:
        await close(session_factory, staff_id, request_id, "Второе решение.")

    # then
    assert (caught.value.code, caught.value.field) == (ErrorCode.CONFLICT, "id")
    (request,) = await stored(session_factory)
    assert request.resolution == "Первое решение."
    assert len(await audit_entries(session_factory)) == 1


async def test_closing_a_missing_request_is_not_found(session_factory: Any) -> None:
    # given
    staff_id = await make_staff(session_factory)

    # when
    with pytest.raises(DomainError) as caught:
        await close(session_factory, staff_id, 999_999)

    # then
    assert (caught.value.code, caught.value.field) == (ErrorCode.NOT_FOUND, "id")
    assert await audit_entries(session_factory) == []


@pytest.mark.parametrize("resolution", ["", "   ", "x" * 2001])
async def test_a_resolution_is_required(
    session_factory: Any, settings: Settings, resolution: str
) -> None:
    # given
    request_id = await submit(session_factory, settings)
    staff_id = await make_staff(session_factory)

    # when
    with pytest.raises(DomainError) as caught:
        await close(session_factory, staff_id, request_id, resolution)

    # then
    assert (caught.value.code, caught.value.field) == (ErrorCode.INVALID, "resolution")
    (request,) = await stored(session_factory)
    assert request.status == "OPEN"
    assert await audit_entries(session_factory) == []
