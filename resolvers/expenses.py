"""Expense control (SPEC §3 "Money"): the ledger of a contract page by page, its totals by
category and by month, and the rows of a downloadable statement.

Read-only verbs over a request's reader (anything with `async rows(statement)`, such as
`core.db.RequestReader`), so that they run inside a GraphQL request, and the rows of the
summary's read declaration (resolvers/views.py). The caller checks that the principal may
see the contract (`resolvers.accounts.may_see_contract`).

Periods: the ledger's filters take instants, half-open `[from, to)`; the summary and the
statement take calendar days, both ends included, counted in UTC (the ledger keeps UTC).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Row
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from core.db import one_of
from core.errors import DomainError, ErrorCode
from core.views import Filter
from models import Contract, LedgerEntry
from models.base import MONEY, table_of
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

_ledger = table_of(LedgerEntry)
_contracts = table_of(Contract)

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
#
# The rows of the summary's declaration (resolvers/views.py: ExpenseSummary, CategoryTotal,
# MonthTotal), for any filter on the contract and the period `from`, `to` (days, both
# included, UTC): statement parameters, or the columns of the summary's row for its lists.
# Every value is here, in SQL: the months of the period (every one, zeros included, oldest
# first), their totals, the totals of the period (the sums of the months') and the totals
# by kind (signed, in LEDGER_KINDS order).


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


class month_after(FunctionElement[str]):
    """ "YYYY-MM" of the month `n` months after the month of a day: month_after(day, n)."""

    type = sa.String()
    name = "month_after"
    inherit_cache = True


@compiles(month_after, "sqlite")
def _month_after_sqlite(element: month_after, compiler: Any, **kw: Any) -> str:
    day, n = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"strftime('%Y-%m', {day}, 'start of month', '+' || ({n}) || ' months')"


@compiles(month_after, "postgresql")
def _month_after_postgresql(element: month_after, compiler: Any, **kw: Any) -> str:
    day, n = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"to_char(CAST({day} AS DATE) + ({n}) * INTERVAL '1 month', 'YYYY-MM')"


class utc_midnight(FunctionElement[datetime]):
    """The instant a day starts in UTC, `n` days after a day: utc_midnight(day, n), to be
    compared with a UTC timestamp column."""

    type = sa.DateTime(timezone=True)
    name = "utc_midnight"
    inherit_cache = True


@compiles(utc_midnight, "sqlite")
def _utc_midnight_sqlite(element: utc_midnight, compiler: Any, **kw: Any) -> str:
    # 'YYYY-MM-DD': before every time of the day in SQLite's text, after the day before's.
    day, n = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"date({day}, '+' || ({n}) || ' days')"


@compiles(utc_midnight, "postgresql")
def _utc_midnight_postgresql(element: utc_midnight, compiler: Any, **kw: Any) -> str:
    day, n = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"(CAST(CAST({day} AS DATE) + ({n}) AS TIMESTAMP) AT TIME ZONE 'UTC')"


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


def check_summary_period(given: Mapping[str, Any]) -> None:
    """The check of `Contract.expenseSummary(from, to)` (both required)."""
    check_period(given["from"], given["to"])


def _period(period: Mapping[str, Any]) -> tuple[Any, Any]:
    """The days `from` and `to` given to a rows function, as SQL dates."""
    return sa.type_coerce(period["from"], sa.Date), sa.type_coerce(period["to"], sa.Date)


def _entries_of(keep: Filter, since: Any, until: Any) -> tuple[Any, ...]:
    created_at = _ledger.c.created_at
    return (
        keep(_ledger.c.contract_id),
        created_at >= utc_midnight(since, _text("0")),
        created_at < utc_midnight(until, _text("1")),
    )


def _text(sql: str) -> Any:
    return sa.literal_column(sql)


# A month has at least 28 days: a period of d days touches at most d // 28 + 2 months.
_MONTH_NUMBERS = sa.union_all(
    *(sa.select(_text(str(n)).label("n")) for n in range(MAX_PERIOD_DAYS // 28 + 2))
)


def month_rows(keep: Filter, **period: Any) -> sa.Select[Any]:
    """`ExpenseSummary.byMonth`: every month the period touches ("YYYY-MM", UTC; `position`
    0 the first), zeros included, for each contract; `charged` the debits of the month as
    a positive number, `credited` the credits."""
    since, until = _period(period)
    amount, month = _ledger.c.amount, utc_month(_ledger.c.created_at)
    found = (
        sa.select(
            _ledger.c.contract_id,
            month.label("month"),
            sa.func.sum(sa.case((amount < _text("0"), -amount), else_=_text("0"))).label("charged"),
            sa.func.sum(sa.case((amount > _text("0"), amount), else_=_text("0"))).label("credited"),
        )
        .where(*_entries_of(keep, since, until))
        .group_by(_ledger.c.contract_id, month)
        .subquery()
    )
    numbers = _MONTH_NUMBERS.subquery()
    label = month_after(since, numbers.c.n)
    zero = _text("0.00")
    return (
        sa.select(
            _contracts.c.id.label("contract_id"),
            numbers.c.n.label("position"),
            label.label("month"),
            sa.type_coerce(sa.func.coalesce(found.c.charged, zero), MONEY).label("charged"),
            sa.type_coerce(sa.func.coalesce(found.c.credited, zero), MONEY).label("credited"),
        )
        .select_from(
            _contracts.join(numbers, label <= month_after(until, _text("0"))).outerjoin(
                found, sa.and_(found.c.contract_id == _contracts.c.id, found.c.month == label)
            )
        )
        .where(keep(_contracts.c.id))
    )


def summary_rows(keep: Filter, **period: Any) -> sa.Select[Any]:
    """`Contract.expenseSummary`: one row per contract, with the period (`since`, `until`)
    and its totals, the sums of its months'."""
    since, until = _period(period)
    months = month_rows(keep, **period).subquery()
    return sa.select(
        months.c.contract_id,
        since.label("since"),
        until.label("until"),
        sa.type_coerce(sa.func.sum(months.c.charged), MONEY).label("total_charged"),
        sa.type_coerce(sa.func.sum(months.c.credited), MONEY).label("total_credited"),
    ).group_by(months.c.contract_id)


def category_rows(keep: Filter, **period: Any) -> sa.Select[Any]:
    """`ExpenseSummary.byCategory`: the kinds with entries in the period and their signed
    totals, `kind_rank` their place in LEDGER_KINDS."""
    since, until = _period(period)
    kind = _ledger.c.kind
    rank = sa.case(
        *((kind == _text(f"'{name}'"), _text(str(i))) for i, name in enumerate(LEDGER_KINDS)),
        else_=_text(str(len(LEDGER_KINDS))),
    )
    return (
        sa.select(
            _ledger.c.contract_id,
            kind,
            sa.type_coerce(sa.func.sum(_ledger.c.amount), MONEY).label("total"),
            rank.label("kind_rank"),
        )
        .where(*_entries_of(keep, since, until))
        .group_by(_ledger.c.contract_id, kind)
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
