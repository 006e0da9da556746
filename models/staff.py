"""Support staff accounts."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import created_at_field, enum_check, id_field

STAFF_ROLES = ("OPERATOR", "ADMIN")


class StaffUser(SQLModel, table=True):
    __tablename__ = "staff_users"
    __table_args__ = (enum_check("role", STAFF_ROLES, "role"),)

    id: int | None = id_field()
    username: str = Field(max_length=64, unique=True)
    role: str = Field(max_length=16)
    password_hash: str = Field(max_length=200)
    active: bool = Field(default=True, sa_column_kwargs={"server_default": sa.true()})
    created_at: datetime = created_at_field()
