"""Global object identification (Relay): opaque IDs, "Type:pk" in URL-safe base64. One
place for the rule, used by the GraphQL face, the web routes and the domain alike."""

from __future__ import annotations

import base64
import binascii

from strawberry import ID

MAX_GLOBAL_ID_LENGTH = 200


def to_global_id(type_name: str, pk: int | str) -> ID:
    return ID(base64.urlsafe_b64encode(f"{type_name}:{pk}".encode()).decode())


def encode_cursor(*parts: object) -> str:
    """An opaque cursor: url-safe base64 of the parts joined by "|"."""
    return base64.urlsafe_b64encode("|".join(str(p) for p in parts).encode()).decode()


def from_global_id(global_id: str) -> tuple[str, str] | None:
    """("Type", "pk") for a well-formed ID, else None (callers answer "not found")."""
    if len(global_id) > MAX_GLOBAL_ID_LENGTH:
        return None
    try:
        raw = base64.urlsafe_b64decode(global_id.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        return None
    type_name, sep, pk = raw.partition(":")
    if not sep or not type_name or not pk:
        return None
    return type_name, pk


def parse_pk(text: str) -> int | None:
    """A primary key from the text of a global ID: ASCII digits that fit a BIGINT."""
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        return None
    return int(text)
