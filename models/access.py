"""Credentials, sessions, refresh tokens, recovery codes and rate-limit counters."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import UTCDateTime, created_at_field, enum_check, fk, id_field, ts_field

PRINCIPAL_KINDS = ("SUBSCRIBER", "STAFF")


class Credential(SQLModel, table=True):
    """A subscriber's sign-in; kept apart from the subscriber row so that no query for
    profile data ever carries the hash."""

    __tablename__ = "credentials"

    id: int | None = id_field()
    subscriber_id: int = fk("subscribers.id", index=False, ondelete="CASCADE")
    login: str = Field(max_length=64, unique=True)
    password_hash: str = Field(max_length=200)
    must_change_password: bool = True
    password_changed_at: datetime | None = ts_field()
    created_at: datetime = created_at_field()

    __table_args__ = (sa.UniqueConstraint("subscriber_id", name="uq_credentials_subscriber"),)


class AuthSession(SQLModel, table=True):
    """A signed-in session: the family of one access token and its rotating refresh tokens."""

    __tablename__ = "auth_sessions"
    __table_args__ = (
        enum_check("principal_kind", PRINCIPAL_KINDS, "principal"),
        sa.CheckConstraint("(subscriber_id IS NULL) <> (staff_id IS NULL)", name="one_principal"),
    )

    id: int | None = id_field()
    principal_kind: str = Field(max_length=16)
    subscriber_id: int | None = fk("subscribers.id", nullable=True, ondelete="CASCADE")
    staff_id: int | None = fk("staff_users.id", nullable=True, ondelete="CASCADE")
    access_token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = created_at_field()
    last_used_at: datetime = created_at_field()
    # The current access token: issued at, and its expiry (idle, capped by the absolute).
    access_issued_at: datetime = created_at_field()
    access_expires_at: datetime = Field(sa_type=UTCDateTime)
    # The end of the whole session: the refresh tokens' lifetime, counted from sign-in.
    expires_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = ts_field()
    client_address: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=300)


class RefreshToken(SQLModel, table=True):
    __tablename__ = "refresh_tokens"

    id: int | None = id_field()
    session_id: int = fk("auth_sessions.id", ondelete="CASCADE")
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = created_at_field()
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = ts_field()


class RecoveryCode(SQLModel, table=True):
    __tablename__ = "recovery_codes"

    id: int | None = id_field()
    subscriber_id: int = fk("subscribers.id", ondelete="CASCADE")
    code_hash: str = Field(max_length=64)
    channel: str = Field(max_length=8)  # EMAIL | SMS
    created_at: datetime = created_at_field()
    expires_at: datetime = Field(sa_type=UTCDateTime)
    attempts: int = 0
    used_at: datetime | None = ts_field()


class RateLimitCounter(SQLModel, table=True):
    """A fixed-window counter shared by every app process through the database."""

    __tablename__ = "rate_limit_counters"

    bucket: str = Field(primary_key=True, max_length=200)
    window_started_at: datetime = Field(sa_type=UTCDateTime)
    hits: int = 0
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
