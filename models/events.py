"""Events for the operator's systems (SPEC §9): the events outbox, the staff's webhook
subscriptions, and one delivery row per event and subscription."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import ID, UTCDateTime, created_at_field, enum_check, fk, id_field, ts_field

DELIVERY_STATUSES = ("PENDING", "DELIVERED", "FAILED")


class WebhookSubscription(SQLModel, table=True):
    """An operator's URL and the event types it wants. The secret signs its deliveries: it
    is kept as it is (HMAC needs it) and shown once, when the subscription is created."""

    __tablename__ = "webhook_subscriptions"

    id: int | None = id_field()
    url: str = Field(max_length=2000)
    description: str = Field(default="", max_length=500)
    secret: str = Field(max_length=100)
    active: bool = Field(default=True)
    created_by_staff_id: int | None = fk("staff_users.id", nullable=True, ondelete="SET NULL")
    created_at: datetime = created_at_field()
    updated_at: datetime = created_at_field()


class WebhookSubscriptionEvent(SQLModel, table=True):
    """One event type a subscription wants (the list, one row each: the fan-out joins it)."""

    __tablename__ = "webhook_subscription_events"

    subscription_id: int = Field(
        sa_type=ID, foreign_key="webhook_subscriptions.id", primary_key=True, ondelete="CASCADE"
    )
    event_type: str = Field(primary_key=True, max_length=64, index=True)


class Event(SQLModel, table=True):
    """An event, written in the transaction of the change it reports (the outbox);
    `fanned_out_at` is set once its deliveries have been made."""

    __tablename__ = "events"
    __table_args__ = (
        # what the deliverer looks for: the few rows not fanned out yet, not the history
        sa.Index(
            "ix_events_not_fanned_out",
            "id",
            sqlite_where=sa.text("fanned_out_at IS NULL"),
            postgresql_where=sa.text("fanned_out_at IS NULL"),
        ),
    )

    id: int | None = id_field()
    type: str = Field(max_length=64)
    occurred_at: datetime = created_at_field()
    contract_number: str | None = Field(default=None, max_length=20)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    fanned_out_at: datetime | None = ts_field()


class WebhookDelivery(SQLModel, table=True):
    """An event to one subscription: PENDING until a 2xx answer (DELIVERED) or the end of the
    retry schedule (FAILED). `locked_until` is a deliverer's lease on it."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        enum_check("status", DELIVERY_STATUSES, "status"),
        sa.UniqueConstraint("event_id", "subscription_id"),
        # the claim's and the count's: PENDING rows by when they are due (delivered and
        # failed ones, the whole history, are not in it)
        sa.Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            sqlite_where=sa.text("status = 'PENDING'"),
            postgresql_where=sa.text("status = 'PENDING'"),
        ),
    )

    id: int | None = id_field()
    event_id: int = fk("events.id", ondelete="CASCADE", index=False)  # the unique key's first
    subscription_id: int = fk("webhook_subscriptions.id", ondelete="CASCADE")
    status: str = Field(default="PENDING", max_length=16)
    attempts: int = 0
    created_at: datetime = created_at_field()
    next_attempt_at: datetime = Field(sa_type=UTCDateTime)
    locked_until: datetime | None = ts_field()
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    delivered_at: datetime | None = ts_field()
