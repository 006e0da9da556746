"""Written requests from subscribers who cannot sign in."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from models.base import created_at_field, enum_check, fk, id_field, ts_field

SUPPORT_STATUSES = ("OPEN", "CLOSED")


class SupportRequest(SQLModel, table=True):
    __tablename__ = "support_requests"
    __table_args__ = (enum_check("status", SUPPORT_STATUSES, "status"),)

    id: int | None = id_field()
    contact: str = Field(max_length=254)
    message: str = Field(max_length=4000)
    status: str = Field(default="OPEN", max_length=8, index=True)
    client_address: str | None = Field(default=None, max_length=64)
    created_at: datetime = created_at_field()
    closed_at: datetime | None = ts_field()
    closed_by_staff_id: int | None = fk("staff_users.id", nullable=True, index=False)
    resolution: str | None = Field(default=None, max_length=2000)
