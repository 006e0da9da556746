"""Registration (SPEC §3): the paper contract's details in, a login and password by mail."""

from __future__ import annotations

import asyncio
import re
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col

from auth import ratelimit
from auth.passwords import passwords_for
from auth.secrets import document_hash, security_code_hash
from core.db import begin_write, unit_of_work
from core.errors import DomainError, ErrorCode
from core.settings import Settings
from models import (
    BonusAccount,
    Contract,
    Credential,
    OutboxMessage,
    RateLimitCounter,
    Subscriber,
    Tariff,
)
from resolvers.registration import (
    ALREADY_REGISTERED_MESSAGE,
    DETAILS_MISMATCH_MESSAGE,
    RegistrationResult,
    register,
)
from tests.conftest import fast_settings

NUMBER = "770000001234"
CODE = "20240517"
DOCUMENT = "4510 111222"
EMAIL = "ivan.sidorov@example.org"
PHONE = "+79160000303"

RIGHT: dict[str, Any] = {
    "contract_number": NUMBER,
    "security_code": CODE,
    "legal_status": "INDIVIDUAL",
    "document_number": DOCUMENT,
    "email": EMAIL,
    "phone": PHONE,
}


async def make_contract(
    session_factory: Any,
    settings: Settings,
    *,
    number: str = NUMBER,
    email: str | None = EMAIL,
    phone: str | None = PHONE,
) -> int:
    """An unregistered subscriber with one contract whose paper carries CODE; its id."""
    async with session_factory() as session:
        await begin_write(session)
        tariff_id = await session.scalar(
            sa.select(col(Tariff.id)).order_by(col(Tariff.id)).limit(1)
        )
        region = await session.scalar(
            sa.select(col(Tariff.region_code)).where(col(Tariff.id) == tariff_id)
        )
        subscriber = Subscriber(
            legal_status="INDIVIDUAL",
            display_name="Сидоров Иван Петрович",
            document_hash=document_hash(settings, DOCUMENT),
            document_last4=DOCUMENT[-4:],
            email=email,
            phone=phone,
        )
        session.add(subscriber)
        await session.flush()
        assert subscriber.id is not None
        session.add(
            Contract(
                number=number,
                subscriber_id=subscriber.id,
                region_code=region,
                address="Москва, ул. Арбат, д. 3, кв. 7",
                tariff_id=tariff_id,
                opened_on=date(2025, 1, 15),
                security_code_hash=security_code_hash(settings, CODE),
            )
        )
        await session.commit()
        return subscriber.id


async def call_register(
    session_factory: Any, settings: Settings, **overrides: Any
) -> RegistrationResult:
    async with unit_of_work(session_factory) as session:
        return await register(session, settings=settings, **{**RIGHT, **overrides})


async def registration_error(
    session_factory: Any, settings: Settings, **overrides: Any
) -> DomainError:
    with pytest.raises(DomainError) as caught:
        await call_register(session_factory, settings, **overrides)
    return caught.value


def shape(error: DomainError) -> tuple[Any, ...]:
    return (error.code, error.message, error.field, error.retry_after_seconds, str(error))


async def count(session_factory: Any, model: type) -> int:
    async with session_factory() as session:
        return int(await session.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


async def contract_row(session_factory: Any, number: str = NUMBER) -> Any:
    async with session_factory() as session:
        return (
            await session.execute(
                sa.select(
                    col(Contract.security_code_hash), col(Contract.security_code_used_at)
                ).where(col(Contract.number) == number)
            )
        ).one()


async def failures(session_factory: Any, settings: Settings, number: str = NUMBER) -> int:
    limit = ratelimit.limits_for(settings).registration_contract
    async with session_factory() as session:
        hits = await session.scalar(
            sa.select(col(RateLimitCounter.hits)).where(
                col(RateLimitCounter.bucket) == ratelimit.bucket_for(limit, number)
            )
        )
    return int(hits or 0)


# -- success --------------------------------------------------------------------------------


async def test_register_creates_the_sign_in_burns_the_code_and_mails_the_password(
    session_factory: Any, settings: Settings
) -> None:
    # given
    subscriber_id = await make_contract(session_factory, settings)

    # when: the email in another case, the phone written the domestic way
    result = await call_register(
        session_factory, settings, email="Ivan.Sidorov@Example.ORG", phone="8 916 000-03-03"
    )

    # then
    assert result == RegistrationResult(login=NUMBER, subscriber_id=subscriber_id)
    async with session_factory() as session:
        credential = (await session.execute(sa.select(Credential))).scalar_one()
        letter = (await session.execute(sa.select(OutboxMessage))).scalar_one()
        bonus = await session.get(BonusAccount, subscriber_id)
    assert credential.subscriber_id == subscriber_id
    assert credential.login == NUMBER
    assert credential.must_change_password is True
    assert credential.password_changed_at is None
    code_hash, used_at = await contract_row(session_factory)
    assert code_hash is None and used_at is not None
    assert bonus is not None and bonus.points == 0
    assert (letter.kind, letter.channel, letter.recipient) == ("REGISTRATION", "EMAIL", EMAIL)
    assert f"Логин: {NUMBER}" in letter.body_text
    password = re.search(r"Временный пароль: (\S+)", letter.body_text)
    assert password is not None
    assert await passwords_for(settings).verify(credential.password_hash, password.group(1))
    assert letter.body_html is not None and password.group(1) in letter.body_html
    assert await failures(session_factory, settings) == 0


async def test_register_stores_the_email_and_phone_when_none_is_on_file(
    session_factory: Any, settings: Settings
) -> None:
    # given
    subscriber_id = await make_contract(session_factory, settings, email=None, phone=None)

    # when
    await call_register(
        session_factory, settings, email="New.Mail@Example.org", phone="8 (916) 555-44-33"
    )

    # then
    async with session_factory() as session:
        subscriber = await session.get(Subscriber, subscriber_id)
        recipient = await session.scalar(sa.select(col(OutboxMessage.recipient)))
    assert subscriber is not None
    assert (subscriber.email, subscriber.phone) == ("new.mail@example.org", "+79165554433")
    assert recipient == "new.mail@example.org"


async def test_register_generates_a_login_when_the_operator_says_so(
    session_factory: Any, settings: Settings
) -> None:
    # given
    settings = fast_settings(settings.database_url, login_is_contract_number=False)
    await make_contract(session_factory, settings)

    # when
    result = await call_register(session_factory, settings, phone=None)

    # then
    assert re.fullmatch(r"k\d{8}", result.login)
    async with session_factory() as session:
        login = await session.scalar(sa.select(col(Credential.login)))
        body = await session.scalar(sa.select(col(OutboxMessage.body_text)))
    assert login == result.login
    assert f"Логин: {result.login}" in (body or "")


async def test_register_keeps_a_bonus_account_that_exists(
    session_factory: Any, settings: Settings
) -> None:
    # given
    subscriber_id = await make_contract(session_factory, settings)
    async with session_factory() as session:
        await begin_write(session)
        session.add(BonusAccount(subscriber_id=subscriber_id, points=40))
        await session.commit()

    # when
    await call_register(session_factory, settings)

    # then
    async with session_factory() as session:
        bonus = await session.get(BonusAccount, subscriber_id)
    assert bonus is not None and bonus.points == 40


# -- failures -------------------------------------------------------------------------------


async def test_every_mismatch_is_one_and_the_same_error(
    session_factory: Any, settings: Settings
) -> None:
    # given
    await make_contract(session_factory, settings)
    causes: dict[str, dict[str, Any]] = {
        "wrong code": {"security_code": "20240518"},
        "wrong document": {"document_number": "4510 111223"},
        "wrong legal status": {"legal_status": "LEGAL_ENTITY"},
        "wrong email": {"email": "someone.else@example.org"},
        "wrong phone": {"phone": "+79160000304"},
        "unknown contract": {"contract_number": "770099999999"},
    }

    # when
    errors = {
        cause: await registration_error(session_factory, settings, **overrides)
        for cause, overrides in causes.items()
    }

    # then: byte for byte the same answer, whatever the cause
    expected = (ErrorCode.INVALID, DETAILS_MISMATCH_MESSAGE, None, None, DETAILS_MISMATCH_MESSAGE)
    assert {cause: shape(error) for cause, error in errors.items()} == dict.fromkeys(
        causes, expected
    )
    assert await count(session_factory, Credential) == 0
    assert await count(session_factory, OutboxMessage) == 0
    code_hash, used_at = await contract_row(session_factory)
    assert code_hash == security_code_hash(settings, CODE) and used_at is None
    # every failure counted against the number it named, known or not
    assert await failures(session_factory, settings) == 5
    assert await failures(session_factory, settings, "770099999999") == 1


async def test_a_registered_contract_is_told_apart_only_with_the_right_document(
    session_factory: Any, settings: Settings
) -> None:
    # given
    await make_contract(session_factory, settings)
    await call_register(session_factory, settings)

    # when
    registered = await registration_error(session_factory, settings)
    other_document = await registration_error(
        session_factory, settings, document_number="4510 000000"
    )

    # then
    assert shape(registered)[:4] == (
        ErrorCode.ALREADY_REGISTERED,
        ALREADY_REGISTERED_MESSAGE,
        None,
        None,
    )
    assert shape(other_document)[:4] == (ErrorCode.INVALID, DETAILS_MISMATCH_MESSAGE, None, None)
    assert await count(session_factory, Credential) == 1
    assert await count(session_factory, OutboxMessage) == 1
    assert await failures(session_factory, settings) == 2


async def test_the_sixth_attempt_is_refused_even_with_the_right_details(
    session_factory: Any, settings: Settings
) -> None:
    # given: five wrong codes
    await make_contract(session_factory, settings)
    for attempt in range(5):
        error = await registration_error(
            session_factory, settings, security_code=f"9999000{attempt}"
        )
        assert error.code == ErrorCode.INVALID

    # when
    error = await registration_error(session_factory, settings)

    # then
    assert error.code == ErrorCode.RATE_LIMITED
    assert error.retry_after_seconds is not None
    assert 0 < error.retry_after_seconds <= settings.registration_lock_seconds
    assert await count(session_factory, Credential) == 0
    code_hash, _ = await contract_row(session_factory)
    assert code_hash is not None
    # attempts are counted before they are checked (a burst cannot outrun the count), so the
    # refused sixth is on the counter too; it does not lengthen the lock
    assert await failures(session_factory, settings) == 6


async def test_probing_an_unknown_number_is_limited_too(
    session_factory: Any, settings: Settings
) -> None:
    # given
    for _ in range(5):
        error = await registration_error(session_factory, settings, contract_number="7700000")
        assert error.code == ErrorCode.INVALID

    # when
    error = await registration_error(session_factory, settings, contract_number="7700000")

    # then
    assert error.code == ErrorCode.RATE_LIMITED
    assert (error.retry_after_seconds or 0) > 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"email": "not an email"}, "email"),
        ({"email": "a@b.c" + "x" * 260}, "email"),
        ({"phone": "call me"}, "phone"),
        ({"legal_status": "ALIEN"}, "legalStatus"),
    ],
)
async def test_malformed_input_names_its_field_and_is_not_counted(
    session_factory: Any, settings: Settings, overrides: dict[str, Any], field: str
) -> None:
    # given
    await make_contract(session_factory, settings)

    # when
    error = await registration_error(session_factory, settings, **overrides)

    # then
    assert (error.code, error.field) == (ErrorCode.INVALID, field)
    assert await failures(session_factory, settings) == 0
    assert await count(session_factory, Credential) == 0


async def test_two_concurrent_registrations_make_one_sign_in(
    session_factory: Any, settings: Settings
) -> None:
    # given
    await make_contract(session_factory, settings)

    # when
    outcomes = await asyncio.gather(
        call_register(session_factory, settings),
        call_register(session_factory, settings),
        return_exceptions=True,
    )

    # then
    wins = [o for o in outcomes if isinstance(o, RegistrationResult)]
    losses = [o for o in outcomes if isinstance(o, DomainError)]
    assert len(wins) == 1 and len(losses) == 1, outcomes
    assert losses[0].code in (ErrorCode.ALREADY_REGISTERED, ErrorCode.INVALID)
    assert await count(session_factory, Credential) == 1
    assert await count(session_factory, OutboxMessage) == 1
    assert await count(session_factory, BonusAccount) == 1
