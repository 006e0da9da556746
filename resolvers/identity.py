"""Finding who an identifier names: login, contract number, phone or email (SPEC §3)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from models import Contract, Credential, StaffUser, Subscriber

MAX_IDENTIFIER_LENGTH = 254
_PHONE = re.compile(r"^\+?[0-9 ()-]{7,20}$")

_subscribers = Subscriber.__table__  # type: ignore[attr-defined]
_contracts = Contract.__table__  # type: ignore[attr-defined]
_credentials = Credential.__table__  # type: ignore[attr-defined]
_staff = StaffUser.__table__  # type: ignore[attr-defined]


def normalize_identifier(identifier: str) -> str:
    """The form counted by rate limits and looked up: NFKC, trimmed, e-mails lower-cased."""
    text = unicodedata.normalize("NFKC", identifier).strip()[:MAX_IDENTIFIER_LENGTH]
    return text.lower() if "@" in text else text


def normalize_phone(phone: str) -> str | None:
    """E.164 (+ and 8 to 15 digits), or None when it is not a phone number."""
    text = unicodedata.normalize("NFKC", phone).strip()
    if not _PHONE.match(text):
        return None
    digits = "".join(ch for ch in text if ch.isascii() and ch.isdigit())
    if len(digits) == 11 and digits.startswith("8") and not text.startswith("+"):
        digits = "7" + digits[1:]  # a Russian number written the domestic way
    if not 8 <= len(digits) <= 15:
        return None
    return "+" + digits


@dataclass(frozen=True, slots=True)
class Account:
    """A subscriber that has a sign-in."""

    subscriber_id: int
    credential_id: int
    login: str
    password_hash: str
    must_change_password: bool
    email: str | None
    phone: str | None


def _accounts_named(with_phone: bool) -> sa.Select[Any]:
    """At most two accounts named by :ident (a login or contract number), :email and, with
    `with_phone`, :phone. One indexed lookup per kind of identifier, UNIONed: an OR across
    the join would make the planner scan every subscriber (81 ms a sign-in at 100,000)."""
    candidates = [
        sa.select(_credentials.c.subscriber_id.label("id")).where(
            _credentials.c.login == sa.bindparam("ident", type_=sa.String)
        ),
        sa.select(_subscribers.c.id).where(
            _subscribers.c.email == sa.bindparam("email", type_=sa.String)
        ),
        sa.select(_contracts.c.subscriber_id).where(
            _contracts.c.number == sa.bindparam("ident", type_=sa.String)
        ),
    ]
    if with_phone:
        candidates.append(
            sa.select(_subscribers.c.id).where(
                _subscribers.c.phone == sa.bindparam("phone", type_=sa.String)
            )
        )
    matched = sa.union(*candidates).subquery("matched")
    return (
        sa.select(
            _subscribers.c.id,
            _credentials.c.id.label("credential_id"),
            _credentials.c.login,
            _credentials.c.password_hash,
            _credentials.c.must_change_password,
            _subscribers.c.email,
            _subscribers.c.phone,
        )
        .join(_credentials, _credentials.c.subscriber_id == _subscribers.c.id)
        .where(_subscribers.c.id.in_(sa.select(matched.c.id)))
        .limit(2)
    )


# Built once (a sign-in runs one; building and keying it per call cost more than running it).
_ACCOUNTS = {False: _accounts_named(False), True: _accounts_named(True)}
_STAFF_NAMED = sa.select(
    _staff.c.id, _staff.c.username, _staff.c.role, _staff.c.password_hash
).where(_staff.c.username == sa.bindparam("username", type_=sa.String), _staff.c.active.is_(True))


async def find_account(session: AsyncSession, identifier: str) -> Account | None:
    """The one registered subscriber named by a login, contract number, phone or email;
    None when there is none or when the identifier is ambiguous."""
    ident = normalize_identifier(identifier)
    if not ident:
        return None
    phone = normalize_phone(ident)
    params = {"ident": ident, "email": ident.lower()}
    if phone is not None:
        params["phone"] = phone
    rows = (await session.execute(_ACCOUNTS[phone is not None], params)).all()
    if len(rows) != 1:
        return None
    row = rows[0]
    return Account(
        subscriber_id=row.id,
        credential_id=row.credential_id,
        login=row.login,
        password_hash=row.password_hash,
        must_change_password=row.must_change_password,
        email=row.email,
        phone=row.phone,
    )


@dataclass(frozen=True, slots=True)
class StaffAccount:
    staff_id: int
    username: str
    role: str
    password_hash: str


async def find_staff(session: AsyncSession, identifier: str) -> StaffAccount | None:
    ident = normalize_identifier(identifier)
    row = (await session.execute(_STAFF_NAMED, {"username": ident})).first()
    if row is None:
        return None
    return StaffAccount(row.id, row.username, row.role, row.password_hash)
