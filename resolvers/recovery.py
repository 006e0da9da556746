"""Password recovery by a one-time code (SPEC §3 "Recovery").

`request_password_recovery` answers the same whether or not the identifier names an account
(no enumeration) and mails a 6-digit code to the email on file, or texts it when there is no
email. `reset_password` spends the code for a new password and ends every session.

Code guessing is bounded per account, across codes: the `code_check` counter is keyed by the
subscriber, so asking for a new code does not reset the failures, and the 5th wrong guess
locks the checks for the code lifetime (`RATE_LIMITED` from then on, even with the right
code). Each code also dies on its own after 5 wrong guesses (`attempts`), a second bound that
holds even if the counter were cleared.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from auth import ratelimit
from auth.password_policy import check_password
from auth.passwords import passwords_for
from auth.secrets import constant_time_equal, keyed_hash, new_numeric_code
from auth.sessions import revoke_sessions
from core.db import begin_write, insert_row, parameters, prefixed, rowcount
from core.errors import DomainError, ErrorCode
from core.outbox import EMAIL, LETTER_COLUMNS, SMS, enqueue_insert, letter_row, queue_letter
from core.settings import Settings
from models import Contract, Credential, RecoveryCode, Subscriber
from models.base import table_of, utcnow
from resolvers.identity import Account, parse_identifier, who_is
from resolvers.letters import password_changed_letter, recovery_code_letter, recovery_code_sms

__all__ = [
    "CODE_INVALID_MESSAGE",
    "code_hash",
    "request_password_recovery",
    "reset_password",
]

CODE_INVALID_MESSAGE = "The code is wrong or has expired."
RATE_LIMITED_MESSAGE = "Too many attempts. Try again later."
CODE_PURPOSE = "recovery-code"
CODE_DIGITS = 6
# Longer input is not a code: it is refused before any hashing.
MAX_CODE_INPUT = 32

_codes = table_of(RecoveryCode)
_credentials = table_of(Credential)
_contracts = table_of(Contract)
_subscribers = table_of(Subscriber)


def code_hash(settings: Settings, subscriber_id: int, code: str) -> str:
    """Bound to the subscriber: a code hash is worth nothing for any other account."""
    return keyed_hash(settings, CODE_PURPOSE, f"{subscriber_id}:{code}")


def _rate_limited(retry_after: int) -> DomainError:
    return DomainError(
        ErrorCode.RATE_LIMITED, RATE_LIMITED_MESSAGE, retry_after_seconds=retry_after
    )


def _code_minutes(settings: Settings) -> int:
    return max(1, math.ceil(settings.recovery_code_seconds / 60))


# Recovery codes and their letters are inserted by these statements whether or not there is
# anyone to send them to (`send` says whether a row is inserted): a request for an unknown
# identifier runs the very statements, and makes the very code, hash and letter, of one for a
# known identifier (SPEC §3: the answer does not tell them apart, nor does its time).
_SEND = sa.bindparam("send", type_=sa.Boolean)
_CODE_COLUMNS = ("subscriber_id", "code_hash", "channel", "created_at", "expires_at", "attempts")
_NOBODY = "nobody@example.invalid"  # the recipient of the letter that is never inserted


_EXPIRE_CODES = (
    sa.update(_codes)
    .where(
        _codes.c.subscriber_id == sa.bindparam("b_subscriber_id", type_=sa.BigInteger),
        _codes.c.used_at.is_(None),
    )
    .values(used_at=sa.bindparam("b_now", type_=_codes.c.used_at.type))
)
_INSERT_CODE = insert_row(sa.insert(_codes), parameters(_CODE_COLUMNS, "v_"), when=_SEND)
# The outbox's own statement (its columns are `letter_row`'s), inserting only when `send`.
_QUEUE_LETTER = enqueue_insert(parameters(LETTER_COLUMNS, "v_"), when=_SEND)


def _values(row: dict[str, Any], send: bool) -> dict[str, Any]:
    return {"send": send, **prefixed(row, "v_")}


async def request_password_recovery(
    session: AsyncSession,
    *,
    settings: Settings,
    identifier: str,
    client_address: str,
) -> None:
    """Send a recovery code to the account named by a login, contract number, phone or email.

    Returns None whether or not there is such an account; raises DomainError RATE_LIMITED
    (with `retry_after_seconds`) past 5 requests per account (or, for an identifier that
    names none, per its normalised form) or 20 per client address in an hour (every request
    counts, found or not, before it is checked), and INVALID (field `identifier`) for an
    empty identifier.
    """
    ident = parse_identifier(identifier)
    if not ident.value:
        raise DomainError(
            ErrorCode.INVALID,
            "Enter your login, contract number, phone or email.",
            field="identifier",
        )
    limits = ratelimit.limits_for(settings)

    await begin_write(session)
    named = await who_is(session, ident)
    for limit, key in (
        (limits.recovery_identifier, named.key),
        (limits.recovery_address, client_address),
    ):
        retry_after = await ratelimit.take(session, limit, key)
        if retry_after is not None:
            raise _rate_limited(retry_after)  # a refused request is no request: nothing is kept

    now = utcnow()
    account = named.account
    send, code_row, letter = _code_and_letter(settings, account, now)
    # Earlier codes die with a new one (for no account, the statement matches nothing).
    subscriber_id = account.subscriber_id if account is not None else 0
    await session.execute(_EXPIRE_CODES, {"b_subscriber_id": subscriber_id, "b_now": now})
    await session.execute(_INSERT_CODE, _values(code_row, send))
    await _queue_code_letter(session, letter, send)


async def _queue_code_letter(session: AsyncSession, letter: dict[str, Any], send: bool) -> None:
    """The outbox row of the code's letter (`letter_row`), inserted only when `send`."""
    await session.execute(_QUEUE_LETTER, _values(letter, send))


def _code_and_letter(
    settings: Settings, account: Account | None, now: datetime
) -> tuple[bool, dict[str, Any], dict[str, Any]]:
    """Whether there is anyone to send a code to, the code's row and its letter's row: made
    alike for an account and for no one, so that both cost the same."""
    channel: str = EMAIL
    recipient: str | None = _NOBODY
    if account is not None:
        channel, recipient = (EMAIL, account.email) if account.email else (SMS, account.phone)
    # No email and no phone: nowhere to send it, the office or a written request (SPEC §3).
    send = account is not None and recipient is not None
    subscriber_id = account.subscriber_id if account is not None else 0
    code = new_numeric_code(CODE_DIGITS)
    code_row = {
        "subscriber_id": subscriber_id,
        "code_hash": code_hash(settings, subscriber_id, code),
        "channel": channel,
        "created_at": now,
        "expires_at": now + timedelta(seconds=settings.recovery_code_seconds),
        "attempts": 0,
    }
    minutes = _code_minutes(settings)
    if channel == EMAIL:
        mail = recovery_code_letter(settings, code=code, minutes=minutes)
        letter = letter_row(
            kind="RECOVERY_CODE",
            recipient=recipient or _NOBODY,
            subject=mail.subject,
            body_text=mail.body_text,
            body_html=mail.body_html,
            at=now,
        )
    else:
        letter = letter_row(
            kind="RECOVERY_CODE",
            recipient=recipient or _NOBODY,
            subject="",
            body_text=recovery_code_sms(settings, code=code, minutes=minutes),
            channel=SMS,
            at=now,
        )
    return send, code_row, letter


async def _context_words(session: AsyncSession, settings: Settings, account: Account) -> list[str]:
    numbers = (
        await session.execute(
            sa.select(_contracts.c.number).where(
                _contracts.c.subscriber_id == account.subscriber_id
            )
        )
    ).scalars()
    return [account.login, *numbers, settings.operator_name]


async def reset_password(
    session: AsyncSession,
    *,
    settings: Settings,
    identifier: str,
    code: str,
    new_password: str,
    client_address: str,
) -> int:
    """Spend a recovery code for a new password; returns the subscriber's id.

    Raises DomainError: RATE_LIMITED (with `retry_after_seconds`) once the account has had 5
    wrong codes within the code lifetime, whatever the code given now; INVALID (field `code`,
    `CODE_INVALID_MESSAGE`) for an unknown identifier, no live code, a wrong or an expired
    code, each counted as a failure; PASSWORD_REJECTED (field `newPassword`) when the policy
    refuses the new password, checked only once the code is right and without spending it.

    On success: the password is set (no change required at next sign-in), the code is spent,
    every session of the subscriber is revoked, and a notice is mailed when there is an email.

    Every check is counted before it is made, per account (an identifier that names none:
    per its normalised form, so that a locked account and a locked unknown identifier answer
    alike in every spelling) and per client address; a right code gives its attempts back.
    """
    limits = ratelimit.limits_for(settings)
    await begin_write(session)
    named = await who_is(session, parse_identifier(identifier))
    counted = ((limits.code_check, named.key), (limits.code_check_address, client_address))
    for limit, key in counted:
        retry_after = await ratelimit.take(session, limit, key)
        if retry_after is not None:
            raise _rate_limited(retry_after)  # a refused check is no check: nothing is kept
    # From here on every refusal keeps the check counted (`keep_writes`).

    account = named.account
    now = utcnow()
    live = None
    if account is not None:
        # PostgreSQL: a concurrent reset with the same code waits here, then finds it spent.
        live = (
            await session.execute(
                sa.select(_codes.c.id, _codes.c.code_hash, _codes.c.expires_at, _codes.c.attempts)
                .where(_codes.c.subscriber_id == account.subscriber_id, _codes.c.used_at.is_(None))
                .order_by(_codes.c.id.desc())
                .limit(1)
                .with_for_update()
            )
        ).first()
    given = code.strip()
    code_ok = (
        account is not None
        and live is not None
        and live.expires_at > now
        and live.attempts < settings.recovery_code_attempts
        and len(given) <= MAX_CODE_INPUT
        and constant_time_equal(live.code_hash, code_hash(settings, account.subscriber_id, given))
    )
    if not code_ok:
        if live is not None:
            await session.execute(
                sa.update(_codes)
                .where(_codes.c.id == live.id)
                .values(attempts=_codes.c.attempts + 1)
            )
        raise DomainError(ErrorCode.INVALID, CODE_INVALID_MESSAGE, field="code", keep_writes=True)
    assert account is not None and live is not None

    reason = check_password(
        new_password,
        min_length=settings.password_min_length,
        max_length=settings.password_max_length,
        context_words=await _context_words(session, settings, account),
    )
    if reason is not None:
        # The code stays live and the right code was no failure: the subscriber tries
        # another password.
        for limit, key in counted:
            await ratelimit.release(session, limit, key)
        raise DomainError(
            ErrorCode.PASSWORD_REJECTED, reason, field="newPassword", keep_writes=True
        )

    spent = await session.execute(
        sa.update(_codes)
        .where(_codes.c.id == live.id, _codes.c.used_at.is_(None))
        .values(used_at=now)
    )
    if rowcount(spent) != 1:  # spent by a concurrent reset: this check stays counted
        raise DomainError(ErrorCode.INVALID, CODE_INVALID_MESSAGE, field="code", keep_writes=True)
    await session.execute(
        sa.update(_credentials)
        .where(_credentials.c.subscriber_id == account.subscriber_id)
        .values(
            password_hash=await passwords_for(settings).hash(new_password),
            must_change_password=False,
            password_changed_at=now,
        )
    )
    await revoke_sessions(session, subscriber_id=account.subscriber_id, now=now)
    if account.email:
        letter = password_changed_letter(settings, when=now)
        await queue_letter(
            session,
            kind="PASSWORD_CHANGED",
            recipient=account.email,
            subject=letter.subject,
            body_text=letter.body_text,
            body_html=letter.body_html,
        )
    await ratelimit.reset(session, limits.code_check, named.key)
    await ratelimit.release(session, limits.code_check_address, client_address)
    return account.subscriber_id
