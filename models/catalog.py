"""The reference catalogue: regions, tariffs, service options."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import created_at_field, id_field, money_field


class Region(SQLModel, table=True):
    __tablename__ = "regions"

    code: str = Field(primary_key=True, max_length=16)
    name: str = Field(max_length=100)


class Tariff(SQLModel, table=True):
    """An Internet plan; one row per region, so the price and traffic depend on the region."""

    __tablename__ = "tariffs"
    __table_args__ = (
        sa.UniqueConstraint("region_code", "code", name="uq_tariffs_region_code"),
        sa.CheckConstraint("monthly_fee >= 0", name="fee_nonneg"),
        sa.CheckConstraint("speed_mbps > 0", name="speed_pos"),
        sa.CheckConstraint("traffic_gb IS NULL OR traffic_gb > 0", name="traffic_pos"),
    )

    id: int | None = id_field()
    code: str = Field(max_length=40)
    name: str = Field(max_length=100)
    region_code: str = Field(foreign_key="regions.code", ondelete="RESTRICT", index=True)
    monthly_fee: Decimal = money_field()
    speed_mbps: int
    traffic_gb: int | None = Field(default=None, description="None means unlimited")
    description: str = Field(default="", max_length=500)
    archived: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    created_at: datetime = created_at_field()


class ServiceOption(SQLModel, table=True):
    __tablename__ = "service_options"
    __table_args__ = (sa.CheckConstraint("monthly_fee >= 0", name="fee"),)

    id: int | None = id_field()
    code: str = Field(max_length=40, unique=True)
    name: str = Field(max_length=100)
    monthly_fee: Decimal = money_field()
    description: str = Field(default="", max_length=500)
    archived: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    created_at: datetime = created_at_field()
