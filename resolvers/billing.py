"""The billing day (SPEC §3 "Money"): `kabinet billing run [--date D]`.

For day D, in this order:

0. **Pauses** (SPEC §8, resolvers/pause.py): running pauses whose last day is before D end
   (the contract ACTIVE again, or SUSPENDED below zero), then planned pauses covering D
   start (ACTIVE → PAUSED): two conditional UPDATEs of the contracts and their pauses' rows,
   in one transaction. A second run at the same time waits on the contracts' row locks and
   then finds nothing left to change.
a. **Charge** every ACTIVE contract opened by D and not yet charged for D the day's share of
   each of its monthly fees (`resolvers.charges`: Σ per item of fee / days in the month,
   half-up to kopecks), and every PAUSED one `pause_daily_fee` (3.00) instead. Set-based,
   by ranges of contract ids (`chunk_size` contracts per transaction, so that a million
   contracts never sit in one transaction):
   - PostgreSQL: one statement per range,
     `WITH due AS (…), charged AS (INSERT INTO billing_charges … ON CONFLICT DO NOTHING
     RETURNING …), debited AS (UPDATE contracts SET balance = balance - charged.amount
     FROM charged … RETURNING balance), entries AS (INSERT INTO ledger_entries SELECT …
     FROM debited RETURNING amount) SELECT counts`, the last two the ledger's own parts
     (`ledger.posting`). Only what the INSERT really inserted
     is debited, so a repeated or concurrent run charges once; the UPDATE re-reads each
     row it locks, so a top-up committed meanwhile is kept, and `balance_after` is the
     balance the UPDATE returned. (A contract in the range whose status changes during the
     statement is charged on the status it had when the statement began.)
   - SQLite: the same in four statements inside one BEGIN IMMEDIATE transaction (SQLite has
     one writer at a time), through a temporary table of the range's charges; the debit and
     its entries are the ledger's builders (`ledger.balance_change`, `ledger.entry_insert`).
   A contract whose charge is zero gets its `billing_charges` mark and no ledger entry.
   On PostgreSQL `billing_parallel` ranges are charged at once, each in its own transaction
   on its own connection: ranges are disjoint sets of contracts, so they never wait for each
   other, and the server's cores share the work (a range's statement runs on one core).
b. **Settle** promised payments whose `due_at` has passed (by the end of D, and never before
   the run's own time: a promise is not debited before it is due): each is claimed with a
   conditional UPDATE (`status = 'OPEN'`) after its contract's row is locked, so a top-up
   repaying it concurrently (`resolvers.promised.repay_open_promise`) and the settlement
   never both debit it. The debit is one `ledger.post` per promise: a Python loop over the
   due promises (a few per day), in transactions of `SETTLE_BATCH` promises. A promise whose
   contract is below zero after the debit is OVERDUE, otherwise REPAID. OVERDUE promises
   whose contract is back to ≥ 0 (the debt was paid) become REPAID (one UPDATE).
c. **Suspend** ACTIVE contracts whose balance is below zero (one UPDATE), after closing the
   socially significant access of contracts no longer suspended (resolvers/social_access.py:
   a suspension from today on is a new episode), and queue each one's reminder in the same
   transaction (resolvers/reminders.py). A PAUSED contract is not suspended: its pause's end
   does it.
d. **Autopay** (`resolvers.autopay.run_autopay`, SPEC §7): the contracts whose rule fires
   after the day's charges get one autopay payment each (set-based, at most one per
   contract and day on any number of hosts), charged at the provider after it commits.
e. **Remind** (SPEC §8, resolvers/reminders.py, one transaction): promised payments due
   tomorrow, and contracts whose `daysLeft` is at or below KABINET_LOW_BALANCE_DAYS (once
   per episode), after autopay had its chance. Each is one INSERT … SELECT into the outbox,
   once whatever the reruns.

Balances only ever change as `balance = balance ± x` inside UPDATEs, never from values read
earlier, so top-ups may run at the same time.

The service's connections plan statements generically (kabinet/db.py: the short reads of a
request); the billing day's few large statements are planned for their real parameters
(`SET LOCAL plan_cache_mode = force_custom_plan`): a generic plan cannot see that no bonus
point expires today and reads all of `bonus_entries` instead of its `expires_at` index.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from decimal import Decimal
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.db import begin_write, create_session_factory, rowcount, unit_of_work
from core.ids import to_global_id
from core.settings import Settings
from models import BillingCharge, Contract, PromisedPayment
from models.base import UTCDateTime, table_of, utcnow
from resolvers import bonus, events, ledger, pause, reminders, services, social_access
from resolvers.autopay import AutopaySummary, run_autopay
from resolvers.charges import charge_items, daily_kopecks

log = logging.getLogger("kabinet.billing")

CHUNK_SIZE = 20_000
SETTLE_BATCH = 500
ACTOR = "system:billing"
CENT = Decimal("0.01")
# Deadlock / serialization failure: the range's transaction is retried as a whole.
RETRYABLE_SQLSTATES = {"40P01", "40001"}
RETRIES = 5
# The scheduler inside `serve`: a failed run is tried again after RETRY_SECONDS; it wakes at
# least hourly, so that a changed clock (or a suspended machine) is noticed.
RETRY_SECONDS = 300.0
MAX_SLEEP_SECONDS = 3600.0

_contracts = table_of(Contract)
_charges = table_of(BillingCharge)
_promises = table_of(PromisedPayment)

# SQLite: the charges of one range, in one transaction (a connection's own temp table).
_DUE_TABLE = "kabinet_billing_due"
_due_table = sa.table(
    _DUE_TABLE, sa.column("contract_id", sa.Integer), sa.column("kopecks", sa.Integer)
)


@dataclass(frozen=True, slots=True)
class BillingSummary:
    day: date
    contracts_charged: int  # contracts debited a non-zero charge by this run
    total_charged: Decimal
    promises_settled: int  # promises debited at their due time by this run (REPAID or OVERDUE)
    promises_overdue: int  # of those, the ones left OVERDUE (balance below zero after)
    contracts_suspended: int
    seconds: float
    contracts_zero: int = 0  # ACTIVE contracts with nothing to charge (marked, no entry)
    overdue_cleared: int = 0  # OVERDUE promises of contracts back to ≥ 0, now REPAID
    points_expired: int = 0  # bonus points 12 months old, expired by this run
    pauses_started: int = 0  # contracts PAUSED by this run
    pauses_ended: int = 0  # contracts back from a pause by this run (ACTIVE or SUSPENDED)
    reminders_queued: int = 0  # letters and SMS: promises due, low balances, pauses
    autopay: AutopaySummary = field(default_factory=AutopaySummary)  # after the day

    def lines(self) -> list[str]:
        return [
            f"billing day {self.day.isoformat()}",
            f"  contracts charged   : {self.contracts_charged} "
            f"(and {self.contracts_zero} with nothing to charge)",
            f"  total charged       : {self.total_charged:.2f} RUB",
            f"  promises settled    : {self.promises_settled} "
            f"({self.promises_overdue} overdue, {self.overdue_cleared} overdue now repaid)",
            f"  contracts suspended : {self.contracts_suspended}",
            f"  pauses              : {self.pauses_started} started, {self.pauses_ended} ended",
            f"  bonus points expired: {self.points_expired}",
            f"  autopay payments    : {self.autopay.created} "
            f"({self.autopay.succeeded} succeeded, {self.autopay.failed} failed, "
            f"{self.autopay.pending} pending)",
            f"  reminders queued    : {self.reminders_queued} (promises, low balances, pauses)",
            f"  seconds             : {self.seconds:.2f}",
        ]


@dataclass(frozen=True, slots=True)
class BillingProgress:
    day: date
    step: str  # "charge", "settle", "suspend"
    done: int  # ranges (charge) or promises (settle) done so far
    total: int
    contracts_charged: int
    total_charged: Decimal

    def __str__(self) -> str:
        return (
            f"billing {self.day.isoformat()}: {self.step} {self.done}/{self.total}"
            f" - {self.contracts_charged} contracts charged, {self.total_charged:.2f} RUB"
        )


ProgressFn = Callable[[BillingProgress], None]
SessionFactory = async_sessionmaker[AsyncSession]


def _factory(session_factory_or_engine: Any) -> SessionFactory:
    if isinstance(session_factory_or_engine, AsyncEngine):
        return create_session_factory(session_factory_or_engine)
    return session_factory_or_engine


def _retryable(error: DBAPIError) -> bool:
    orig = error.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code in RETRYABLE_SQLSTATES


_CUSTOM_PLANS = sa.text("SET LOCAL plan_cache_mode = force_custom_plan")


async def _plan_for_parameters(session: AsyncSession) -> None:
    """This transaction's statements planned for their parameters (see the module doc)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(_CUSTOM_PLANS)


async def _in_write_transaction(
    factory: SessionFactory, work: Callable[[AsyncSession], Any]
) -> Any:
    """Run `work(session)` in a unit of work of its own (one batch, committed when it is
    done), retried on a deadlock."""
    for attempt in range(RETRIES):
        try:
            async with unit_of_work(factory) as session:
                await begin_write(session)
                await _plan_for_parameters(session)
                return await work(session)
        except DBAPIError as error:
            if not _retryable(error) or attempt == RETRIES - 1:
                raise
            log.warning("billing: transaction retried after %s", type(error.orig).__name__)
        await asyncio.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def end_of_day(day: date) -> datetime:
    """The first instant after `day` (UTC): things due by the end of `day` are due before it."""
    return datetime.combine(day + timedelta(days=1), clock_time(0), UTC)


# --------------------------------------------------------------------------- #
# a. charges
# --------------------------------------------------------------------------- #


def _due(day: date, low: int, high: int, pause_kopecks: int) -> sa.Subquery:
    """(contract_id, kopecks) of every ACTIVE or PAUSED contract in [low, high) opened by
    `day` and not charged for `day` yet; 0 kopecks when it has nothing to pay for. A PAUSED
    contract pays `pause_kopecks` instead of its items."""
    items = charge_items(day, lambda column: sa.and_(column >= low, column < high))
    per_contract = (
        sa.select(
            items.c.contract_id,
            sa.func.sum(daily_kopecks(items.c.monthly_fee, day)).label("kopecks"),
        )
        .group_by(items.c.contract_id)
        .subquery("per_contract")
    )
    charged_already = (
        sa.select(sa.literal(1))
        .where(
            _charges.c.contract_id == _contracts.c.id,
            _charges.c.day == day,
            # the range again: billing_charges grows by a row per contract a day, and its
            # primary key (contract_id, day) is then read for the range, not scanned whole
            _charges.c.contract_id >= low,
            _charges.c.contract_id < high,
        )
        .exists()
    )
    return (
        sa.select(
            _contracts.c.id.label("contract_id"),
            sa.cast(
                sa.case(
                    (_contracts.c.status == "PAUSED", sa.literal(pause_kopecks, sa.BigInteger)),
                    else_=sa.func.coalesce(per_contract.c.kopecks, 0),
                ),
                sa.BigInteger,
            ).label("kopecks"),
        )
        .select_from(
            _contracts.outerjoin(per_contract, per_contract.c.contract_id == _contracts.c.id)
        )
        .where(
            _contracts.c.id >= low,
            _contracts.c.id < high,
            _contracts.c.status.in_(("ACTIVE", "PAUSED")),
            _contracts.c.opened_on <= day,
            ~charged_already,
        )
        .subquery("due")
    )


def _rubles(kopecks: Any) -> Any:
    # 100.0 is NUMERIC on PostgreSQL and REAL on SQLite: never an integer division.
    return kopecks / sa.literal_column("100.0", sa.Numeric(12, 2))


def _ledger_values(day: date, now: datetime) -> dict[str, Any]:
    return {
        "kind": sa.literal("CHARGE", sa.String),
        "description": sa.literal(f"Абонентская плата за {day.isoformat()}", sa.String),
        "reference": sa.literal(f"billing:{day.isoformat()}", sa.String),
        "actor": sa.literal(ACTOR, sa.String),
        "created_at": sa.literal(now, UTCDateTime),
    }


@dataclass(frozen=True, slots=True)
class _Charged:
    contracts: int
    kopecks: int
    zero: int


async def _charge_range_postgresql(
    session: AsyncSession, *, day: date, low: int, high: int, now: datetime, pause_kopecks: int
) -> _Charged:
    due = _due(day, low, high, pause_kopecks)
    charged = (
        pg_insert(_charges)
        .from_select(
            ["contract_id", "day", "amount", "created_at"],
            sa.select(
                due.c.contract_id,
                sa.literal(day, sa.Date),
                _rubles(due.c.kopecks),
                sa.literal(now, UTCDateTime),
            ).order_by(due.c.contract_id),
        )
        .on_conflict_do_nothing(index_elements=["contract_id", "day"])
        .returning(_charges.c.contract_id, _charges.c.amount)
        .cte("charged")
    )
    _debited, entries = ledger.posting(
        contract_id=charged.c.contract_id,
        amount=-charged.c.amount,
        values=_ledger_values(day, now),
        # the range again, so that the contracts are found by the primary key
        when=sa.and_(charged.c.amount > 0, _contracts.c.id >= low, _contracts.c.id < high),
        name="debited",
    )
    row = (
        await session.execute(
            sa.select(
                sa.select(sa.func.count()).select_from(entries).scalar_subquery(),
                sa.select(sa.func.coalesce(sa.func.sum(-entries.c.amount), 0))
                .select_from(entries)
                .scalar_subquery(),
                sa.select(sa.func.count())
                .select_from(charged)
                .where(charged.c.amount == 0)
                .scalar_subquery(),
            )
        )
    ).one()
    return _Charged(int(row[0]), int(Decimal(row[1]) * 100), int(row[2]))


async def _charge_range_sqlite(
    session: AsyncSession, *, day: date, low: int, high: int, now: datetime, pause_kopecks: int
) -> _Charged:
    # One writer at a time (BEGIN IMMEDIATE): what the temp table holds is exactly what this
    # transaction inserts into billing_charges, so it drives the debit and the ledger.
    await session.execute(
        sa.text(
            f"CREATE TEMP TABLE IF NOT EXISTS {_DUE_TABLE} "
            "(contract_id INTEGER PRIMARY KEY, kopecks INTEGER NOT NULL)"
        )
    )
    await session.execute(sa.delete(_due_table))
    due = _due(day, low, high, pause_kopecks)
    await session.execute(
        sa.insert(_due_table).from_select(
            ["contract_id", "kopecks"], sa.select(due.c.contract_id, due.c.kopecks)
        )
    )
    await session.execute(
        sqlite_insert(_charges)
        .from_select(
            ["contract_id", "day", "amount", "created_at"],
            sa.select(
                _due_table.c.contract_id,
                sa.literal(day, sa.Date),
                _rubles(_due_table.c.kopecks),
                sa.literal(now, UTCDateTime),
            ).where(sa.true()),  # SQLite would read "ON CONFLICT" as a join's ON without it
        )
        .on_conflict_do_nothing(index_elements=["contract_id", "day"])
    )
    debit = -_rubles(_due_table.c.kopecks)
    await session.execute(
        ledger.balance_change(_due_table.c.contract_id, debit, when=_due_table.c.kopecks > 0)
    )
    await session.execute(
        ledger.entry_insert(
            {
                **_ledger_values(day, now),
                "contract_id": _due_table.c.contract_id,
                "amount": debit,
                "balance_after": _contracts.c.balance,
            },
            when=sa.and_(_contracts.c.id == _due_table.c.contract_id, _due_table.c.kopecks > 0),
            order_by=_due_table.c.contract_id,
        )
    )
    positive = _due_table.c.kopecks > 0
    row = (
        await session.execute(
            sa.select(
                sa.func.count().filter(positive),
                sa.func.coalesce(sa.func.sum(_due_table.c.kopecks), 0),
                sa.func.count().filter(sa.not_(positive)),
            )
        )
    ).one()
    await session.execute(sa.text(f"DROP TABLE IF EXISTS temp.{_DUE_TABLE}"))
    return _Charged(int(row[0]), int(row[1]), int(row[2]))


# --------------------------------------------------------------------------- #
# b. promised payments due
# --------------------------------------------------------------------------- #


@dataclass(frozen=True, slots=True)
class _Settled:
    settled: int
    overdue: int


async def _settle_batch(
    session: AsyncSession, *, promises: list[tuple[int, int]], due_by: datetime, now: datetime
) -> _Settled:
    """Debit each promise still OPEN and due, in contract-id order (the order every writer
    takes contract locks in: contract first, then its promise, as a top-up does)."""
    contract_ids = sorted({contract_id for _, contract_id in promises})
    locked = await session.execute(
        sa.select(_contracts.c.id, _contracts.c.number)
        .where(_contracts.c.id.in_(contract_ids))
        .order_by(_contracts.c.id)
        .with_for_update()
    )
    numbers = {row.id: row.number for row in locked}
    claimed = (
        await session.execute(
            sa.update(_promises)
            .where(
                _promises.c.id.in_([promise_id for promise_id, _ in promises]),
                _promises.c.status == "OPEN",
                _promises.c.due_at < due_by,
            )
            .values(status="REPAID", settled_at=now)
            .returning(
                _promises.c.id, _promises.c.contract_id, _promises.c.amount, _promises.c.due_at
            )
        )
    ).all()
    overdue: list[int] = []
    for promise in sorted(claimed, key=lambda p: p.contract_id):
        posted = await ledger.post(
            session,
            contract_id=promise.contract_id,
            kind="PROMISED_PAYMENT_REPAYMENT",
            amount=-Decimal(str(promise.amount)),
            actor=ACTOR,
            description="Списание обещанного платежа по истечении срока",
            reference=f"promise:{promise.id}",
            at=now,
        )
        if posted.balance_after < 0:
            overdue.append(promise.id)
            await events.record_event(
                session,
                "promised_payment.overdue",
                contract_number=numbers.get(promise.contract_id),
                data={
                    "promisedPaymentId": to_global_id("PromisedPayment", promise.id),
                    "amount": Decimal(str(promise.amount)).quantize(CENT),
                    "dueAt": promise.due_at,
                    "balance": posted.balance_after,
                },
                at=now,
            )
    if overdue:
        await session.execute(
            sa.update(_promises).where(_promises.c.id.in_(overdue)).values(status="OVERDUE")
        )
    return _Settled(len(claimed), len(overdue))


def _non_negative(balance: Any, dialect: str) -> Any:
    # SQLite keeps NUMERIC as REAL: 0.1 + 0.2 - 0.3 must count as zero, not as a debt.
    return sa.func.round(balance, 2) if dialect == "sqlite" else balance


async def _clear_paid_overdue(session: AsyncSession, *, dialect: str, now: datetime) -> int:
    paid = (
        sa.select(_contracts.c.id)
        .where(
            _contracts.c.id == _promises.c.contract_id,
            _non_negative(_contracts.c.balance, dialect) >= 0,
        )
        .exists()
    )
    result = await session.execute(
        sa.update(_promises)
        .where(_promises.c.status == "OVERDUE", paid)
        .values(status="REPAID", settled_at=now)
    )
    return rowcount(result)


def _suspension_event(source: Any) -> sa.Select[Any]:
    return sa.select(
        source.c.number,
        events.json_object(
            "status", "SUSPENDED", "reason", "DEBT", "balance", events.money_text(source.c.balance)
        ),
    )


async def _suspend_debtors(
    session: AsyncSession, *, dialect: str, settings: Settings, now: datetime
) -> int:
    """ACTIVE contracts below zero become SUSPENDED, each with its `contract.suspended`
    event and its reminder (SPEC §8, §9), for exactly the rows changed: one statement on
    PostgreSQL (a concurrent run, which finds the rows no longer ACTIVE, reports none)."""
    debtor = (_contracts.c.status == "ACTIVE", _non_negative(_contracts.c.balance, dialect) < 0)
    return await events.update_with_events(
        session,
        "contract.suspended",
        table=_contracts,
        where=debtor,
        values={"status": "SUSPENDED"},
        rows_before=lambda: _suspension_event(_contracts).where(*debtor),
        rows_after=lambda changed: _suspension_event(changed).select_from(changed),
        at=now,
        also=lambda rows: [
            reminders.suspended_insert(
                settings,
                rows=sa.select(rows.c.id.label("contract_id")).subquery("suspended"),
                now=now,
            )
        ],
    )


async def _pause_day(
    session: AsyncSession, *, settings: Settings, day: date, now: datetime, dialect: str
) -> tuple[int, int]:
    """Step 0: the pauses over before `day` end, then those covering it start, each
    contract's §9 "contract.pause_ended" / "contract.paused" (and "contract.suspended" for
    a pause that ends in SUSPENDED) in this transaction. Returns (contracts whose pause
    ended, contracts paused)."""
    ended = await pause.end_pauses(session, settings=settings, day=day, now=now, dialect=dialect)
    started = await pause.start_pauses(session, day=day, now=now)
    return ended, started


async def _remind(session: AsyncSession, *, settings: Settings, day: date, now: datetime) -> int:
    """The last step (SPEC §8): promises due tomorrow, low balances, pauses starting
    tomorrow, and pauses whose last day is tomorrow (the service is back the day after);
    each once whatever the reruns. The letters queued."""
    tomorrow = day + timedelta(days=1)
    queued = await reminders.after_billing_day(session, settings=settings, day=day, now=now)
    queued += await reminders.queue_pause_starts(
        session,
        settings=settings,
        contract_ids=pause.pauses_starting(tomorrow),
        starts_on=tomorrow,
        now=now,
    )
    queued += await reminders.queue_pause_ends(
        session,
        settings=settings,
        contract_ids=pause.pauses_ending(tomorrow),
        resumes_on=tomorrow + timedelta(days=1),
        now=now,
    )
    return queued


# --------------------------------------------------------------------------- #
# the run
# --------------------------------------------------------------------------- #


async def _charge_ranges(
    factory: SessionFactory,
    *,
    dialect: str,
    day: date,
    ranges: list[tuple[int, int]],
    now: datetime,
    parallel: int,
    progress: ProgressFn | None,
    pause_kopecks: int,
) -> _Charged:
    """Charge every range, `parallel` at a time, each in its own transaction. A failure
    stops the others (what committed stays charged: a rerun charges the rest)."""
    charge_range = _charge_range_postgresql if dialect == "postgresql" else _charge_range_sqlite
    pending = iter(ranges)  # shared by the workers: each range is taken once
    done = contracts = kopecks = zero = 0

    async def worker() -> None:
        nonlocal done, contracts, kopecks, zero
        for start, stop in pending:
            charged: _Charged = await _in_write_transaction(
                factory,
                partial(
                    charge_range,
                    day=day,
                    low=start,
                    high=stop,
                    now=now,
                    pause_kopecks=pause_kopecks,
                ),
            )
            done += 1
            contracts += charged.contracts
            kopecks += charged.kopecks
            zero += charged.zero
            if progress is not None:
                progress(
                    BillingProgress(
                        day, "charge", done, len(ranges), contracts, Decimal(kopecks) / 100
                    )
                )

    try:
        async with asyncio.TaskGroup() as workers:
            for _ in range(max(1, min(parallel, len(ranges)))):
                workers.create_task(worker())
    except BaseExceptionGroup as failed:
        # the failure itself, as a run of one range at a time raises it (the other workers
        # were cancelled, their transactions rolled back)
        raise failed.exceptions[0] from None
    return _Charged(contracts, kopecks, zero)


async def run_billing_day(
    session_factory_or_engine: Any,
    *,
    settings: Settings,
    day: date,
    progress: ProgressFn | None = None,
    chunk_size: int = CHUNK_SIZE,
    now: datetime | None = None,
) -> BillingSummary:
    """Run the billing day for `day` (idempotent per contract and day; safe to run twice or
    concurrently, and alongside top-ups). Commits range by range, `settings.billing_parallel`
    ranges at a time on PostgreSQL; `now` is the run's clock (tests)."""
    started = time.perf_counter()
    factory = _factory(session_factory_or_engine)
    now = now or utcnow()
    async with factory() as session:
        dialect = (await session.connection()).dialect.name
        bounds = (
            await session.execute(
                sa.select(sa.func.min(_contracts.c.id), sa.func.max(_contracts.c.id))
            )
        ).one()

    # Pauses end and start before the day is charged (resolvers/pause.py).
    pauses: tuple[int, int] = await _in_write_transaction(
        factory, partial(_pause_day, settings=settings, day=day, now=now, dialect=dialect)
    )
    pauses_ended, pauses_started = pauses
    charged = _Charged(0, 0, 0)
    if bounds[0] is not None:
        low, high = int(bounds[0]), int(bounds[1]) + 1
        ranges = [(start, min(start + chunk_size, high)) for start in range(low, high, chunk_size)]
        # SQLite has one writer at a time: its ranges go one by one.
        parallel = settings.billing_parallel if dialect == "postgresql" else 1
        charged = await _charge_ranges(
            factory,
            dialect=dialect,
            day=day,
            ranges=ranges,
            now=now,
            parallel=parallel,
            progress=progress,
            pause_kopecks=int(settings.pause_daily_fee * 100),
        )
    contracts, kopecks, zero = charged.contracts, charged.kopecks, charged.zero
    total = (Decimal(kopecks) / 100).quantize(CENT)
    # Charges already took a tariff changed for this day from the schedule; now it is the
    # contract's tariff (never for a later day: a missed earlier day billed after would
    # then be charged at the new tariff).
    await _in_write_transaction(factory, partial(services.apply_scheduled_tariffs, day=day, at=now))

    due_by = min(end_of_day(day), now)
    async with factory() as session, session.begin():
        await _plan_for_parameters(session)
        due = (
            await session.execute(
                sa.select(_promises.c.id, _promises.c.contract_id)
                .where(_promises.c.status == "OPEN", _promises.c.due_at < due_by)
                .order_by(_promises.c.contract_id)
            )
        ).all()
    settled = overdue = 0
    for start in range(0, len(due), SETTLE_BATCH):
        batch = [(row.id, row.contract_id) for row in due[start : start + SETTLE_BATCH]]
        result: _Settled = await _in_write_transaction(
            factory, partial(_settle_batch, promises=batch, due_by=due_by, now=now)
        )
        settled += result.settled
        overdue += result.overdue
        if progress is not None:
            progress(BillingProgress(day, "settle", start + len(batch), len(due), contracts, total))

    cleared = await _in_write_transaction(
        factory, partial(_clear_paid_overdue, dialect=dialect, now=now)
    )
    await _in_write_transaction(factory, partial(social_access.close_lifted, now=now))
    suspended = await _in_write_transaction(
        factory, partial(_suspend_debtors, dialect=dialect, settings=settings, now=now)
    )
    if progress is not None:
        progress(BillingProgress(day, "suspend", 1, 1, contracts, total))
    points_expired = await _in_write_transaction(
        factory, partial(bonus.expire_points, day=day, now=now)
    )
    autopaid = await run_autopay(factory, settings=settings, day=day, now=now)
    reminded = await _in_write_transaction(
        factory, partial(_remind, settings=settings, day=day, now=now)
    )
    return BillingSummary(
        day=day,
        contracts_charged=contracts,
        total_charged=total,
        promises_settled=settled,
        promises_overdue=overdue,
        contracts_suspended=suspended,
        seconds=time.perf_counter() - started,
        contracts_zero=zero,
        overdue_cleared=cleared,
        points_expired=points_expired,
        pauses_started=pauses_started,
        pauses_ended=pauses_ended,
        reminders_queued=reminded,
        autopay=autopaid,
    )


# --------------------------------------------------------------------------- #
# inside `serve`
# --------------------------------------------------------------------------- #


async def run_billing_scheduler(
    session_factory: Any,
    settings: Settings,
    stop: asyncio.Event,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> None:
    """Once a day at `billing_hour_utc`, bill the current UTC day (charges are taken in
    advance, at the start of the day they pay for; the same day `kabinet billing run`
    bills by default). A process started after that hour bills the day at once, which is a
    no-op when it was billed already; several processes may run this, the run is
    idempotent. Days missed while no process ran are not caught up: bill them with
    `kabinet billing run --date D`. Failures are logged and retried after `RETRY_SECONDS`.
    Returns at once when `billing_in_serve` is off; otherwise runs until `stop` is set."""
    if not settings.billing_in_serve:
        return
    billed: date | None = None
    while not stop.is_set():
        now = clock()
        today = now.date()
        run_at = datetime.combine(today, clock_time(settings.billing_hour_utc), UTC)
        wait: float
        if now >= run_at and billed != today:
            try:
                summary = await run_billing_day(session_factory, settings=settings, day=today)
                billed = today
                log.info("billing: %s", "; ".join(line.strip() for line in summary.lines()))
                continue
            except Exception as error:
                log.error("billing: the run for %s failed: %s", today, type(error).__name__)
                log.debug("billing: failure details", exc_info=True)
                wait = RETRY_SECONDS
        else:
            next_run = run_at if now < run_at else run_at + timedelta(days=1)
            wait = max(1.0, min((next_run - now).total_seconds(), MAX_SLEEP_SECONDS))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)
