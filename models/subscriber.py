"""Subscribers: individuals and legal entities with one or more contracts."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from models.base import created_at_field, enum_check, id_field

LEGAL_STATUSES = ("INDIVIDUAL", "LEGAL_ENTITY")


class Subscriber(SQLModel, table=True):
    __tablename__ = "subscribers"
    __table_args__ = (enum_check("legal_status", LEGAL_STATUSES, "status"),)

    id: int | None = id_field()
    legal_status: str = Field(max_length=16)
    display_name: str = Field(max_length=200)
    # The passport (series + number) or INN is kept only as a keyed hash plus its last 4
    # characters: enough to check it at registration and to show "…1234" to staff.
    document_hash: str = Field(max_length=64, index=True)
    document_last4: str = Field(max_length=4)
    email: str | None = Field(default=None, max_length=254, index=True)  # stored lower-case
    phone: str | None = Field(default=None, max_length=16, index=True)
    created_at: datetime = created_at_field()
