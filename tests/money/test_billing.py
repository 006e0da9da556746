"""The billing day (resolvers/billing.py, `kabinet billing run`) and `kabinet ledger verify`.

Hand-computed month (June 2026, 30 days) for the full line-up of test_charges.py, each item
rounded half-up on its own:
    tariff 590.00 / 30 = 19.67 · Base 249.00 / 30 = 8.30 · Sport 399.00 / 30 = 13.30
    Personal TV 7 × 15.00 = 105.00 / 30 = 3.50 · 2 × Multiroom 50.00 / 30 = 1.67 each
    static IP 150.00 / 30 = 5.00            → 53.11 a day, 1,593.30 for June
(Σ monthly fees is 1,593.00: per-item rounding of 19.666… and 1.666… up costs 0.30 a month.)
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from core.db import begin_write
from kabinet.cli import main
from models import BillingCharge, Contract, LedgerEntry, Subscriber, TvPackage
from resolvers import billing
from resolvers.billing import BillingProgress, run_billing_day, run_billing_scheduler
from resolvers.charges import daily_share
from tests.factories import make_subscriber
from tests.money.test_charges import (
    FULL_LINE_UP_FEES,
    add_full_line_up,
    add_option,
    add_package,
    fund,
    on_a_free_tariff,
    opened_days_ago_for,
)
from tests.money.test_ledger import assert_ledger_balanced

JUNE = [date(2026, 6, d) for d in range(1, 31)]
DAILY = Decimal("53.11")


async def _balance(session_factory: Any, contract_id: int) -> Decimal:
    async with session_factory() as session:
        value = await session.scalar(sa.select(Contract.balance).where(Contract.id == contract_id))
    return Decimal(str(value)).quantize(Decimal("0.01"))


async def _status(session_factory: Any, contract_id: int) -> str:
    async with session_factory() as session:
        return str(
            await session.scalar(sa.select(Contract.status).where(Contract.id == contract_id))
        )


async def _charges(session_factory: Any, contract_id: int) -> list[tuple[date, Decimal]]:
    async with session_factory() as session:
        rows = (
            await session.execute(
                sa.select(BillingCharge.day, BillingCharge.amount)
                .where(BillingCharge.contract_id == contract_id)
                .order_by(BillingCharge.day)
            )
        ).all()
    return [(r.day, Decimal(str(r.amount)).quantize(Decimal("0.01"))) for r in rows]


async def _entries(session_factory: Any, contract_id: int, kind: str = "CHARGE") -> list[Any]:
    async with session_factory() as session:
        return list(
            (
                await session.execute(
                    sa.select(LedgerEntry)
                    .where(LedgerEntry.contract_id == contract_id, LedgerEntry.kind == kind)
                    .order_by(LedgerEntry.id)
                )
            )
            .scalars()
            .all()
        )


async def _contract(session_factory: Any, settings: Any, *, opened: date, balance: Decimal) -> int:
    made = await make_subscriber(
        session_factory, settings, opened_days_ago=opened_days_ago_for(opened)
    )
    if balance:
        await fund(session_factory, made.contract_ids[0], balance)
    return made.contract_ids[0]


# -- charging ------------------------------------------------------------------------------


async def test_billing_twice_for_a_day_charges_once(session_factory: Any, settings: Any) -> None:
    # given a contract with the tariff only and 100.00 on it
    cid = await _contract(
        session_factory, settings, opened=date(2026, 5, 1), balance=Decimal("100")
    )
    day = date(2026, 6, 1)

    # when the day is billed
    first = await run_billing_day(session_factory, settings=settings, day=day)

    # then 590.00 / 30 = 19.67 is debited, with its mark and one ledger entry
    assert first.contracts_charged == 1 and first.total_charged == Decimal("19.67")
    assert await _balance(session_factory, cid) == Decimal("80.33")
    assert await _charges(session_factory, cid) == [(day, Decimal("19.67"))]
    (entry,) = await _entries(session_factory, cid)
    assert entry.amount == Decimal("-19.67") and entry.balance_after == Decimal("80.33")
    assert entry.description == "Абонентская плата за 2026-06-01"
    assert entry.actor == "system:billing" and entry.reference == "billing:2026-06-01"
    await assert_ledger_balanced(session_factory)

    # when it is billed again, and concurrently twice more
    second = await run_billing_day(session_factory, settings=settings, day=day)
    await asyncio.gather(
        run_billing_day(session_factory, settings=settings, day=day),
        run_billing_day(session_factory, settings=settings, day=day),
    )

    # then nothing more is charged
    assert second.contracts_charged == 0 and second.total_charged == 0
    assert await _balance(session_factory, cid) == Decimal("80.33")
    assert len(await _entries(session_factory, cid)) == 1
    assert len(await _charges(session_factory, cid)) == 1
    await assert_ledger_balanced(session_factory)


async def test_a_30_day_month_matches_the_per_item_shares_to_the_kopeck(
    session_factory: Any, settings: Any
) -> None:
    # given tariff + 2 packages + 7 Personal TV channels + 2 Multiroom receivers + 1 option
    cid = await _contract(
        session_factory, settings, opened=date(2026, 5, 1), balance=Decimal("2000.00")
    )
    await add_full_line_up(session_factory, cid, started_on=date(2026, 6, 1))
    assert sum(daily_share(fee, JUNE[0]) for fee in FULL_LINE_UP_FEES) == DAILY
    seen: list[BillingProgress] = []

    # when every day of June is billed
    for day in JUNE:
        summary = await run_billing_day(
            session_factory, settings=settings, day=day, progress=seen.append
        )
        assert summary.contracts_charged == 1 and summary.total_charged == DAILY

    # then the month costs 30 × 53.11 = 1,593.30, one entry and one mark a day
    assert await _balance(session_factory, cid) == Decimal("2000.00") - Decimal("1593.30")
    entries = await _entries(session_factory, cid)
    assert [e.amount for e in entries] == [-DAILY] * 30
    assert [e.balance_after for e in entries] == [
        Decimal("2000.00") - DAILY * n for n in range(1, 31)
    ]
    assert await _charges(session_factory, cid) == [(day, DAILY) for day in JUNE]
    assert seen and seen[0].step == "charge" and seen[-1].step == "suspend"
    await assert_ledger_balanced(session_factory)


async def test_an_item_connected_mid_month_is_charged_exactly_its_days(
    session_factory: Any, settings: Any
) -> None:
    # given Cinema (349.00 → 11.63 a day) from the 10th to the 19th of June (ended_on 20th)
    # and an antivirus (99.00 → 3.30 a day) free until the 15th
    cid = await _contract(
        session_factory, settings, opened=date(2026, 5, 1), balance=Decimal("1000.00")
    )
    await add_package(
        session_factory, cid, "cinema", started_on=date(2026, 6, 10), ended_on=date(2026, 6, 20)
    )
    await add_option(
        session_factory, cid, "antivirus", started_on=date(2026, 6, 1), free_until=date(2026, 6, 15)
    )

    # when June is billed
    for day in JUNE:
        await run_billing_day(session_factory, settings=settings, day=day)

    # then the tariff 30 days, Cinema 10 days, the antivirus 16 days (15th to 30th)
    expected = {
        day: Decimal("19.67")
        + (Decimal("11.63") if date(2026, 6, 10) <= day < date(2026, 6, 20) else 0)
        + (Decimal("3.30") if day >= date(2026, 6, 15) else 0)
        for day in JUNE
    }
    assert await _charges(session_factory, cid) == sorted(expected.items())
    total = Decimal("19.67") * 30 + Decimal("11.63") * 10 + Decimal("3.30") * 16
    assert await _balance(session_factory, cid) == Decimal("1000.00") - total
    await assert_ledger_balanced(session_factory)


async def test_only_active_contracts_opened_by_the_day_are_charged(
    session_factory: Any, settings: Any
) -> None:
    # given an active, a suspended, a closed contract, and one opened after the day
    day = date(2026, 6, 1)
    active, suspended, closed = [
        await _contract(session_factory, settings, opened=date(2026, 5, 1), balance=Decimal("50"))
        for _ in range(3)
    ]
    later = await _contract(
        session_factory, settings, opened=date(2026, 6, 2), balance=Decimal("50")
    )
    async with session_factory() as session:
        await begin_write(session)
        await session.execute(
            sa.update(Contract).where(Contract.id == suspended).values(status="SUSPENDED")
        )
        await session.execute(
            sa.update(Contract).where(Contract.id == closed).values(status="CLOSED")
        )
        await session.commit()

    # when
    summary = await run_billing_day(session_factory, settings=settings, day=day)

    # then only the active one pays, and only it is marked
    assert summary.contracts_charged == 1
    assert await _balance(session_factory, active) == Decimal("30.33")
    for cid in (suspended, closed, later):
        assert await _balance(session_factory, cid) == Decimal("50.00")
        assert await _charges(session_factory, cid) == []
    assert await _status(session_factory, suspended) == "SUSPENDED"
    assert await _status(session_factory, closed) == "CLOSED"
    await assert_ledger_balanced(session_factory)


async def test_contracts_going_below_zero_are_suspended(
    session_factory: Any, settings: Any
) -> None:
    # given one contract with exactly a day's charge and one with a kopeck less
    day = date(2026, 6, 1)
    exact = await _contract(
        session_factory, settings, opened=date(2026, 5, 1), balance=Decimal("19.67")
    )
    short = await _contract(
        session_factory, settings, opened=date(2026, 5, 1), balance=Decimal("19.66")
    )

    # when
    summary = await run_billing_day(session_factory, settings=settings, day=day)

    # then the one below zero is suspended and is not charged the next day
    assert summary.contracts_suspended == 1
    assert (await _balance(session_factory, exact), await _status(session_factory, exact)) == (
        Decimal("0.00"),
        "ACTIVE",
    )
    assert (await _balance(session_factory, short), await _status(session_factory, short)) == (
        Decimal("-0.01"),
        "SUSPENDED",
    )
    nxt = await run_billing_day(session_factory, settings=settings, day=day + timedelta(days=1))
    assert nxt.contracts_charged == 1
    assert await _balance(session_factory, short) == Decimal("-0.01")
    assert await _status(session_factory, exact) == "SUSPENDED"
    await assert_ledger_balanced(session_factory)


async def test_a_contract_with_nothing_to_pay_is_marked_without_an_entry(
    session_factory: Any, settings: Any
) -> None:
    # given a contract on a free tariff
    cid = await _contract(session_factory, settings, opened=date(2026, 5, 1), balance=Decimal("0"))
    async with on_a_free_tariff(session_factory, cid):
        # when
        summary = await run_billing_day(session_factory, settings=settings, day=date(2026, 6, 1))

        # then it is marked for the day, with no ledger entry
        assert (summary.contracts_charged, summary.contracts_zero) == (0, 1)
        assert summary.total_charged == 0
        assert await _charges(session_factory, cid) == [(date(2026, 6, 1), Decimal("0.00"))]
        assert await _entries(session_factory, cid) == []
        assert await _status(session_factory, cid) == "ACTIVE"


async def _funded_contracts(
    session_factory: Any, settings: Any, count: int, amount: Decimal
) -> list[int]:
    """`count` contracts of one subscriber, opened on 1 May 2026, with `amount` each."""
    made = await make_subscriber(
        session_factory,
        settings,
        contracts=count,
        opened_days_ago=opened_days_ago_for(date(2026, 5, 1)),
    )
    for cid in made.contract_ids:
        await fund(session_factory, cid, amount)
    return list(made.contract_ids)


async def test_billing_alongside_top_ups_loses_nothing(session_factory: Any, settings: Any) -> None:
    # given 30 contracts with 10.00 each
    day = date(2026, 6, 1)
    contract_ids = await _funded_contracts(session_factory, settings, 30, Decimal("10.00"))

    # when the day is billed in ranges of 7 contracts while each contract is topped up
    async def top_up(cid: int) -> None:
        await fund(session_factory, cid, Decimal("5.00"))

    results = await asyncio.gather(
        run_billing_day(session_factory, settings=settings, day=day, chunk_size=7),
        *(top_up(cid) for cid in contract_ids),
    )

    # then every contract paid 19.67 once and kept its top-up, whatever the interleaving
    assert results[0].contracts_charged == 30
    for cid in contract_ids:
        assert await _balance(session_factory, cid) == Decimal("-4.67")
        assert len(await _entries(session_factory, cid)) == 1
    await assert_ledger_balanced(session_factory)


async def test_ranges_billed_in_parallel_charge_every_contract_once(
    session_factory: Any, settings: Any
) -> None:
    # given 20 contracts with 30.00 each, billed in ranges of 3 contracts, 4 ranges at a time
    day = date(2026, 6, 1)
    contract_ids = await _funded_contracts(session_factory, settings, 20, Decimal("30.00"))
    four = settings.model_copy(update={"billing_parallel": 4})
    reports: list[BillingProgress] = []

    # when the day is billed so, twice at once
    first, second = await asyncio.gather(
        run_billing_day(
            session_factory, settings=four, day=day, chunk_size=3, progress=reports.append
        ),
        run_billing_day(session_factory, settings=four, day=day, chunk_size=3),
    )

    # then each contract paid 19.67 once, the two runs together charged 20 contracts, and
    # the first run reported every range once, its counts growing to its total
    assert first.contracts_charged + second.contracts_charged == 20
    assert first.total_charged + second.total_charged == Decimal("19.67") * 20
    for cid in contract_ids:
        assert await _balance(session_factory, cid) == Decimal("10.33")
        assert len(await _entries(session_factory, cid)) == 1
    charging = [report for report in reports if report.step == "charge"]
    assert [report.done for report in charging] == list(range(1, charging[0].total + 1))
    assert charging[-1].contracts_charged == first.contracts_charged
    await assert_ledger_balanced(session_factory)


# -- inside `serve` -------------------------------------------------------------------------


async def test_the_scheduler_bills_the_current_day_once_after_the_hour(
    session_factory: Any, settings: Any
) -> None:
    # given a contract, and a clock at 02:00 UTC on the 1st of June (billing hour 01:00)
    cid = await _contract(session_factory, settings, opened=date(2026, 5, 1), balance=Decimal("50"))
    on = settings.model_copy(update={"billing_in_serve": True, "billing_hour_utc": 1})
    stop = asyncio.Event()

    def clock() -> datetime:
        return datetime(2026, 6, 1, 2, 0, tzinfo=UTC)

    # when it runs until the day is billed
    task = asyncio.create_task(run_billing_scheduler(session_factory, on, stop, clock=clock))
    for _ in range(200):
        if await _charges(session_factory, cid):
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 5)

    # then the 1st was billed once; with the setting off the scheduler does nothing
    assert await _charges(session_factory, cid) == [(date(2026, 6, 1), Decimal("19.67"))]
    assert len(await _entries(session_factory, cid)) == 1
    await asyncio.wait_for(run_billing_scheduler(session_factory, settings, asyncio.Event()), 1)
    await assert_ledger_balanced(session_factory)


# -- the CLI -------------------------------------------------------------------------------


async def test_billing_run_through_the_cli(
    session_factory: Any, settings: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # given the full line-up (53.11 a day)
    cid = await _contract(
        session_factory, settings, opened=date(2026, 5, 1), balance=Decimal("1000.00")
    )
    await add_full_line_up(session_factory, cid, started_on=date(2026, 6, 1))
    monkeypatch.setenv("KABINET_DATABASE_URL", settings.database_url)

    # when three days are billed by the command (asyncio.run needs a thread of its own),
    # the last one twice
    for day in ("2026-06-01", "2026-06-02", "2026-06-03", "2026-06-03"):
        assert await asyncio.to_thread(main, ["billing", "run", "--date", day]) == 0

    # then
    out = capsys.readouterr().out
    assert "billing day 2026-06-01" in out and "charge 1/1" in out
    assert "total charged       : 53.11 RUB" in out
    assert "total charged       : 0.00 RUB" in out  # the rerun of the 3rd
    assert await _balance(session_factory, cid) == Decimal("1000.00") - DAILY * 3
    assert len(await _entries(session_factory, cid)) == 3
    await assert_ledger_balanced(session_factory)


async def test_billing_run_refuses_a_bad_date(
    settings: Any, engine: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("KABINET_DATABASE_URL", settings.database_url)
    assert await asyncio.to_thread(main, ["billing", "run", "--date", "2026-02-30"]) == 2
    assert "YYYY-MM-DD" in capsys.readouterr().err


async def test_ledger_verify_on_a_clean_and_on_a_tampered_database(
    session_factory: Any, settings: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # given two contracts with money moved through the ledger
    made = await make_subscriber(session_factory, settings, contracts=2)
    for cid in made.contract_ids:
        await fund(session_factory, cid, Decimal("12.34"))
    monkeypatch.setenv("KABINET_DATABASE_URL", settings.database_url)

    # then a clean database verifies
    assert await asyncio.to_thread(main, ["ledger", "verify"]) == 0
    assert "ledger OK: 2 contracts" in capsys.readouterr().out

    # when a balance is edited in place
    async with session_factory() as session:
        await begin_write(session)
        await session.execute(
            sa.update(Contract)
            .where(Contract.id == made.contract_ids[1])
            .values(balance=Decimal("99.99"))
        )
        await session.commit()

    # then the mismatch is named and the command fails
    assert await asyncio.to_thread(main, ["ledger", "verify"]) == 1
    out = capsys.readouterr().out
    assert made.contract_numbers[1] in out and "99.99" in out and "12.34" in out
    assert made.contract_numbers[0] not in out


# -- timing --------------------------------------------------------------------------------

TIMING_CONTRACTS = 20_000


async def test_billing_20000_contracts_on_postgresql(
    session_factory: Any, settings: Any, backend: str
) -> None:
    """A quick timing, printed (`pytest -s`), not asserted: 20,000 contracts with a tariff
    and 3 TV packages each, as in the benchmark data."""
    if backend != "postgresql":
        pytest.skip("timing on PostgreSQL only")
    made = await make_subscriber(
        session_factory, settings, opened_days_ago=opened_days_ago_for(date(2026, 1, 1))
    )
    async with session_factory() as session:
        await begin_write(session)
        template = (
            await session.execute(sa.select(Contract).where(Contract.id == made.contract_ids[0]))
        ).scalar_one()
        packages = (
            await session.scalars(
                sa.select(TvPackage.id).where(TvPackage.code.in_(["base", "sport", "kids"]))
            )
        ).all()
        await session.execute(
            sa.text(
                "INSERT INTO contracts (number, subscriber_id, region_code, address, status,"
                " balance, tariff_id, opened_on, created_at)"
                " SELECT 'T' || lpad(n::text, 11, '0'), :sid, 'MOW', 'bench', 'ACTIVE',"
                " (n % 50)::numeric, :tariff, :opened, now()"
                " FROM generate_series(1, :count) AS n"
            ),
            {
                "sid": template.subscriber_id,
                "tariff": template.tariff_id,
                "opened": date(2026, 1, 1),
                "count": TIMING_CONTRACTS,
            },
        )
        await session.execute(
            sa.text(
                "INSERT INTO ledger_entries (contract_id, kind, amount, balance_after,"
                " description, actor, created_at)"
                " SELECT id, 'TOP_UP', balance, balance, '', 'test', now() FROM contracts"
                " WHERE address = 'bench' AND balance <> 0"
            )
        )
        for package_id in packages:
            await session.execute(
                sa.text(
                    "INSERT INTO contract_tv_packages (contract_id, package_id, started_on,"
                    " connected_at) SELECT id, :package, :started, now() FROM contracts"
                    " WHERE address = 'bench'"
                ),
                {"package": package_id, "started": date(2026, 1, 1)},
            )
        await session.execute(sa.text("ANALYZE"))
        await session.commit()

    started = time.perf_counter()
    summary = await run_billing_day(session_factory, settings=settings, day=date(2026, 6, 1))
    seconds = time.perf_counter() - started
    print(
        f"\nbilling day on PostgreSQL: {summary.contracts_charged} contracts charged,"
        f" {summary.total_charged} RUB, {summary.contracts_suspended} suspended,"
        f" in {seconds:.2f} s"
    )
    assert summary.contracts_charged == TIMING_CONTRACTS + 1
    async with session_factory() as session:
        count = await session.scalar(sa.select(sa.func.count()).select_from(BillingCharge))
        subscribers = await session.scalar(sa.select(sa.func.count()).select_from(Subscriber))
    assert count == TIMING_CONTRACTS + 1 and subscribers == 1
    await assert_ledger_balanced(session_factory)


async def test_billing_transactions_plan_for_their_parameters_on_postgresql(
    session_factory: Any, backend: str
) -> None:
    """The service's connections plan generically (kabinet/db.py); the billing day's large
    statements are planned for their real parameters, only inside its own transactions."""
    if backend != "postgresql":
        pytest.skip("plan_cache_mode is PostgreSQL's")

    async def plan_mode(session: Any) -> str:
        return str(await session.scalar(sa.text("SHOW plan_cache_mode")))

    # when
    inside = await billing._in_write_transaction(session_factory, plan_mode)
    async with session_factory() as session:
        outside = await plan_mode(session)
    # then
    assert (inside, outside) == ("force_custom_plan", "force_generic_plan")
