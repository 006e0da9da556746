"""Events for the operator's systems (SPEC §9): how a change records the event it reports.

An event is a row of `events` written in the caller's transaction (an outbox): it commits or
rolls back with the change, so a rolled-back change sends nothing and a crash after the
commit loses nothing. Two ways to write one:

* `record_event(session, type, contract_number=…, data=…)`: one INSERT, for a verb that
  changes one contract (registration, a top-up, a promise, a service);
* `events_insert_from(type, select)`: one INSERT … SELECT, for set-based work (the billing
  day): `select` yields (contract_number, data) rows, `data` a JSON object built in SQL
  (`json_object`, `money_text`) or JSON text; it runs on SQLite and PostgreSQL.

**Fan-out happens in the deliverer, not here** (core/webhooks_out.py): recording is one
INSERT into `events` whatever the number of subscriptions, so a request's statement count and
the billing day's statements do not depend on them; the deliverer turns each new event into
one `webhook_deliveries` row per active subscription that wants its type (one INSERT …
SELECT over a round's events, the events claimed with `FOR UPDATE SKIP LOCKED`, the pair
unique). An event goes to the subscriptions that want it when the deliverer first sees it,
normally within a poll interval of the commit.

The body a receiver gets is `{"id", "type", "occurredAt", "data": {"contractNumber", …}}`:
`data` here is what follows `contractNumber` (docs/events.md lists each type's fields).
Money is a string with two decimals ("500.00"), never a JSON number.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from core.db import insert_row, rowcount
from models.base import UTCDateTime, table_of, utcnow
from models.events import Event

__all__ = [
    "EVENT_TYPES",
    "as_json",
    "event_data",
    "event_insert",
    "events_insert_from",
    "json_object",
    "money_text",
    "record_event",
    "update_with_events",
]

_events = table_of(Event)

# SPEC §9, in its order; the strings are what deliveries carry and subscriptions list.
EVENT_TYPES: tuple[str, ...] = (
    "subscriber.registered",
    "payment.succeeded",
    "payment.refunded",
    "promised_payment.activated",
    "promised_payment.overdue",
    "contract.suspended",
    "contract.resumed",
    "contract.paused",
    "contract.pause_ended",
    "contract.tariff_changed",
    "contract.services_changed",
    "social_access.activated",
)
_KNOWN = frozenset(EVENT_TYPES)


def _check_type(event_type: str) -> None:
    if event_type not in _KNOWN:
        raise ValueError(f"unknown event type {event_type!r} (resolvers.events.EVENT_TYPES)")


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def event_data(data: dict[str, Any]) -> str:
    """`data` as the JSON text that is stored: Decimal as "500.00", datetimes in ISO 8601
    UTC ("…Z"), dates as "YYYY-MM-DD". The same text for the step-by-step and set-based
    ways of one change."""
    return json.dumps(data, default=_plain, ensure_ascii=False, sort_keys=True)


async def record_event(
    session: AsyncSession,
    event_type: str,
    *,
    contract_number: str | None,
    data: dict[str, Any],
    at: datetime | None = None,
) -> None:
    """Write one event in the caller's transaction (one INSERT; nothing is sent before the
    transaction commits). `data`: the body's `data` besides `contractNumber`; `at`: when it
    happened (default: now). ValueError for a type not in EVENT_TYPES."""
    _check_type(event_type)
    await session.execute(
        _RECORD,
        {
            "type": event_type,
            "at": at or utcnow(),
            "contract_number": contract_number,
            "data": event_data(data),
        },
    )


def events_insert_from(event_type: str, select: sa.Select[Any], *, at: Any = None) -> sa.Insert:
    """The set-based form: one INSERT … SELECT of an event of `event_type` for each row of
    `select`, which yields (contract_number, data): `data` a JSON object made in SQL
    (`json_object`) or JSON text. `at`: a datetime or a column (default: the database's
    clock). Run it in the transaction of the change (e.g. before the UPDATE it reports, with
    the same WHERE and the rows locked: `select(…).with_for_update()`)."""
    _check_type(event_type)
    rows = select.subquery("event_rows")
    contract_number, data = list(rows.c)[:2]
    if at is None:
        occurred: Any = sa.func.current_timestamp()
    elif isinstance(at, datetime):
        occurred = sa.literal(at, UTCDateTime)
    else:
        occurred = at
    return sa.insert(_events).from_select(
        ["type", "occurred_at", "contract_number", "data"],
        sa.select(
            sa.literal(event_type, sa.String),
            occurred,
            contract_number,
            as_json(data),
        ).select_from(rows),
    )


async def update_with_events(
    session: AsyncSession,
    event_type: str,
    *,
    table: sa.Table,
    where: Sequence[Any],
    values: dict[str, Any],
    rows_before: Callable[[], sa.Select[Any]],
    rows_after: Callable[[Any], sa.Select[Any]],
    at: Any = None,
    also: Callable[[Any], Sequence[sa.Insert]] | None = None,
) -> int:
    """UPDATE `table` (`where`, `values`) and record one event of `event_type` for exactly
    each row it changed, in the caller's transaction; how many rows. PostgreSQL: one
    statement, the UPDATE … RETURNING a CTE that the events' INSERT reads (`rows_after(
    changed)`: (contract_number, data) of the changed rows, their new values). SQLite: the
    events' INSERT … SELECT (`rows_before()`: the same rows before the change, the same
    WHERE), then the UPDATE; BEGIN IMMEDIATE lets no other writer in between. `also(rows)`,
    when given, are more INSERTs made from the same rows (a FROM item with the table's
    columns: the changed rows on PostgreSQL, the rows about to change on SQLite), such as
    the reminders of the change (resolvers/reminders.py)."""
    _check_type(event_type)
    if session.get_bind().dialect.name == "postgresql":
        changed = sa.update(table).where(*where).values(**values).returning(*table.c).cte("changed")
        reported = events_insert_from(event_type, rows_after(changed), at=at).cte("reported")
        statement = sa.select(sa.func.count()).select_from(changed).add_cte(reported)
        for n, insert in enumerate(also(changed) if also is not None else ()):
            # A data-modifying WITH runs once, to completion, read or not (PostgreSQL).
            statement = statement.add_cte(insert.cte(f"also_{n}"))
        return int((await session.execute(statement)).scalar_one())
    await session.execute(events_insert_from(event_type, rows_before(), at=at))
    if also is not None:
        for insert in also(sa.select(table).where(*where).subquery("changing")):
            await session.execute(insert)
    result = await session.execute(sa.update(table).where(*where).values(**values))
    return rowcount(result)


def event_insert(event_type: str, values: dict[str, Any], *, when: Any = None) -> sa.Insert:
    """An event's INSERT … SELECT as a part of a composed statement (a CTE, like the other
    tables' builders, `core.db.insert_row`): `values` gives `occurred_at`,
    `contract_number` and `data` (JSON text, `event_data`'s), as parameters or columns; no
    row when `when` is false."""
    _check_type(event_type)
    return insert_row(
        sa.insert(_events),
        {
            "type": event_type,
            "occurred_at": values["occurred_at"],
            "contract_number": values["contract_number"],
            "data": as_json(values["data"]),
        },
        when=when,
    )


# -- JSON in SQL, on both databases ---------------------------------------------------------


class _JsonObject(FunctionElement[Any]):
    type = sa.JSON()
    inherit_cache = True
    name = "json_object"


_KEY = re.compile(r"[A-Za-z][A-Za-z0-9]{0,40}")


def json_object(*pairs: Any) -> _JsonObject:
    """`json_object(key, value, …)` in SQL: PostgreSQL's json_build_object, SQLite's
    json_object. Keys are written into the SQL (camelCase names); a Python value is a
    parameter typed as text (PostgreSQL cannot infer a type for json_build_object's)."""
    if len(pairs) % 2:
        raise ValueError("json_object takes key, value pairs")
    clauses: list[Any] = []
    for key, value in zip(pairs[::2], pairs[1::2], strict=True):
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ValueError(f"bad JSON key {key!r}")
        clauses.append(sa.literal_column(f"'{key}'"))
        clauses.append(
            value if isinstance(value, sa.ClauseElement) else sa.cast(sa.literal(value), sa.String)
        )
    return _JsonObject(*clauses)


@compiles(_JsonObject)
def _json_object_sqlite(element: _JsonObject, compiler: Any, **kw: Any) -> str:
    return f"json_object({compiler.process(element.clauses, **kw)})"


@compiles(_JsonObject, "postgresql")
def _json_object_postgresql(element: _JsonObject, compiler: Any, **kw: Any) -> str:
    return f"json_build_object({compiler.process(element.clauses, **kw)})"


class money_text(FunctionElement[Any]):
    """Money as text with two decimals ("500.00"): what a body carries for an amount."""

    type = sa.String()
    inherit_cache = True
    name = "money_text"


@compiles(money_text)
def _money_text_sqlite(element: money_text, compiler: Any, **kw: Any) -> str:
    # SQLite keeps NUMERIC as REAL: printed with two decimals (rounded half away from 0)
    return f"printf('%.2f', {compiler.process(element.clauses, **kw)})"


@compiles(money_text, "postgresql")
def _money_text_postgresql(element: money_text, compiler: Any, **kw: Any) -> str:
    return f"CAST(ROUND(CAST({compiler.process(element.clauses, **kw)} AS NUMERIC), 2) AS TEXT)"


class as_json(FunctionElement[Any]):
    """A JSON object (or JSON text) as a value of a JSON column: PostgreSQL's CAST(… AS
    JSON), SQLite's json(…) (a CAST to JSON there would make it a number)."""

    type = sa.JSON()
    inherit_cache = True
    name = "as_json"


@compiles(as_json)
def _as_json_sqlite(element: as_json, compiler: Any, **kw: Any) -> str:
    return f"json({compiler.process(element.clauses, **kw)})"


@compiles(as_json, "postgresql")
def _as_json_postgresql(element: as_json, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS JSON)"


# Built once: `record_event` runs it with a row's values.
_RECORD = sa.insert(_events).values(
    type=sa.bindparam("type", type_=sa.String),
    occurred_at=sa.bindparam("at", type_=UTCDateTime),
    contract_number=sa.bindparam("contract_number", type_=sa.String),
    data=as_json(sa.bindparam("data", type_=sa.String)),
)
