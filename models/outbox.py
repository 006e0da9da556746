"""Outgoing letters, written in the same transaction as the change that causes them."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from models.base import UTCDateTime, created_at_field, id_field, ts_field


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox"

    id: int | None = id_field()
    kind: str = Field(max_length=32)  # REGISTRATION, RECOVERY_CODE, RECEIPT, REMINDER_…
    channel: str = Field(default="EMAIL", max_length=8)  # EMAIL | SMS
    recipient: str = Field(max_length=254)
    subject: str = Field(default="", max_length=200)
    body_text: str
    body_html: str | None = None
    created_at: datetime = created_at_field()
    attempts: int = 0
    next_attempt_at: datetime = Field(sa_type=UTCDateTime, index=True)
    locked_until: datetime | None = ts_field()
    sent_at: datetime | None = ts_field(index=True)
    last_error: str | None = Field(default=None, max_length=500)
    # SMS: what the gateway answered (its message id; its status, e.g. "OK 100", "ERROR 207").
    provider_message_id: str | None = Field(default=None, max_length=64)
    provider_status: str | None = Field(default=None, max_length=64)
