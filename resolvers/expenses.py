"""Expense control (SPEC §3 "Money"): the ledger of a contract page by page, its totals by
category and by month, and the rows of a downloadable statement.

Read-only verbs over a request's reader (anything with `async rows(statement)`, such as
`core.db.RequestReader`), so that they run inside a GraphQL request. The caller checks
that the principal may see the contract (`resolvers.accounts.may_see_contract`).

Periods: `ledger_page` takes instants, half-open `[since, until)`; the summary and the
statement take calendar days, both ends included, counted in UTC (the ledger keeps UTC).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Row
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from core.errors import DomainError, ErrorCode
from models import LedgerEntry
from models.base import table_of
from models.money import LEDGER_KINDS
from resolvers.catalog import Reader
from resolvers.pagination import Page, check_first, decode_cursor, encode_cursor

MAX_PAGE_SIZE = 100
MAX_PERIOD_DAYS = 366
# A statement is one request's worth of rows held in memory. A home contract posts a few
# entries a day (the billing day's charge, top-ups, promises), so a year is ~2,000 rows;
# beyond the cap the oldest rows of the period are kept and the caller is told
# (`statement_rows(..., limit=STATEMENT_MAX_ROWS + 1)` shows whether there were more).
STATEMENT_MAX_ROWS = 10_000
CENT = Decimal("0.01")
ZERO = Decimal("0.00")

_ledger = table_of(LedgerEntry)

LEDGER_COLUMNS = (
    _ledger.c.id,
    _ledger.c.contract_id,
    _ledger.c.kind,
    _ledger.c.amount,
    _ledger.c.balance_after,
    _ledger.c.description,
    _ledger.c.reference,
    _ledger.c.actor,
    _ledger.c.created_at,
)


# -- Contract.ledger -----------------------------------------------------------------------


# Money moved by this service lies between these days: anything outside is a mistake (and
# the calendar's very ends cannot even be shifted to UTC or by a day).
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(2999, 12, 31)


def _check_day(value: date, field: str) -> None:
    if not FIRST_DAY <= value <= LAST_DAY:
        raise DomainError(
            ErrorCode.INVALID, f"Give a day between {FIRST_DAY} and {LAST_DAY}.", field=field
        )


def _check_instant(value: datetime | None, field: str) -> None:
    if value is None:
        return
    if value.tzinfo is None:
        raise DomainError(ErrorCode.INVALID, "Give the time with its zone.", field=field)
    _check_day(value.date(), field)


def _check_kinds(kinds: Sequence[str] | None) -> list[str] | None:
    """None or an empty list: every kind."""
    if not kinds:
        return None
    unknown = [kind for kind in kinds if kind not in LEDGER_KINDS]
    if unknown:
        raise DomainError(
            ErrorCode.INVALID,
            f"Unknown ledger kind; use any of {', '.join(LEDGER_KINDS)}.",
            field="kinds",
        )
    return sorted(set(kinds))


def _decode_ledger_cursor(cursor: str) -> tuple[datetime, int]:
    created_at, entry_id = decode_cursor(cursor, parts=2)
    try:
        at = datetime.fromisoformat(created_at)
    except ValueError:
        at = None
    valid = (
        at is not None
        and at.tzinfo is not None
        and FIRST_DAY <= at.date() <= LAST_DAY
        and entry_id.isascii()
        and entry_id.isdigit()
        and len(entry_id) <= 18
    )
    if not valid:
        raise DomainError(ErrorCode.INVALID, "The cursor is not valid.", field="after")
    assert at is not None
    return at, int(entry_id)


def ledger_cursor(row: Any) -> str:
    return encode_cursor(row.created_at.isoformat(), row.id)


async def ledger_page(
    reader: Reader,
    *,
    contract_id: int,
    first: int | None,
    after: str | None,
    kinds: Sequence[str] | None,
    since: datetime | None,
    until: datetime | None,
) -> Page[Row[Any]]:
    """A contract's ledger entries, newest first, `first` (≤ 100) after the cursor `after`,
    of the given `kinds` (all when None or empty) created in `[since, until)`.

    Keyset pagination on (created_at, id), the order of the index
    (contract_id, created_at, id): one statement per page, stable under inserts, no
    duplicates or gaps when entries share a time. Rows carry `LEDGER_COLUMNS`."""
    limit = check_first(first, MAX_PAGE_SIZE)
    wanted = _check_kinds(kinds)
    _check_instant(since, "from")
    _check_instant(until, "to")
    if since is not None and until is not None and since >= until:
        raise DomainError(ErrorCode.INVALID, "`from` must be before `to`.", field="from")

    created_at, entry_id = _ledger.c.created_at, _ledger.c.id
    statement = (
        sa.select(*LEDGER_COLUMNS)
        .where(_ledger.c.contract_id == contract_id)
        .order_by(created_at.desc(), entry_id.desc())
        .limit(limit + 1)
    )
    if wanted is not None:
        statement = statement.where(_ledger.c.kind.in_(wanted))
    if since is not None:
        statement = statement.where(created_at >= since)
    if until is not None:
        statement = statement.where(created_at < until)
    if after is not None:
        at, last_id = _decode_ledger_cursor(after)
        # (created_at, id) < (at, last_id), written so that the index range is plain.
        statement = statement.where(created_at <= at, sa.or_(created_at < at, entry_id < last_id))
    rows = list(await reader.rows(statement))
    items = rows[:limit]
    return Page(
        items=items,
        cursors=[ledger_cursor(row) for row in items],
        has_next_page=len(rows) > limit,
        has_previous_page=after is not None,
    )


# -- Contract.expenseSummary ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CategoryTotal:
    kind: str  # a ledger kind; schema/ names it for people
    total: Decimal  # signed: charges negative, credits positive


@dataclass(frozen=True, slots=True)
class MonthTotal:
    month: str  # "YYYY-MM", UTC
    charged: Decimal  # the debits of the month as a positive number
    credited: Decimal


@dataclass(frozen=True, slots=True)
class Summary:
    since: date
    until: date
    by_category: list[CategoryTotal]  # kinds with entries in the period, in LEDGER_KINDS order
    by_month: list[MonthTotal]  # every month the period touches, zeros included, oldest first
    total_charged: Decimal
    total_credited: Decimal


class utc_month(FunctionElement[str]):
    """ "YYYY-MM" of a UTC timestamp column; each database spells it its own way."""

    type = sa.String()
    name = "utc_month"
    inherit_cache = True


@compiles(utc_month, "sqlite")
def _utc_month_sqlite(element: utc_month, compiler: Any, **kw: Any) -> str:
    # SQLite keeps the UTC time as text ('YYYY-MM-DD HH:MM:SS.ffffff', see UTCDateTime).
    return f"strftime('%Y-%m', {compiler.process(element.clauses, **kw)})"


@compiles(utc_month, "postgresql")
def _utc_month_postgresql(element: utc_month, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"to_char(({column}) AT TIME ZONE 'UTC', 'YYYY-MM')"


def _money(value: Any) -> Decimal:
    # SQLite sums NUMERIC as REAL: the text of the float, rounded to kopecks, is exact here.
    return ZERO if value is None else Decimal(str(value)).quantize(CENT)


def check_period(since: date, until: date) -> tuple[datetime, datetime]:
    """Both days included, at most 366 days; returns the UTC instants [start, end)."""
    _check_day(since, "from")
    _check_day(until, "to")
    if since > until:
        raise DomainError(ErrorCode.INVALID, "`from` must not be after `to`.", field="from")
    if (until - since).days + 1 > MAX_PERIOD_DAYS:
        raise DomainError(
            ErrorCode.INVALID, f"The period is at most {MAX_PERIOD_DAYS} days.", field="to"
        )
    start = datetime.combine(since, time.min, UTC)
    end = datetime.combine(until + timedelta(days=1), time.min, UTC)
    return start, end


def _months(since: date, until: date) -> list[str]:
    months, year, month = [], since.year, since.month
    while (year, month) <= (until.year, until.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


async def expense_summary(reader: Reader, *, contract_id: int, since: date, until: date) -> Summary:
    """Totals of a contract's ledger over the days `[since, until]` (UTC, ≤ 366 days): by
    kind (signed) and by month (charged and credited), in two aggregate statements."""
    start, end = check_period(since, until)
    in_period = (
        _ledger.c.contract_id == contract_id,
        _ledger.c.created_at >= start,
        _ledger.c.created_at < end,
    )
    amount = _ledger.c.amount
    by_kind = await reader.rows(
        sa.select(_ledger.c.kind, sa.func.sum(amount).label("total"))
        .where(*in_period)
        .group_by(_ledger.c.kind)
    )
    month = utc_month(_ledger.c.created_at)
    by_month = await reader.rows(
        sa.select(
            month.label("month"),
            sa.func.sum(sa.case((amount < 0, -amount), else_=0)).label("charged"),
            sa.func.sum(sa.case((amount > 0, amount), else_=0)).label("credited"),
        )
        .where(*in_period)
        .group_by(month)
    )

    order = {kind: index for index, kind in enumerate(LEDGER_KINDS)}
    categories = sorted(
        (CategoryTotal(row.kind, _money(row.total)) for row in by_kind),
        key=lambda category: order.get(category.kind, len(order)),
    )
    found = {row.month: (_money(row.charged), _money(row.credited)) for row in by_month}
    months = [MonthTotal(m, *found.get(m, (ZERO, ZERO))) for m in _months(since, until)]
    return Summary(
        since=since,
        until=until,
        by_category=categories,
        by_month=months,
        total_charged=sum((m.charged for m in months), ZERO),
        total_credited=sum((m.credited for m in months), ZERO),
    )


# -- the statement (CSV) -------------------------------------------------------------------


async def statement_rows(
    reader: Reader,
    *,
    contract_id: int,
    since: date,
    until: date,
    limit: int = STATEMENT_MAX_ROWS,
) -> list[Row[Any]]:
    """A contract's ledger entries of the days `[since, until]` (UTC, ≤ 366 days), oldest
    first, at most `limit` (≤ STATEMENT_MAX_ROWS + 1) of them. Rows carry `LEDGER_COLUMNS`."""
    start, end = check_period(since, until)
    limit = max(1, min(limit, STATEMENT_MAX_ROWS + 1))
    rows = await reader.rows(
        sa.select(*LEDGER_COLUMNS)
        .where(
            _ledger.c.contract_id == contract_id,
            _ledger.c.created_at >= start,
            _ledger.c.created_at < end,
        )
        .order_by(_ledger.c.created_at, _ledger.c.id)
        .limit(limit)
    )
    return list(rows)
