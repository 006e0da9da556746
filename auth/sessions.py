"""Sessions: opaque access tokens (hash stored) with idle and absolute expiry, and rotating
single-use refresh tokens whose reuse revokes the whole session (the token family)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from auth.secrets import token_hash
from core.db import DriverStatement, ReadQuery, RequestReader, rowcount
from core.errors import DomainError, ErrorCode
from core.settings import Settings
from models import AuthSession, Credential, RefreshToken, StaffUser
from models.base import table_of, utcnow

COOKIE_NAME = "__Host-kabinet_session"
# The idle expiry is pushed forward at most once a minute, so that an active session does
# not cost a write per request.
TOUCH_INTERVAL = timedelta(seconds=60)

_sessions = table_of(AuthSession)
_refresh = table_of(RefreshToken)
_credentials = table_of(Credential)
_staff = table_of(StaffUser)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a subscriber or a staff member."""

    kind: str  # SUBSCRIBER | STAFF
    id: int
    session_id: int
    role: str | None = None  # staff role
    must_change_password: bool = False
    last_used_at: datetime | None = field(default=None, compare=False)
    # What caps the idle expiry a touch sets (with the settings): the access token's issue
    # and the session's end, as the caller's statement read them.
    access_issued_at: datetime | None = field(default=None, compare=False)
    session_ends: datetime | None = field(default=None, compare=False)

    @property
    def is_staff(self) -> bool:
        return self.kind == "STAFF"

    @property
    def actor(self) -> str:
        return f"{'staff' if self.is_staff else 'subscriber'}:{self.id}"


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    session_id: int
    access_token: str
    refresh_token: str
    expires_at: datetime  # of the access token (idle expiry; capped by the absolute one)


def new_token() -> str:
    return secrets.token_urlsafe(32)  # 256 random bits


async def issue_session(
    session: AsyncSession,
    *,
    settings: Settings,
    subscriber_id: int | None = None,
    staff_id: int | None = None,
    client_address: str | None,
    user_agent: str | None,
    now: datetime | None = None,
) -> IssuedTokens:
    now = now or utcnow()
    access, refresh = new_token(), new_token()
    ends = now + timedelta(seconds=settings.refresh_token_seconds)
    idle = _access_expiry(settings, issued=now, now=now, session_ends=ends)
    row = AuthSession(
        principal_kind="STAFF" if staff_id is not None else "SUBSCRIBER",
        subscriber_id=subscriber_id,
        staff_id=staff_id,
        access_token_hash=token_hash(access),
        created_at=now,
        last_used_at=now,
        access_issued_at=now,
        access_expires_at=idle,
        expires_at=ends,
        client_address=client_address,
        user_agent=(user_agent or "")[:300] or None,
    )
    session.add(row)
    await session.flush()
    assert row.id is not None
    session.add(
        RefreshToken(
            session_id=row.id,
            token_hash=token_hash(refresh),
            created_at=now,
            expires_at=ends,
        )
    )
    await session.flush()
    return IssuedTokens(row.id, access, refresh, idle)


def _access_expiry(
    settings: Settings, *, issued: datetime, now: datetime, session_ends: datetime
) -> datetime:
    """Idle expiry from `now`, capped by the token's absolute expiry and the session's end."""
    return min(
        now + timedelta(seconds=settings.access_token_idle_seconds),
        issued + timedelta(seconds=settings.access_token_absolute_seconds),
        session_ends,
    )


# The caller of an access token (parameters token_hash and now): authenticate() below, and
# the first part of the statements that answer a whole document at once (schema/sql_answers.py).
CALLER = (
    sa.select(
        _sessions.c.id,
        _sessions.c.principal_kind,
        _sessions.c.subscriber_id,
        _sessions.c.staff_id,
        _sessions.c.last_used_at,
        _sessions.c.access_issued_at,
        _sessions.c.expires_at.label("session_ends"),
        _credentials.c.must_change_password,
        _staff.c.role,
        _staff.c.active,
    )
    .select_from(_sessions)
    .outerjoin(_credentials, _credentials.c.subscriber_id == _sessions.c.subscriber_id)
    .outerjoin(_staff, _staff.c.id == _sessions.c.staff_id)
    .where(
        _sessions.c.access_token_hash == sa.bindparam("token_hash"),
        _sessions.c.revoked_at.is_(None),
        _sessions.c.access_expires_at > sa.bindparam("now"),
        _sessions.c.expires_at > sa.bindparam("now"),
    )
)
_AUTHENTICATE = ReadQuery(CALLER)


async def authenticate(reader: Any, token: str, *, now: datetime | None = None) -> Principal | None:
    """The principal of a live access token, in one statement; None for anything else."""
    parameters = caller_parameters(token, now=now)
    if parameters is None:
        return None
    rows = await reader.fetch(_AUTHENTICATE, **parameters)
    return principal_of(rows[0]) if rows else None


def caller_parameters(token: str, *, now: datetime | None = None) -> dict[str, Any] | None:
    """The parameters of CALLER for an access token; None for a token that cannot be one."""
    if not token or len(token) > 100:
        return None
    return {"token_hash": token_hash(token), "now": now or utcnow()}


def principal_of(row: Any) -> Principal | None:
    """The principal of a row of CALLER."""
    if row.principal_kind == "STAFF":
        if not row.active:
            return None
        return Principal(
            "STAFF",
            row.staff_id,
            row.id,
            role=row.role,
            last_used_at=row.last_used_at,
            access_issued_at=row.access_issued_at,
            session_ends=row.session_ends,
        )
    return Principal(
        "SUBSCRIBER",
        row.subscriber_id,
        row.id,
        must_change_password=bool(row.must_change_password),
        last_used_at=row.last_used_at,
        access_issued_at=row.access_issued_at,
        session_ends=row.session_ends,
    )


def needs_touch(last_used_at: datetime, now: datetime) -> bool:
    return now - last_used_at >= TOUCH_INTERVAL


async def touch_caller(
    reader: RequestReader, *, settings: Settings, principal: Principal, now: datetime | None = None
) -> None:
    """Push the caller's idle expiry forward (never past the token's absolute expiry nor the
    session's end), from what the caller's statement read: one UPDATE (`TOUCH`), on the
    request's connection. PostgreSQL: in its own transaction, one round trip; elsewhere in
    a write of the request (BEGIN IMMEDIATE, UPDATE, COMMIT)."""
    if principal.access_issued_at is None or principal.session_ends is None:
        async with reader.write() as session:
            await touch(session, settings=settings, session_id=principal.session_id, now=now)
        return
    now = now or utcnow()
    params = {
        "t_session": principal.session_id,
        "t_now": now,
        "t_idle": _access_expiry(
            settings,
            issued=principal.access_issued_at,
            now=now,
            session_ends=principal.session_ends,
        ),
    }
    if reader.is_postgresql:
        await reader.write_at_once(_TOUCH_AT_ONCE, **params)
        return
    async with reader.write() as session:
        await session.execute(TOUCH, params)


TOUCH = (
    sa.update(_sessions)
    .where(
        _sessions.c.id == sa.bindparam("t_session", type_=sa.BigInteger),
        _sessions.c.revoked_at.is_(None),
    )
    .values(
        last_used_at=sa.bindparam("t_now", type_=_sessions.c.last_used_at.type),
        access_expires_at=sa.bindparam("t_idle", type_=_sessions.c.access_expires_at.type),
    )
)
_TOUCH_AT_ONCE = DriverStatement(TOUCH)


async def touch(
    session: AsyncSession, *, settings: Settings, session_id: int, now: datetime | None = None
) -> None:
    """Push the idle expiry forward (never past the token's absolute expiry), in the
    caller's transaction, for a session known by its id only (`touch_caller` needs no read)."""
    now = now or utcnow()
    row = (
        await session.execute(
            sa.select(_sessions.c.access_issued_at, _sessions.c.expires_at).where(
                _sessions.c.id == session_id
            )
        )
    ).first()
    if row is None:
        return
    idle = _access_expiry(
        settings, issued=row.access_issued_at, now=now, session_ends=row.expires_at
    )
    await session.execute(
        sa.update(_sessions)
        .where(_sessions.c.id == session_id, _sessions.c.revoked_at.is_(None))
        .values(last_used_at=now, access_expires_at=idle)
    )


async def rotate_refresh_token(
    session: AsyncSession, *, settings: Settings, refresh_token: str, now: datetime | None = None
) -> IssuedTokens:
    """Spend a refresh token for a new access token and a new refresh token.

    A refresh token is single-use: presenting a spent one means it was stolen (or the
    legitimate client was), so the whole session is revoked, and the refusal says
    `keep_writes` so that the caller's unit of work keeps the revocation. The token is spent
    with a conditional UPDATE, so two concurrent refreshes with one token cannot both win.
    """
    now = now or utcnow()
    invalid = DomainError(
        ErrorCode.INVALID_CREDENTIALS, "The session has ended; sign in again.", field="refreshToken"
    )
    reused = DomainError(
        ErrorCode.INVALID_CREDENTIALS,
        invalid.message,
        field="refreshToken",
        keep_writes=True,
    )
    if not refresh_token or len(refresh_token) > 100:
        raise invalid
    hashed = token_hash(refresh_token)
    row = (
        await session.execute(
            sa.select(
                _refresh.c.id,
                _refresh.c.session_id,
                _refresh.c.used_at,
                _refresh.c.expires_at,
                _sessions.c.revoked_at,
                _sessions.c.expires_at.label("session_expires_at"),
            )
            .join(_sessions, _sessions.c.id == _refresh.c.session_id)
            .where(_refresh.c.token_hash == hashed)
        )
    ).first()
    if row is None:
        raise invalid
    if row.used_at is not None:
        await revoke_sessions(session, session_ids=[row.session_id], now=now)
        raise reused
    if row.revoked_at is not None or row.expires_at <= now or row.session_expires_at <= now:
        raise invalid
    spent = await session.execute(
        sa.update(_refresh)
        .where(_refresh.c.id == row.id, _refresh.c.used_at.is_(None))
        .values(used_at=now)
    )
    if rowcount(spent) != 1:
        await revoke_sessions(session, session_ids=[row.session_id], now=now)
        raise reused
    access, refresh = new_token(), new_token()
    idle = _access_expiry(settings, issued=now, now=now, session_ends=row.session_expires_at)
    await session.execute(
        sa.update(_sessions)
        .where(_sessions.c.id == row.session_id)
        .values(
            access_token_hash=token_hash(access),
            last_used_at=now,
            access_issued_at=now,
            access_expires_at=idle,
        )
    )
    await session.execute(
        sa.insert(_refresh).values(
            session_id=row.session_id,
            token_hash=token_hash(refresh),
            created_at=now,
            expires_at=row.session_expires_at,
        )
    )
    return IssuedTokens(row.session_id, access, refresh, idle)


async def revoke_sessions(
    session: AsyncSession,
    *,
    session_ids: list[int] | None = None,
    subscriber_id: int | None = None,
    staff_id: int | None = None,
    except_session_id: int | None = None,
    now: datetime | None = None,
) -> int:
    """Revoke the given sessions, or all of one principal's (but `except_session_id`)."""
    conditions: list[sa.ColumnElement[bool]] = [_sessions.c.revoked_at.is_(None)]
    if session_ids is not None:
        conditions.append(_sessions.c.id.in_(session_ids))
    elif subscriber_id is not None:
        conditions.append(_sessions.c.subscriber_id == subscriber_id)
    elif staff_id is not None:
        conditions.append(_sessions.c.staff_id == staff_id)
    else:
        raise ValueError("name the sessions to revoke")
    if except_session_id is not None:
        conditions.append(_sessions.c.id != except_session_id)
    result = await session.execute(
        sa.update(_sessions).where(*conditions).values(revoked_at=now or utcnow())
    )
    return rowcount(result)
