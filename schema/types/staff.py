"""Types that only staff reach: the audit log and support requests."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry

from core.ids import to_global_id
from schema.types.node import Node


@strawberry.type(description="A staff write: who, what, when, before and after, why.")
class AuditEntry(Node):
    actor: str
    action: str
    target_type: str
    target_id: str
    before: str | None = strawberry.field(description="JSON of the values before.")
    after: str | None = strawberry.field(description="JSON of the values after.")
    reason: str | None
    client_address: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> AuditEntry:
        return cls(
            id=to_global_id("AuditEntry", row.id),
            actor=row.actor,
            action=row.action,
            target_type=row.target_type,
            target_id=row.target_id,
            before=row.before,
            after=row.after,
            reason=row.reason,
            client_address=row.client_address,
            created_at=row.created_at,
        )


@strawberry.enum
class SupportRequestStatus(Enum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"


@strawberry.type(description="A written request from someone who cannot sign in.")
class SupportRequest(Node):
    contact: str
    message: str
    status: SupportRequestStatus
    created_at: datetime
    closed_at: datetime | None
    resolution: str | None

    @classmethod
    def from_row(cls, row: Any) -> SupportRequest:
        return cls(
            id=to_global_id("SupportRequest", row.id),
            contact=row.contact,
            message=row.message,
            status=SupportRequestStatus(row.status),
            created_at=row.created_at,
            closed_at=row.closed_at,
            resolution=row.resolution,
        )
