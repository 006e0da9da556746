"""The bonus programme (SPEC §2 "BonusAccount", §3 "Services" redeemBonus): accrual, expiry
on the billing day, redemption of each reward kind, the oldest points first, refusals,
concurrency and the read side. The domain verbs are called directly; the GraphQL face has
its own tests."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from core.db import RequestReader, begin_write, unit_of_work
from core.errors import DomainError, ErrorCode
from core.settings import Settings
from models import (
    BonusAccount,
    BonusEntry,
    BonusReward,
    Contract,
    ContractOption,
    ContractTvPackage,
    LedgerEntry,
    Payment,
    ServiceOption,
    Tariff,
    TvPackage,
)
from models.base import utcnow
from resolvers import ledger
from resolvers.billing import run_billing_day
from resolvers.bonus import (
    ExpiringPoints,
    accrue_for_top_up,
    add_months,
    bonus_accounts,
    bonus_history_page,
    expire_points,
    expiring_soon,
    points_for,
    redeem_bonus,
)
from resolvers.charges import TARIFF, TV_PACKAGE, daily_share, monthly_charges
from resolvers.payments import apply_provider_event
from tests.factories import MadeSubscriber, make_subscriber
from tests.money.test_ledger import assert_ledger_balanced
from tests.money.test_payments import top_up

ACTOR = "subscriber:test"


# -- helpers --------------------------------------------------------------------------------


async def accrue(
    session_factory: Any, settings: Settings, made: MadeSubscriber, *, points: int, at: datetime
) -> int:
    """`points` points accrued at `at` (for a PENDING top-up of the subscriber's first
    contract, so that the entry has its payment). Returns the accrual's id."""
    payment = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    async with session_factory() as session:
        await begin_write(session)
        accrual = await accrue_for_top_up(
            session,
            settings=settings,
            subscriber_id=made.id,
            payment_id=payment.id,
            amount=Decimal(points * 5),
            at=at,
        )
        await session.commit()
    assert accrual is not None and accrual.points == points
    return accrual.entry_id


async def fund(session_factory: Any, contract_id: int, amount: str) -> None:
    """Money on the contract, through the ledger (the balance is never set by hand)."""
    async with session_factory() as session:
        await begin_write(session)
        await ledger.post(
            session, contract_id=contract_id, kind="ADJUSTMENT", amount=Decimal(amount), actor="t"
        )
        await session.commit()


async def reward_id(session_factory: Any, code: str) -> int:
    async with session_factory() as session:
        found = await session.scalar(sa.select(BonusReward.id).where(BonusReward.code == code))
    assert found is not None
    return int(found)


async def redeem(
    session_factory: Any,
    settings: Settings,
    made: MadeSubscriber,
    code: str,
    *,
    today: date | None = None,
    contract: int = 0,
) -> Any:
    rid = await reward_id(session_factory, code)
    async with unit_of_work(session_factory) as session:
        return await redeem_bonus(
            session,
            settings=settings,
            subscriber_id=made.id,
            contract_id=made.contract_ids[contract],
            reward_id=rid,
            actor=ACTOR,
            today=today,
        )


async def run_expiry(session_factory: Any, day: date) -> int:
    async with session_factory() as session:
        await begin_write(session)
        expired = await expire_points(session, day=day)
        await session.commit()
    return expired


@dataclass(frozen=True)
class Snapshot:
    points: int | None
    entries: list[tuple[Any, ...]]
    ledger: list[tuple[Any, ...]]
    balance: Decimal
    status: str
    packages: list[tuple[Any, ...]]
    options: list[tuple[Any, ...]]


async def snapshot(session_factory: Any, made: MadeSubscriber) -> Snapshot:
    """Everything a redemption may touch, as it is in the database now."""
    contract_id = made.contract_ids[0]
    async with session_factory() as session:
        points = await session.scalar(
            sa.select(BonusAccount.points).where(BonusAccount.subscriber_id == made.id)
        )
        entries = (
            await session.execute(
                sa.select(BonusEntry.id, BonusEntry.kind, BonusEntry.points, BonusEntry.remaining)
                .where(BonusEntry.subscriber_id == made.id)
                .order_by(BonusEntry.id)
            )
        ).all()
        ledger_rows = (
            await session.execute(
                sa.select(LedgerEntry.id, LedgerEntry.kind, LedgerEntry.amount)
                .where(LedgerEntry.contract_id == contract_id)
                .order_by(LedgerEntry.id)
            )
        ).all()
        contract = (
            await session.execute(
                sa.select(Contract.balance, Contract.status).where(Contract.id == contract_id)
            )
        ).one()
        packages = (
            await session.execute(
                sa.select(
                    ContractTvPackage.package_id,
                    ContractTvPackage.started_on,
                    ContractTvPackage.ended_on,
                    ContractTvPackage.free_until,
                )
                .where(ContractTvPackage.contract_id == contract_id)
                .order_by(ContractTvPackage.id)
            )
        ).all()
        options = (
            await session.execute(
                sa.select(
                    ContractOption.option_id,
                    ContractOption.started_on,
                    ContractOption.ended_on,
                    ContractOption.free_until,
                )
                .where(ContractOption.contract_id == contract_id)
                .order_by(ContractOption.id)
            )
        ).all()
    return Snapshot(
        points,
        [tuple(r) for r in entries],
        [tuple(r) for r in ledger_rows],
        Decimal(str(contract.balance)).quantize(Decimal("0.01")),
        contract.status,
        [tuple(r) for r in packages],
        [tuple(r) for r in options],
    )


def remaining_of(snap: Snapshot, entry_id: int) -> int:
    (row,) = [e for e in snap.entries if e[0] == entry_id]
    return int(row[3])


def live_remaining(snap: Snapshot) -> int:
    return sum(int(e[3]) for e in snap.entries if e[1] == "ACCRUAL")


async def package_id(session_factory: Any, code: str) -> int:
    async with session_factory() as session:
        found = await session.scalar(sa.select(TvPackage.id).where(TvPackage.code == code))
    assert found is not None
    return int(found)


async def option_id(session_factory: Any, code: str) -> int:
    async with session_factory() as session:
        found = await session.scalar(sa.select(ServiceOption.id).where(ServiceOption.code == code))
    assert found is not None
    return int(found)


async def tariff_daily_share(session_factory: Any, contract_id: int, day: date) -> Decimal:
    async with session_factory() as session:
        fee = await session.scalar(
            sa.select(Tariff.monthly_fee)
            .join(Contract, Contract.tariff_id == Tariff.id)  # type: ignore[arg-type]
            .where(Contract.id == contract_id)
        )
    return daily_share(Decimal(str(fee)), day)


async def charge_of(session_factory: Any, contract_id: int, day: date) -> Decimal:
    """The billing day's CHARGE ledger entry of `day` (as a positive amount)."""
    async with session_factory() as session:
        amount = await session.scalar(
            sa.select(LedgerEntry.amount).where(
                LedgerEntry.contract_id == contract_id,
                LedgerEntry.kind == "CHARGE",
                LedgerEntry.reference == f"billing:{day.isoformat()}",
            )
        )
    assert amount is not None
    return -Decimal(str(amount)).quantize(Decimal("0.01"))


async def kinds_charged(session_factory: Any, contract_id: int, day: date) -> list[str]:
    async with session_factory() as session:
        items = (await monthly_charges(session, [contract_id], on=day))[contract_id]
    return [item.kind for item in items]


# -- accrual ---------------------------------------------------------------------------------


def test_one_point_per_full_five_roubles() -> None:
    rate = Decimal("5")
    assert points_for(Decimal("4.99"), rub_per_point=rate) == 0
    assert points_for(Decimal("5.00"), rub_per_point=rate) == 1
    assert points_for(Decimal("9.99"), rub_per_point=rate) == 1
    assert points_for(Decimal("500.00"), rub_per_point=rate) == 100
    assert points_for(Decimal("503.00"), rub_per_point=rate) == 100


async def test_an_amount_below_five_roubles_accrues_nothing(
    session_factory: Any, settings: Settings
) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    payment = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    # when
    async with session_factory() as session:
        await begin_write(session)
        accrual = await accrue_for_top_up(
            session,
            settings=settings,
            subscriber_id=made.id,
            payment_id=payment.id,
            amount=Decimal("4.99"),
            at=utcnow(),
        )
        await session.commit()
    # then
    assert accrual is None
    snap = await snapshot(session_factory, made)
    assert snap.points == 0 and snap.entries == []


async def test_a_top_up_of_500_roubles_earns_100_points_for_12_months(
    session_factory: Any, settings: Settings
) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    payment = await top_up(
        session_factory, settings, contract_id=made.contract_ids[0], amount="500.00"
    )
    # when
    async with unit_of_work(session_factory) as session:
        await apply_provider_event(
            session,
            settings=settings,
            payment_id=payment.id,
            status="SUCCEEDED",
            provider_reference=f"bonus-{uuid.uuid4().hex[:12]}",
        )
    # then
    async with session_factory() as session:
        entry = (
            await session.execute(sa.select(BonusEntry).where(BonusEntry.subscriber_id == made.id))
        ).scalar_one()
        confirmed_at = await session.scalar(
            sa.select(Payment.confirmed_at).where(Payment.id == payment.id)
        )
    snap = await snapshot(session_factory, made)
    assert snap.points == 100
    assert (entry.kind, entry.points, entry.remaining) == ("ACCRUAL", 100, 100)
    assert entry.payment_id == payment.id
    assert confirmed_at is not None and entry.expires_at == add_months(confirmed_at, 12)
    await assert_ledger_balanced(session_factory)


# -- expiry ----------------------------------------------------------------------------------


async def test_points_expire_on_the_day_twelve_calendar_months_later(
    session_factory: Any, settings: Settings
) -> None:
    # given: accruals of one subscriber on 29 Feb, 15 Mar (two) and 16 Mar 2024; another's
    x = await make_subscriber(session_factory, settings)
    y = await make_subscriber(session_factory, settings)
    leap = await accrue(
        session_factory, settings, x, points=40, at=datetime(2024, 2, 29, 12, 0, tzinfo=UTC)
    )
    morning = await accrue(
        session_factory, settings, x, points=100, at=datetime(2024, 3, 15, 10, 0, tzinfo=UTC)
    )
    evening = await accrue(
        session_factory, settings, x, points=30, at=datetime(2024, 3, 15, 23, 59, tzinfo=UTC)
    )
    later = await accrue(
        session_factory, settings, x, points=7, at=datetime(2024, 3, 16, 0, 0, tzinfo=UTC)
    )
    other = await accrue(
        session_factory, settings, y, points=55, at=datetime(2024, 3, 15, 1, 0, tzinfo=UTC)
    )

    # when / then: 29 Feb 2024 + 12 months is 28 Feb 2025; the day before, nothing
    assert await run_expiry(session_factory, date(2025, 2, 27)) == 0
    snap = await snapshot(session_factory, x)
    assert snap.points == 177 and remaining_of(snap, leap) == 40
    assert await run_expiry(session_factory, date(2025, 2, 28)) == 40
    snap = await snapshot(session_factory, x)
    assert snap.points == 137 and remaining_of(snap, leap) == 0

    # the day before 15 March 2025 nothing; on the day both of that day's accruals, and the
    # other subscriber's, whatever their time of day
    assert await run_expiry(session_factory, date(2025, 3, 14)) == 0
    assert await run_expiry(session_factory, date(2025, 3, 15)) == 185
    snap_x, snap_y = await snapshot(session_factory, x), await snapshot(session_factory, y)
    assert snap_x.points == 7 and snap_y.points == 0
    assert [remaining_of(snap_x, e) for e in (leap, morning, evening, later)] == [0, 0, 0, 7]
    assert remaining_of(snap_y, other) == 0
    assert [(k, p) for _, k, p, _ in snap_x.entries if k == "EXPIRY"] == [
        ("EXPIRY", -40),
        ("EXPIRY", -100),
        ("EXPIRY", -30),
    ]
    assert [(k, p) for _, k, p, _ in snap_y.entries if k == "EXPIRY"] == [("EXPIRY", -55)]

    # running the day twice expires once
    assert await run_expiry(session_factory, date(2025, 3, 15)) == 0
    assert await snapshot(session_factory, x) == snap_x
    assert await snapshot(session_factory, y) == snap_y
    # points == Σ remaining after expiry
    assert snap_x.points == live_remaining(snap_x) and snap_y.points == live_remaining(snap_y)


def test_twelve_months_are_calendar_months() -> None:
    assert add_months(datetime(2024, 2, 29, 12, tzinfo=UTC), 12) == datetime(
        2025, 2, 28, 12, tzinfo=UTC
    )
    assert add_months(datetime(2024, 3, 15, 10, tzinfo=UTC), 12) == datetime(
        2025, 3, 15, 10, tzinfo=UTC
    )


# -- redemption ------------------------------------------------------------------------------


async def test_a_balance_credit_goes_through_the_ledger_and_lifts_a_suspension(
    session_factory: Any, settings: Settings
) -> None:
    # given: 250 points and a suspended contract 50 RUB in debt
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    accrual = await accrue(
        session_factory, settings, made, points=250, at=utcnow() - timedelta(days=3)
    )
    await fund(session_factory, contract_id, "-50.00")
    async with session_factory() as session:
        await session.execute(
            sa.update(Contract).where(Contract.id == contract_id).values(status="SUSPENDED")  # type: ignore[arg-type]
        )
        await session.commit()
    # when: 100 RUB for 200 points
    result = await redeem(session_factory, settings, made, "credit-100")
    # then
    snap = await snapshot(session_factory, made)
    assert (result.points_spent, result.points_left) == (200, 50)
    assert snap.points == 50 and remaining_of(snap, accrual) == 50
    assert snap.balance == Decimal("50.00") and snap.status == "ACTIVE"
    assert snap.ledger[-1][1:] == ("BONUS_CREDIT", Decimal("100.00"))
    assert result.ledger_entry_id == snap.ledger[-1][0]
    async with session_factory() as session:
        reference = await session.scalar(
            sa.select(LedgerEntry.reference).where(LedgerEntry.id == result.ledger_entry_id)
        )
        entry = await session.get(BonusEntry, result.entry_id)
    assert reference == f"bonus:{result.entry_id}"
    assert entry is not None and (entry.kind, entry.points) == ("REDEMPTION", -200)
    assert entry.reward_id == await reward_id(session_factory, "credit-100")
    await assert_ledger_balanced(session_factory)


async def test_a_tv_package_is_free_for_30_days_and_then_ends(
    session_factory: Any, settings: Settings
) -> None:
    # given: 400 points, money for the tariff
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    await accrue(session_factory, settings, made, points=450, at=utcnow() - timedelta(days=1))
    await fund(session_factory, contract_id, "1000.00")
    today = utcnow().date()
    cinema = await package_id(session_factory, "cinema")
    # when
    result = await redeem(session_factory, settings, made, "cinema-30d", today=today)
    # then: a row from today, free for 30 days, ending when they end
    snap = await snapshot(session_factory, made)
    assert result.ledger_entry_id is None and (result.points_left, snap.points) == (50, 50)
    assert snap.packages == [
        (cinema, today, today + timedelta(days=30), today + timedelta(days=30))
    ]
    # the billing day within the 30 days charges the tariff only
    inside = today + timedelta(days=5)
    await run_billing_day(session_factory, settings=settings, day=inside)
    assert await charge_of(session_factory, contract_id, inside) == await tariff_daily_share(
        session_factory, contract_id, inside
    )
    assert await kinds_charged(session_factory, contract_id, today) == [TARIFF]
    assert await kinds_charged(session_factory, contract_id, today + timedelta(days=29)) == [TARIFF]
    assert await kinds_charged(session_factory, contract_id, today + timedelta(days=30)) == [TARIFF]
    await assert_ledger_balanced(session_factory)


async def test_a_tv_package_already_connected_gets_30_uncharged_days(
    session_factory: Any, settings: Settings
) -> None:
    # given: cinema connected for money 10 days ago (today's billing day charged it) and
    # kids connected today (a paid item starts tomorrow: resolvers/services.py)
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    await accrue(session_factory, settings, made, points=1050, at=utcnow() - timedelta(days=1))
    await fund(session_factory, contract_id, "2000.00")
    today = utcnow().date()
    tomorrow = today + timedelta(days=1)
    cinema = await package_id(session_factory, "cinema")
    kids = await package_id(session_factory, "kids")
    start = today - timedelta(days=10)
    async with session_factory() as session:
        await begin_write(session)
        session.add(ContractTvPackage(contract_id=contract_id, package_id=cinema, started_on=start))
        session.add(
            ContractTvPackage(contract_id=contract_id, package_id=kids, started_on=tomorrow)
        )
        await session.commit()
    await run_billing_day(session_factory, settings=settings, day=today)
    assert await kinds_charged(session_factory, contract_id, today) == [TARIFF, TV_PACKAGE]
    # when
    await redeem(session_factory, settings, made, "cinema-30d", today=today)
    await redeem(session_factory, settings, made, "kids-30d", today=today)
    # then: the connected rows (no new ones) are free from tomorrow (today is paid) for 30
    # days, then paid again
    snap = await snapshot(session_factory, made)
    after = today + timedelta(days=31)
    assert snap.packages == [(cinema, start, None, after), (kids, tomorrow, None, after)]
    assert await kinds_charged(session_factory, contract_id, today + timedelta(days=30)) == [TARIFF]
    assert await kinds_charged(session_factory, contract_id, after) == [
        TARIFF,
        TV_PACKAGE,
        TV_PACKAGE,
    ]
    await run_billing_day(session_factory, settings=settings, day=tomorrow)
    assert await charge_of(session_factory, contract_id, tomorrow) == await tariff_daily_share(
        session_factory, contract_id, tomorrow
    )
    # when: a second reward extends the free period from its end
    await redeem(session_factory, settings, made, "cinema-30d", today=today)
    snap = await snapshot(session_factory, made)
    assert snap.packages[0] == (cinema, start, None, today + timedelta(days=61))
    assert snap.points == 0
    await assert_ledger_balanced(session_factory)


async def test_a_speed_boost_is_on_for_7_days_without_charge(
    session_factory: Any, settings: Settings
) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    await accrue(session_factory, settings, made, points=300, at=utcnow() - timedelta(days=1))
    await fund(session_factory, contract_id, "500.00")
    today = utcnow().date()
    boost = await option_id(session_factory, "speed-boost")
    # when
    first = await redeem(session_factory, settings, made, "speed-boost-7d", today=today)
    # then
    snap = await snapshot(session_factory, made)
    week = today + timedelta(days=7)
    assert (first.points_spent, first.points_left) == (150, 150)
    assert snap.options == [(boost, today, week, week)]
    inside = today + timedelta(days=3)
    await run_billing_day(session_factory, settings=settings, day=inside)
    assert await charge_of(session_factory, contract_id, inside) == await tariff_daily_share(
        session_factory, contract_id, inside
    )
    assert await kinds_charged(session_factory, contract_id, today + timedelta(days=6)) == [TARIFF]
    assert await kinds_charged(session_factory, contract_id, week) == [TARIFF]
    # when: redeemed again while on, the boost lasts 7 more days
    await redeem(session_factory, settings, made, "speed-boost-7d", today=today)
    snap = await snapshot(session_factory, made)
    fortnight = today + timedelta(days=14)
    assert snap.options == [(boost, today, fortnight, fortnight)] and snap.points == 0
    await assert_ledger_balanced(session_factory)


async def test_the_oldest_live_points_are_spent_first(
    session_factory: Any, settings: Settings
) -> None:
    # given: 100 points from 10 months ago, 300 from 10 days ago, and 50 whose 12 months
    # are over but that no billing day has expired yet
    made = await make_subscriber(session_factory, settings)
    now = utcnow()
    older = await accrue(session_factory, settings, made, points=100, at=add_months(now, -10))
    newer = await accrue(session_factory, settings, made, points=300, at=now - timedelta(days=10))
    stale = await accrue(session_factory, settings, made, points=50, at=add_months(now, -13))
    # when: 250 points
    await redeem(session_factory, settings, made, "kids-30d")
    # then: all of the older, 150 of the newer; the stale ones are not spent
    snap = await snapshot(session_factory, made)
    assert [remaining_of(snap, e) for e in (older, newer, stale)] == [0, 150, 50]
    assert snap.points == 200 == live_remaining(snap)
    # when: the live 150 cannot buy 200 points' worth, even though the account shows 200
    with pytest.raises(DomainError) as refused:
        await redeem(session_factory, settings, made, "credit-100")
    assert refused.value.code == ErrorCode.INSUFFICIENT_FUNDS
    assert refused.value.field == "rewardId"
    assert await snapshot(session_factory, made) == snap
    # when: 150 points
    await redeem(session_factory, settings, made, "speed-boost-7d")
    snap = await snapshot(session_factory, made)
    assert [remaining_of(snap, e) for e in (older, newer, stale)] == [0, 0, 50]
    # then the billing day expires the stale 50 and the account is empty
    assert await run_expiry(session_factory, now.date()) == 50
    snap = await snapshot(session_factory, made)
    assert snap.points == 0 == live_remaining(snap)


async def test_too_few_points_change_nothing(session_factory: Any, settings: Settings) -> None:
    # given: 199 points, a reward for 200
    made = await make_subscriber(session_factory, settings)
    await accrue(session_factory, settings, made, points=199, at=utcnow() - timedelta(days=1))
    before = await snapshot(session_factory, made)
    # when
    with pytest.raises(DomainError) as refused:
        await redeem(session_factory, settings, made, "credit-100")
    # then
    assert (refused.value.code, refused.value.field) == (ErrorCode.INSUFFICIENT_FUNDS, "rewardId")
    assert await snapshot(session_factory, made) == before
    await assert_ledger_balanced(session_factory)


async def test_an_archived_or_unknown_reward_is_not_found(
    session_factory: Any, settings: Settings
) -> None:
    # given: plenty of points and an archived reward
    made = await make_subscriber(session_factory, settings)
    await accrue(session_factory, settings, made, points=1000, at=utcnow() - timedelta(days=1))
    before = await snapshot(session_factory, made)
    async with session_factory() as session:
        await begin_write(session)
        archived = BonusReward(
            code=f"test-archived-{uuid.uuid4().hex[:8]}",
            name="Архивная награда",
            kind="BALANCE_CREDIT",
            points_price=10,
            credit_amount=Decimal("5.00"),
            archived=True,
        )
        session.add(archived)
        await session.commit()
    try:
        for rid in (archived.id, 987_654_321):
            assert rid is not None
            # when
            async with unit_of_work(session_factory) as session:
                with pytest.raises(DomainError) as refused:
                    await redeem_bonus(
                        session,
                        settings=settings,
                        subscriber_id=made.id,
                        contract_id=made.contract_ids[0],
                        reward_id=rid,
                        actor=ACTOR,
                    )
            # then
            assert (refused.value.code, refused.value.field) == (ErrorCode.NOT_FOUND, "rewardId")
            assert await snapshot(session_factory, made) == before
    finally:
        async with session_factory() as session:
            await session.execute(sa.delete(BonusReward).where(BonusReward.id == archived.id))  # type: ignore[arg-type]
            await session.commit()


async def test_a_closed_or_foreign_contract_is_refused(
    session_factory: Any, settings: Settings
) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    stranger = await make_subscriber(session_factory, settings)
    await accrue(session_factory, settings, made, points=1000, at=utcnow() - timedelta(days=1))
    async with session_factory() as session:
        await session.execute(
            sa.update(Contract).where(Contract.id == made.contract_ids[0]).values(status="CLOSED")  # type: ignore[arg-type]
        )
        await session.commit()
    before = await snapshot(session_factory, made)
    rid = await reward_id(session_factory, "credit-100")
    # when / then
    for contract_id, code in (
        (made.contract_ids[0], ErrorCode.NOT_ELIGIBLE),
        (stranger.contract_ids[0], ErrorCode.NOT_FOUND),
    ):
        async with unit_of_work(session_factory) as session:
            with pytest.raises(DomainError) as refused:
                await redeem_bonus(
                    session,
                    settings=settings,
                    subscriber_id=made.id,
                    contract_id=contract_id,
                    reward_id=rid,
                    actor=ACTOR,
                )
        assert (refused.value.code, refused.value.field) == (code, "contractNumber")
    assert await snapshot(session_factory, made) == before
    assert (await snapshot(session_factory, stranger)).ledger == []


async def test_concurrent_redemptions_never_spend_the_same_points_twice(
    session_factory: Any, settings: Settings, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("races are run on PostgreSQL; SQLite serialises writers")
    # given: 650 points in three accruals (enough for three 200-point credits), and two
    # top-ups confirmed at the same time (they lock payment → contract → bonus account)
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    now = utcnow()
    accruals = [
        await accrue(session_factory, settings, made, points=p, at=now - timedelta(days=d))
        for p, d in ((250, 100), (200, 50), (200, 5))
    ]
    pending = [
        await top_up(session_factory, settings, contract_id=contract_id, amount="10.00")
        for _ in range(2)
    ]
    rid = await reward_id(session_factory, "credit-100")

    async def one_redemption() -> str:
        async with unit_of_work(session_factory) as session:
            try:
                await redeem_bonus(
                    session,
                    settings=settings,
                    subscriber_id=made.id,
                    contract_id=contract_id,
                    reward_id=rid,
                    actor=ACTOR,
                )
            except DomainError as error:
                return str(error.code)
        return "OK"

    async def one_top_up(payment_id: int) -> str:
        async with unit_of_work(session_factory) as session:
            await apply_provider_event(
                session,
                settings=settings,
                payment_id=payment_id,
                status="SUCCEEDED",
                provider_reference=f"race-{payment_id}-{uuid.uuid4().hex[:8]}",
            )
        return "TOP_UP"

    # when
    outcomes = await asyncio.gather(
        *[one_redemption() for _ in range(10)], *[one_top_up(p.id) for p in pending]
    )
    # then: exactly three, 600 points spent, 50 left plus 2 × 2 accrued by the top-ups
    assert sorted(outcomes) == ["INSUFFICIENT_FUNDS"] * 7 + ["OK"] * 3 + ["TOP_UP"] * 2
    snap = await snapshot(session_factory, made)
    assert snap.points == 54 == live_remaining(snap)
    assert [remaining_of(snap, e) for e in accruals] == [0, 0, 50]
    assert [p for _, k, p, _ in snap.entries if k == "REDEMPTION"] == [-200] * 3
    assert [a for _, k, a in snap.ledger if k == "BONUS_CREDIT"] == [Decimal("100.00")] * 3
    assert snap.balance == Decimal("320.00")
    await assert_ledger_balanced(session_factory)


async def test_expiry_and_redemptions_running_together_stay_consistent(
    session_factory: Any, settings: Settings, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("races are run on PostgreSQL; SQLite serialises writers")
    # given: 400 live points and 300 whose time is over
    made = await make_subscriber(session_factory, settings)
    now = utcnow()
    await accrue(session_factory, settings, made, points=400, at=now - timedelta(days=5))
    await accrue(session_factory, settings, made, points=300, at=add_months(now, -13))

    async def expiry() -> str:
        return f"EXPIRED {await run_expiry(session_factory, now.date())}"

    async def redemption() -> str:
        try:
            await redeem(session_factory, settings, made, "speed-boost-7d")
        except DomainError as error:
            return str(error.code)
        return "OK"

    # when
    outcomes = await asyncio.gather(redemption(), expiry(), redemption(), expiry(), redemption())
    # then: two boosts from the 400 live points; the 300 expired once
    assert sorted(outcomes) == ["EXPIRED 0", "EXPIRED 300", "INSUFFICIENT_FUNDS", "OK", "OK"]
    snap = await snapshot(session_factory, made)
    assert snap.points == 100 == live_remaining(snap)


# -- reading ---------------------------------------------------------------------------------


async def test_accounts_and_points_expiring_soon_are_read_for_many_subscribers(
    session_factory: Any, settings: Settings, engine: Any
) -> None:
    # given
    x = await make_subscriber(session_factory, settings)
    y = await make_subscriber(session_factory, settings)
    nobody = await make_subscriber(session_factory, settings)
    await accrue(session_factory, settings, x, points=40, at=datetime(2024, 2, 29, tzinfo=UTC))
    await accrue(session_factory, settings, x, points=100, at=datetime(2024, 3, 15, 10, tzinfo=UTC))
    await accrue(session_factory, settings, x, points=7, at=datetime(2024, 3, 20, tzinfo=UTC))
    await accrue(session_factory, settings, x, points=9, at=datetime(2024, 9, 1, tzinfo=UTC))
    await accrue(session_factory, settings, y, points=55, at=datetime(2024, 3, 25, 8, tzinfo=UTC))
    now = datetime(2025, 3, 1, tzinfo=UTC)
    reader = RequestReader(engine)
    try:
        # when
        accounts = await bonus_accounts(reader, [x.id, y.id, nobody.id, 987_654])
        soon = await expiring_soon(reader, [x.id, y.id, nobody.id], now=now)
        fortnight = await expiring_soon(reader, [x.id, y.id], within_days=14, now=now)
    finally:
        await reader.close()
    # then: the 29 Feb points are past their time (not "soon"), September's are far off
    assert {k: v.points for k, v in accounts.items()} == {x.id: 156, y.id: 55, nobody.id: 0}
    assert soon == {
        x.id: ExpiringPoints(107, datetime(2025, 3, 15, 10, tzinfo=UTC)),
        y.id: ExpiringPoints(55, datetime(2025, 3, 25, 8, tzinfo=UTC)),
    }
    assert fortnight == {}


async def test_history_is_newest_first_in_pages(
    session_factory: Any, settings: Settings, engine: Any
) -> None:
    # given: two accruals, a redemption, an expiry and another subscriber's accrual
    made = await make_subscriber(session_factory, settings)
    other = await make_subscriber(session_factory, settings)
    now = utcnow()
    await accrue(session_factory, settings, made, points=30, at=add_months(now, -13))
    await accrue(session_factory, settings, made, points=200, at=now - timedelta(days=2))
    await accrue(session_factory, settings, other, points=10, at=now - timedelta(days=2))
    await redeem(session_factory, settings, made, "speed-boost-7d")
    await run_expiry(session_factory, now.date())
    ids = [e[0] for e in (await snapshot(session_factory, made)).entries]
    reader = RequestReader(engine)
    try:
        # when
        first = await bonus_history_page(reader, subscriber_id=made.id, first=3, after=None)
        second = await bonus_history_page(
            reader, subscriber_id=made.id, first=3, after=first.cursors[-1]
        )
        with pytest.raises(DomainError) as too_many:
            await bonus_history_page(reader, subscriber_id=made.id, first=101, after=None)
        with pytest.raises(DomainError) as bad_cursor:
            await bonus_history_page(reader, subscriber_id=made.id, first=3, after="nonsense")
    finally:
        await reader.close()
    # then
    assert len(ids) == 4
    assert [e.id for e in first.items] == ids[::-1][:3]
    assert [e.kind for e in first.items] == ["EXPIRY", "REDEMPTION", "ACCRUAL"]
    assert first.items[0].points == -30 and first.items[1].points == -150
    assert first.has_next_page and not first.has_previous_page
    assert [e.id for e in second.items] == ids[:1]
    assert not second.has_next_page and second.has_previous_page
    assert too_many.value.field == "first" and bad_cursor.value.field == "after"
