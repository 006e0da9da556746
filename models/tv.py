"""TV: channels, packages and what a contract has connected (dated rows for billing)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import ID, UTCDateTime, created_at_field, fk, id_field, money_field, ts_field


class Channel(SQLModel, table=True):
    __tablename__ = "channels"
    __table_args__ = (sa.CheckConstraint("number > 0", name="number_pos"),)

    id: int | None = id_field()
    number: int = Field(unique=True)
    name: str = Field(max_length=100, unique=True)
    genre: str = Field(max_length=40, index=True)
    hd: bool = False
    must_carry: bool = Field(default=False, index=True)
    archived: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})


class TvPackage(SQLModel, table=True):
    __tablename__ = "tv_packages"
    __table_args__ = (sa.CheckConstraint("monthly_fee >= 0", name="fee"),)

    id: int | None = id_field()
    code: str = Field(max_length=40, unique=True)
    name: str = Field(max_length=100)
    monthly_fee: Decimal = money_field()
    description: str = Field(default="", max_length=500)
    archived: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    created_at: datetime = created_at_field()


class TvPackageChannel(SQLModel, table=True):
    __tablename__ = "tv_package_channels"

    package_id: int = Field(
        sa_type=ID, foreign_key="tv_packages.id", primary_key=True, ondelete="CASCADE"
    )
    channel_id: int = Field(
        sa_type=ID, foreign_key="channels.id", primary_key=True, ondelete="RESTRICT", index=True
    )


# What a contract has on: one row per period an item is connected. `ended_on` is the first
# day it is no longer charged (NULL while it is on); the billing day charges day D for every
# row with started_on <= D < coalesce(ended_on, infinity) and D not before free_until.


class ContractTvPackage(SQLModel, table=True):
    __tablename__ = "contract_tv_packages"
    __table_args__ = (
        sa.Index(
            "uq_contract_tv_packages_active",
            "contract_id",
            "package_id",
            unique=True,
            sqlite_where=sa.text("ended_on IS NULL"),
            postgresql_where=sa.text("ended_on IS NULL"),
        ),
        sa.CheckConstraint("ended_on IS NULL OR ended_on >= started_on", name="period"),
    )

    id: int | None = id_field()
    contract_id: int = fk("contracts.id", ondelete="CASCADE")
    package_id: int = fk("tv_packages.id", index=False)
    started_on: date
    ended_on: date | None = None
    free_until: date | None = Field(default=None, description="bonus reward: free before this day")
    connected_at: datetime = created_at_field()
    disconnected_at: datetime | None = ts_field()


class ContractPersonalChannel(SQLModel, table=True):
    __tablename__ = "contract_personal_channels"
    __table_args__ = (
        sa.Index(
            "uq_contract_personal_channels_active",
            "contract_id",
            "channel_id",
            unique=True,
            sqlite_where=sa.text("ended_on IS NULL"),
            postgresql_where=sa.text("ended_on IS NULL"),
        ),
        sa.CheckConstraint("ended_on IS NULL OR ended_on >= started_on", name="period"),
        sa.CheckConstraint("monthly_fee >= 0", name="fee"),
    )

    id: int | None = id_field()
    contract_id: int = fk("contracts.id", ondelete="CASCADE")
    channel_id: int = fk("channels.id", index=False)
    monthly_fee: Decimal = money_field()
    started_on: date
    ended_on: date | None = None
    connected_at: datetime = created_at_field()
    disconnected_at: datetime | None = ts_field()


class MultiroomDevice(SQLModel, table=True):
    __tablename__ = "multiroom_devices"
    __table_args__ = (
        sa.CheckConstraint("ended_on IS NULL OR ended_on >= started_on", name="period"),
        sa.CheckConstraint("monthly_fee >= 0", name="fee"),
    )

    id: int | None = id_field()
    contract_id: int = fk("contracts.id", ondelete="CASCADE")
    serial: str = Field(max_length=40)
    monthly_fee: Decimal = money_field()
    started_on: date
    ended_on: date | None = None
    connected_at: datetime = created_at_field()
    disconnected_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
