"""The voluntary pause ("Интернет-пауза", SPEC §8).

`pause_service` plans a pause of a contract from `starts_on` to `ends_on` (both days
included): 1 to `pause_max_days` (30) days, starting today or within
`pause_start_within_days` (30) days, at least `pause_every_days` (30) days after the last day
of the pause before it (the day it really ended: resumed early, it ended that day), only
for an ACTIVE contract with a balance ≥ 0 and no OPEN promised payment, and only one
planned or running at a time. `cancel_pause` drops a pause that has not started,
`resume_service` ends a running one now.

**The pause's days.** The billing day (resolvers/billing.py) runs `end_pauses` and then
`start_pauses` for day D before it charges D:
- a RUNNING pause whose last day is before D is ENDED and its contract is ACTIVE again, or
  SUSPENDED when its balance is below zero (the pause fee may have taken it there: while
  PAUSED a contract is never suspended);
- a SCHEDULED pause with `starts_on ≤ D ≤ ends_on` whose contract is ACTIVE is RUNNING and
  the contract PAUSED (a contract SUSPENDED or CLOSED on the first day starts its pause on
  the first billing day of the period it is ACTIVE on); one never started by its last day is
  CANCELED;
- a PAUSED contract is charged `pause_daily_fee` (3.00) a day instead of its monthly fees
  (`resolvers.billing._due`), a CHARGE entry idempotent per contract and day like the others.
A pause asked for from today starts at once (the contract is PAUSED when the request
commits): today is charged the pause fee by today's billing day, or was charged in full when
that ran before the request.

**Events (SPEC §9, docs/events.md).** Each start of a pause records `contract.paused`, each
end `contract.pause_ended` (and `contract.suspended` when it ends below zero: the network
must block it), in the transaction of the change: the verbs one row each, the billing day
one INSERT … SELECT from exactly the rows its UPDATE changed (`events.update_with_events`),
so a second run of the day, at once or after, reports nothing twice.

**Concurrency.** The verbs lock the contract's row first (PostgreSQL `FOR UPDATE`; SQLite
serialises writers with BEGIN IMMEDIATE) and the partial unique index
`uq_contract_pauses_open` admits one planned or running pause per contract (a twin that
slips past becomes CONFLICT). The billing day's transitions lock the rows of the contracts
whose pauses they may change first (one `SELECT … FOR UPDATE`, in id order as every writer
takes them), so they wait for a verb changing one of those pauses, and for a second run of
the day; their UPDATEs then read (READ COMMITTED: each statement sees what committed before
it) what those committed - a pause cancelled or resumed meanwhile, a contract paused
already - and change nothing twice. (Without the lock an UPDATE that waited for a row would
re-check the row, not the pause its condition read before the wait.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import begin_write
from core.errors import DomainError, ErrorCode, InputProblems
from core.settings import Settings
from core.views import Filter
from models import Contract, ContractPause
from models.base import table_of, utcnow
from resolvers import events, reminders
from resolvers.promised import open_promises

_pauses = table_of(ContractPause)
_contracts = table_of(Contract)

OPEN_STATUSES = ("SCHEDULED", "RUNNING")
CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class PauseResult:
    """What a pause verb did: the pause's row and whether the contract's status changed
    (`paused`: it is PAUSED now; `pause_ended`: it is ACTIVE or SUSPENDED again)."""

    pause_id: int
    contract_id: int
    status: str
    starts_on: date
    ends_on: date
    paused: bool = False
    pause_ended: bool = False
    contract_status: str | None = None


# --------------------------------------------------------------------------- #
# the verbs
# --------------------------------------------------------------------------- #


def _check_period(settings: Settings, *, starts_on: date, ends_on: date, today: date) -> None:
    """The values of the request: every problem at once."""
    problems = InputProblems()
    if starts_on < today:
        problems.add(
            DomainError(ErrorCode.INVALID, "A pause cannot start in the past.", field="from")
        )
    elif starts_on > today + timedelta(days=settings.pause_start_within_days):
        problems.add(
            DomainError(
                ErrorCode.INVALID,
                f"A pause starts today or within {settings.pause_start_within_days} days.",
                field="from",
            )
        )
    if ends_on < starts_on:
        problems.add(
            DomainError(ErrorCode.INVALID, "A pause cannot end before it starts.", field="to")
        )
    elif (ends_on - starts_on).days + 1 > settings.pause_max_days:
        problems.add(
            DomainError(
                ErrorCode.INVALID,
                f"A pause lasts 1 to {settings.pause_max_days} days.",
                field="to",
            )
        )
    problems.raise_found()


async def _lock_contract(session: AsyncSession, contract_id: int) -> Any:
    row = (
        await session.execute(
            sa.select(
                _contracts.c.id, _contracts.c.number, _contracts.c.status, _contracts.c.balance
            )
            .where(_contracts.c.id == contract_id)
            .with_for_update()
        )
    ).first()
    if row is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such contract.", field="contractNumber")
    return row


async def _pauses_of(session: AsyncSession, contract_id: int) -> list[Any]:
    """The contract's open pause (if any) and the last one that ended, newest first."""
    return list(
        (
            await session.execute(
                sa.select(_pauses)
                .where(
                    _pauses.c.contract_id == contract_id,
                    _pauses.c.status.in_((*OPEN_STATUSES, "ENDED")),
                )
                .order_by(_pauses.c.starts_on.desc(), _pauses.c.id.desc())
                .limit(2)
            )
        ).all()
    )


def _below_zero(balance: Any) -> bool:
    # SQLite keeps NUMERIC as REAL: rounded to kopecks before the comparison.
    return round(float(balance), 2) < 0


async def pause_service(
    session: AsyncSession,
    *,
    settings: Settings,
    contract_id: int,
    starts_on: date,
    ends_on: date,
    actor: str,
    today: date | None = None,
    now: datetime | None = None,
) -> PauseResult:
    """Plan a pause (SPEC §8); from today it starts at once. Every refusal the request
    meets is reported at once (the values first: when they are wrong, the contract's state is
    not looked at)."""
    now = now or utcnow()
    day = today or now.date()
    _check_period(settings, starts_on=starts_on, ends_on=ends_on, today=day)
    await begin_write(session)
    contract = await _lock_contract(session, contract_id)
    problems = InputProblems()
    pauses = await _pauses_of(session, contract_id)
    open_pause = next((p for p in pauses if p.status in OPEN_STATUSES), None)
    if contract.status == "CLOSED":
        problems.add(DomainError(ErrorCode.NOT_ELIGIBLE, "The contract is closed."))
    elif open_pause is not None:
        problems.add(
            DomainError(
                ErrorCode.CONFLICT,
                f"A pause from {open_pause.starts_on.isoformat()} to "
                f"{open_pause.ends_on.isoformat()} is "
                + (
                    "running: resume the service first."
                    if open_pause.status == "RUNNING"
                    else "planned already: cancel it first."
                ),
            )
        )
    elif contract.status == "SUSPENDED":
        problems.add(
            DomainError(
                ErrorCode.NOT_ELIGIBLE,
                "The contract is suspended for non-payment: top up to pause it.",
            )
        )
    if _below_zero(contract.balance):
        problems.add(
            DomainError(ErrorCode.INSUFFICIENT_FUNDS, "The balance is below zero: top up first.")
        )
    if contract_id in await open_promises(session, [contract_id]):
        problems.add(
            DomainError(
                ErrorCode.NOT_ELIGIBLE,
                "A promised payment is open: repay it before pausing the service.",
            )
        )
    last = next((p for p in pauses if p.status == "ENDED"), None)
    if last is not None and open_pause is None:
        earliest = last.ended_on + timedelta(days=settings.pause_every_days)
        if starts_on < earliest:
            problems.add(
                DomainError(
                    ErrorCode.NOT_ELIGIBLE,
                    f"One pause per {settings.pause_every_days} days: the next one can "
                    f"start on {earliest.isoformat()} or later.",
                    field="from",
                )
            )
    problems.raise_found()

    starts_now = starts_on == day and contract.status == "ACTIVE"
    try:
        pause_id = (
            await session.execute(
                sa.insert(_pauses)
                .values(
                    contract_id=contract_id,
                    starts_on=starts_on,
                    ends_on=ends_on,
                    status="RUNNING" if starts_now else "SCHEDULED",
                    actor=actor,
                    created_at=now,
                )
                .returning(_pauses.c.id)
            )
        ).scalar_one()
    except IntegrityError:
        raise DomainError(ErrorCode.CONFLICT, "A pause was planned meanwhile.") from None
    if starts_now:
        # A pause from today starts at once.
        await session.execute(
            sa.update(_contracts).where(_contracts.c.id == contract_id).values(status="PAUSED")
        )
        await events.record_event(
            session,
            "contract.paused",
            contract_number=contract.number,
            data={"status": "PAUSED", "from": starts_on, "to": ends_on},
            at=now,
        )
    return PauseResult(
        pause_id=pause_id,
        contract_id=contract_id,
        status="RUNNING" if starts_now else "SCHEDULED",
        starts_on=starts_on,
        ends_on=ends_on,
        paused=starts_now,
        contract_status="PAUSED" if starts_now else contract.status,
    )


async def resume_service(
    session: AsyncSession,
    *,
    settings: Settings,
    contract_id: int,
    today: date | None = None,
    now: datetime | None = None,
) -> PauseResult:
    """End the running pause now: the contract is ACTIVE again (SUSPENDED when its balance
    is below zero). Today stays as the billing day charged it (or charges it: in full)."""
    now = now or utcnow()
    day = today or now.date()
    await begin_write(session)
    contract = await _lock_contract(session, contract_id)
    pauses = await _pauses_of(session, contract_id)
    running = next((p for p in pauses if p.status == "RUNNING"), None)
    if running is None:
        if any(p.status == "SCHEDULED" for p in pauses):
            raise DomainError(
                ErrorCode.NOT_ELIGIBLE, "The pause has not started yet: cancel it instead."
            )
        raise DomainError(ErrorCode.NOT_FOUND, "No pause is running.")
    ended_on = max(day, running.starts_on)
    await session.execute(
        sa.update(_pauses)
        .where(_pauses.c.id == running.id)
        .values(status="ENDED", ended_on=ended_on, ended_at=now)
    )
    status = contract.status
    if status == "PAUSED":
        status = "SUSPENDED" if _below_zero(contract.balance) else "ACTIVE"
        await session.execute(
            sa.update(_contracts).where(_contracts.c.id == contract_id).values(status=status)
        )
        await events.record_event(
            session,
            "contract.pause_ended",
            contract_number=contract.number,
            data={
                "status": status,
                "from": running.starts_on,
                "to": running.ends_on,
                "endedOn": ended_on,
            },
            at=now,
        )
        if status == "SUSPENDED":
            # The network must block it (the billing day's end of a pause does the same).
            await events.record_event(
                session,
                "contract.suspended",
                contract_number=contract.number,
                data={
                    "status": "SUSPENDED",
                    "reason": "DEBT",
                    "balance": Decimal(str(contract.balance)).quantize(CENT),
                },
                at=now,
            )
            await reminders.queue_suspended(
                session, settings=settings, contract_id=contract_id, now=now
            )
    return PauseResult(
        pause_id=running.id,
        contract_id=contract_id,
        status="ENDED",
        starts_on=running.starts_on,
        ends_on=running.ends_on,
        pause_ended=contract.status == "PAUSED",
        contract_status=status,
    )


async def cancel_pause(
    session: AsyncSession,
    *,
    settings: Settings,
    contract_id: int,
    now: datetime | None = None,
) -> PauseResult:
    """Drop the planned pause before it starts."""
    del settings
    now = now or utcnow()
    await begin_write(session)
    contract = await _lock_contract(session, contract_id)
    pauses = await _pauses_of(session, contract_id)
    planned = next((p for p in pauses if p.status == "SCHEDULED"), None)
    if planned is None:
        if any(p.status == "RUNNING" for p in pauses):
            raise DomainError(
                ErrorCode.NOT_ELIGIBLE, "The pause has started: resume the service instead."
            )
        raise DomainError(ErrorCode.NOT_FOUND, "No pause is planned.")
    await session.execute(
        sa.update(_pauses).where(_pauses.c.id == planned.id).values(status="CANCELED", ended_at=now)
    )
    return PauseResult(
        pause_id=planned.id,
        contract_id=contract_id,
        status="CANCELED",
        starts_on=planned.starts_on,
        ends_on=planned.ends_on,
        contract_status=contract.status,
    )


# --------------------------------------------------------------------------- #
# the billing day (set-based; in the caller's writing transaction)
# --------------------------------------------------------------------------- #


def _non_negative(balance: Any, dialect: str) -> Any:
    # SQLite keeps NUMERIC as REAL: 0.1 + 0.2 - 0.3 must count as zero, not as a debt.
    return sa.func.round(balance, 2) if dialect == "sqlite" else balance


async def _lock_contracts_with(session: AsyncSession, pauses: Any) -> None:
    """Lock the rows of the contracts that have a pause `pauses` admits (PostgreSQL; SQLite
    has one writer at a time)."""
    await session.execute(
        sa.select(_contracts.c.id)
        .where(_contracts.c.id.in_(sa.select(_pauses.c.contract_id).where(pauses)))
        .order_by(_contracts.c.id)
        .with_for_update()
    )


def _dates(pause: Any) -> tuple[Any, ...]:
    """The pause's days as JSON pairs ("YYYY-MM-DD" on both databases)."""
    return (
        "from",
        sa.cast(pause.c.starts_on, sa.String),
        "to",
        sa.cast(pause.c.ends_on, sa.String),
    )


def _suspended_rows(rows: Any, dialect: str) -> sa.Select[Any]:
    """(number, data) of `contract.suspended` for the rows of `rows` below zero: a pause that
    ends in SUSPENDED (the network must block it)."""
    return sa.select(
        rows.c.number,
        events.json_object(
            "status", "SUSPENDED", "reason", "DEBT", "balance", events.money_text(rows.c.balance)
        ),
    ).where(_non_negative(rows.c.balance, dialect) < 0)


async def end_pauses(
    session: AsyncSession, *, settings: Settings, day: date, now: datetime, dialect: str
) -> int:
    """Day `day`: every RUNNING pause whose last day is before it ends; its contract is
    ACTIVE again, or SUSPENDED when below zero. Each contract whose pause ended gets its
    §9 "contract.pause_ended" (and "contract.suspended" when it is SUSPENDED again) in this
    transaction, from the rows the UPDATE changed (`events.update_with_events`). Returns how
    many contracts."""
    await _lock_contracts_with(
        session, sa.and_(_pauses.c.status == "RUNNING", _pauses.c.ends_on < day)
    )
    over = (
        sa.select(sa.literal(1))
        .where(
            _pauses.c.contract_id == _contracts.c.id,
            _pauses.c.status == "RUNNING",
            _pauses.c.ends_on < day,
        )
        .exists()
    )
    back = sa.case(
        (_non_negative(_contracts.c.balance, dialect) >= 0, "ACTIVE"),
        else_="SUSPENDED",
    )
    ending = _pauses.alias("ending")

    def ended_event(source: Any, status: Any) -> sa.Select[Any]:
        return sa.select(
            source.c.number,
            events.json_object(
                "status",
                status,
                *_dates(ending),
                "endedOn",
                sa.cast(ending.c.ends_on, sa.String),
            ),
        ).join_from(
            source,
            ending,
            sa.and_(
                ending.c.contract_id == source.c.id,
                ending.c.status == "RUNNING",
                ending.c.ends_on < day,
            ),
        )

    where = (_contracts.c.status == "PAUSED", over)
    ended = await events.update_with_events(
        session,
        "contract.pause_ended",
        table=_contracts,
        where=where,
        values={"status": back},
        rows_before=lambda: ended_event(_contracts, back).where(*where),
        rows_after=lambda changed: ended_event(changed, changed.c.status),
        at=now,
        also=lambda rows: [
            events.events_insert_from("contract.suspended", _suspended_rows(rows, dialect), at=now),
            # and the subscriber's suspension reminder (SPEC §8)
            reminders.suspended_insert(
                settings,
                rows=sa.select(rows.c.id.label("contract_id"))
                .where(_non_negative(rows.c.balance, dialect) < 0)
                .subquery("suspended_again"),
                now=now,
            ),
        ],
    )
    # Every pause over by `day`, also one whose contract is no longer PAUSED (closed).
    await session.execute(
        sa.update(_pauses)
        .where(_pauses.c.status == "RUNNING", _pauses.c.ends_on < day)
        .values(status="ENDED", ended_on=_pauses.c.ends_on, ended_at=now)
    )
    return ended


async def start_pauses(session: AsyncSession, *, day: date, now: datetime) -> int:
    """Day `day`: every SCHEDULED pause covering it whose contract is ACTIVE starts (the
    contract is PAUSED), with its §9 "contract.paused" in this transaction, from the rows
    the UPDATE changed; one whose last day has passed without starting is CANCELED.
    Returns how many contracts were paused."""
    covering = sa.and_(
        _pauses.c.status == "SCHEDULED", _pauses.c.starts_on <= day, _pauses.c.ends_on >= day
    )
    await _lock_contracts_with(session, covering)
    due = sa.select(sa.literal(1)).where(_pauses.c.contract_id == _contracts.c.id, covering)
    starting = _pauses.alias("starting")

    def paused_event(source: Any) -> sa.Select[Any]:
        return sa.select(
            source.c.number, events.json_object("status", "PAUSED", *_dates(starting))
        ).join_from(
            source,
            starting,
            sa.and_(
                starting.c.contract_id == source.c.id,
                starting.c.status == "SCHEDULED",
                starting.c.starts_on <= day,
                starting.c.ends_on >= day,
            ),
        )

    where = (_contracts.c.status == "ACTIVE", due.exists())
    paused = await events.update_with_events(
        session,
        "contract.paused",
        table=_contracts,
        where=where,
        values={"status": "PAUSED"},
        rows_before=lambda: paused_event(_contracts).where(*where),
        rows_after=paused_event,
        at=now,
    )
    is_paused = (
        sa.select(sa.literal(1))
        .where(_contracts.c.id == _pauses.c.contract_id, _contracts.c.status == "PAUSED")
        .exists()
    )
    await session.execute(sa.update(_pauses).where(covering, is_paused).values(status="RUNNING"))
    await session.execute(
        sa.update(_pauses)
        .where(_pauses.c.status == "SCHEDULED", _pauses.c.ends_on < day)
        .values(status="CANCELED", ended_at=now)
    )
    return paused


# --------------------------------------------------------------------------- #
# reading
# --------------------------------------------------------------------------- #


def pause_rows(keep: Filter) -> sa.Select[Any]:
    """The pause planned or running of each contract `keep(contract_id)` admits
    (`Contract.pause`: resolvers/views.py)."""
    return sa.select(
        _pauses.c.id,
        _pauses.c.contract_id,
        _pauses.c.starts_on,
        _pauses.c.ends_on,
        _pauses.c.status,
    ).where(
        keep(_pauses.c.contract_id),
        # literals, not an IN list's parameters: the statement is compiled once for all
        sa.or_(*(_pauses.c.status == sa.literal_column(f"'{s}'") for s in OPEN_STATUSES)),
    )


def pauses_starting(day: date) -> sa.Select[Any]:
    """(contract_id, pause id, starts_on, ends_on) of the pauses planned to start on `day`:
    a reminder "your pause starts tomorrow" selects `pauses_starting(today + 1)`."""
    return sa.select(
        _pauses.c.contract_id, _pauses.c.id, _pauses.c.starts_on, _pauses.c.ends_on
    ).where(_pauses.c.status == "SCHEDULED", _pauses.c.starts_on == day)


def pauses_ending(day: date) -> sa.Select[Any]:
    """(contract_id, pause id, starts_on, ends_on) of the running pauses whose last day is
    `day`: a reminder "your pause ends tomorrow" selects `pauses_ending(today + 1)` (or
    `pauses_ending(today)`, "ends today, the service is back tomorrow")."""
    return sa.select(
        _pauses.c.contract_id, _pauses.c.id, _pauses.c.starts_on, _pauses.c.ends_on
    ).where(_pauses.c.status == "RUNNING", _pauses.c.ends_on == day)
