"""Fixed-window attempt counters kept in the database (SPEC §3), shared by every app process.

A caller counts an attempt with `take` BEFORE doing the guarded thing (SPEC §5: limits that
count attempts count before they check), gives it back with `release` when it turned out not
to be a failure, and clears the key's count with `reset` on success. These functions write
inside the caller's transaction and never commit: a failed login keeps its count because
its refusal says `keep_writes` (core.errors.DomainError), which its unit of work honours.

    limits = limits_for(settings)
    if retry_after := await take(session, limits.login_identifier, account_key):
        raise DomainError("RATE_LIMITED", ...)

`take` is one atomic upsert that returns the new count, so of any number of concurrent
attempts exactly `max_hits` pass (on PostgreSQL the upsert waits for a concurrent one on the
same key to commit or roll back). Checking first and counting after (`check`, then `hit`)
lets a burst through: every request passes the check before any is counted.

Keys are the caller's business: sign-in and recovery count per account (resolvers.identity
says which key an identifier has), registration per contract number, and all of them per
client address too.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import begin_write, rowcount
from core.settings import Settings
from models.access import RateLimitCounter
from models.base import UTCDateTime, table_of, utcnow

__all__ = [
    "Limit",
    "RateLimits",
    "check",
    "hit",
    "limits_for",
    "purge_expired",
    "reset",
]

# Not (yet) settings: SPEC §3 gives no number for how often recovery codes may be requested.
# Five codes an hour per identifier is more than a person needs; twenty an hour per address
# leaves room for a household or an office behind one NAT.
HOUR = 3600

_BUCKET_MAX_LENGTH = 200
_KEY_DIGEST_LENGTH = 64  # sha256 hex

_counters = table_of(RateLimitCounter)


@dataclass(frozen=True)
class Limit:
    """At most `max_hits` failures per key in a fixed window of `window_seconds`, which
    starts with the first failure.

    With `lockout_seconds`, the failure that reaches `max_hits` also keeps the key refused
    for at least that long from that moment ("5 failures lock registration for an hour"),
    however late in the window it came.
    """

    name: str
    max_hits: int
    window_seconds: int
    lockout_seconds: int | None = None

    def __post_init__(self) -> None:
        if not self.name or ":" in self.name:
            raise ValueError("a limit name is non-empty and has no ':'")
        if len(self.name) + 1 + _KEY_DIGEST_LENGTH > _BUCKET_MAX_LENGTH:
            raise ValueError(f"limit name {self.name!r} is too long for a bucket")
        if self.max_hits < 1 or self.window_seconds < 1:
            raise ValueError("max_hits and window_seconds must be at least 1")
        if self.lockout_seconds is not None and self.lockout_seconds < 1:
            raise ValueError("lockout_seconds must be at least 1")


@dataclass(frozen=True)
class RateLimits:
    """The limits of SPEC §3, built once from the settings by `limits_for`."""

    login_identifier: Limit
    login_address: Limit
    registration_contract: Limit
    registration_address: Limit
    recovery_identifier: Limit
    recovery_address: Limit
    code_check: Limit
    code_check_address: Limit
    support_request_address: Limit


def limits_for(settings: Settings) -> RateLimits:
    return RateLimits(
        login_identifier=Limit(
            "login-identifier",
            settings.login_max_failures_per_identifier,
            settings.login_window_seconds,
        ),
        login_address=Limit(
            "login-address",
            settings.login_max_failures_per_address,
            settings.login_window_seconds,
        ),
        registration_contract=Limit(
            "registration-contract",
            settings.registration_max_failures,
            settings.registration_lock_seconds,
            lockout_seconds=settings.registration_lock_seconds,
        ),
        # Probing many contract numbers from one address is limited too (not only per number).
        registration_address=Limit(
            "registration-address",
            settings.registration_max_failures_per_address,
            settings.registration_lock_seconds,
        ),
        recovery_identifier=Limit(
            "recovery-identifier", settings.recovery_requests_per_identifier_per_hour, HOUR
        ),
        recovery_address=Limit(
            "recovery-address", settings.recovery_requests_per_address_per_hour, HOUR
        ),
        # Per identifier, across codes: a new code does not reset the failure count, and the
        # lockout outlives any code issued before the last allowed failure.
        code_check=Limit(
            "code-check",
            settings.recovery_code_attempts,
            settings.recovery_code_seconds,
            lockout_seconds=settings.recovery_code_seconds,
        ),
        # Guessing codes for many accounts from one address is limited too (not only per
        # account); a right code gives its attempt back.
        code_check_address=Limit(
            "code-check-address", settings.recovery_code_failures_per_address_per_hour, HOUR
        ),
        support_request_address=Limit(
            "support-request-address", settings.support_requests_per_address_per_hour, HOUR
        ),
    )


def bucket_for(limit: Limit, key: str) -> str:
    """The counter's primary key; the key is hashed so that emails, phones and addresses are
    not stored in clear and any key fits the column."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{limit.name}:{digest}"


# The statements, built once per dialect and shape (building and keying a statement per call
# cost more than running it: a sign-in runs four of them). Values are parameters.
_BUCKET = sa.bindparam("b_bucket", type_=sa.String)
_CHECK = sa.select(_counters.c.hits, _counters.c.expires_at).where(_counters.c.bucket == _BUCKET)
_RELEASE = (
    sa.update(_counters)
    .where(_counters.c.bucket == _BUCKET, _counters.c.hits > 0)
    .values(hits=_counters.c.hits - 1)
)
_RESET = sa.delete(_counters).where(_counters.c.bucket == _BUCKET)


@lru_cache(maxsize=8)
def _hit_statement(dialect: str, lockout: bool) -> Any:
    """The one upsert of `hit`; with `lockout`, reaching max_hits pushes the expiry to
    `locked_until` (never pulls it back)."""
    if dialect == "postgresql":
        insert: Any = postgresql.insert(_counters)
    elif dialect == "sqlite":
        insert = sqlite.insert(_counters)
    else:
        raise NotImplementedError(f"rate limits need PostgreSQL or SQLite, not {dialect}")
    stored = _counters.c
    at = sa.bindparam("at", type_=UTCDateTime)
    first_expiry = sa.bindparam("first_expiry", type_=UTCDateTime)
    expired = stored.expires_at <= at
    expiry_when_counted: Any = stored.expires_at
    if lockout:
        locked_until = sa.bindparam("locked_until", type_=UTCDateTime)
        expiry_when_counted = sa.case(
            (
                sa.and_(
                    stored.hits + 1 == sa.bindparam("max_hits", type_=sa.Integer),
                    stored.expires_at < locked_until,
                ),
                locked_until,
            ),
            else_=stored.expires_at,
        )
    return (
        insert.values(bucket=_BUCKET, window_started_at=at, hits=1, expires_at=first_expiry)
        .on_conflict_do_update(
            index_elements=[stored.bucket],
            # Every SET expression reads the row as it was before this update.
            set_={
                "hits": sa.case((expired, 1), else_=stored.hits + 1),
                "window_started_at": sa.case((expired, at), else_=stored.window_started_at),
                "expires_at": sa.case((expired, first_expiry), else_=expiry_when_counted),
            },
        )
        .returning(stored.hits)
    )


async def check(
    session: AsyncSession, limit: Limit, key: str, *, now: datetime | None = None
) -> int | None:
    """None when `key` may try again, else the seconds (at least 1) until it may."""
    now = now or utcnow()
    row = (await session.execute(_CHECK, {"b_bucket": bucket_for(limit, key)})).first()
    if row is None or row.expires_at <= now or row.hits < limit.max_hits:
        return None
    return max(1, math.ceil((row.expires_at - now).total_seconds()))


async def hit(session: AsyncSession, limit: Limit, key: str, *, now: datetime | None = None) -> int:
    """Record one failure and return the key's count in the current window.

    One `INSERT … ON CONFLICT DO UPDATE … RETURNING` statement: concurrent hits from any
    number of connections are each counted exactly once.
    """
    now = now or utcnow()
    await _begin_write_unless_begun(session)
    first_expiry = now + timedelta(seconds=limit.window_seconds)
    if limit.lockout_seconds is not None and limit.max_hits == 1:
        first_expiry = max(first_expiry, now + timedelta(seconds=limit.lockout_seconds))
    params: dict[str, Any] = {
        "b_bucket": bucket_for(limit, key),
        "at": now,
        "first_expiry": first_expiry,
    }
    if limit.lockout_seconds is not None:
        params["locked_until"] = now + timedelta(seconds=limit.lockout_seconds)
        params["max_hits"] = limit.max_hits
    statement = _hit_statement(session.get_bind().dialect.name, limit.lockout_seconds is not None)
    return int((await session.execute(statement, params)).scalar_one())


async def take(
    session: AsyncSession, limit: Limit, key: str, *, now: datetime | None = None
) -> int | None:
    """Count an attempt BEFORE it is checked, and say whether it may go on: None when it is
    within the limit, else the seconds until the key may try again.

    Counting first is what holds against a burst: with check-then-count, thirty requests sent
    at once all pass the check before any of them is counted. The attempt stays counted;
    `release` gives it back when it turns out not to be a failure."""
    now = now or utcnow()
    if await hit(session, limit, key, now=now) <= limit.max_hits:
        return None
    return await check(session, limit, key, now=now) or 1


async def release(session: AsyncSession, limit: Limit, key: str) -> None:
    """Give back one attempt counted by `take` (it was not a failure)."""
    await _begin_write_unless_begun(session)
    await session.execute(_RELEASE, {"b_bucket": bucket_for(limit, key)})


async def reset(session: AsyncSession, limit: Limit, key: str) -> None:
    """Forget the key's failures (a successful sign-in resets the identifier's count)."""
    await _begin_write_unless_begun(session)
    await session.execute(_RESET, {"b_bucket": bucket_for(limit, key)})


async def purge_expired(session: AsyncSession, *, now: datetime | None = None) -> int:
    """Delete the counters whose window is over; returns how many."""
    now = now or utcnow()
    await _begin_write_unless_begun(session)
    result = await session.execute(
        sa.delete(_counters).where(_counters.c.expires_at <= sa.literal(now, UTCDateTime))
    )
    return int(rowcount(result) or 0)


async def _begin_write_unless_begun(session: AsyncSession) -> None:
    # A caller that has already begun its transaction has made its own choice (it should
    # have called begin_write first); starting one here keeps a bare call safe on SQLite.
    if not session.in_transaction():
        await begin_write(session)
