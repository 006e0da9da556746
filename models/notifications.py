"""Reminders (SPEC §8): each subscriber's channel per kind of reminder, and the marks that
keep a reminder to once (per episode, per promise, per pause day)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from models.base import ID, created_at_field, enum_check

# The kinds a subscriber chooses a channel for (the GraphQL enum NotificationKind).
NOTIFICATION_KINDS = ("LOW_BALANCE", "SUSPENSION", "PROMISED_PAYMENT_DUE", "PAUSE")
NOTIFICATION_CHANNELS = ("EMAIL", "SMS", "BOTH", "NONE")


class NotificationPreference(SQLModel, table=True):
    """A subscriber's choice for one kind; no row: EMAIL."""

    __tablename__ = "notification_preferences"
    __table_args__ = (
        enum_check("kind", NOTIFICATION_KINDS, "notification_kind_known"),
        enum_check("channel", NOTIFICATION_CHANNELS, "notification_channel_known"),
    )

    subscriber_id: int = Field(
        sa_type=ID, foreign_key="subscribers.id", primary_key=True, ondelete="CASCADE"
    )
    kind: str = Field(primary_key=True, max_length=32)
    channel: str = Field(max_length=8)


class ReminderMark(SQLModel, table=True):
    """A reminder already queued for a contract: its primary key makes a second billing run
    (or a second host) a no-op. `ref` says which: "" for the low-balance episode (deleted
    when the episode ends), "promise:<id>", "pause-starts:<day>", "pause-ends:<day>"."""

    __tablename__ = "reminder_marks"

    contract_id: int = Field(
        sa_type=ID, foreign_key="contracts.id", primary_key=True, ondelete="CASCADE"
    )
    kind: str = Field(primary_key=True, max_length=32)
    ref: str = Field(primary_key=True, max_length=64, default="")
    created_at: datetime = created_at_field()
