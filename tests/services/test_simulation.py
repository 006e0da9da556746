"""A month of services and billing days (SPEC §3 "Billing day", issue 5): items connected and
disconnected mid-month through the verbs, the days billed through `kabinet billing run`, and
the total charged equal, to the kopeck, to the prorated sum worked out here by hand.

June 2026 (30 days), a MOW contract on home-100; what is asked for on day d is charged from
day d + 1, what is dropped on day d is charged up to and including day d:
    day  3  connect Sport (399.00)                → charged days 4..20
    day  5  activate static IP (150.00)           → charged days 6..12
    day  8  6 Personal TV channels (6 × 15.00)    → charged days 9..30
    day 10  change to home-300 (590.00 → 750.00)  → 590 on days 1..10, 750 on days 11..30
    day 12  deactivate static IP
    day 15  2 Multiroom receivers (50.00 each)    → charged days 16..30
    day 20  disconnect Sport
Daily shares (fee / 30, half-up, each item on its own): 19.67, 25.00, 13.30, 5.00, 3.00,
1.67 per receiver:
    days  1–3   19.67                        × 3  =   59.01
    days  4–5   19.67 + 13.30                × 2  =   65.94
    days  6–8   19.67 + 13.30 + 5.00         × 3  =  113.91
    days  9–10  19.67 + 13.30 + 5.00 + 3.00  × 2  =   81.94
    days 11–12  25.00 + 13.30 + 5.00 + 3.00  × 2  =   92.60
    days 13–15  25.00 + 13.30 + 3.00         × 3  =  123.90
    days 16–20  25.00 + 13.30 + 3.00 + 3.34  × 5  =  223.20
    days 21–30  25.00 + 3.00 + 3.34          × 10 =  313.40
                                                   1,073.90
The requests of days 3, 8, 12 and 20 are made before that day's billing run, those of days
5, 10 and 15 after it: the outcome must not depend on it (a connection made before the run is
not charged that day, a disconnection made before the run still is).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from kabinet.cli import main
from models import BillingCharge, Contract, LedgerEntry, ServiceOption, Tariff, TvPackage
from resolvers import services
from resolvers.lineup import monthly_charges_view
from tests.money.test_ledger import assert_ledger_balanced
from tests.services.test_services import (
    balance_of,
    call,
    catalog_id,
    new_contract,
    paid_channel_ids,
)

JUNE = [date(2026, 6, d) for d in range(1, 31)]
START_BALANCE = Decimal("3000.00")
HAND_TOTAL = Decimal("1073.90")
BEFORE_THE_RUN = {3, 8, 12, 20}


def _share(monthly_fee: str) -> Decimal:
    return (Decimal(monthly_fee) / 30).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _fees_on(day: int) -> list[str]:
    """The monthly fees charged on June `day`, by the table above."""
    fees = ["590.00" if day <= 10 else "750.00"]
    if 4 <= day <= 20:
        fees.append("399.00")
    if 6 <= day <= 12:
        fees.append("150.00")
    if day >= 9:
        fees.append("90.00")
    if day >= 16:
        fees += ["50.00", "50.00"]
    return fees


def _expected_per_day() -> list[tuple[date, Decimal]]:
    return [(day, sum((_share(f) for f in _fees_on(day.day)), Decimal("0"))) for day in JUNE]


async def test_a_month_of_changes_is_charged_exactly(
    session_factory: Any, settings: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # given a funded contract and the month's plan
    cid = await new_contract(session_factory, settings, balance=START_BALANCE)
    sport = await catalog_id(session_factory, TvPackage, "sport")
    static_ip = await catalog_id(session_factory, ServiceOption, "static-ip")
    home_300 = await catalog_id(session_factory, Tariff, "home-300")
    channels = await paid_channel_ids(session_factory, 6)
    monkeypatch.setenv("KABINET_DATABASE_URL", settings.database_url)

    def verb(fn: Callable[..., Awaitable[Any]], **kw: Any) -> Callable[[date], Awaitable[Any]]:
        async def run(today: date) -> Any:
            return await call(
                session_factory, fn, settings=settings, contract_id=cid, today=today, **kw
            )

        return run

    plan: dict[int, list[Callable[[date], Awaitable[Any]]]] = {
        3: [verb(services.connect_tv_package, package_id=sport)],
        5: [verb(services.activate_option, option_id=static_ip)],
        8: [verb(services.set_personal_tv_channels, channel_ids=channels)],
        10: [verb(services.change_tariff, tariff_id=home_300)],
        12: [verb(services.deactivate_option, option_id=static_ip)],
        15: [verb(services.add_multiroom_device), verb(services.add_multiroom_device)],
        20: [verb(services.disconnect_tv_package, package_id=sport)],
    }

    # when each day of June is lived: the day's requests, and its billing run by the CLI
    for day in JUNE:
        actions = plan.get(day.day, [])
        before = day.day in BEFORE_THE_RUN
        for action in actions if before else []:
            await action(day)
        argv = ["billing", "run", "--date", day.isoformat()]
        assert await asyncio.to_thread(main, argv) == 0
        for action in [] if before else actions:
            await action(day)
    capsys.readouterr()

    # then every day was charged its hand-computed amount, and the month the hand total
    expected = _expected_per_day()
    assert sum(amount for _, amount in expected) == HAND_TOTAL
    async with session_factory() as session:
        charged = (
            await session.execute(
                sa.select(BillingCharge.day, BillingCharge.amount)
                .where(BillingCharge.contract_id == cid)
                .order_by(BillingCharge.day)
            )
        ).all()
        entries = (
            await session.scalars(
                sa.select(LedgerEntry.amount).where(
                    LedgerEntry.contract_id == cid, LedgerEntry.kind == "CHARGE"
                )
            )
        ).all()
    cent = Decimal("0.01")
    assert [(d, Decimal(str(a)).quantize(cent)) for d, a in charged] == expected
    assert len(entries) == 30
    assert -sum(Decimal(str(a)).quantize(cent) for a in entries) == HAND_TOTAL
    assert await balance_of(session_factory, cid) == START_BALANCE - HAND_TOTAL
    await assert_ledger_balanced(session_factory)

    # and the contract is on home-300 (applied by the billing day or not, it is in effect)
    async with session_factory() as session:
        contract = await session.get(Contract, cid)
    assert contract is not None and services.tariff_on(contract, JUNE[-1]) == home_300

    # and July starts with home-300, Personal TV and the 2 receivers
    async with session_factory() as session:
        july = await monthly_charges_view(session, [cid], today=JUNE[-1])
    assert sorted(str(item.monthly_fee) for item in july[cid]) == [
        "50.00",
        "50.00",
        "750.00",
        "90.00",
    ]
