"""Contracts (the personal account) and the service options connected to them."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import created_at_field, enum_check, fk, id_field, money_field, ts_field

# PAUSED: a voluntary pause is running (models/pause.py).
CONTRACT_STATUSES = ("ACTIVE", "SUSPENDED", "CLOSED", "PAUSED")


class Contract(SQLModel, table=True):
    __tablename__ = "contracts"
    __table_args__ = (
        enum_check("status", CONTRACT_STATUSES, "status"),
        sa.CheckConstraint(
            "(scheduled_tariff_id IS NULL) = (scheduled_tariff_from IS NULL)",
            name="scheduled_tariff",
        ),
    )

    id: int | None = id_field()
    number: str = Field(max_length=20, unique=True)
    subscriber_id: int = fk("subscribers.id")
    region_code: str = Field(foreign_key="regions.code", ondelete="RESTRICT", index=True)
    address: str = Field(max_length=300)
    status: str = Field(default="ACTIVE", max_length=16, index=True)
    # Changed only as `balance = balance + :x` together with a ledger row (models/money.py).
    balance: Decimal = money_field(default=Decimal("0.00"))
    # The one-time code printed on the paper contract, hashed; NULL once burnt by registration.
    security_code_hash: str | None = Field(default=None, max_length=200)
    security_code_used_at: datetime | None = ts_field()
    tariff_id: int = fk("tariffs.id")
    scheduled_tariff_id: int | None = fk("tariffs.id", nullable=True, index=False)
    scheduled_tariff_from: date | None = None
    tariff_changed_on: date | None = None
    opened_on: date
    closed_at: datetime | None = ts_field()
    created_at: datetime = created_at_field()


class ContractOption(SQLModel, table=True):
    """A service option switched on for a period (see models/tv.py for the period rule)."""

    __tablename__ = "contract_options"
    __table_args__ = (
        sa.Index(
            "uq_contract_options_active",
            "contract_id",
            "option_id",
            unique=True,
            sqlite_where=sa.text("ended_on IS NULL"),
            postgresql_where=sa.text("ended_on IS NULL"),
        ),
        sa.CheckConstraint("ended_on IS NULL OR ended_on >= started_on", name="period"),
    )

    id: int | None = id_field()
    contract_id: int = fk("contracts.id", ondelete="CASCADE")
    option_id: int = fk("service_options.id", index=False)
    started_on: date
    ended_on: date | None = None
    free_until: date | None = None
    connected_at: datetime = created_at_field()
    disconnected_at: datetime | None = ts_field()
