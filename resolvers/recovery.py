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

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from auth import ratelimit
from auth.password_policy import check_password
from auth.passwords import passwords_for
from auth.secrets import constant_time_equal, keyed_hash, new_numeric_code
from auth.sessions import revoke_sessions
from core.db import begin_write
from core.errors import DomainError, ErrorCode
from core.outbox import EMAIL, SMS, queue_letter
from core.settings import Settings
from models import Contract, Credential, RecoveryCode, Subscriber
from models.base import utcnow
from resolvers.identity import Account, find_account, normalize_identifier
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

_codes = RecoveryCode.__table__  # type: ignore[attr-defined]
_credentials = Credential.__table__  # type: ignore[attr-defined]
_contracts = Contract.__table__  # type: ignore[attr-defined]
_subscribers = Subscriber.__table__  # type: ignore[attr-defined]


def code_hash(settings: Settings, subscriber_id: int, code: str) -> str:
    """Bound to the subscriber: a code hash is worth nothing for any other account."""
    return keyed_hash(settings, CODE_PURPOSE, f"{subscriber_id}:{code}")


def _rate_limited(retry_after: int) -> DomainError:
    return DomainError(
        ErrorCode.RATE_LIMITED, RATE_LIMITED_MESSAGE, retry_after_seconds=retry_after
    )


def _code_minutes(settings: Settings) -> int:
    return max(1, math.ceil(settings.recovery_code_seconds / 60))


async def request_password_recovery(
    session: AsyncSession,
    *,
    settings: Settings,
    identifier: str,
    client_address: str,
) -> None:
    """Send a recovery code to the account named by a login, contract number, phone or email.

    Returns None whether or not there is such an account; raises DomainError RATE_LIMITED
    (with `retry_after_seconds`) past 5 requests per identifier or 20 per client address in
    an hour (every request counts, found or not), and INVALID (field `identifier`) for an
    empty identifier.
    """
    ident = normalize_identifier(identifier)
    if not ident:
        raise DomainError(
            ErrorCode.INVALID,
            "Enter your login, contract number, phone or email.",
            field="identifier",
        )
    limits = ratelimit.limits_for(settings)
    checks = ((limits.recovery_identifier, ident), (limits.recovery_address, client_address))

    await begin_write(session)
    for limit, key in checks:
        retry_after = await ratelimit.check(session, limit, key)
        if retry_after is not None:
            await session.rollback()
            raise _rate_limited(retry_after)
    for limit, key in checks:
        await ratelimit.hit(session, limit, key)

    account = await find_account(session, ident)
    now = utcnow()
    # Earlier codes die with a new one. For an unknown identifier the same statement runs
    # and matches nothing, so that both answers cost about the same.
    await session.execute(
        sa.update(_codes)
        .where(
            _codes.c.subscriber_id == (account.subscriber_id if account else 0),
            _codes.c.used_at.is_(None),
        )
        .values(used_at=now)
    )
    if account is not None:
        _send_code(session, settings, account, now)
    await session.commit()


def _send_code(session: AsyncSession, settings: Settings, account: Account, now: datetime) -> None:
    channel, recipient = (EMAIL, account.email) if account.email else (SMS, account.phone)
    if recipient is None:
        return  # nowhere to send it: the office or a written request (SPEC §3)
    code = new_numeric_code(CODE_DIGITS)
    session.add(
        RecoveryCode(
            subscriber_id=account.subscriber_id,
            code_hash=code_hash(settings, account.subscriber_id, code),
            channel=channel,
            created_at=now,
            expires_at=now + timedelta(seconds=settings.recovery_code_seconds),
        )
    )
    minutes = _code_minutes(settings)
    if channel == EMAIL:
        letter = recovery_code_letter(settings, code=code, minutes=minutes)
        queue_letter(
            session,
            kind="RECOVERY_CODE",
            recipient=recipient,
            subject=letter.subject,
            body_text=letter.body_text,
            body_html=letter.body_html,
        )
    else:
        queue_letter(
            session,
            kind="RECOVERY_CODE",
            recipient=recipient,
            subject="",
            body_text=recovery_code_sms(settings, code=code, minutes=minutes),
            channel=SMS,
        )


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
    `client_address` is accepted for the mutation's shape; checks are limited per account.
    """
    ident = normalize_identifier(identifier)
    limit = ratelimit.limits_for(settings).code_check

    await begin_write(session)
    account = await find_account(session, ident) if ident else None
    # Unknown identifiers are counted under a prefix that no subscriber key can take.
    key = f"sub:{account.subscriber_id}" if account is not None else f"ident:{ident}"
    retry_after = await ratelimit.check(session, limit, key)
    if retry_after is not None:
        await session.rollback()
        raise _rate_limited(retry_after)

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
        await ratelimit.hit(session, limit, key)
        await session.commit()
        raise DomainError(ErrorCode.INVALID, CODE_INVALID_MESSAGE, field="code")
    assert account is not None and live is not None

    reason = check_password(
        new_password,
        min_length=settings.password_min_length,
        max_length=settings.password_max_length,
        context_words=await _context_words(session, settings, account),
    )
    if reason is not None:
        await session.rollback()  # the code stays live: the subscriber tries another password
        raise DomainError(ErrorCode.PASSWORD_REJECTED, reason, field="newPassword")

    spent = await session.execute(
        sa.update(_codes)
        .where(_codes.c.id == live.id, _codes.c.used_at.is_(None))
        .values(used_at=now)
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        raise DomainError(ErrorCode.INVALID, CODE_INVALID_MESSAGE, field="code")
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
        queue_letter(
            session,
            kind="PASSWORD_CHANGED",
            recipient=account.email,
            subject=letter.subject,
            body_text=letter.body_text,
            body_html=letter.body_html,
        )
    await ratelimit.reset(session, limit, key)
    await session.commit()
    return account.subscriber_id
