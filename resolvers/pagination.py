"""Keyset pagination for Relay connections: opaque cursors over a stable sort key."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from core.errors import DomainError, ErrorCode
from core.ids import encode_cursor

__all__ = ["DEFAULT_PAGE_SIZE", "Page", "decode_cursor", "encode_cursor"]

T = TypeVar("T")
DEFAULT_PAGE_SIZE = 20


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    cursors: Sequence[str]
    has_next_page: bool
    has_previous_page: bool


def decode_cursor(cursor: str, *, parts: int) -> list[str]:
    try:
        values = base64.urlsafe_b64decode(cursor.encode("ascii")).decode().split("|")
    except (binascii.Error, UnicodeError, ValueError):
        values = []
    if len(values) != parts or len(cursor) > 200:
        raise DomainError(ErrorCode.INVALID, "The cursor is not valid.", field="after")
    return values


def decode_id_cursor(cursor: str | None) -> int | None:
    """Cursors over a descending id: "newest first" lists."""
    if cursor is None:
        return None
    (value,) = decode_cursor(cursor, parts=1)
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise DomainError(ErrorCode.INVALID, "The cursor is not valid.", field="after")
    return int(value)


def check_first(first: int | None, maximum: int) -> int:
    if first is None:
        return min(DEFAULT_PAGE_SIZE, maximum)
    if first < 0 or first > maximum:
        raise DomainError(
            ErrorCode.INVALID, f"`first` must be between 0 and {maximum}.", field="first"
        )
    return first


def page_by_id(rows: Sequence[Any], first: int, *, after: int | None) -> Page[Any]:
    """`rows` were fetched as `first + 1` rows with id < after, newest first."""
    items = list(rows[:first])
    return Page(
        items=items,
        cursors=[encode_cursor(row.id) for row in items],
        has_next_page=len(rows) > first,
        has_previous_page=after is not None,
    )
