"""Written requests from subscribers who cannot sign in (SPEC §3 "Recovery"): anyone may
submit one, a few an hour per client address; staff list them and close them, audited."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from auth import ratelimit
from core.db import begin_write, read_rows
from core.errors import DomainError, ErrorCode, InputProblems
from core.settings import Settings
from models import SupportRequest
from models.base import string_length, table_of, utcnow
from models.support import SUPPORT_STATUSES
from resolvers.audit import record_audit
from resolvers.pagination import Page, check_first, page_by_id

__all__ = [
    "SUPPORT_REQUEST_COLUMNS",
    "close_support_request",
    "list_support_requests",
    "submit_support_request",
]

CONTACT_LENGTH = (3, 254)
MESSAGE_LENGTH = (10, 4000)
RESOLUTION_LENGTH = (1, 2000)
MAX_PAGE_SIZE = 100
RATE_LIMITED_MESSAGE = "Too many requests. Try again later."

_requests = table_of(SupportRequest)
_max_address = string_length(_requests.c.client_address) or 64

SUPPORT_REQUEST_COLUMNS = (
    _requests.c.id,
    _requests.c.contact,
    _requests.c.message,
    _requests.c.status,
    _requests.c.client_address,
    _requests.c.created_at,
    _requests.c.closed_at,
    _requests.c.closed_by_staff_id,
    _requests.c.resolution,
)


def _text(value: str, field: str, label: str, bounds: tuple[int, int], *, one_line: bool) -> str:
    """`value` stripped, or INVALID on `field` when its length is out of `bounds`."""
    text = value.strip()
    low, high = bounds
    allowed = "" if one_line else "\n\t"
    if not low <= len(text) <= high:
        raise DomainError(
            ErrorCode.INVALID, f"The {label} must be {low} to {high} characters long.", field=field
        )
    if any((ord(ch) < 32 and ch not in allowed) or ord(ch) == 127 for ch in text):
        raise DomainError(
            ErrorCode.INVALID, f"The {label} contains control characters.", field=field
        )
    return text


async def submit_support_request(
    session: AsyncSession,
    *,
    settings: Settings,
    contact: str,
    message: str,
    client_address: str,
) -> int:
    """Store a written request; returns its id.

    Raises DomainError INVALID (field `contact`: 3 to 254 characters, one line; field
    `message`: 10 to 4000 characters, both after stripping; both at once when both are at
    fault) and RATE_LIMITED (with
    `retry_after_seconds`) past 5 requests per client address in an hour.
    """
    problems = InputProblems()  # both fields' problems at once
    with problems:
        contact = _text(contact, "contact", "contact", CONTACT_LENGTH, one_line=True)
    with problems:
        message = message.replace("\r\n", "\n")
        message = _text(message, "message", "message", MESSAGE_LENGTH, one_line=False)
    problems.raise_found()
    limit = ratelimit.limits_for(settings).support_request_address

    # Counted before it is checked, so that a burst gets no more than the limit (SPEC §5).
    await begin_write(session)
    retry_after = await ratelimit.take(session, limit, client_address)
    if retry_after is not None:  # a refused request is no request: nothing is kept
        raise DomainError(
            ErrorCode.RATE_LIMITED, RATE_LIMITED_MESSAGE, retry_after_seconds=retry_after
        )
    request_id = (
        await session.execute(
            sa.insert(_requests)
            .values(
                contact=contact,
                message=message,
                status="OPEN",
                client_address=client_address[:_max_address] or None,
                created_at=utcnow(),
            )
            .returning(_requests.c.id)
        )
    ).scalar_one()
    return int(request_id)


async def list_support_requests(
    session: Any, *, status: str | None, first: int | None, after: int | None
) -> Page[Row[Any]]:
    """Support requests, newest first (by id), `first` at a time after the request id
    `after` (decoded with `decode_id_cursor`); only those of one `status` when given.
    Items are rows of `SUPPORT_REQUEST_COLUMNS`. Raises INVALID for a bad `first` or status."""
    limit = check_first(first, MAX_PAGE_SIZE)
    if status is not None and status not in SUPPORT_STATUSES:
        raise DomainError(
            ErrorCode.INVALID,
            f"The status must be one of {', '.join(SUPPORT_STATUSES)}.",
            field="status",
        )
    statement = sa.select(*SUPPORT_REQUEST_COLUMNS).order_by(_requests.c.id.desc()).limit(limit + 1)
    if after is not None:
        statement = statement.where(_requests.c.id < after)
    if status is not None:
        statement = statement.where(_requests.c.status == status)
    return page_by_id(await read_rows(session, statement), limit, after=after)


async def close_support_request(
    session: AsyncSession,
    *,
    staff_id: int,
    request_id: int,
    resolution: str,
    client_address: str | None = None,
) -> SupportRequest:
    """Close an open request with a resolution, audited; returns the closed request.

    Raises DomainError INVALID (field `resolution`: 1 to 2000 characters after stripping),
    NOT_FOUND (field `id`) when there is no such request, CONFLICT (field `id`) when it is
    closed already.
    """
    resolution = resolution.replace("\r\n", "\n")
    resolution = _text(resolution, "resolution", "resolution", RESOLUTION_LENGTH, one_line=False)

    await begin_write(session)
    request = (
        await session.execute(
            sa.select(SupportRequest).where(_requests.c.id == request_id).with_for_update()
        )
    ).scalar_one_or_none()
    if request is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such support request.", field="id")
    if request.status == "CLOSED":
        raise DomainError(ErrorCode.CONFLICT, "This support request is closed already.", field="id")

    before = {"status": request.status}
    request.status = "CLOSED"
    request.closed_at = utcnow()
    request.closed_by_staff_id = staff_id
    request.resolution = resolution
    await record_audit(
        session,
        actor_staff_id=staff_id,
        action="closeSupportRequest",
        target_type="SupportRequest",
        target_id=request_id,
        before=before,
        after={"status": request.status, "resolution": resolution},
        reason=None,
        client_address=client_address,
    )
    return request
