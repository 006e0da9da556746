"""The bonus programme: a points ledger per subscriber and the reward catalogue."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import ID, UTCDateTime, created_at_field, enum_check, fk, id_field, money_field

REWARD_KINDS = ("BALANCE_CREDIT", "TV_PACKAGE", "SPEED_BOOST")
POINT_ENTRY_KINDS = ("ACCRUAL", "REDEMPTION", "EXPIRY", "ADJUSTMENT")


class BonusAccount(SQLModel, table=True):
    __tablename__ = "bonus_accounts"
    __table_args__ = (sa.CheckConstraint("points >= 0", name="points_nonneg"),)

    subscriber_id: int = Field(
        sa_type=ID, foreign_key="subscribers.id", primary_key=True, ondelete="CASCADE"
    )
    points: int = 0


class BonusEntry(SQLModel, table=True):
    """A points ledger row. Accruals carry `remaining` (not yet spent or expired) and
    `expires_at`; redemption spends the oldest remaining accruals first."""

    __tablename__ = "bonus_entries"
    __table_args__ = (
        enum_check("kind", POINT_ENTRY_KINDS, "kind"),
        sa.CheckConstraint("remaining IS NULL OR remaining >= 0", name="remaining"),
        sa.Index("ix_bonus_entries_subscriber_created", "subscriber_id", "created_at", "id"),
    )

    id: int | None = id_field()
    subscriber_id: int = fk("subscribers.id", index=False)
    kind: str = Field(max_length=16)
    points: int
    remaining: int | None = None
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    payment_id: int | None = fk("payments.id", nullable=True, index=False)
    reward_id: int | None = fk("bonus_rewards.id", nullable=True, index=False)
    description: str = Field(default="", max_length=300)
    created_at: datetime = created_at_field()


class BonusReward(SQLModel, table=True):
    __tablename__ = "bonus_rewards"
    __table_args__ = (
        enum_check("kind", REWARD_KINDS, "kind"),
        sa.CheckConstraint("points_price > 0", name="price_pos"),
    )

    id: int | None = id_field()
    code: str = Field(max_length=40, unique=True)
    name: str = Field(max_length=100)
    kind: str = Field(max_length=16)
    points_price: int
    credit_amount: Decimal | None = money_field(nullable=True)
    tv_package_id: int | None = fk("tv_packages.id", nullable=True, index=False)
    option_id: int | None = fk("service_options.id", nullable=True, index=False)
    duration_days: int | None = None
    archived: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    created_at: datetime = created_at_field()
