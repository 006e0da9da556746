"""Reminders (SPEC §8): low balance, suspension and its lifting, a promised payment due
tomorrow, a pause starting or ending tomorrow; by mail, SMS, both or neither, as each
subscriber chose for the kind (resolvers/notifications.py).

Every reminder is queued set-based: one `INSERT INTO outbox … SELECT` for all the contracts
it concerns, in the transaction of the change that causes it (the suspension's UPDATE, the
lifting, the billing day's step). Its texts (resolvers/letters.py) are templates whose
per-contract placeholders are filled in SQL (`_filled`). A contract's row gives one row of
the outbox per channel chosen (`_outbox_rows`); a channel with no address on file gives
none.

Once only: a reminder that no change of state makes unique (low balance, a promise due, a
pause day) is marked in `reminder_marks` (contract, kind, ref) in the same transaction, and
the letters are queued only for the marks this transaction really inserted:
- PostgreSQL: `WITH marked AS (INSERT INTO reminder_marks … ON CONFLICT DO NOTHING
  RETURNING …) INSERT INTO outbox SELECT … FROM marked …`, so two hosts running the billing
  day at once queue each reminder once (the loser of the key waits for the winner and
  inserts nothing);
- SQLite (one writer at a time under BEGIN IMMEDIATE): the letters for the contracts not
  marked yet, then the marks.
Suspension and its lifting need no mark: the UPDATE of the status is the claim.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from core import outbox
from core.db import rowcount
from core.settings import Settings
from models import Contract, NotificationPreference, PromisedPayment, ReminderMark, Subscriber
from models.base import UTCDateTime, table_of, utcnow
from resolvers import charges
from resolvers.letters import (
    LOW_BALANCE_TEXT,
    PAUSE_ENDS_TEXT,
    PAUSE_STARTS_TEXT,
    PROMISE_DUE_TEXT,
    RESUMED_TEXT,
    SUSPENDED_TEXT,
    ReminderText,
    public_link,
    reminder_date,
)

_contracts = table_of(Contract)
_subscribers = table_of(Subscriber)
_preferences = table_of(NotificationPreference)
_marks = table_of(ReminderMark)
_promises = table_of(PromisedPayment)

# The kinds a subscriber chooses for (models.notifications.NOTIFICATION_KINDS) ...
LOW_BALANCE = "LOW_BALANCE"
SUSPENSION = "SUSPENSION"
PROMISED_PAYMENT_DUE = "PROMISED_PAYMENT_DUE"
PAUSE = "PAUSE"
# ... and the outbox kinds of their letters.
OUTBOX_LOW_BALANCE = "REMINDER_LOW_BALANCE"
OUTBOX_SUSPENDED = "REMINDER_SUSPENDED"
OUTBOX_RESUMED = "REMINDER_RESUMED"
OUTBOX_PROMISE_DUE = "REMINDER_PROMISE_DUE"
OUTBOX_PAUSE_STARTS = "REMINDER_PAUSE_STARTS"
OUTBOX_PAUSE_ENDS = "REMINDER_PAUSE_ENDS"

DEFAULT_CHANNEL = "EMAIL"

# A contract's values for a template: the contracts' row and the reminder's rows -> SQL.
Values = Callable[[Any, Any], Mapping[str, Any]]


class money_text(FunctionElement[str]):
    """Money as a reminder writes it, "1234,50" (letters.reminder_money in Python)."""

    type = sa.String()
    inherit_cache = True


@compiles(money_text, "postgresql")
def _money_text_postgresql(element: money_text, compiler: Any, **kw: Any) -> str:
    value = compiler.process(next(iter(element.clauses)), **kw)
    return f"replace(to_char(round(CAST({value} AS NUMERIC), 2), 'FM999999999990.00'), '.', ',')"


@compiles(money_text, "sqlite")
def _money_text_sqlite(element: money_text, compiler: Any, **kw: Any) -> str:
    value = compiler.process(next(iter(element.clauses)), **kw)
    return f"replace(printf('%.2f', {value}), '.', ',')"


def _filled(template: str, constants: Mapping[str, str], values: Mapping[str, Any]) -> Any:
    """The template as SQL: its text, `constants` (the settings') as text, each other
    placeholder the SQL of `values`, concatenated."""
    pieces: list[Any] = []
    for n, part in enumerate(re.split(r"\{(\w+)\}", template)):
        text = part if n % 2 == 0 else constants.get(part)
        if text is not None:
            if text:
                pieces.append(sa.literal(text, sa.String))
            continue
        pieces.append(sa.cast(values[part], sa.String))
    joined = pieces[0]
    for piece in pieces[1:]:
        joined = joined + piece
    return joined


def _outbox_rows(
    settings: Settings,
    *,
    preference: str,
    kind: str,
    text: ReminderText,
    rows: Any,
    values: Values,
    now: datetime,
) -> sa.Select[Any]:
    """The outbox rows (`outbox.LETTER_COLUMNS`) of reminder `text` for each row of `rows`
    (a FROM item with `contract_id`): a letter to the email on file and/or an SMS to the
    phone on file, as the subscriber chose for `preference` (none chosen: EMAIL)."""
    channels = sa.union_all(
        sa.select(sa.literal(outbox.EMAIL, sa.String).label("channel")),
        sa.select(sa.literal(outbox.SMS, sa.String)),
    ).subquery("reminder_channel")
    chosen = sa.func.coalesce(_preferences.c.channel, sa.literal(DEFAULT_CHANNEL, sa.String))
    by_email = channels.c.channel == sa.literal(outbox.EMAIL, sa.String)
    recipient = sa.case((by_email, _subscribers.c.email), else_=_subscribers.c.phone)
    constants = {"operator": settings.operator_name, "link": public_link(settings)}
    filled = values(_contracts, rows)

    def text_of(template: str) -> Any:
        return _filled(template, constants, filled)

    at = sa.literal(now, UTCDateTime)
    return (
        sa.select(
            sa.literal(kind, sa.String),
            channels.c.channel,
            recipient,
            sa.case((by_email, text_of(text.subject)), else_=sa.literal("", sa.String)),
            sa.case((by_email, text_of(text.body_text)), else_=text_of(text.sms)),
            sa.null(),
            at,
            sa.literal(0, sa.Integer),
            at,
        )
        .select_from(
            rows.join(_contracts, _contracts.c.id == rows.c.contract_id)
            .join(_subscribers, _subscribers.c.id == _contracts.c.subscriber_id)
            .join(channels, sa.true())
            .outerjoin(
                _preferences,
                sa.and_(
                    _preferences.c.subscriber_id == _subscribers.c.id,
                    _preferences.c.kind == sa.literal(preference, sa.String),
                ),
            )
        )
        .where(
            sa.or_(chosen == channels.c.channel, chosen == sa.literal("BOTH", sa.String)),
            recipient.is_not(None),
            recipient != sa.literal("", sa.String),
        )
    )


def reminder_insert(
    settings: Settings,
    *,
    preference: str,
    kind: str,
    text: ReminderText,
    rows: Any,
    values: Values,
    now: datetime,
) -> sa.Insert:
    """`INSERT INTO outbox SELECT …`: the reminder for every row of `rows`."""
    return outbox.enqueue_select(
        _outbox_rows(
            settings,
            preference=preference,
            kind=kind,
            text=text,
            rows=rows,
            values=values,
            now=now,
        )
    )


async def _queue_once(
    session: AsyncSession,
    *,
    settings: Settings,
    mark: str,
    candidates: sa.Select[Any],
    preference: str,
    kind: str,
    text: ReminderText,
    values: Values,
    now: datetime,
) -> int:
    """Queue the reminder for each row of `candidates` (contract_id, ref, and what `values`
    reads) not marked yet for (`mark`, ref), and mark it; the number of letters queued."""
    postgresql = session.get_bind().dialect.name == "postgresql"
    # SQLite: a subquery, so that the statement starts with INSERT (Python's sqlite3 counts
    # the rows of a statement that starts with WITH as -1).
    wanted: Any = (
        candidates.cte("reminder_candidate")
        if postgresql
        else candidates.subquery("reminder_candidate")
    )
    mark_rows = sa.select(
        wanted.c.contract_id,
        sa.literal(mark, sa.String),
        wanted.c.ref,
        sa.literal(now, UTCDateTime),
    )
    columns = ["contract_id", "kind", "ref", "created_at"]
    if postgresql:
        marked = (
            pg_insert(_marks)
            .from_select(columns, mark_rows)
            .on_conflict_do_nothing(index_elements=["contract_id", "kind", "ref"])
            .returning(_marks.c.contract_id, _marks.c.ref)
            .cte("reminder_marked")
        )
        rows = (
            sa.select(wanted)
            .join(
                marked,
                sa.and_(marked.c.contract_id == wanted.c.contract_id, marked.c.ref == wanted.c.ref),
            )
            .subquery("reminded")
        )
        insert = reminder_insert(
            settings,
            preference=preference,
            kind=kind,
            text=text,
            rows=rows,
            values=values,
            now=now,
        )
        return rowcount(await session.execute(insert))
    # SQLite: this transaction is the only writer (BEGIN IMMEDIATE, the caller's).
    already = (
        sa.select(sa.literal(1))
        .where(
            _marks.c.contract_id == wanted.c.contract_id,
            _marks.c.kind == sa.literal(mark, sa.String),
            _marks.c.ref == wanted.c.ref,
        )
        .exists()
    )
    rows = sa.select(wanted).where(~already).subquery("reminded")
    queued = rowcount(
        await session.execute(
            reminder_insert(
                settings,
                preference=preference,
                kind=kind,
                text=text,
                rows=rows,
                values=values,
                now=now,
            )
        )
    )
    await session.execute(
        sqlite_insert(_marks)
        # SQLite would read "ON CONFLICT" as a join's ON without the WHERE
        .from_select(columns, mark_rows.where(sa.true()))
        .on_conflict_do_nothing(index_elements=["contract_id", "kind", "ref"])
    )
    return queued


# --------------------------------------------------------------------------- #
# values of the templates
# --------------------------------------------------------------------------- #


def _number_and_balance(contracts: Any, _rows: Any) -> dict[str, Any]:
    return {"number": contracts.c.number, "balance": money_text(contracts.c.balance)}


def _debt(contracts: Any, _rows: Any) -> dict[str, Any]:
    return {"number": contracts.c.number, "debt": money_text(-contracts.c.balance)}


def _low_balance_values(contracts: Any, rows: Any) -> dict[str, Any]:
    return {**_number_and_balance(contracts, rows), "days": rows.c.days}


def _day_values(day: date) -> Values:
    def values(contracts: Any, _rows: Any) -> dict[str, Any]:
        return {"number": contracts.c.number, "date": sa.literal(reminder_date(day), sa.String)}

    return values


def _promise_values(day: date) -> Values:
    def values(contracts: Any, rows: Any) -> dict[str, Any]:
        return {**_day_values(day)(contracts, rows), "amount": money_text(rows.c.amount)}

    return values


# --------------------------------------------------------------------------- #
# suspension and its lifting
# --------------------------------------------------------------------------- #


def suspended_insert(settings: Settings, *, rows: Any, now: datetime) -> sa.Insert:
    """The suspension reminder for each contract of `rows` (a FROM item with `contract_id`:
    the billing day's UPDATE … RETURNING, or the contracts it is about to suspend)."""
    return reminder_insert(
        settings,
        preference=SUSPENSION,
        kind=OUTBOX_SUSPENDED,
        text=SUSPENDED_TEXT,
        rows=rows,
        values=_debt,
        now=now,
    )


def _one_contract(contract_id: int) -> Any:
    return sa.select(sa.literal(contract_id, sa.BigInteger).label("contract_id")).subquery("lifted")


async def queue_resumed(
    session: AsyncSession, *, settings: Settings, contract_id: int, now: datetime | None = None
) -> int:
    """The lifting reminder for a contract whose suspension this transaction lifted."""
    insert = reminder_insert(
        settings,
        preference=SUSPENSION,
        kind=OUTBOX_RESUMED,
        text=RESUMED_TEXT,
        rows=_one_contract(contract_id),
        values=_number_and_balance,
        now=now or utcnow(),
    )
    return rowcount(await session.execute(insert))


async def queue_suspended(
    session: AsyncSession, *, settings: Settings, contract_id: int, now: datetime | None = None
) -> int:
    """The suspension reminder for one contract this transaction suspended (a pause ended
    early below zero)."""
    insert = suspended_insert(settings, rows=_one_contract(contract_id), now=now or utcnow())
    return rowcount(await session.execute(insert))


# --------------------------------------------------------------------------- #
# after the billing day
# --------------------------------------------------------------------------- #


def _days_left_rows(day: date, contracts: Callable[[Any], Any]) -> sa.Subquery:
    """(contract_id, status, days) of the contracts `contracts(id column)` admits that are
    charged on `day`: daysLeft by Balance.daysLeft's rule (`charges.days_left_of`), their
    charges read in one pass (`charges.daily_kopecks_by_contract`), not one per contract."""
    daily = charges.daily_kopecks_by_contract(day, contracts)
    return (
        sa.select(
            _contracts.c.id.label("contract_id"),
            _contracts.c.status,
            charges.days_left_of(_contracts.c.balance, daily.c.kopecks).label("days"),
        )
        .select_from(_contracts.join(daily, daily.c.contract_id == _contracts.c.id))
        .where(contracts(_contracts.c.id))
        .subquery("days_left")
    )


async def queue_low_balance(
    session: AsyncSession, *, settings: Settings, day: date, now: datetime | None = None
) -> int:
    """After the billing day `day`: end the low-balance episode of every contract whose
    daysLeft is back above KABINET_LOW_BALANCE_DAYS (or that is no longer charged), then
    remind every ACTIVE contract at or below it that has no episode open; the letters
    queued."""
    limit = sa.literal(settings.low_balance_days, sa.Integer)
    episodes = sa.select(_marks.c.contract_id).where(
        _marks.c.kind == sa.literal(LOW_BALANCE, sa.String)
    )
    marked = _days_left_rows(day, lambda column: column.in_(episodes))
    still_low = sa.select(marked.c.contract_id).where(marked.c.days <= limit)
    await session.execute(
        sa.delete(_marks).where(
            _marks.c.kind == sa.literal(LOW_BALANCE, sa.String),
            _marks.c.contract_id.not_in(still_low),
        )
    )
    low = _days_left_rows(day, lambda _column: sa.true())
    candidates = sa.select(
        low.c.contract_id, sa.literal("", sa.String).label("ref"), low.c.days
    ).where(low.c.status == "ACTIVE", low.c.days <= limit)
    return await _queue_once(
        session,
        settings=settings,
        mark=LOW_BALANCE,
        candidates=candidates,
        preference=LOW_BALANCE,
        kind=OUTBOX_LOW_BALANCE,
        text=LOW_BALANCE_TEXT,
        values=_low_balance_values,
        now=now or utcnow(),
    )


async def queue_promises_due_tomorrow(
    session: AsyncSession, *, settings: Settings, day: date, now: datetime | None = None
) -> int:
    """On the billing day `day`: remind each OPEN promised payment due on the next day
    (UTC) once; the letters queued."""
    tomorrow = day + timedelta(days=1)
    since = datetime.combine(tomorrow, time(0), UTC)
    candidates = sa.select(
        _promises.c.contract_id,
        (sa.literal("promise:", sa.String) + sa.cast(_promises.c.id, sa.String)).label("ref"),
        _promises.c.amount,
    ).where(
        _promises.c.status == "OPEN",
        _promises.c.due_at >= sa.literal(since, UTCDateTime),
        _promises.c.due_at < sa.literal(since + timedelta(days=1), UTCDateTime),
    )
    return await _queue_once(
        session,
        settings=settings,
        mark=PROMISED_PAYMENT_DUE,
        candidates=candidates,
        preference=PROMISED_PAYMENT_DUE,
        kind=OUTBOX_PROMISE_DUE,
        text=PROMISE_DUE_TEXT,
        values=_promise_values(tomorrow),
        now=now or utcnow(),
    )


async def after_billing_day(
    session: AsyncSession, *, settings: Settings, day: date, now: datetime | None = None
) -> int:
    """The billing day's reminders (its last step, in one transaction): promises due
    tomorrow, low balances. The letters queued. (The pauses' reminders: `queue_pause_starts`,
    `queue_pause_ends`, which the billing day calls in the same transaction.)"""
    now = now or utcnow()
    due = await queue_promises_due_tomorrow(session, settings=settings, day=day, now=now)
    low = await queue_low_balance(session, settings=settings, day=day, now=now)
    return due + low


# --------------------------------------------------------------------------- #
# pauses (called by the pause's own step of the billing day)
# --------------------------------------------------------------------------- #


def _pause_candidates(contract_ids: sa.Select[Any], ref: str) -> sa.Select[Any]:
    listed = contract_ids.subquery("pause_contract")
    first = next(iter(listed.c))
    return sa.select(first.label("contract_id"), sa.literal(ref, sa.String).label("ref"))


async def queue_pause_starts(
    session: AsyncSession,
    *,
    settings: Settings,
    contract_ids: sa.Select[Any],
    starts_on: date,
    now: datetime | None = None,
) -> int:
    """Remind the contracts `contract_ids` selects (one column of contract ids) that their
    pause starts on `starts_on` (the day before it); once per contract and day, whatever
    the number of runs or hosts. The letters queued."""
    return await _queue_once(
        session,
        settings=settings,
        mark=PAUSE,
        candidates=_pause_candidates(contract_ids, f"pause-starts:{starts_on.isoformat()}"),
        preference=PAUSE,
        kind=OUTBOX_PAUSE_STARTS,
        text=PAUSE_STARTS_TEXT,
        values=_day_values(starts_on),
        now=now or utcnow(),
    )


async def queue_pause_ends(
    session: AsyncSession,
    *,
    settings: Settings,
    contract_ids: sa.Select[Any],
    resumes_on: date,
    now: datetime | None = None,
) -> int:
    """Remind the contracts `contract_ids` selects (one column of contract ids) that their
    pause ends and the service resumes on `resumes_on` (the day before it); once per
    contract and day. The letters queued."""
    return await _queue_once(
        session,
        settings=settings,
        mark=PAUSE,
        candidates=_pause_candidates(contract_ids, f"pause-ends:{resumes_on.isoformat()}"),
        preference=PAUSE,
        kind=OUTBOX_PAUSE_ENDS,
        text=PAUSE_ENDS_TEXT,
        values=_day_values(resumes_on),
        now=now or utcnow(),
    )
