"""Staff verbs: creating a contract, resetting access in the office, looking subscribers up."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col

from auth.passwords import passwords_for
from auth.secrets import document_hash, security_code_hash
from auth.sessions import issue_session
from core.db import RequestReader, begin_write, unit_of_work
from core.errors import DomainError, ErrorCode
from core.settings import Settings
from models import (
    AuditEntry,
    AuthSession,
    BonusAccount,
    Contract,
    Credential,
    OutboxMessage,
    Subscriber,
    Tariff,
)
from resolvers import staff as staff_verbs
from resolvers.pagination import decode_id_cursor
from resolvers.staff import CreatedContract, staff_create_contract, staff_reset_access
from resolvers.subscribers import search_subscribers
from tests.factories import make_staff, make_subscriber

PASSPORT = "4510 123456"
PASSPORT_DIGITS = "4510123456"


# -- helpers --------------------------------------------------------------------------------


async def tariff_id(session_factory: Any, region: str, *, archived: bool = False) -> int:
    async with session_factory() as session:
        found = await session.scalar(
            sa.select(col(Tariff.id))
            .where(col(Tariff.region_code) == region, col(Tariff.archived).is_(archived))
            .order_by(col(Tariff.id))
            .limit(1)
        )
    assert found is not None
    return int(found)


async def contract_input(session_factory: Any, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "legal_status": "INDIVIDUAL",
        "display_name": "Иванов Иван Иванович",
        "document_number": PASSPORT,
        "email": "Ivan.Ivanov@Example.org",
        "phone": "8 (916) 123-45-67",
        "region": "MOW",
        "address": "Москва, ул. Тверская, д. 1, кв. 10",
    }
    values.update(overrides)
    if "tariff_id" not in values:
        values["tariff_id"] = await tariff_id(session_factory, values["region"])
    return values


async def create(
    session_factory: Any, settings: Settings, staff_id: int, **overrides: Any
) -> CreatedContract:
    values = await contract_input(session_factory, **overrides)
    async with unit_of_work(session_factory) as session:
        return await staff_create_contract(
            session, settings=settings, staff_id=staff_id, client_address="10.0.0.5", **values
        )


async def all_rows(session_factory: Any, model: Any) -> list[Any]:
    async with session_factory() as session:
        return list((await session.scalars(sa.select(model).order_by(model.id))).all())


async def count(session_factory: Any, model: Any) -> int:
    async with session_factory() as session:
        return int(await session.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


def audit_text(entry: AuditEntry) -> str:
    return " ".join(str(v) for v in (entry.before, entry.after, entry.reason, entry.target_id))


# -- staffCreateContract --------------------------------------------------------------------


async def test_create_contract_for_a_new_subscriber(
    session_factory: Any, settings: Settings
) -> None:
    # given
    staff_id, _, _ = await make_staff(session_factory, settings)
    mow_tariff = await tariff_id(session_factory, "MOW")

    # when
    created = await create(session_factory, settings, staff_id, tariff_id=mow_tariff)

    # then: the subscriber, with the document only as a keyed hash and its last 4
    (subscriber,) = await all_rows(session_factory, Subscriber)
    assert subscriber.id == created.subscriber_id and created.subscriber_created
    assert subscriber.legal_status == "INDIVIDUAL"
    assert subscriber.display_name == "Иванов Иван Иванович"
    assert subscriber.document_hash == document_hash(settings, PASSPORT_DIGITS)
    assert PASSPORT_DIGITS not in subscriber.document_hash
    assert subscriber.document_last4 == "3456"
    assert subscriber.email == "ivan.ivanov@example.org"
    assert subscriber.phone == "+79161234567"
    assert await count(session_factory, BonusAccount) == 1

    # then: the contract, numbered 77 + 10 digits, the code kept only as a hash
    (contract,) = await all_rows(session_factory, Contract)
    assert contract.id == created.contract_id
    assert contract.number == created.contract_number
    assert re.fullmatch(r"77[0-9]{10}", contract.number)
    assert contract.subscriber_id == subscriber.id
    assert contract.region_code == "MOW" and contract.tariff_id == mow_tariff
    assert contract.address == "Москва, ул. Тверская, д. 1, кв. 10"
    assert contract.status == "ACTIVE"
    assert contract.balance == Decimal("0.00")
    assert contract.opened_on == datetime.now(UTC).date()
    assert re.fullmatch(r"[0-9]{8}", created.security_code)
    assert contract.security_code_hash == security_code_hash(settings, created.security_code)
    assert contract.security_code_used_at is None

    # then: the audit entry, with no secret in it
    (entry,) = await all_rows(session_factory, AuditEntry)
    assert entry.actor_staff_id == staff_id
    assert entry.action == "staffCreateContract"
    assert entry.target_type == "Contract" and entry.target_id == str(contract.id)
    assert entry.client_address == "10.0.0.5"
    assert entry.before is None
    after = json.loads(entry.after or "")
    assert after["contract_number"] == contract.number
    assert after["region"] == "MOW"
    assert after["tariff_id"] == mow_tariff
    assert after["subscriber_id"] == subscriber.id
    assert after["document_last4"] == "3456"
    text = audit_text(entry)
    for secret in (
        created.security_code,
        PASSPORT_DIGITS,
        PASSPORT,
        subscriber.document_hash,
        contract.security_code_hash,
    ):
        assert secret not in text
    assert "hash" not in text and "code" not in (entry.after or "")


@pytest.mark.parametrize(("region", "prefix"), [("MOW", "77"), ("SPB", "78"), ("EKB", "66")])
async def test_contract_number_starts_with_the_region_prefix(
    session_factory: Any, settings: Settings, region: str, prefix: str
) -> None:
    staff_id, _, _ = await make_staff(session_factory, settings)

    created = await create(session_factory, settings, staff_id, region=region)

    (contract,) = await all_rows(session_factory, Contract)
    assert contract.number == created.contract_number
    assert re.fullmatch(prefix + r"[0-9]{10}", contract.number)
    assert contract.region_code == region


def test_unknown_region_prefix_is_99() -> None:
    assert re.fullmatch(r"99[0-9]{10}", staff_verbs.new_contract_number("KZN"))


async def test_contract_number_collision_is_drawn_again(
    session_factory: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a contract, and a draw that first hits its number
    staff_id, _, _ = await make_staff(session_factory, settings)
    first = await create(session_factory, settings, staff_id)
    draws = iter([first.contract_number, "770000000777"])
    monkeypatch.setattr(staff_verbs, "new_contract_number", lambda region: next(draws))

    # when
    second = await create(session_factory, settings, staff_id)

    # then
    assert second.contract_number == "770000000777"
    numbers = [c.number for c in await all_rows(session_factory, Contract)]
    assert numbers == [first.contract_number, "770000000777"]


async def test_contract_number_taken_concurrently_is_drawn_again(
    session_factory: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a draw that hits a number taken after the pre-check (a concurrent insert), so
    # the unique constraint refuses it inside a savepoint
    staff_id, _, _ = await make_staff(session_factory, settings)
    first = await create(session_factory, settings, staff_id)
    draws = iter([first.contract_number, "770000000888"])
    monkeypatch.setattr(staff_verbs, "new_contract_number", lambda region: next(draws))
    values = await contract_input(session_factory, document_number="4510 999999")

    async with unit_of_work(session_factory) as session:
        real_scalar = session.scalar
        prechecks = 0

        async def scalar(statement: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal prechecks
            if "contracts.number =" in str(statement) and prechecks == 0:
                prechecks += 1
                return None  # the number looked free
            return await real_scalar(statement, *args, **kwargs)

        monkeypatch.setattr(session, "scalar", scalar)

        # when
        second = await staff_create_contract(
            session, settings=settings, staff_id=staff_id, **values
        )

    # then: the second draw was used, and the rest of the transaction survived
    assert second.contract_number == "770000000888"
    numbers = [c.number for c in await all_rows(session_factory, Contract)]
    assert numbers == [first.contract_number, "770000000888"]
    assert await count(session_factory, Subscriber) == 2
    assert await count(session_factory, AuditEntry) == 2


async def test_legal_entity_with_an_inn(session_factory: Any, settings: Settings) -> None:
    staff_id, _, _ = await make_staff(session_factory, settings)

    for inn in ("7707083893", "500100732259"):
        await create(
            session_factory,
            settings,
            staff_id,
            legal_status="LEGAL_ENTITY",
            display_name="ООО «Ромашка»",
            document_number=inn,
            phone=None,
        )

    subscribers = await all_rows(session_factory, Subscriber)
    assert [s.legal_status for s in subscribers] == ["LEGAL_ENTITY", "LEGAL_ENTITY"]
    assert [s.document_last4 for s in subscribers] == ["3893", "2259"]
    assert [s.phone for s in subscribers] == [None, None]
    assert await count(session_factory, Contract) == 2


INVALID_INPUTS = [
    ({"legal_status": "PERSON"}, "legalStatus"),
    ({"legal_status": "individual"}, "legalStatus"),
    ({"display_name": "И"}, "displayName"),
    ({"display_name": "   "}, "displayName"),
    ({"display_name": "Я" * 201}, "displayName"),
    ({"document_number": "4510 12345"}, "documentNumber"),
    ({"document_number": "4510 1234567"}, "documentNumber"),
    ({"document_number": "45AB 123456"}, "documentNumber"),
    ({"document_number": ""}, "documentNumber"),
    ({"legal_status": "LEGAL_ENTITY", "document_number": "12345678901"}, "documentNumber"),
    ({"legal_status": "LEGAL_ENTITY", "document_number": "123456789"}, "documentNumber"),
    ({"email": "ivan.example.org"}, "email"),
    ({"email": "ivan@example"}, "email"),
    ({"email": ""}, "email"),
    ({"email": "a@b.c" + "x" * 260}, "email"),
    ({"phone": "12-34"}, "phone"),
    ({"phone": "call me"}, "phone"),
    ({"region": "XXX", "tariff_id": 1}, "region"),
    ({"region": "", "tariff_id": 1}, "region"),
    ({"address": "Дом"}, "address"),
    ({"address": "д" * 301}, "address"),
    ({"tariff_id": 999_999_999}, "tariffId"),
]


@pytest.mark.parametrize(("overrides", "field"), INVALID_INPUTS)
async def test_create_contract_refuses_invalid_input(
    session_factory: Any, settings: Settings, overrides: dict[str, Any], field: str
) -> None:
    staff_id, _, _ = await make_staff(session_factory, settings)

    with pytest.raises(DomainError) as raised:
        await create(session_factory, settings, staff_id, **overrides)

    assert raised.value.code == ErrorCode.INVALID
    assert raised.value.field == field
    assert raised.value.message
    for model in (Subscriber, Contract, AuditEntry, BonusAccount):
        assert await count(session_factory, model) == 0


@pytest.mark.parametrize(
    ("region", "other_region", "archived"), [("MOW", "SPB", False), ("MOW", "MOW", True)]
)
async def test_create_contract_refuses_a_tariff_not_on_sale_in_the_region(
    session_factory: Any, settings: Settings, region: str, other_region: str, archived: bool
) -> None:
    staff_id, _, _ = await make_staff(session_factory, settings)
    refused_tariff = await tariff_id(session_factory, other_region, archived=archived)

    with pytest.raises(DomainError) as raised:
        await create(session_factory, settings, staff_id, region=region, tariff_id=refused_tariff)

    assert (raised.value.code, raised.value.field) == (ErrorCode.INVALID, "tariffId")
    assert ("archived" in raised.value.message) is archived
    assert await count(session_factory, Contract) == 0
    assert await count(session_factory, Subscriber) == 0


async def test_second_contract_for_the_same_person_reuses_the_subscriber(
    session_factory: Any, settings: Settings
) -> None:
    # given
    staff_id, _, _ = await make_staff(session_factory, settings)
    first = await create(session_factory, settings, staff_id, document_number="4510 123456")

    # when: the same passport, typed differently, for a flat in St Petersburg
    second = await create(
        session_factory,
        settings,
        staff_id,
        document_number="45-10 123 456",
        region="SPB",
        address="Санкт-Петербург, Невский пр., д. 1",
    )

    # then
    assert second.subscriber_id == first.subscriber_id
    assert not second.subscriber_created
    assert await count(session_factory, Subscriber) == 1
    assert await count(session_factory, BonusAccount) == 1
    contracts = await all_rows(session_factory, Contract)
    assert [c.subscriber_id for c in contracts] == [first.subscriber_id] * 2
    assert contracts[1].number.startswith("78")
    entries = await all_rows(session_factory, AuditEntry)
    assert [json.loads(e.after)["subscriber_created"] for e in entries] == [True, False]


async def test_same_digits_under_another_legal_status_is_another_subscriber(
    session_factory: Any, settings: Settings
) -> None:
    staff_id, _, _ = await make_staff(session_factory, settings)
    person = await create(session_factory, settings, staff_id, document_number=PASSPORT)

    company = await create(
        session_factory,
        settings,
        staff_id,
        legal_status="LEGAL_ENTITY",
        display_name="ООО «Ромашка»",
        document_number=PASSPORT_DIGITS,
    )

    assert company.subscriber_id != person.subscriber_id
    assert company.subscriber_created
    assert await count(session_factory, Subscriber) == 2


# -- staffResetAccess -----------------------------------------------------------------------


async def reset(session_factory: Any, settings: Settings, staff_id: int, **overrides: Any) -> None:
    values: dict[str, Any] = {
        "contract_number": "000000000000",
        "document_verified": True,
        "reason": "Passport checked at the Tverskaya office",
    }
    values.update(overrides)
    async with unit_of_work(session_factory) as session:
        await staff_reset_access(
            session, settings=settings, staff_id=staff_id, client_address="10.0.0.7", **values
        )


async def credential_of(session_factory: Any, subscriber_id: int) -> Credential:
    async with session_factory() as session:
        found = await session.scalar(
            sa.select(Credential).where(col(Credential.subscriber_id) == subscriber_id)
        )
    assert found is not None
    return found


async def test_reset_access_issues_a_new_temporary_password(
    session_factory: Any, settings: Settings
) -> None:
    # given: a registered subscriber, signed in twice
    staff_id, _, _ = await make_staff(session_factory, settings)
    made = await make_subscriber(session_factory, settings, email="ivanov@example.org")
    before = await credential_of(session_factory, made.id)
    async with session_factory() as session:
        await begin_write(session)
        for _ in range(2):
            await issue_session(
                session,
                settings=settings,
                subscriber_id=made.id,
                client_address="192.0.2.1",
                user_agent="test",
            )
        await session.commit()

    # when
    await reset(session_factory, settings, staff_id, contract_number=made.contract_numbers[0])

    # then: a letter with the login and a new temporary password
    (letter,) = await all_rows(session_factory, OutboxMessage)
    assert letter.recipient == "ivanov@example.org"
    assert letter.kind == "REGISTRATION"
    assert f"Логин: {made.login}" in letter.body_text
    found = re.search(r"Временный пароль: (\S+)", letter.body_text)
    assert found is not None
    temporary_password = found.group(1)

    # then: the password works, the old one does not, and it must be changed
    after = await credential_of(session_factory, made.id)
    assert after.must_change_password and not before.must_change_password
    passwords = passwords_for(settings)
    assert await passwords.verify(after.password_hash, temporary_password)
    assert not await passwords.verify(after.password_hash, made.password)

    # then: every session has ended
    sessions = await all_rows(session_factory, AuthSession)
    assert len(sessions) == 2
    assert all(s.revoked_at is not None for s in sessions)

    # then: audited with the reason, without the password
    (entry,) = await all_rows(session_factory, AuditEntry)
    assert entry.action == "staffResetAccess"
    assert entry.actor_staff_id == staff_id
    assert entry.target_type == "Contract" and entry.target_id == str(made.contract_ids[0])
    assert entry.reason == "Passport checked at the Tverskaya office"
    assert entry.client_address == "10.0.0.7"
    assert json.loads(entry.before or "") == {"must_change_password": False}
    assert json.loads(entry.after or "")["must_change_password"] is True
    text = audit_text(entry)
    assert temporary_password not in text and after.password_hash not in text


async def test_reset_access_refusals_change_nothing(
    session_factory: Any, settings: Settings
) -> None:
    staff_id, _, _ = await make_staff(session_factory, settings)
    made = await make_subscriber(session_factory, settings)
    number = made.contract_numbers[0]
    unregistered = await make_subscriber(session_factory, settings, registered=False)
    before = await credential_of(session_factory, made.id)

    cases: list[tuple[dict[str, Any], ErrorCode, str]] = [
        (
            {"contract_number": number, "document_verified": False},
            ErrorCode.INVALID,
            "documentVerified",
        ),
        ({"contract_number": number, "reason": ""}, ErrorCode.INVALID, "reason"),
        ({"contract_number": number, "reason": "  ok  "}, ErrorCode.INVALID, "reason"),
        ({"contract_number": number, "reason": "x" * 501}, ErrorCode.INVALID, "reason"),
        ({"contract_number": "779999999999"}, ErrorCode.NOT_FOUND, "contractNumber"),
        (
            {"contract_number": unregistered.contract_numbers[0]},
            ErrorCode.NOT_ELIGIBLE,
            "contractNumber",
        ),
    ]
    for overrides, code, field in cases:
        with pytest.raises(DomainError) as raised:
            await reset(session_factory, settings, staff_id, **overrides)
        assert (raised.value.code, raised.value.field) == (code, field), overrides

    assert "Verify the passport" in (
        await _message(session_factory, settings, staff_id, number, document_verified=False)
    )
    assert "security code" in await _message(
        session_factory, settings, staff_id, unregistered.contract_numbers[0]
    )
    after = await credential_of(session_factory, made.id)
    assert after.password_hash == before.password_hash and not after.must_change_password
    assert await count(session_factory, OutboxMessage) == 0
    assert await count(session_factory, AuditEntry) == 0


async def _message(
    session_factory: Any, settings: Settings, staff_id: int, number: str, **overrides: Any
) -> str:
    with pytest.raises(DomainError) as raised:
        await reset(session_factory, settings, staff_id, contract_number=number, **overrides)
    return raised.value.message


async def test_reset_access_without_an_email_is_not_eligible(
    session_factory: Any, settings: Settings
) -> None:
    # given: a registered subscriber with a phone only, and a live session
    staff_id, _, _ = await make_staff(session_factory, settings)
    made = await make_subscriber(session_factory, settings, email=None)
    before = await credential_of(session_factory, made.id)
    async with session_factory() as session:
        await begin_write(session)
        await issue_session(
            session, settings=settings, subscriber_id=made.id, client_address=None, user_agent=None
        )
        await session.commit()

    # when
    with pytest.raises(DomainError) as raised:
        await reset(session_factory, settings, staff_id, contract_number=made.contract_numbers[0])

    # then: refused, and nothing changed
    assert raised.value.code == ErrorCode.NOT_ELIGIBLE
    assert "email" in raised.value.message
    after = await credential_of(session_factory, made.id)
    assert after.password_hash == before.password_hash
    assert not after.must_change_password
    (live,) = await all_rows(session_factory, AuthSession)
    assert live.revoked_at is None
    assert await count(session_factory, OutboxMessage) == 0
    assert await count(session_factory, AuditEntry) == 0


# -- subscribers(search) --------------------------------------------------------------------


async def found_ids(session_factory: Any, search: str | None, first: int = 100) -> list[int]:
    async with session_factory() as session:
        page = await search_subscribers(session, search=search, first=first, after=None)
    return [row.id for row in page.items]


async def make_world(session_factory: Any, settings: Settings) -> dict[str, Any]:
    staff_id, _, _ = await make_staff(session_factory, settings)
    ivanov = await create(
        session_factory,
        settings,
        staff_id,
        display_name="Иванов Иван Иванович",
        document_number="4510 123456",
        email="ivan.ivanov@example.org",
        phone="+7 916 123-45-67",
    )
    acme = await create(
        session_factory,
        settings,
        staff_id,
        legal_status="LEGAL_ENTITY",
        display_name="ACME Networks Ltd",
        document_number="7707083893",
        email="billing@acme.example.com",
        phone=None,
        region="SPB",
    )
    fiber = await create(
        session_factory,
        settings,
        staff_id,
        display_name="Сто_процентов 100% Fiber",
        document_number="4000 000042",
        email="fiber@example.net",
        phone="+7 495 000-00-01",
    )
    async with session_factory() as session:
        await begin_write(session)
        session.add(
            Credential(
                subscriber_id=ivanov.subscriber_id,
                login="IvanovHome",
                password_hash="!",
                must_change_password=False,
            )
        )
        await session.commit()
    return {"ivanov": ivanov, "acme": acme, "fiber": fiber}


async def test_search_by_each_key(session_factory: Any, settings: Settings) -> None:
    world = await make_world(session_factory, settings)
    ivanov = world["ivanov"].subscriber_id
    acme = world["acme"].subscriber_id
    fiber = world["fiber"].subscriber_id

    # contract number, exact and prefix
    assert await found_ids(session_factory, world["acme"].contract_number) == [acme]
    assert await found_ids(session_factory, world["ivanov"].contract_number[:9]) == [ivanov]
    assert await found_ids(session_factory, "78") == [acme]
    # login, prefix, any case
    assert await found_ids(session_factory, "ivanovhome") == [ivanov]
    assert await found_ids(session_factory, "IVANOVH") == [ivanov]
    # email contains, any case
    assert await found_ids(session_factory, "ACME.EXAMPLE") == [acme]
    assert await found_ids(session_factory, "example.org") == [ivanov]
    # phone in any written form
    assert await found_ids(session_factory, "8 (916) 123-45-67") == [ivanov]
    assert await found_ids(session_factory, "+74950000001") == [fiber]
    # display name contains, any case, Cyrillic included
    assert await found_ids(session_factory, "иванов") == [ivanov]
    assert await found_ids(session_factory, "ИВАНОВ") == [ivanov]
    assert await found_ids(session_factory, "Иван Иванович") == [ivanov]
    assert await found_ids(session_factory, "иван иванович") == [ivanov]
    assert await found_ids(session_factory, "networks") == [acme]
    # the document's last 4 characters, only for a 4-character search
    assert await found_ids(session_factory, "3893") == [acme]
    assert await found_ids(session_factory, "0042") == [fiber]
    # nothing
    assert await found_ids(session_factory, "Петров") == []


async def test_search_rows_carry_what_staff_see(session_factory: Any, settings: Settings) -> None:
    world = await make_world(session_factory, settings)

    async with session_factory() as session:
        page = await search_subscribers(session, search="ivanovhome", first=10, after=None)

    (row,) = page.items
    assert row.id == world["ivanov"].subscriber_id
    assert row.legal_status == "INDIVIDUAL"
    assert row.display_name == "Иванов Иван Иванович"
    assert row.email == "ivan.ivanov@example.org"
    assert row.phone == "+79161234567"
    assert row.login == "IvanovHome"
    assert row.document_last4 == "3456"
    assert row.created_at.tzinfo is not None
    assert not hasattr(row, "document_hash")


async def test_search_escapes_like_wildcards(session_factory: Any, settings: Settings) -> None:
    world = await make_world(session_factory, settings)
    fiber = world["fiber"].subscriber_id

    assert await found_ids(session_factory, "%") == [fiber]
    assert await found_ids(session_factory, "_") == [fiber]
    assert await found_ids(session_factory, "0% F") == [fiber]
    assert await found_ids(session_factory, "Иванов%Иван") == []
    assert await found_ids(session_factory, "Ив_нов") == []
    assert await found_ids(session_factory, "\\") == []


async def test_search_pages_newest_first(session_factory: Any, settings: Settings) -> None:
    # given: five subscribers, one unregistered
    made = [await make_subscriber(session_factory, settings) for _ in range(4)]
    made.append(await make_subscriber(session_factory, settings, registered=False))
    newest_first = [m.id for m in reversed(made)]

    # when / then: everything, newest first
    assert await found_ids(session_factory, None) == newest_first
    assert await found_ids(session_factory, "   ") == newest_first

    # when / then: two at a time
    seen: list[int] = []
    after = None
    pages = []
    async with session_factory() as session:
        while True:
            page = await search_subscribers(session, search="", first=2, after=after)
            pages.append(page)
            seen += [row.id for row in page.items]
            if not page.has_next_page:
                break
            after = decode_id_cursor(page.cursors[-1])
    assert seen == newest_first
    assert [len(p.items) for p in pages] == [2, 2, 1]
    assert [p.has_next_page for p in pages] == [True, True, False]
    assert [p.has_previous_page for p in pages] == [False, True, True]
    assert pages[0].items[0].login is None  # the newest is the unregistered one

    # when / then: a search is paged too
    async with session_factory() as session:
        page = await search_subscribers(session, search="Абонент", first=3, after=None)
        rest = await search_subscribers(
            session, search="Абонент", first=3, after=decode_id_cursor(page.cursors[-1])
        )
    assert [r.id for r in page.items] + [r.id for r in rest.items] == newest_first
    assert page.has_next_page and not rest.has_next_page


async def test_search_through_a_request_reader(
    session_factory: Any, settings: Settings, engine: Any
) -> None:
    made = await make_subscriber(session_factory, settings)
    reader = RequestReader(engine)
    try:
        page = await search_subscribers(reader, search=made.email, first=5, after=None)
    finally:
        await reader.close()
    assert [row.id for row in page.items] == [made.id]


async def test_search_refuses_a_long_text(session_factory: Any) -> None:
    async with session_factory() as session:
        with pytest.raises(DomainError) as raised:
            await search_subscribers(session, search="x" * 101, first=10, after=None)
        assert (raised.value.code, raised.value.field) == (ErrorCode.INVALID, "search")
        # NFKC can lengthen the text: checked after it too
        with pytest.raises(DomainError):
            await search_subscribers(session, search="\ufdfa" * 10, first=10, after=None)
        page = await search_subscribers(session, search="x" * 100, first=10, after=None)
    assert page.items == []
