"""Staff accounts and the staff verbs on subscribers: creating a contract (SPEC §3
"Registration") and resetting access after a passport check in the office ("Recovery").
Every staff write lands in the audit log, in the same transaction."""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from auth.passwords import passwords_for
from auth.secrets import (
    document_hash,
    new_security_code,
    new_temporary_password,
    normalize_document,
    security_code_hash,
)
from auth.sessions import revoke_sessions
from core.db import begin_write
from core.errors import DomainError, ErrorCode, InputProblems
from core.outbox import queue_letter
from core.settings import Settings
from models import Contract, Credential, Region, StaffUser, Subscriber, Tariff
from models.base import table_of, utcnow
from models.staff import STAFF_ROLES
from models.subscriber import LEGAL_STATUSES
from resolvers import bonus
from resolvers.audit import REASON_LENGTH, record_audit
from resolvers.identity import normalize_phone
from resolvers.letters import registration_letter

_USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")


async def create_staff_user(
    session: AsyncSession, *, settings: Settings, username: str, role: str, password: str
) -> StaffUser:
    problems = InputProblems()  # every field's problem at once
    if not _USERNAME.match(username):
        problems.add(
            DomainError(
                ErrorCode.INVALID,
                "username: 2-64 lower-case letters, digits, '.', '_' or '-', "
                "starting with a letter",
                field="username",
            )
        )
    if role not in STAFF_ROLES:
        problems.add(
            DomainError(ErrorCode.INVALID, f"role must be one of {STAFF_ROLES}", field="role")
        )
    length = len(unicodedata.normalize("NFKC", password))
    if not settings.password_min_length <= length <= settings.password_max_length:
        problems.add(
            DomainError(
                ErrorCode.PASSWORD_REJECTED,
                f"password must be {settings.password_min_length} to "
                f"{settings.password_max_length} characters long",
                field="password",
            )
        )
    problems.raise_found()
    taken = await session.scalar(
        sa.select(col(StaffUser.id)).where(col(StaffUser.username) == username)
    )
    if taken is not None:
        raise DomainError(ErrorCode.CONFLICT, f"staff user {username!r} exists", field="username")
    user = StaffUser(
        username=username, role=role, password_hash=await passwords_for(settings).hash(password)
    )
    session.add(user)
    await session.flush()
    return user


# -- staffCreateContract -------------------------------------------------------------------

_subscribers = table_of(Subscriber)
_contracts = table_of(Contract)
_credentials = table_of(Credential)
_tariffs = table_of(Tariff)
_regions = table_of(Region)

# Contract numbers start with the region's code in the Russian vehicle/tax numbering.
CONTRACT_PREFIXES = {"MOW": "77", "SPB": "78", "EKB": "66"}
DEFAULT_CONTRACT_PREFIX = "99"
CONTRACT_NUMBER_ATTEMPTS = 10
_PASSPORT = re.compile(r"^[0-9]{10}$")  # series (4 digits) + number (6 digits)
_INN = re.compile(r"^(?:[0-9]{10}|[0-9]{12})$")  # 10 for organisations, 12 for individuals
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_EMAIL = 254
MAX_PHONE_INPUT = 32
MAX_DOCUMENT_INPUT = 40
MAX_REGION_CODE = 16
DISPLAY_NAME_LENGTH = (2, 200)
ADDRESS_LENGTH = (5, 300)
MAX_CONTRACT_NUMBER = 20


@dataclass(frozen=True, slots=True)
class CreatedContract:
    contract_id: int
    contract_number: str
    subscriber_id: int
    security_code: str  # shown once, to be printed on the paper contract; stored hashed
    subscriber_created: bool = True  # False: a second contract of a known subscriber


@dataclass(frozen=True, slots=True)
class _ContractInput:
    legal_status: str
    display_name: str
    document: str  # normalised: digits only
    email: str
    phone: str | None
    region: str
    address: str


def _invalid(field: str, message: str) -> DomainError:
    return DomainError(ErrorCode.INVALID, message, field=field)


def _text(value: str | None) -> str:
    """NFKC, runs of white space (line breaks included) made one space, trimmed."""
    return " ".join(unicodedata.normalize("NFKC", value or "").split())


def _has_control(value: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value)


def _validate_contract_input(
    *,
    legal_status: str,
    display_name: str,
    document_number: str,
    email: str,
    phone: str | None,
    region: str,
    address: str,
) -> _ContractInput:
    """The input normalised, or INVALID for every field at fault at once."""
    problems = InputProblems()
    if legal_status not in LEGAL_STATUSES:
        problems.add(_invalid("legalStatus", "Legal status must be INDIVIDUAL or LEGAL_ENTITY."))

    name = _text(display_name)
    low, high = DISPLAY_NAME_LENGTH
    if not low <= len(name) <= high or _has_control(name):
        problems.add(_invalid("displayName", f"The name must be {low} to {high} characters long."))

    # The document's form depends on the legal status: checked when that is known.
    document = normalize_document((document_number or "")[:MAX_DOCUMENT_INPUT])
    if legal_status == "INDIVIDUAL" and not _PASSPORT.match(document):
        problems.add(
            _invalid(
                "documentNumber", "A passport is 10 digits: the series (4) and the number (6)."
            )
        )
    if legal_status == "LEGAL_ENTITY" and not _INN.match(document):
        problems.add(_invalid("documentNumber", "An INN is 10 or 12 digits."))

    mail = _text(email).lower()
    if len(mail) > MAX_EMAIL or not _EMAIL.match(mail) or _has_control(mail):
        problems.add(_invalid("email", "Enter an email address such as name@example.org."))

    normalized_phone = None
    if phone is not None and phone.strip():
        normalized_phone = normalize_phone(phone[:MAX_PHONE_INPUT])
        if normalized_phone is None:
            problems.add(_invalid("phone", "Enter a phone number such as +7 916 123-45-67."))

    region_code = _text(region).upper()
    if not region_code or len(region_code) > MAX_REGION_CODE:
        problems.add(_invalid("region", "Unknown region code."))

    place = _text(address)
    low, high = ADDRESS_LENGTH
    if not low <= len(place) <= high or _has_control(place):
        problems.add(_invalid("address", f"The address must be {low} to {high} characters long."))

    problems.raise_found()
    return _ContractInput(
        legal_status=legal_status,
        display_name=name,
        document=document,
        email=mail,
        phone=normalized_phone,
        region=region_code,
        address=place,
    )


async def _check_region_and_tariff(session: AsyncSession, *, region: str, tariff_id: int) -> None:
    known_region = await session.scalar(sa.select(_regions.c.code).where(_regions.c.code == region))
    if known_region is None:
        raise _invalid("region", "Unknown region code.")
    tariff = (
        await session.execute(
            sa.select(_tariffs.c.region_code, _tariffs.c.archived).where(_tariffs.c.id == tariff_id)
        )
    ).first()
    if tariff is None:
        raise _invalid("tariffId", "Unknown tariff.")
    if tariff.region_code != region:
        raise _invalid("tariffId", "This tariff is not offered in the contract's region.")
    if tariff.archived:
        raise _invalid("tariffId", "This tariff is archived and no longer offered.")


def new_contract_number(region: str) -> str:
    """12 digits: the region's prefix and 10 random digits."""
    prefix = CONTRACT_PREFIXES.get(region, DEFAULT_CONTRACT_PREFIX)
    return prefix + f"{secrets.randbelow(10**10):010d}"


async def _insert_contract(session: AsyncSession, values: dict[str, object]) -> tuple[int, str]:
    """Insert the contract under a fresh random number; a number already taken (the unique
    constraint says so, also under a concurrent insert) is drawn again."""
    region = str(values["region_code"])
    for _ in range(CONTRACT_NUMBER_ATTEMPTS):
        number = new_contract_number(region)
        taken = await session.scalar(
            sa.select(_contracts.c.id).where(_contracts.c.number == number)
        )
        if taken is not None:
            continue
        try:
            async with session.begin_nested():
                contract_id = await session.scalar(
                    sa.insert(_contracts).values(number=number, **values).returning(_contracts.c.id)
                )
        except IntegrityError:
            taken = await session.scalar(
                sa.select(_contracts.c.id).where(_contracts.c.number == number)
            )
            if taken is None:
                raise  # another constraint failed: not a collision
            continue
        assert contract_id is not None
        return int(contract_id), number
    raise RuntimeError("could not draw a free contract number")


async def staff_create_contract(
    session: AsyncSession,
    *,
    settings: Settings,
    staff_id: int,
    legal_status: str,
    display_name: str,
    document_number: str,
    email: str,
    phone: str | None,
    region: str,
    address: str,
    tariff_id: int,
    client_address: str | None = None,
) -> CreatedContract:
    """Create a contract (and its subscriber, unless one with the same document and legal
    status exists). The security code is returned once, to be printed on the paper contract,
    and kept only as a hash."""
    await begin_write(session)
    data = _validate_contract_input(
        legal_status=legal_status,
        display_name=display_name,
        document_number=document_number,
        email=email,
        phone=phone,
        region=region,
        address=address,
    )
    await _check_region_and_tariff(session, region=data.region, tariff_id=tariff_id)
    return await _create_contract(
        session,
        settings=settings,
        staff_id=staff_id,
        data=data,
        tariff_id=tariff_id,
        client_address=client_address,
    )


async def _create_contract(
    session: AsyncSession,
    *,
    settings: Settings,
    staff_id: int,
    data: _ContractInput,
    tariff_id: int,
    client_address: str | None,
) -> CreatedContract:
    hashed_document = document_hash(settings, data.document)
    subscriber_id = await session.scalar(
        sa.select(_subscribers.c.id)
        .where(
            _subscribers.c.document_hash == hashed_document,
            _subscribers.c.legal_status == data.legal_status,
        )
        .order_by(_subscribers.c.id)
        .limit(1)
    )
    subscriber_created = subscriber_id is None
    if subscriber_id is None:
        subscriber = Subscriber(
            legal_status=data.legal_status,
            display_name=data.display_name,
            document_hash=hashed_document,
            document_last4=data.document[-4:],
            email=data.email,
            phone=data.phone,
        )
        session.add(subscriber)
        await session.flush()
        assert subscriber.id is not None
        subscriber_id = subscriber.id
        await bonus.open_account(session, subscriber_id)

    security_code = new_security_code()
    contract_id, number = await _insert_contract(
        session,
        {
            "subscriber_id": subscriber_id,
            "region_code": data.region,
            "address": data.address,
            "status": "ACTIVE",
            "balance": Decimal("0.00"),
            "security_code_hash": security_code_hash(settings, security_code),
            "tariff_id": tariff_id,
            "opened_on": datetime.now(UTC).date(),
            "created_at": utcnow(),
        },
    )
    await record_audit(
        session,
        actor_staff_id=staff_id,
        action="staffCreateContract",
        target_type="Contract",
        target_id=contract_id,
        before=None,
        after={
            "contract_number": number,
            "region": data.region,
            "tariff_id": tariff_id,
            "address": data.address,
            "subscriber_id": subscriber_id,
            "subscriber_created": subscriber_created,
            "legal_status": data.legal_status,
            "document_last4": data.document[-4:],
        },
        reason=None,
        client_address=client_address,
    )
    return CreatedContract(
        contract_id=contract_id,
        contract_number=number,
        subscriber_id=subscriber_id,
        security_code=security_code,
        subscriber_created=subscriber_created,
    )


# -- staffResetAccess ----------------------------------------------------------------------


async def staff_reset_access(
    session: AsyncSession,
    *,
    settings: Settings,
    staff_id: int,
    contract_number: str,
    document_verified: bool,
    reason: str,
    client_address: str | None = None,
) -> None:
    """The office fallback of recovery: after checking the passport, staff issue a new
    temporary password, mailed to the subscriber; every session of theirs ends."""
    await begin_write(session)
    await _reset_access(
        session,
        settings=settings,
        staff_id=staff_id,
        contract_number=contract_number,
        document_verified=document_verified,
        reason=reason,
        client_address=client_address,
    )


async def _reset_access(
    session: AsyncSession,
    *,
    settings: Settings,
    staff_id: int,
    contract_number: str,
    document_verified: bool,
    reason: str,
    client_address: str | None,
) -> None:
    problems = InputProblems()  # both fields' problems at once
    if document_verified is not True:
        problems.add(_invalid("documentVerified", "Verify the passport in the office first."))
    why = _text(reason)
    low, high = REASON_LENGTH
    if not low <= len(why) <= high:
        problems.add(_invalid("reason", f"Give a reason of {low} to {high} characters."))
    problems.raise_found()

    number = _text(contract_number)
    contract = (
        await session.execute(
            sa.select(_contracts.c.id, _contracts.c.number, _contracts.c.subscriber_id).where(
                _contracts.c.number == number[:MAX_CONTRACT_NUMBER]
            )
        )
    ).first()
    if contract is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such contract.", field="contractNumber")
    # FOR UPDATE: two resets at once on PostgreSQL queue rather than both mail a password.
    account = (
        await session.execute(
            sa.select(
                _credentials.c.id,
                _credentials.c.login,
                _credentials.c.must_change_password,
                _subscribers.c.email,
            )
            .join(_subscribers, _subscribers.c.id == _credentials.c.subscriber_id)
            .where(_credentials.c.subscriber_id == contract.subscriber_id)
            .with_for_update(of=_credentials)
        )
    ).first()
    if account is None:
        raise DomainError(
            ErrorCode.NOT_ELIGIBLE,
            "Not registered yet: the subscriber registers with the security code.",
            field="contractNumber",
        )
    if not account.email:
        raise DomainError(
            ErrorCode.NOT_ELIGIBLE,
            "No email on file to send the new password to: the subscriber can recover "
            "access by SMS or with a written request.",
            field="contractNumber",
        )

    temporary_password = new_temporary_password()
    now = utcnow()
    await session.execute(
        sa.update(_credentials)
        .where(_credentials.c.id == account.id)
        .values(
            password_hash=await passwords_for(settings).hash(temporary_password),
            must_change_password=True,
            password_changed_at=now,
        )
    )
    revoked = await revoke_sessions(session, subscriber_id=contract.subscriber_id, now=now)
    letter = registration_letter(
        settings,
        login=account.login,
        temporary_password=temporary_password,
        contract_number=contract.number,
    )
    await queue_letter(
        session,
        kind="REGISTRATION",
        recipient=account.email,
        subject=letter.subject,
        body_text=letter.body_text,
        body_html=letter.body_html,
    )
    await record_audit(
        session,
        actor_staff_id=staff_id,
        action="staffResetAccess",
        target_type="Contract",
        target_id=contract.id,
        before={"must_change_password": bool(account.must_change_password)},
        after={"must_change_password": True, "sessions_revoked": revoked},
        reason=why,
        client_address=client_address,
    )
