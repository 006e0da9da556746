"""The audit log of staff writes (SPEC §1, §3): who, what, when, before and after, why.

An entry is added in the transaction of the write it describes, so the two commit or roll
back together. Before and after are JSON text with secrets taken out: the log is read by
every staff member, and a password hash or a security code there would be a leak.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import read_rows
from core.errors import DomainError, ErrorCode
from models import AuditEntry
from models.base import string_length, table_of, utcnow
from resolvers.pagination import Page, check_first, page_by_id

MAX_PAGE_SIZE = 100
REASON_LENGTH = (5, 500)  # a staff action's reason, kept in the audit log
MAX_ACTION_LENGTH = 64

# A key naming any of these is dropped, whatever its value: a secret never reaches the log.
SECRET_KEY_PARTS = ("password", "hash", "code", "token", "document")
# ...but for these, which name a secret without holding one.
ALLOWED_KEYS = frozenset({"document_last4", "must_change_password"})

_audit = table_of(AuditEntry)
_max_reason = string_length(_audit.c.reason) or 500
_max_address = string_length(_audit.c.client_address) or 64
_max_target_id = string_length(_audit.c.target_id) or 64

AUDIT_COLUMNS = (
    _audit.c.id,
    _audit.c.actor_staff_id,
    _audit.c.actor,
    _audit.c.action,
    _audit.c.target_type,
    _audit.c.target_id,
    _audit.c.before,
    _audit.c.after,
    _audit.c.reason,
    _audit.c.client_address,
    _audit.c.created_at,
)


def checked_reason(reason: str | None) -> str:
    """The reason a staff action gives (an adjustment, a refund): NFKC, runs of white space
    made one space, trimmed; 5 to 500 characters, no control characters. DomainError
    INVALID (field reason) otherwise."""
    text = " ".join(unicodedata.normalize("NFKC", reason or "").split())
    low, high = REASON_LENGTH
    if not low <= len(text) <= high:
        raise DomainError(
            ErrorCode.INVALID, f"Give a reason of {low} to {high} characters.", field="reason"
        )
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text):
        raise DomainError(
            ErrorCode.INVALID, "The reason contains control characters.", field="reason"
        )
    return text


def _is_secret(key: object) -> bool:
    name = str(key).lower()
    if name in ALLOWED_KEYS:
        return False
    return any(part in name for part in SECRET_KEY_PARTS)


def _redact_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return redact(value)
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    return value


def redact(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` without the keys that may carry a secret (passwords, hashes, security codes,
    tokens, document numbers), nested mappings included; `document_last4` and the
    `must_change_password` flag are kept."""
    return {key: _redact_value(value) for key, value in values.items() if not _is_secret(key)}


def _json_default(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)  # Decimal and anything else: its text, never a float


def to_json(values: Mapping[str, Any] | None) -> str | None:
    if values is None:
        return None
    return json.dumps(redact(values), sort_keys=True, ensure_ascii=False, default=_json_default)


async def record_audit(
    session: AsyncSession,
    *,
    actor_staff_id: int,
    action: str,
    target_type: str,
    target_id: str | int,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    reason: str | None,
    client_address: str | None,
) -> None:
    """Add an audit entry to the caller's transaction (its unit of work commits it)."""
    session.add(
        AuditEntry(
            actor_staff_id=actor_staff_id,
            actor=f"staff:{actor_staff_id}",
            action=action,
            target_type=target_type,
            target_id=str(target_id)[:_max_target_id],
            before=to_json(before),
            after=to_json(after),
            reason=reason[:_max_reason] if reason is not None else None,
            client_address=client_address[:_max_address] if client_address else None,
            created_at=utcnow(),
        )
    )


async def list_audit_log(
    session: Any, *, first: int | None, after: int | None, action: str | None = None
) -> Page[Row[Any]]:
    """Audit entries, newest first (by id), `first` at a time after the entry id `after`
    (decoded with `decode_id_cursor`); only those of one `action` when it is given."""
    limit = check_first(first, MAX_PAGE_SIZE)
    statement = sa.select(*AUDIT_COLUMNS).order_by(_audit.c.id.desc()).limit(limit + 1)
    if after is not None:
        statement = statement.where(_audit.c.id < after)
    if action is not None:
        statement = statement.where(_audit.c.action == action[:MAX_ACTION_LENGTH])
    return page_by_id(await read_rows(session, statement), limit, after=after)
