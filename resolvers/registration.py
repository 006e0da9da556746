"""Registration (SPEC §3): the paper contract's details in, a login and a temporary password
out by mail.

Every way of getting the details wrong (unknown contract, wrong security code, document,
legal status, email or phone) is one and the same error, counted against the contract number:
5 failures lock registration for that number for an hour, known or not, so that guessing
codes and probing numbers are both bounded. An already registered contract has its own code,
but only for a caller who has shown the holder's document.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from auth import ratelimit
from auth.passwords import passwords_for
from auth.secrets import (
    constant_time_equal,
    document_hash,
    new_temporary_password,
    security_code_hash,
)
from core.db import begin_write, rowcount
from core.errors import DomainError, ErrorCode, InputProblems
from core.ids import to_global_id
from core.outbox import queue_letter
from core.settings import Settings
from models import Contract, Credential, Subscriber
from models.base import table_of, utcnow
from models.subscriber import LEGAL_STATUSES
from resolvers import bonus
from resolvers.events import record_event
from resolvers.identity import normalize_contract_number, normalize_email, normalize_phone
from resolvers.letters import registration_letter

__all__ = [
    "ALREADY_REGISTERED_MESSAGE",
    "DETAILS_MISMATCH_MESSAGE",
    "RegistrationResult",
    "register",
]

DETAILS_MISMATCH_MESSAGE = "The contract details do not match our records."
ALREADY_REGISTERED_MESSAGE = (
    "This contract is registered already: sign in, or recover your password."
)
RATE_LIMITED_MESSAGE = "Too many attempts. Try again later."

MAX_EMAIL_LENGTH = 254
GENERATED_LOGIN_ATTEMPTS = 20

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

_contracts = table_of(Contract)
_subscribers = table_of(Subscriber)
_credentials = table_of(Credential)


@dataclass(frozen=True, slots=True)
class RegistrationResult:
    login: str
    subscriber_id: int


def _check_formats(legal_status: str, email: str, phone: str | None) -> tuple[str, str | None]:
    """Malformed input is told apart by field, every field at fault at once: that says
    nothing about any contract."""
    problems = InputProblems()
    if legal_status not in LEGAL_STATUSES:
        problems.add(
            DomainError(
                ErrorCode.INVALID,
                f"The legal status must be one of {', '.join(LEGAL_STATUSES)}.",
                field="legalStatus",
            )
        )
    if len(email) > MAX_EMAIL_LENGTH or not _EMAIL.match(email) or not email.isprintable():
        problems.add(DomainError(ErrorCode.INVALID, "Enter a valid email address.", field="email"))
    normalized_phone = None if phone is None else normalize_phone(phone)
    if phone is not None and normalized_phone is None:
        problems.add(
            DomainError(
                ErrorCode.INVALID, "Enter the phone number in international format.", field="phone"
            )
        )
    problems.raise_found()
    return email, normalized_phone


def _mismatch() -> DomainError:
    """Details that do not match: the attempt stays counted (`keep_writes`), nothing else was
    written."""
    return DomainError(ErrorCode.INVALID, DETAILS_MISMATCH_MESSAGE, keep_writes=True)


async def _new_login(session: AsyncSession) -> str:
    for _ in range(GENERATED_LOGIN_ATTEMPTS):
        login = f"k{secrets.randbelow(10**8):08d}"
        taken = await session.scalar(
            sa.select(_credentials.c.id).where(_credentials.c.login == login)
        )
        if taken is None:
            return login
    raise RuntimeError("could not generate a free login")  # 10^8 logins: not in this life


async def register(
    session: AsyncSession,
    *,
    settings: Settings,
    contract_number: str,
    security_code: str,
    legal_status: str,
    document_number: str,
    email: str,
    phone: str | None = None,
    client_address: str | None = None,
) -> RegistrationResult:
    """Check the paper contract's details, create the sign-in with a temporary password that
    must be changed at first sign-in, burn the security code and mail the login and password,
    all in one transaction.

    Raises DomainError: INVALID with a field for malformed input; RATE_LIMITED (with
    `retry_after_seconds`) once the contract number has 5 failures in the hour; INVALID with
    `DETAILS_MISMATCH_MESSAGE` and no field for any mismatch; ALREADY_REGISTERED when the
    subscriber has a sign-in already and the legal status and document match.

    Failures are counted per contract number (SPEC §3: 5 an hour lock it) and per client
    address (so that probing many numbers from one place is limited too).
    """
    number = normalize_contract_number(contract_number)
    email_given, phone_given = _check_formats(
        legal_status, normalize_email(email), (phone or "").strip() or None
    )
    limits = ratelimit.limits_for(settings)
    counted = [
        (limits.registration_contract, number),
        (limits.registration_address, client_address or "unknown"),
    ]

    # The attempt is counted before anything is compared, so that a burst of concurrent
    # guesses cannot all pass the limit; a refusal keeps it counted (`keep_writes`), a
    # success gives it back.
    await begin_write(session)
    for limit, key in counted:
        retry_after = await ratelimit.take(session, limit, key)
        if retry_after is not None:
            raise DomainError(
                ErrorCode.RATE_LIMITED,
                RATE_LIMITED_MESSAGE,
                retry_after_seconds=retry_after,
                keep_writes=True,
            )

    # PostgreSQL: the contract and subscriber rows stay locked until commit, so that two
    # registrations of one contract (or of two contracts of one subscriber) queue up. SQLite
    # renders no FOR UPDATE; BEGIN IMMEDIATE has serialised the writers already.
    row = (
        await session.execute(
            sa.select(
                _contracts.c.id,
                _contracts.c.number,
                _contracts.c.security_code_hash,
                _subscribers.c.id.label("subscriber_id"),
                _subscribers.c.legal_status,
                _subscribers.c.document_hash,
                _subscribers.c.email,
                _subscribers.c.phone,
            )
            .join(_subscribers, _subscribers.c.id == _contracts.c.subscriber_id)
            .where(_contracts.c.number == number)
            .with_for_update()
        )
    ).first()
    # The hashes are computed whether or not the contract exists: the same work either way.
    given_document = document_hash(settings, document_number)
    given_code = security_code_hash(settings, security_code)
    if row is None:
        raise _mismatch()

    status_ok = constant_time_equal(row.legal_status, legal_status)
    document_ok = constant_time_equal(row.document_hash, given_document)
    registered = (
        await session.scalar(
            sa.select(_credentials.c.id).where(_credentials.c.subscriber_id == row.subscriber_id)
        )
    ) is not None
    if registered and status_ok and document_ok:
        raise DomainError(
            ErrorCode.ALREADY_REGISTERED, ALREADY_REGISTERED_MESSAGE, keep_writes=True
        )
    code_ok = row.security_code_hash is not None and constant_time_equal(
        row.security_code_hash, given_code
    )
    email_ok = row.email is None or row.email.lower() == email_given
    phone_ok = phone_given is None or row.phone is None or row.phone == phone_given
    if registered or not (status_ok and document_ok and code_ok and email_ok and phone_ok):
        raise _mismatch()

    now = utcnow()
    # The code is spent by whoever changes it first; a loser of that race is told the
    # details do not match (the code they gave is no longer the one on file).
    burnt = await session.execute(
        sa.update(_contracts)
        .where(_contracts.c.id == row.id, _contracts.c.security_code_hash.is_not(None))
        .values(security_code_hash=None, security_code_used_at=now)
    )
    if rowcount(burnt) != 1:
        raise _mismatch()

    profile: dict[str, str] = {}
    if row.email is None:
        profile["email"] = email_given
    if row.phone is None and phone_given is not None:
        profile["phone"] = phone_given
    if profile:
        await session.execute(
            sa.update(_subscribers).where(_subscribers.c.id == row.subscriber_id).values(**profile)
        )

    login = row.number if settings.login_is_contract_number else await _new_login(session)
    temporary_password = new_temporary_password()
    await session.execute(
        sa.insert(_credentials).values(
            subscriber_id=row.subscriber_id,
            login=login,
            password_hash=await passwords_for(settings).hash(temporary_password),
            must_change_password=True,
            password_changed_at=None,
            created_at=now,
        )
    )
    await bonus.open_account(session, row.subscriber_id)

    letter = registration_letter(
        settings, login=login, temporary_password=temporary_password, contract_number=row.number
    )
    await queue_letter(
        session,
        kind="REGISTRATION",
        recipient=row.email or email_given,
        subject=letter.subject,
        body_text=letter.body_text,
        body_html=letter.body_html,
    )
    await record_event(
        session,
        "subscriber.registered",
        contract_number=row.number,
        data={
            "subscriberId": to_global_id("Subscriber", row.subscriber_id),
            "login": login,
            "legalStatus": row.legal_status,
        },
        at=now,
    )
    await ratelimit.reset(session, limits.registration_contract, number)
    await ratelimit.release(session, limits.registration_address, client_address or "unknown")
    return RegistrationResult(login=login, subscriber_id=row.subscriber_id)
