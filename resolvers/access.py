"""Sign-in and sessions: login, refresh, logout, password change, the session list."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from auth import ratelimit
from auth.password_policy import check_password
from auth.passwords import passwords_for
from auth.sessions import (
    IssuedTokens,
    Principal,
    issue_session,
    revoke_sessions,
    rotate_refresh_token,
)
from core.db import begin_write
from core.errors import DomainError, ErrorCode
from core.outbox import queue_letter
from core.settings import Settings
from models import AuthSession, Contract, Credential, StaffUser, Subscriber
from models.base import UTCDateTime, table_of, utcnow
from resolvers.identity import (
    parse_identifier,
    staff_key,
    subscriber_key,
    who_is,
)
from resolvers.letters import password_changed_letter

_sessions = table_of(AuthSession)
_credentials = table_of(Credential)
_staff = table_of(StaffUser)
_contracts = table_of(Contract)
_subscribers = table_of(Subscriber)

MAX_PASSWORD_INPUT = 1024  # longer input is refused before hashing (cost bound)
INVALID_LOGIN = "The login or password is wrong."


@dataclass(frozen=True, slots=True)
class SignedIn:
    tokens: IssuedTokens
    principal: Principal


def _rate_limited(retry_after: int) -> DomainError:
    """The refusal of an attempt past the limit, which stays counted (`keep_writes`)."""
    return DomainError(
        ErrorCode.RATE_LIMITED,
        "Too many attempts. Try again later.",
        retry_after_seconds=retry_after,
        keep_writes=True,
    )


async def login(
    session: AsyncSession,
    *,
    settings: Settings,
    identifier: str,
    password: str,
    client_address: str,
    user_agent: str | None,
) -> SignedIn:
    """Sign a subscriber (by login, contract number, phone or email) or a staff member (by
    username) in. Failures are counted per identifier and per client address, in the
    database, and refused from the 11th (51st) on, even with the right password."""
    limits = ratelimit.limits_for(settings)
    # The attempt is counted before the password is looked at, so that a burst of concurrent
    # guesses cannot all pass the limit (on PostgreSQL a second attempt with the same account
    # or address waits for this one's answer; SQLite serialises writers); a refusal keeps it
    # counted (`keep_writes`), a success gives it back. It is counted for the account the
    # identifier names, whichever of its identifiers and spellings was used (SPEC §3).
    await begin_write(session)
    named = await who_is(session, parse_identifier(identifier), staff=True)
    for limit, key in (
        (limits.login_identifier, named.key),
        (limits.login_address, client_address),
    ):
        retry_after = await ratelimit.take(session, limit, key)
        if retry_after is not None:
            raise _rate_limited(retry_after)

    passwords = passwords_for(settings)
    staff, account = named.staff, named.account
    stored_hash = staff.password_hash if staff else account.password_hash if account else None
    too_long = len(password) > MAX_PASSWORD_INPUT
    # An unknown identifier is checked against the dummy hash: the same work either way.
    matched = await passwords.verify(
        None if too_long else stored_hash, password[:MAX_PASSWORD_INPUT]
    )
    if not matched:
        raise DomainError(ErrorCode.INVALID_CREDENTIALS, INVALID_LOGIN, keep_writes=True)

    await ratelimit.release(session, limits.login_address, client_address)
    await ratelimit.reset(session, limits.login_identifier, named.key)
    assert stored_hash is not None
    new_hash = await passwords.hash(password) if passwords.needs_rehash(stored_hash) else None
    if staff is not None:
        if new_hash:
            await session.execute(
                sa.update(_staff)
                .where(_staff.c.id == staff.staff_id)
                .values(password_hash=new_hash)
            )
        tokens = await issue_session(
            session,
            settings=settings,
            staff_id=staff.staff_id,
            client_address=client_address,
            user_agent=user_agent,
        )
        principal = Principal("STAFF", staff.staff_id, tokens.session_id, role=staff.role)
    else:
        assert account is not None
        if new_hash:
            await session.execute(
                sa.update(_credentials)
                .where(_credentials.c.id == account.credential_id)
                .values(password_hash=new_hash)
            )
        tokens = await issue_session(
            session,
            settings=settings,
            subscriber_id=account.subscriber_id,
            client_address=client_address,
            user_agent=user_agent,
        )
        principal = Principal(
            "SUBSCRIBER",
            account.subscriber_id,
            tokens.session_id,
            must_change_password=account.must_change_password,
        )
    return SignedIn(tokens, principal)


async def refresh_session(
    session: AsyncSession, *, settings: Settings, refresh_token: str
) -> IssuedTokens:
    """Spend a refresh token (a detected reuse revokes the family, and that is kept although
    the refresh is refused: see rotate_refresh_token)."""
    await begin_write(session)
    return await rotate_refresh_token(session, settings=settings, refresh_token=refresh_token)


async def logout(session: AsyncSession, *, principal: Principal) -> None:
    await begin_write(session)
    await revoke_sessions(session, session_ids=[principal.session_id])


async def logout_everywhere(session: AsyncSession, *, principal: Principal) -> int:
    await begin_write(session)
    if principal.is_staff:
        count = await revoke_sessions(session, staff_id=principal.id)
    else:
        count = await revoke_sessions(session, subscriber_id=principal.id)
    return count


async def _context_words(
    session: AsyncSession, settings: Settings, principal: Principal
) -> list[str]:
    if principal.is_staff:
        username = await session.scalar(
            sa.select(_staff.c.username).where(_staff.c.id == principal.id)
        )
        return [settings.operator_name, username or ""]
    login_name = await session.scalar(
        sa.select(_credentials.c.login).where(_credentials.c.subscriber_id == principal.id)
    )
    numbers = (
        await session.execute(
            sa.select(_contracts.c.number).where(_contracts.c.subscriber_id == principal.id)
        )
    ).scalars()
    return [settings.operator_name, login_name or "", *numbers]


async def change_password(
    session: AsyncSession,
    *,
    settings: Settings,
    principal: Principal,
    current_password: str,
    new_password: str,
) -> None:
    """Check the current password, set the new one, end every other session, send a notice.

    A wrong current password is a sign-in failure of the account (SPEC §3): it is counted
    first, under the same key as the account's sign-ins, so that a stolen session cannot
    guess the password; past the limit the answer is RATE_LIMITED, even for the right one.
    """
    limit = ratelimit.limits_for(settings).login_identifier
    account_key = staff_key(principal.id) if principal.is_staff else subscriber_key(principal.id)
    await begin_write(session)
    retry_after = await ratelimit.take(session, limit, account_key)
    if retry_after is not None:
        raise _rate_limited(retry_after)

    table, key = (
        (_staff, _staff.c.id)
        if principal.is_staff
        else (
            _credentials,
            _credentials.c.subscriber_id,
        )
    )
    stored = await session.scalar(sa.select(table.c.password_hash).where(key == principal.id))
    passwords = passwords_for(settings)
    if len(current_password) > MAX_PASSWORD_INPUT or not await passwords.verify(
        stored, current_password
    ):
        raise DomainError(
            ErrorCode.INVALID_CREDENTIALS,
            "The current password is wrong.",
            field="currentPassword",
            keep_writes=True,  # the failure stays counted
        )
    # The right current password, like a sign-in, clears the account's failures; that is
    # kept (`keep_writes`) even when the new password is refused.
    await ratelimit.reset(session, limit, account_key)
    reason = check_password(
        new_password,
        min_length=settings.password_min_length,
        max_length=settings.password_max_length,
        context_words=await _context_words(session, settings, principal),
    )
    if reason is None and await passwords.verify(stored, new_password):
        reason = "The new password must differ from the current one."
    if reason is not None:
        raise DomainError(
            ErrorCode.PASSWORD_REJECTED, reason, field="newPassword", keep_writes=True
        )
    now = utcnow()
    new_hash = await passwords.hash(new_password)
    if principal.is_staff:
        await session.execute(
            sa.update(_staff).where(key == principal.id).values(password_hash=new_hash)
        )
        await revoke_sessions(
            session, staff_id=principal.id, except_session_id=principal.session_id
        )
    else:
        await session.execute(
            sa.update(_credentials)
            .where(key == principal.id)
            .values(password_hash=new_hash, must_change_password=False, password_changed_at=now)
        )
        await revoke_sessions(
            session, subscriber_id=principal.id, except_session_id=principal.session_id
        )
        email = await session.scalar(
            sa.select(_subscribers.c.email).where(_subscribers.c.id == principal.id)
        )
        if email:
            letter = password_changed_letter(settings, when=now)
            await queue_letter(
                session,
                kind="PASSWORD_CHANGED",
                recipient=email,
                subject=letter.subject,
                body_text=letter.body_text,
                body_html=letter.body_html,
            )


MAX_SESSIONS_LISTED = 100


def live_sessions_beside(sessions: Any) -> sa.Select[Any]:
    """`mySessions`: the live sessions of the owner of each session `sessions(id)` admits
    (the caller's own), newest first, at most 100; `caller_session` names the caller's
    session. Parameter: `now`."""
    caller = _sessions.alias("caller_session")
    same_owner = sa.or_(
        _sessions.c.subscriber_id == caller.c.subscriber_id,
        _sessions.c.staff_id == caller.c.staff_id,
    )
    ranked = (
        sa.select(
            _sessions.c.id,
            _sessions.c.created_at,
            _sessions.c.last_used_at,
            _sessions.c.client_address,
            _sessions.c.user_agent,
            caller.c.id.label("caller_session"),
            sa.func.row_number()
            .over(partition_by=caller.c.id, order_by=_sessions.c.id.desc())
            .label("position"),
        )
        .select_from(caller.join(_sessions, same_owner))
        .where(
            sessions(caller.c.id),
            _sessions.c.revoked_at.is_(None),
            _sessions.c.expires_at > sa.bindparam("now", type_=UTCDateTime),
        )
        .subquery("sessions_listed")
    )
    return sa.select(*[c for c in ranked.c if c.key != "position"]).where(
        ranked.c.position <= sa.literal_column(str(MAX_SESSIONS_LISTED))
    )


async def revoke_session(session: AsyncSession, *, principal: Principal, session_id: int) -> None:
    """End one of the principal's own sessions; another's is NOT_FOUND."""
    await begin_write(session)
    owner = _sessions.c.staff_id if principal.is_staff else _sessions.c.subscriber_id
    found = await session.scalar(
        sa.select(_sessions.c.id).where(
            _sessions.c.id == session_id, owner == principal.id, _sessions.c.revoked_at.is_(None)
        )
    )
    if found is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such session.", field="sessionId")
    await revoke_sessions(session, session_ids=[session_id])
