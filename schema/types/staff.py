"""Types that only staff reach: the audit log and support requests."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry

from core.ids import to_global_id
from schema.types.enums import values_described
from schema.types.node import Node


@strawberry.type(description="A staff write: who, what, when, before and after, why.")
class AuditEntry(Node):
    actor: str = strawberry.field(description='Who: "staff:<staff user key>".')
    action: str = strawberry.field(
        description='What: the mutation\'s name (e.g. "adjustBalance", "createTariff").'
    )
    target_type: str = strawberry.field(
        description='The kind of object changed (e.g. "Contract", "Tariff", "SupportRequest").'
    )
    target_id: str = strawberry.field(
        description="The database key of the object changed (not a global ID)."
    )
    before: str | None = strawberry.field(
        description="JSON of the values before (secrets such as codes and passwords left "
        "out); null when there were none."
    )
    after: str | None = strawberry.field(
        description="JSON of the values after (secrets left out); null when there are none."
    )
    reason: str | None = strawberry.field(
        description="Why, as the staff member wrote it; null when the mutation takes no reason."
    )
    client_address: str | None = strawberry.field(
        description="The staff member's IP address; null when unknown."
    )
    created_at: datetime = strawberry.field(description="When.")

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


@values_described(
    {
        "OPEN": "Waiting for staff.",
        "CLOSED": "Closed by staff, with a resolution.",
    }
)
@strawberry.enum(description="Whether a support request is still to be handled.")
class SupportRequestStatus(Enum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"


@strawberry.type(description="A written request from someone who cannot sign in.")
class SupportRequest(Node):
    contact: str = strawberry.field(description="How to reach the sender: email or phone.")
    message: str = strawberry.field(description="What the sender wrote.")
    status: SupportRequestStatus = strawberry.field(description="Open or closed.")
    created_at: datetime = strawberry.field(description="When it was sent.")
    closed_at: datetime | None = strawberry.field(
        description="When staff closed it; null while OPEN."
    )
    resolution: str | None = strawberry.field(
        description="What staff did, written when closing it; null while OPEN."
    )

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
