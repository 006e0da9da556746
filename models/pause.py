"""A contract's voluntary pause and its socially significant access (SPEC §8)."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import created_at_field, enum_check, fk, id_field, ts_field

# SCHEDULED: asked for, its first day still to come (or the contract was not ACTIVE on it);
# RUNNING: the contract is PAUSED; ENDED: over (on its last day or resumed early);
# CANCELED: cancelled before it started, or never started by its last day.
PAUSE_STATUSES = ("SCHEDULED", "RUNNING", "ENDED", "CANCELED")
OPEN_PAUSE = "status IN ('SCHEDULED', 'RUNNING')"


class ContractPause(SQLModel, table=True):
    """A voluntary pause of a contract, from `starts_on` to `ends_on`, both days included."""

    __tablename__ = "contract_pauses"
    __table_args__ = (
        enum_check("status", PAUSE_STATUSES, "status"),
        sa.CheckConstraint("ends_on >= starts_on", name="period"),
        sa.CheckConstraint("ended_on IS NULL OR ended_on >= starts_on", name="ended"),
        # One pause planned or running per contract: two requests at once make one.
        sa.Index(
            "uq_contract_pauses_open",
            "contract_id",
            unique=True,
            sqlite_where=sa.text(OPEN_PAUSE),
            postgresql_where=sa.text(OPEN_PAUSE),
        ),
    )

    id: int | None = id_field()
    contract_id: int = fk("contracts.id", ondelete="CASCADE")
    starts_on: date
    ends_on: date  # its last day
    status: str = Field(default="SCHEDULED", max_length=16, index=True)
    # The day it really ended: `ends_on`, or the day it was resumed early.
    ended_on: date | None = None
    actor: str = Field(max_length=100)
    created_at: datetime = created_at_field()
    ended_at: datetime | None = ts_field()


class SocialAccessGrant(SQLModel, table=True):
    """Free access to the socially significant sites, for a contract SUSPENDED for debt,
    until `until`. One per suspension episode: `closed_at` is set when the suspension is
    lifted, and only then may the next episode have its own."""

    __tablename__ = "social_access_grants"
    __table_args__ = (
        sa.Index(
            "uq_social_access_grants_episode",
            "contract_id",
            unique=True,
            sqlite_where=sa.text("closed_at IS NULL"),
            postgresql_where=sa.text("closed_at IS NULL"),
        ),
    )

    id: int | None = id_field()
    contract_id: int = fk("contracts.id", ondelete="CASCADE")
    activated_at: datetime = created_at_field()
    until: datetime = ts_field(nullable=False)
    actor: str = Field(max_length=100)
    closed_at: datetime | None = ts_field()
