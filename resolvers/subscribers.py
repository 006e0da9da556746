"""Looking subscribers up, for staff (`subscribers(search, first, after)`, SPEC §4).

One search box matches, in one statement: a contract number (exact or prefix), a login
(exact or prefix, any case), an email (contains, any case), a phone (normalised, exact), the
display name (contains, any case) and, for exactly 4 characters, the last 4 characters of the
identity document. The user's text is matched literally: `%` and `_` are escaped.

Case folding of the display name: PostgreSQL's `lower()` folds every letter (with a UTF-8
ctype), but SQLite's folds ASCII only, and SQLite's LIKE ignores case for ASCII only. So the
name is compared as `lower(name) LIKE lower(pattern)` for the text as typed and for its
lower-case, Title Case and UPPER-CASE forms: on SQLite "иванов", "Иванов" and "ИВАНОВ" all find
"Иванов Иван", but an oddly mixed "иВАНОВ" does not (it does on PostgreSQL).
"""

from __future__ import annotations

import unicodedata
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Row

from core.db import read_rows
from core.errors import DomainError, ErrorCode
from models import Contract, Credential, Subscriber
from models.base import table_of
from resolvers.identity import normalize_phone
from resolvers.pagination import Page, check_first, page_by_id

MAX_SEARCH_LENGTH = 100
MAX_PAGE_SIZE = 100
LIKE_ESCAPE = "\\"

_subscribers = table_of(Subscriber)
_credentials = table_of(Credential)
_contracts = table_of(Contract)

SEARCH_COLUMNS = (
    _subscribers.c.id,
    _subscribers.c.legal_status,
    _subscribers.c.display_name,
    _subscribers.c.email,
    _subscribers.c.phone,
    _subscribers.c.document_last4,
    _subscribers.c.created_at,
    _credentials.c.login,
)


def escape_like(text: str) -> str:
    """`text` as a literal inside a LIKE pattern (with ESCAPE '\\')."""
    return (
        text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
        .replace("%", LIKE_ESCAPE + "%")
        .replace("_", LIKE_ESCAPE + "_")
    )


def _contains(text: str) -> str:
    return f"%{escape_like(text)}%"


def _starts_with(text: str) -> str:
    return f"{escape_like(text)}%"


def _search_conditions(search: str) -> list[sa.ColumnElement[bool]]:
    lowered = search.lower()
    conditions: list[sa.ColumnElement[bool]] = [
        sa.func.lower(_credentials.c.login).like(_starts_with(lowered), escape=LIKE_ESCAPE),
        sa.func.lower(_subscribers.c.email).like(_contains(lowered), escape=LIKE_ESCAPE),
    ]
    if search.isascii() and search.isdigit():
        by_number = sa.select(_contracts.c.subscriber_id).where(
            _contracts.c.number.like(_starts_with(search), escape=LIKE_ESCAPE)
        )
        conditions.append(_subscribers.c.id.in_(by_number))
    phone = normalize_phone(search)
    if phone is not None:
        conditions.append(_subscribers.c.phone == phone)
    for form in dict.fromkeys((search, lowered, search.title(), search.upper())):
        conditions.append(
            sa.func.lower(_subscribers.c.display_name).like(
                sa.func.lower(sa.literal(_contains(form))), escape=LIKE_ESCAPE
            )
        )
    if len(search) == 4:
        conditions.append(_subscribers.c.document_last4 == search.upper())
    return conditions


async def search_subscribers(
    session: Any, *, search: str | None, first: int | None, after: int | None
) -> Page[Row[Any]]:
    """Subscribers matching `search` (all of them when it is empty), newest first, `first` at
    a time after the subscriber id `after` (decoded with `decode_id_cursor`). Rows carry id,
    legal_status, display_name, email, phone, document_last4, created_at and login (None
    while the subscriber is not registered)."""
    raw = (search or "").strip()
    # Checked before and after NFKC, which can lengthen text (one ligature, several letters).
    text = (
        "" if len(raw) > MAX_SEARCH_LENGTH else " ".join(unicodedata.normalize("NFKC", raw).split())
    )
    if len(raw) > MAX_SEARCH_LENGTH or len(text) > MAX_SEARCH_LENGTH:
        raise DomainError(
            ErrorCode.INVALID,
            f"The search is at most {MAX_SEARCH_LENGTH} characters long.",
            field="search",
        )
    limit = check_first(first, MAX_PAGE_SIZE)
    statement = (
        sa.select(*SEARCH_COLUMNS)
        .select_from(_subscribers)
        .outerjoin(_credentials, _credentials.c.subscriber_id == _subscribers.c.id)
        .order_by(_subscribers.c.id.desc())
        .limit(limit + 1)
    )
    if text:
        statement = statement.where(sa.or_(*_search_conditions(text)))
    if after is not None:
        statement = statement.where(_subscribers.c.id < after)
    return page_by_id(await read_rows(session, statement), limit, after=after)
