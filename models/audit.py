"""The audit log of staff writes: who, what, when, before and after, why."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from models.base import created_at_field, fk, id_field


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_log"

    id: int | None = id_field()
    actor_staff_id: int | None = fk("staff_users.id", nullable=True)
    actor: str = Field(max_length=64)
    action: str = Field(max_length=64, index=True)
    target_type: str = Field(max_length=32)
    target_id: str = Field(max_length=64)
    before: str | None = None  # JSON text
    after: str | None = None  # JSON text
    reason: str | None = Field(default=None, max_length=500)
    client_address: str | None = Field(default=None, max_length=64)
    created_at: datetime = created_at_field()
