"""Finding who an identifier names: login, contract number, phone or email (SPEC §3)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from models import Contract, Credential, StaffUser, Subscriber
from models.base import table_of

MAX_IDENTIFIER_LENGTH = 254
# The rate-limit key is the number as typed (normalised); anything longer than a contract
# number can be is cut, so that a huge input is not a new key per byte.
MAX_CONTRACT_NUMBER_INPUT = 40
_PHONE = re.compile(r"^\+?[0-9 ()-]{7,20}$")

_subscribers = table_of(Subscriber)
_contracts = table_of(Contract)
_credentials = table_of(Credential)
_staff = table_of(StaffUser)

# The kinds of identifier (SPEC §3: login, contract number, phone or email). A contract
# number is digits, so it is read as a PHONE: every spelling of it (spaces, dashes, a "+")
# has one form, and the contract is the one whose number is that form's digits.
EMAIL = "email"
PHONE = "phone"
LOGIN = "login"


def normalize_email(email: str) -> str:
    """NFKC, trimmed, lower case: how emails are stored and compared."""
    return unicodedata.normalize("NFKC", email).strip().lower()


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


def normalize_contract_number(contract_number: str) -> str:
    """NFKC, without spaces and dashes: "7700 1234-5678" is the number printed with spaces;
    what is left is compared with the contract numbers as it is (digits, when it is one)."""
    text = unicodedata.normalize("NFKC", contract_number).replace("-", "")
    return "".join(text.split())[:MAX_CONTRACT_NUMBER_INPUT]


@dataclass(frozen=True, slots=True)
class Identifier:
    """A sign-in or recovery identifier in its one form: an email in lower case, a phone
    (and so a contract number) in E.164, anything else as a login (NFKC, trimmed).

    Every lookup is made from this form alone, so two spellings with one form always name
    the same account (or none): what is counted under `key` for an identifier that names
    no account is what the same spellings would share if it named one.
    """

    kind: str
    value: str

    @property
    def name(self) -> str:
        """The form compared with logins, staff usernames and contract numbers."""
        return self.value[1:] if self.kind == PHONE else self.value

    @property
    def key(self) -> str:
        """The rate-limit key of an identifier that names no account."""
        return f"{self.kind}:{self.value}"


def parse_identifier(identifier: str) -> Identifier:
    """The one form of a login, contract number, phone or email (SPEC §3); an empty login
    when nothing is left after trimming."""
    text = unicodedata.normalize("NFKC", identifier).strip()[:MAX_IDENTIFIER_LENGTH]
    if "@" in text:
        return Identifier(EMAIL, normalize_email(text))
    phone = normalize_phone(text)
    if phone is not None:
        return Identifier(PHONE, phone)
    return Identifier(LOGIN, text)


def subscriber_key(subscriber_id: int) -> str:
    """The rate-limit key of a subscriber's account: every identifier naming it counts here."""
    return f"subscriber:{subscriber_id}"


def staff_key(staff_id: int) -> str:
    return f"staff:{staff_id}"


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


async def find_account(session: AsyncSession, identifier: Identifier) -> Account | None:
    """The one registered subscriber named by a login, contract number, phone or email;
    None when there is none or when the identifier is ambiguous."""
    if not identifier.value:
        return None
    params = {
        "ident": identifier.name,
        "email": identifier.value if identifier.kind == EMAIL else None,
    }
    if identifier.kind == PHONE:
        params["phone"] = identifier.value
    rows = (await session.execute(_ACCOUNTS[identifier.kind == PHONE], params)).all()
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


async def find_staff(session: AsyncSession, identifier: Identifier) -> StaffAccount | None:
    if not identifier.value:
        return None
    row = (await session.execute(_STAFF_NAMED, {"username": identifier.name})).first()
    if row is None:
        return None
    return StaffAccount(row.id, row.username, row.role, row.password_hash)


@dataclass(frozen=True, slots=True)
class Named:
    """Who an identifier names (a staff member, a subscriber, or no one) and the key its
    attempts are counted under."""

    identifier: Identifier
    account: Account | None = None
    staff: StaffAccount | None = None

    @property
    def key(self) -> str:
        """The account's key when it names one (all its identifiers, in any spelling, share
        one count); else the identifier's one form."""
        if self.staff is not None:
            return staff_key(self.staff.staff_id)
        if self.account is not None:
            return subscriber_key(self.account.subscriber_id)
        return self.identifier.key


async def who_is(session: AsyncSession, identifier: Identifier, *, staff: bool = False) -> Named:
    """The account an identifier names: with `staff`, a staff member's username first, then
    a subscriber's login, contract number, phone or email."""
    if staff and (member := await find_staff(session, identifier)) is not None:
        return Named(identifier, staff=member)
    return Named(identifier, account=await find_account(session, identifier))
