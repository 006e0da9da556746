"""The bonus programme (SPEC §2 "BonusAccount"): a points ledger per subscriber.

`bonus_accounts.points` is the running total and `bonus_entries` the ledger behind it. An
accrual carries `remaining` (points not yet spent or expired) and `expires_at`, so that a
redemption can spend the oldest points first and the expiry can find what is left.

Invariant, at every commit: `points == Σ remaining` of the subscriber's accruals. Accrual
adds to both, redemption takes the same number from both, expiry zeroes `remaining` and takes
the sum from `points`. Points whose `expires_at` has passed but that the billing day has not
expired yet still count in `points`; a redemption never spends them (it spends only accruals
with `expires_at > now`), and the next billing day removes them.

Locks, so that a redemption never deadlocks with a top-up (payment → contract →
promised_payments → bonus_accounts) or with the billing day's expiry (bonus_accounts →
bonus_entries): a redemption takes the contract row, then the bonus account row, and only
then touches the accrual rows; the expiry takes the bonus account rows (in subscriber order)
before it touches the accruals. On SQLite, BEGIN IMMEDIATE serialises every writer anyway.
"""

from __future__ import annotations

import calendar
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import (
    ReadQuery,
    as_column_value,
    begin_write,
    insert_row,
    one_of,
    parameters,
    rowcount,
)
from core.errors import DomainError, ErrorCode
from core.ids import to_global_id
from core.settings import Settings
from models import (
    BonusAccount,
    BonusEntry,
    BonusReward,
    Contract,
    ContractOption,
    ContractTvPackage,
)
from models.base import UTCDateTime, table_of, utcnow
from resolvers import ledger
from resolvers.events import record_event
from resolvers.pagination import Page, check_first, decode_id_cursor, page_by_id
from resolvers.promised import clear_overdue_if_paid
from resolvers.suspension import lift_if_paid

log = logging.getLogger("kabinet.bonus")

_accounts = table_of(BonusAccount)
_entries = table_of(BonusEntry)
_rewards = table_of(BonusReward)
_contracts = table_of(Contract)
_contract_packages = table_of(ContractTvPackage)
_contract_options = table_of(ContractOption)


@dataclass(frozen=True, slots=True)
class BonusAccrual:
    entry_id: int
    points: int
    expires_at: datetime


def points_for(amount: Decimal, *, rub_per_point: Decimal) -> int:
    """One point per *full* `rub_per_point` roubles: 503.00 RUB at 5 RUB a point is 100."""
    if rub_per_point <= 0 or amount <= 0:
        return 0
    return int((amount / rub_per_point).to_integral_value(rounding=ROUND_FLOOR))


def add_months(moment: datetime, months: int) -> datetime:
    """`months` calendar months later, same day and time; a day the target month lacks
    becomes its last day (31 January + 1 month = 28 or 29 February; 29 February 2024 +
    12 months = 28 February 2025). Points therefore live "12 months", not 365 days."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


ACCRUAL_COLUMNS = (
    "subscriber_id",
    "kind",
    "points",
    "remaining",
    "expires_at",
    "payment_id",
    "description",
    "created_at",
)


def account_credit(
    subscriber_id: Any, points: Any, *, dialect: str = "postgresql", when: Any = sa.true()
) -> sa.Insert:
    """The subscriber's account made with `points`, or its points raised by them: an upsert
    (two concurrent makers do not collide), RETURNING subscriber_id. `dialect`: whose upsert
    ("postgresql" or "sqlite"). Always followed by the entry behind the points."""
    # SQLite reads `INSERT … SELECT … ON CONFLICT` only with a WHERE (hence `when`'s default).
    insert = _UPSERT[dialect](_accounts)
    statement = insert_row(insert, {"subscriber_id": subscriber_id, "points": points}, when=when)
    return statement.on_conflict_do_update(
        index_elements=[_accounts.c.subscriber_id],
        set_={"points": _accounts.c.points + insert.excluded.points},
    ).returning(_accounts.c.subscriber_id)


_UPSERT: dict[str, Any] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def account_insert(subscriber_id: Any, *, dialect: str = "postgresql") -> sa.Insert:
    """The subscriber's account with no points, unless it exists (ON CONFLICT DO NOTHING)."""
    return insert_row(
        _UPSERT[dialect](_accounts),
        {"subscriber_id": subscriber_id, "points": 0},
        when=sa.true(),  # see account_credit
    ).on_conflict_do_nothing(index_elements=[_accounts.c.subscriber_id])


async def open_account(session: AsyncSession, subscriber_id: int) -> None:
    """Make the subscriber's account (no points) if it is missing; in the caller's
    transaction. Two concurrent makers do not collide."""
    dialect = session.get_bind().dialect.name
    await session.execute(
        _OPEN_ACCOUNT["postgresql" if dialect == "postgresql" else "sqlite"],
        {"p_subscriber": subscriber_id},
    )


_OPEN_ACCOUNT = {
    name: account_insert(sa.bindparam("p_subscriber"), dialect=name) for name in _UPSERT
}


def accrual_insert(values: dict[str, Any], *, when: Any = None) -> sa.Insert:
    """An ACCRUAL entry (`ACCRUAL_COLUMNS`, as `accrual_row` makes them), RETURNING its id.
    See `core.db.insert_row`."""
    return insert_row(sa.insert(_entries), values, when=when).returning(_entries.c.id)


def accrual(
    values: dict[str, Any], *, when: Any = None, per_row: bool = False
) -> tuple[sa.CTE, sa.CTE]:
    """`accrue_for_top_up` as two parts of a composed statement (PostgreSQL): the account's
    points raised, where `when` holds and the accrual earns points, and its entry. `values`
    may be columns of another part, one subscriber per row of it (`per_row`): each entry
    takes its subscriber's row's."""
    points = as_column_value(values["points"], _entries.c.points)
    earns = points > 0
    account = account_credit(
        values["subscriber_id"],
        points,
        when=earns if when is None else sa.and_(when, earns),
    ).cte("account")
    entry = accrual_insert(
        {**values, "subscriber_id": account.c.subscriber_id, "points": points},
        when=account.c.subscriber_id == values["subscriber_id"] if per_row else None,
    ).cte("accrual")
    return account, entry


async def accrue_for_top_up(
    session: AsyncSession,
    *,
    settings: Settings,
    subscriber_id: int,
    payment_id: int,
    amount: Decimal,
    at: datetime,
) -> BonusAccrual | None:
    """Points for a successful top-up, in the caller's transaction (no commit).

    Called once per payment: the caller's PENDING → SUCCEEDED transition is what makes it
    happen once. Returns None when the amount earns no point.
    """
    entry = accrual_row(
        settings, subscriber_id=subscriber_id, payment_id=payment_id, amount=amount, at=at
    )
    if entry is None:
        return None
    dialect = session.get_bind().dialect.name
    await session.execute(
        _CREDIT_ACCOUNT["postgresql" if dialect == "postgresql" else "sqlite"],
        {"p_subscriber": subscriber_id, "p_points": entry["points"]},
    )
    entry_id = (await session.execute(_NEW_ACCRUAL, entry)).scalar_one()
    return BonusAccrual(entry_id, entry["points"], entry["expires_at"])


def accrual_row(
    settings: Settings, *, subscriber_id: int, payment_id: int, amount: Decimal, at: datetime
) -> dict[str, Any] | None:
    """The ACCRUAL entry a top-up of `amount` earns (`ACCRUAL_COLUMNS`; None when it earns no
    point): what `accrue_for_top_up` writes, and the payment confirmation's single statement
    too (through `accrual`)."""
    points = points_for(amount, rub_per_point=settings.bonus_rub_per_point)
    if points <= 0:
        return None
    return {
        "subscriber_id": subscriber_id,
        "kind": "ACCRUAL",
        "points": points,
        "remaining": points,
        "expires_at": add_months(at, settings.bonus_points_months),
        "payment_id": payment_id,
        "description": "Баллы за пополнение баланса",
        "created_at": at,
    }


# Built once: per-call statement building cost more than the round trips (webhook profile).
_CREDIT_ACCOUNT = {
    name: account_credit(sa.bindparam("p_subscriber"), sa.bindparam("p_points"), dialect=name)
    for name in _UPSERT
}
_NEW_ACCRUAL = accrual_insert(parameters(ACCRUAL_COLUMNS))


# -- redemption -----------------------------------------------------------------------------

REWARD_FIELD = "rewardId"
CONTRACT_FIELD = "contractNumber"


@dataclass(frozen=True, slots=True)
class Redemption:
    entry_id: int  # the REDEMPTION row in bonus_entries
    points_spent: int
    points_left: int  # bonus_accounts.points after the redemption
    ledger_entry_id: int | None  # BALANCE_CREDIT: the BONUS_CREDIT ledger row


def _usable(reward: Any) -> bool:
    """The reward carries what its kind needs (staff edit the catalogue by hand)."""
    if reward.kind == "BALANCE_CREDIT":
        return reward.credit_amount is not None and Decimal(str(reward.credit_amount)) > 0
    days_ok = reward.duration_days is not None and reward.duration_days > 0
    if reward.kind == "TV_PACKAGE":
        return days_ok and reward.tv_package_id is not None
    if reward.kind == "SPEED_BOOST":
        return days_ok and reward.option_id is not None
    return False


async def redeem_bonus(
    session: AsyncSession,
    *,
    settings: Settings,
    subscriber_id: int,
    contract_id: int,
    reward_id: int,
    actor: str,
    today: date | None = None,
    at: datetime | None = None,
) -> Redemption:
    """Spend the subscriber's points on a reward for one of their contracts and apply it, in
    one transaction.

    `at` is the redemption's clock (default now) and `today` its billing day (default
    `at`'s UTC date). The points spent are the oldest live ones (by `expires_at`, then id);
    points past their `expires_at` are not live even before the billing day expires them.
    Rewards:
    - BALANCE_CREDIT: a BONUS_CREDIT ledger entry (reference `bonus:<entry id>`); an OVERDUE
      promise now paid for is REPAID and a suspension lifted, as after any credit.
    - TV_PACKAGE / SPEED_BOOST (the reward's option): `duration_days` days without charge,
      see `_grant_free_days`.
    A SUSPENDED contract may redeem (a credit is what it needs; a free item costs nothing).

    Raises DomainError: NOT_FOUND (field rewardId) for an unknown, archived or unusable
    reward; NOT_FOUND (field contractNumber) for a contract that is not the subscriber's;
    NOT_ELIGIBLE (field contractNumber) for a CLOSED contract; INSUFFICIENT_FUNDS (field
    rewardId) when the live points are fewer than the price. Nothing changes on an error.
    """
    now = at or utcnow()
    today = today or now.date()
    await begin_write(session)
    result = await _redeem(
        session,
        settings=settings,
        subscriber_id=subscriber_id,
        contract_id=contract_id,
        reward_id=reward_id,
        actor=actor,
        today=today,
        now=now,
    )
    log.info(
        "bonus redeemed",
        extra={
            "subscriber_id": subscriber_id,
            "reward_id": reward_id,
            "points": result.points_spent,
        },
    )
    return result


async def _redeem(
    session: AsyncSession,
    *,
    settings: Settings,
    subscriber_id: int,
    contract_id: int,
    reward_id: int,
    actor: str,
    today: date,
    now: datetime,
) -> Redemption:
    reward = (
        await session.execute(
            sa.select(
                _rewards.c.id,
                _rewards.c.name,
                _rewards.c.kind,
                _rewards.c.points_price,
                _rewards.c.credit_amount,
                _rewards.c.tv_package_id,
                _rewards.c.option_id,
                _rewards.c.duration_days,
                _rewards.c.archived,
            ).where(_rewards.c.id == reward_id)
        )
    ).first()
    if reward is None or reward.archived or not _usable(reward):
        if reward is not None and not reward.archived:
            log.error("bonus reward is misconfigured", extra={"reward_id": reward_id})
        raise DomainError(ErrorCode.NOT_FOUND, "No such reward.", field=REWARD_FIELD)

    # The contract first, then the account: a top-up locks them in this order too.
    contract = (
        await session.execute(
            sa.select(_contracts.c.status, _contracts.c.number)
            .where(_contracts.c.id == contract_id, _contracts.c.subscriber_id == subscriber_id)
            .with_for_update()
        )
    ).first()
    if contract is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such contract.", field=CONTRACT_FIELD)
    if contract.status == "CLOSED":
        raise DomainError(
            ErrorCode.NOT_ELIGIBLE, "A closed contract cannot get rewards.", field=CONTRACT_FIELD
        )
    await session.execute(
        sa.select(_accounts.c.subscriber_id)
        .where(_accounts.c.subscriber_id == subscriber_id)
        .with_for_update()
    )

    price = int(reward.points_price)
    accruals = (
        await session.execute(
            sa.select(_entries.c.id, _entries.c.remaining)
            .where(
                _entries.c.subscriber_id == subscriber_id,
                _entries.c.kind == "ACCRUAL",
                _entries.c.remaining > 0,
                _entries.c.expires_at > now,
            )
            .order_by(_entries.c.expires_at, _entries.c.id)
        )
    ).all()
    live = sum(int(row.remaining) for row in accruals)
    if live < price:
        raise _too_few(price, live)
    left = (
        await session.execute(
            sa.update(_accounts)
            .where(_accounts.c.subscriber_id == subscriber_id, _accounts.c.points >= price)
            .values(points=_accounts.c.points - price)
            .returning(_accounts.c.points)
        )
    ).scalar_one_or_none()
    if left is None:  # Σ remaining ≤ points always; only a broken invariant gets here
        raise _too_few(price, live)

    # The oldest points first: what each accrual gives, in order, until the price is paid.
    taken: dict[int, int] = {}
    owed = price
    for row in accruals:
        take = min(int(row.remaining), owed)
        taken[row.id] = take
        owed -= take
        if owed == 0:
            break
    spent = await session.execute(
        sa.update(_entries)
        .where(_entries.c.id.in_(list(taken)))
        .values(
            remaining=_entries.c.remaining
            - sa.case(taken, value=_entries.c.id, else_=sa.literal(0))
        )
    )
    if rowcount(spent) != len(taken):
        raise AssertionError("accrual rows changed under the account lock")
    entry_id = (
        await session.execute(
            sa.insert(_entries)
            .values(
                subscriber_id=subscriber_id,
                kind="REDEMPTION",
                points=-price,
                reward_id=reward.id,
                description=f"Обмен баллов: {reward.name}"[:300],
                created_at=now,
            )
            .returning(_entries.c.id)
        )
    ).scalar_one()

    ledger_entry_id = None
    if reward.kind == "BALANCE_CREDIT":
        posted = await ledger.post(
            session,
            contract_id=contract_id,
            kind="BONUS_CREDIT",
            amount=Decimal(str(reward.credit_amount)),
            actor=actor,
            description=f"Бонусные баллы: {reward.name}",
            reference=f"bonus:{entry_id}",
            at=now,
        )
        ledger_entry_id = posted.entry_id
        await clear_overdue_if_paid(session, contract_id=contract_id)
        await lift_if_paid(session, settings=settings, contract_id=contract_id)
    elif reward.kind == "TV_PACKAGE":
        free_until = await _grant_free_days(
            session,
            table=_contract_packages,
            item_column=_contract_packages.c.package_id,
            item_id=reward.tv_package_id,
            contract_id=contract_id,
            days=int(reward.duration_days),
            today=today,
            now=now,
        )
        await _reward_event(
            session,
            contract.number,
            "TV_PACKAGE",
            to_global_id("TvPackage", reward.tv_package_id),
            free_until,
            reward.name,
        )
    else:  # SPEED_BOOST
        free_until = await _grant_free_days(
            session,
            table=_contract_options,
            item_column=_contract_options.c.option_id,
            item_id=reward.option_id,
            contract_id=contract_id,
            days=int(reward.duration_days),
            today=today,
            now=now,
        )
        await _reward_event(
            session,
            contract.number,
            "OPTION",
            to_global_id("ServiceOption", reward.option_id),
            free_until,
            reward.name,
        )
    return Redemption(entry_id, price, int(left), ledger_entry_id)


async def _reward_event(
    session: AsyncSession,
    contract_number: str,
    service: str,
    item_id: str,
    free_until: date,
    reward: str,
) -> None:
    """`contract.services_changed` for an item a reward gives free until `free_until`."""
    await record_event(
        session,
        "contract.services_changed",
        contract_number=contract_number,
        data={
            "service": service,
            "change": "CONNECTED",
            "itemId": item_id,
            "freeUntil": free_until,
            "bonusReward": reward,
        },
    )


def _too_few(price: int, live: int) -> DomainError:
    return DomainError(
        ErrorCode.INSUFFICIENT_FUNDS,
        f"This reward costs {price} points; {live} are available.",
        field=REWARD_FIELD,
    )


async def _grant_free_days(
    session: AsyncSession,
    *,
    table: Any,
    item_column: Any,
    item_id: int,
    contract_id: int,
    days: int,
    today: date,
    now: datetime,
) -> date:
    """`days` days of a TV package or option without charge, on the dated rows the billing
    day reads (`free_until`: not charged before that day; `ended_on`: first day not on).

    - The contract has the item: a connected row (`ended_on IS NULL`, preferred) or an
      earlier reward's row still running (`ended_on > today`, never disconnected). Its free
      period is extended by `days` from its current end, or else from tomorrow (an item
      already on is paid for today, by today's billing day whether it ran before or runs
      after the request, as resolvers/services.py counts), but never from before the row
      starts (an item connected today starts tomorrow). So the reward always saves `days`
      charged days. A reward row is kept on until its free period ends.
    Returns the day its free period now ends.
    - Otherwise a new row from today, free for `days` days and ending when they end: a
      reward never turns into a paid subscription by itself. Its `ended_on` is set from the
      start, so it is not "connected" in the `ended_on IS NULL` sense and the one-connected-
      row index does not count it; readers of what a contract has today must look for
      `disconnected_at IS NULL AND (ended_on IS NULL OR ended_on > today)`.
    """
    active = (
        await session.execute(
            sa.select(table.c.id, table.c.started_on, table.c.free_until, table.c.ended_on)
            .where(
                table.c.contract_id == contract_id,
                item_column == item_id,
                sa.or_(
                    table.c.ended_on.is_(None),
                    sa.and_(table.c.ended_on > today, table.c.disconnected_at.is_(None)),
                ),
            )
            .order_by(sa.case((table.c.ended_on.is_(None), 0), else_=1), table.c.id.desc())
            .limit(1)
        )
    ).first()
    if active is None:
        until = today + timedelta(days=days)
        await session.execute(
            sa.insert(table).values(
                {
                    "contract_id": contract_id,
                    item_column.key: item_id,
                    "started_on": today,
                    "ended_on": until,
                    "free_until": until,
                    "connected_at": now,
                }
            )
        )
        return until
    tomorrow = today + timedelta(days=1)
    start = max(active.free_until or tomorrow, tomorrow, active.started_on)
    until = start + timedelta(days=days)
    values: dict[str, Any] = {"free_until": until}
    if active.ended_on is not None and active.ended_on < until:
        values["ended_on"] = until
    await session.execute(sa.update(table).where(table.c.id == active.id).values(**values))
    return until


# -- expiry (the billing day) ---------------------------------------------------------------

EXPIRY_DESCRIPTION = "Баллы сгорели: прошло 12 месяцев с начисления"


def _expiry_cutoff(day: date) -> datetime:
    """The first instant after `day` (UTC): points expiring at any time on `day` expire."""
    return datetime.combine(day + timedelta(days=1), time(0), UTC)


async def expire_points(session: AsyncSession, *, day: date, now: datetime | None = None) -> int:
    """Expire every accrual whose `expires_at` falls on or before `day` (UTC) and that has
    points left: an EXPIRY entry (−remaining) per accrual, `remaining` set to 0, each
    account's `points` lowered by its sum. Returns the number of points expired.

    In the caller's writing transaction (`begin_write` first; no commit), e.g. the billing
    day's `_in_write_transaction(factory, partial(bonus.expire_points, day=day))`.
    Set-based: five statements whatever the number of rows (lock, count, insert, two
    updates), the same on both databases. Idempotent: a second run finds no accrual with
    points left. On PostgreSQL the accounts concerned are locked first, in subscriber order,
    so a concurrent redemption (account, then accruals) waits instead of deadlocking and
    nothing changes between the statements; on SQLite BEGIN IMMEDIATE serialises writers.
    """
    now = now or utcnow()
    cutoff = _expiry_cutoff(day)

    def due(entries: Any = _entries) -> Any:
        return sa.and_(
            entries.c.kind == "ACCRUAL", entries.c.remaining > 0, entries.c.expires_at < cutoff
        )

    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            sa.select(_accounts.c.subscriber_id)
            .where(_accounts.c.subscriber_id.in_(sa.select(_entries.c.subscriber_id).where(due())))
            .order_by(_accounts.c.subscriber_id)
            .with_for_update()
        )
    found = (
        await session.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(_entries.c.remaining), 0))
            .select_from(_entries)
            .where(due())
        )
    ).one()
    if not found[0]:
        return 0
    await session.execute(
        sa.insert(_entries).from_select(
            ["subscriber_id", "kind", "points", "payment_id", "description", "created_at"],
            sa.select(
                _entries.c.subscriber_id,
                sa.literal("EXPIRY", sa.String),
                -_entries.c.remaining,
                _entries.c.payment_id,
                sa.literal(EXPIRY_DESCRIPTION, sa.String),
                sa.literal(now, UTCDateTime),
            )
            .where(due())
            .order_by(_entries.c.id),
        )
    )
    expired = _entries.alias("expired")
    await session.execute(
        sa.update(_accounts)
        .where(
            _accounts.c.subscriber_id.in_(sa.select(expired.c.subscriber_id).where(due(expired)))
        )
        .values(
            points=_accounts.c.points
            - sa.select(sa.func.sum(expired.c.remaining))
            .where(expired.c.subscriber_id == _accounts.c.subscriber_id, due(expired))
            .scalar_subquery()
        )
    )
    await session.execute(sa.update(_entries).where(due()).values(remaining=0))
    log.info("bonus points expired", extra={"day": day.isoformat(), "points": int(found[1])})
    return int(found[1])


# -- reading --------------------------------------------------------------------------------


class ExpiringPoints(NamedTuple):
    points: int
    expires_at: datetime  # the earliest of them


ENTRY_COLUMNS = (
    _entries.c.id,
    _entries.c.subscriber_id,
    _entries.c.kind,
    _entries.c.points,
    _entries.c.remaining,
    _entries.c.expires_at,
    _entries.c.payment_id,
    _entries.c.reward_id,
    _entries.c.description,
    _entries.c.created_at,
)

_ACCOUNTS = ReadQuery(
    sa.select(_accounts.c.subscriber_id, _accounts.c.points).where(
        one_of(_accounts.c.subscriber_id, "ids")
    )
)


def expiring_points_where(subscribers: Any) -> sa.Select[Any]:
    """Live points expiring after parameter `now` and by `expiring_until`, with the earliest
    expiry among them, of each subscriber `subscribers(subscriber_id)` admits; no row for a
    subscriber with none (`BonusAccount.expiringSoon`, resolvers/views.py)."""
    return (
        sa.select(
            _entries.c.subscriber_id,
            sa.func.sum(_entries.c.remaining).label("points"),
            sa.func.min(_entries.c.expires_at).label("expires_at"),
        )
        .where(
            subscribers(_entries.c.subscriber_id),
            # Constants as SQL literals: the fast path binds only named parameters.
            _entries.c.kind == sa.literal_column("'ACCRUAL'"),
            _entries.c.remaining > sa.literal_column("0"),
            _entries.c.expires_at > sa.bindparam("now", type_=UTCDateTime),
            _entries.c.expires_at <= sa.bindparam("expiring_until", type_=UTCDateTime),
        )
        .group_by(_entries.c.subscriber_id)
    )


_EXPIRING = ReadQuery(expiring_points_where(lambda column: one_of(column, "ids")))
_HISTORY = sa.select(*ENTRY_COLUMNS).where(
    _entries.c.subscriber_id == sa.bindparam("subscriber_id", type_=sa.BigInteger)
)
_HISTORY_FIRST = ReadQuery(
    _HISTORY.order_by(_entries.c.id.desc()).limit(sa.bindparam("limit", type_=sa.Integer))
)
_HISTORY_AFTER = ReadQuery(
    _HISTORY.where(_entries.c.id < sa.bindparam("before", type_=sa.BigInteger))
    .order_by(_entries.c.id.desc())
    .limit(sa.bindparam("limit", type_=sa.Integer))
)


async def bonus_accounts(reader: Any, subscriber_ids: Sequence[int]) -> dict[int, Any]:
    """Accounts (rows with `subscriber_id`, `points`) by subscriber, one statement for all;
    a subscriber without an account is absent (has 0 points)."""
    if not subscriber_ids:
        return {}
    rows = await reader.fetch(_ACCOUNTS, ids=list(subscriber_ids))
    return {row.subscriber_id: row for row in rows}


async def expiring_soon(
    reader: Any,
    subscriber_ids: Sequence[int],
    *,
    within_days: int = 30,
    now: datetime | None = None,
) -> dict[int, ExpiringPoints]:
    """Live points that expire within `within_days` days from `now`, per subscriber, with
    the earliest expiry among them; one statement for all. Subscribers with nothing
    expiring that soon are absent."""
    if not subscriber_ids:
        return {}
    now = now or utcnow()
    rows = await reader.fetch(
        _EXPIRING,
        ids=list(subscriber_ids),
        now=now,
        expiring_until=now + timedelta(days=within_days),
    )
    return {row.subscriber_id: ExpiringPoints(int(row.points), row.expires_at) for row in rows}


async def bonus_history_page(
    reader: Any,
    *,
    subscriber_id: int,
    first: int | None,
    after: str | None,
    max_page_size: int = 100,
) -> Page[Any]:
    """`BonusAccount.history(first, after)`: the points ledger, newest first, keyset by id.

    Raises DomainError INVALID (field first or after) for a page size above `max_page_size`
    or a malformed cursor."""
    limit = check_first(first, max_page_size)
    before_id = decode_id_cursor(after)
    if before_id is None:
        rows = await reader.fetch(_HISTORY_FIRST, subscriber_id=subscriber_id, limit=limit + 1)
    else:
        rows = await reader.fetch(
            _HISTORY_AFTER, subscriber_id=subscriber_id, before=before_id, limit=limit + 1
        )
    return page_by_id(rows, limit, after=before_id)
