"""Expense control (SPEC §3 "Money"): the ledger of a contract page by page, its totals by
category and by month, and the rows of a downloadable statement.

Read-only verbs over a request's reader (anything with `async rows(statement)`, such as
`core.db.RequestReader`), so that they run inside a GraphQL request. The caller checks
that the principal may see the contract (`resolvers.accounts.may_see_contract`).

Periods: the ledger's filters take instants, half-open `[from, to)`; the summary and the
statement take calendar days, both ends included, counted in UTC (the ledger keeps UTC).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Row
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from core.db import ReadQuery, one_of
from core.errors import DomainError, ErrorCode
from core.views import Filter
from models import LedgerEntry
from models.base import table_of
from models.money import LEDGER_KINDS
from resolvers.catalog import Reader
from resolvers.pagination import decode_cursor

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


def check_ledger_filters(given: Mapping[str, Any]) -> dict[str, Any]:
    """The filters of `Contract.ledger` as its rows take them: `kinds` (None or an empty
    list: every kind) and the instants `from` and `to`, half-open `[from, to)`. DomainError
    for a value refused; both ways of answering run this (resolvers/views.py)."""
    kinds = _check_kinds(given.get("kinds"))
    since, until = given.get("from"), given.get("to")
    _check_instant(since, "from")
    _check_instant(until, "to")
    if since is not None and until is not None and since >= until:
        raise DomainError(ErrorCode.INVALID, "`from` must be before `to`.", field="from")
    return {"kinds": kinds, "from": since, "to": until}


def read_ledger_cursor(cursor: str) -> tuple[datetime, int]:
    """The (created_at, id) a ledger page goes on after; DomainError for a cursor that is
    not one."""
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


def ledger_entries(keep: Filter, **given: Any) -> sa.Select[Any]:
    """The ledger entries of the contracts `keep(contract_id)` admits (`LEDGER_COLUMNS`), of
    the filters given as statement parameters (None: not given; `check_ledger_filters` has
    checked them): `kinds` (a list parameter), `from`, `to`.

    `Contract.ledger` pages them newest first on (created_at, id), the order of the index
    (contract_id, created_at, id): stable under inserts, no duplicates or gaps when entries
    share a time (resolvers/views.py declares the page)."""
    created_at = _ledger.c.created_at
    conditions = [keep(_ledger.c.contract_id)]
    kinds, since, until = given.get("kinds"), given.get("from"), given.get("to")
    if kinds is not None:
        conditions.append(one_of(_ledger.c.kind, kinds.key))
    if since is not None:
        conditions.append(created_at >= since)
    if until is not None:
        conditions.append(created_at < until)
    return sa.select(*LEDGER_COLUMNS).where(*conditions)


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


def _in_period() -> tuple[Any, ...]:
    return (
        one_of(_ledger.c.contract_id, "ids"),
        _ledger.c.created_at >= sa.bindparam("start", type_=_ledger.c.created_at.type),
        _ledger.c.created_at < sa.bindparam("end", type_=_ledger.c.created_at.type),
    )


def _totals_by_kind() -> sa.Select[Any]:
    return (
        sa.select(
            _ledger.c.contract_id, _ledger.c.kind, sa.func.sum(_ledger.c.amount).label("total")
        )
        .where(*_in_period())
        .group_by(_ledger.c.contract_id, _ledger.c.kind)
    )


def _totals_by_month() -> sa.Select[Any]:
    amount, month = _ledger.c.amount, utc_month(_ledger.c.created_at)
    return (
        sa.select(
            _ledger.c.contract_id,
            month.label("month"),
            sa.func.sum(sa.case((amount < 0, -amount), else_=0)).label("charged"),
            sa.func.sum(sa.case((amount > 0, amount), else_=0)).label("credited"),
        )
        .where(*_in_period())
        .group_by(_ledger.c.contract_id, month)
    )


_TOTALS_BY_KIND = ReadQuery(_totals_by_kind())
_TOTALS_BY_MONTH = ReadQuery(_totals_by_month())


async def expense_summaries(
    reader: Reader, contract_ids: Sequence[int], *, since: date, until: date
) -> dict[int, Summary]:
    """Totals of each contract's ledger over the days `[since, until]` (UTC, ≤ 366 days): by
    kind (signed) and by month (charged and credited), in two aggregate statements for all
    the contracts (on PostgreSQL sent as one). Every contract asked for gets a summary."""
    start, end = check_period(since, until)
    ids = list(dict.fromkeys(contract_ids))
    if not ids:
        return {}
    by_kind, by_month = await asyncio.gather(
        reader.fetch(_TOTALS_BY_KIND, ids=ids, start=start, end=end),
        reader.fetch(_TOTALS_BY_MONTH, ids=ids, start=start, end=end),
    )
    categories: dict[int, list[CategoryTotal]] = {contract_id: [] for contract_id in ids}
    for row in by_kind:
        categories[row.contract_id].append(CategoryTotal(row.kind, _money(row.total)))
    months_found: dict[int, dict[str, tuple[Decimal, Decimal]]] = {cid: {} for cid in ids}
    for row in by_month:
        months_found[row.contract_id][row.month] = (_money(row.charged), _money(row.credited))

    order = {kind: index for index, kind in enumerate(LEDGER_KINDS)}
    period = _months(since, until)
    summaries = {}
    for contract_id in ids:
        found = months_found[contract_id]
        months = [MonthTotal(m, *found.get(m, (ZERO, ZERO))) for m in period]
        summaries[contract_id] = Summary(
            since=since,
            until=until,
            by_category=sorted(
                categories[contract_id],
                key=lambda category: order.get(category.kind, len(order)),
            ),
            by_month=months,
            total_charged=sum((m.charged for m in months), ZERO),
            total_credited=sum((m.credited for m in months), ZERO),
        )
    return summaries


async def expense_summary(reader: Reader, *, contract_id: int, since: date, until: date) -> Summary:
    """`expense_summaries` of one contract."""
    summaries = await expense_summaries(reader, [contract_id], since=since, until=until)
    return summaries[contract_id]


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
