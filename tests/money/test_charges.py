"""A contract's monthly charges (resolvers/charges.py) and the daily share's rounding.

Also the helpers the billing and promised-payment tests use to connect items and to move
money through the ledger.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from core.db import begin_write
from models import (
    Channel,
    Contract,
    ContractOption,
    ContractPersonalChannel,
    ContractTvPackage,
    MultiroomDevice,
    ServiceOption,
    Tariff,
    TvPackage,
)
from resolvers import ledger
from resolvers.charges import (
    MULTIROOM_DEVICE,
    OPTION,
    PERSONAL_TV,
    TARIFF,
    TV_PACKAGE,
    ChargeItem,
    daily_share,
    daily_totals,
    days_in_month,
    monthly_charges,
    monthly_totals,
)
from tests.factories import make_subscriber

# Catalogue prices (kabinet/catalog_data.py): the test contracts are on MOW "home-100".
TARIFF_FEE = Decimal("590.00")
PACKAGE_FEES = {"base": Decimal("249.00"), "sport": Decimal("399.00"), "cinema": Decimal("349.00")}
OPTION_FEES = {"static-ip": Decimal("150.00"), "antivirus": Decimal("99.00")}


# -- helpers shared with test_billing.py and test_promised.py ------------------------------


def opened_days_ago_for(day: date) -> int:
    """`make_subscriber(opened_days_ago=…)` for a contract opened on `day`."""
    return (datetime.now(UTC).date() - day).days


async def fund(
    session_factory: Any, contract_id: int, amount: Decimal, kind: str = "TOP_UP"
) -> None:
    """Move money through the ledger, as a top-up or an adjustment would."""
    async with session_factory() as session:
        await begin_write(session)
        await ledger.post(session, contract_id=contract_id, kind=kind, amount=amount, actor="test")
        await session.commit()


async def add_package(
    session_factory: Any,
    contract_id: int,
    code: str,
    *,
    started_on: date,
    ended_on: date | None = None,
    free_until: date | None = None,
) -> None:
    async with session_factory() as session:
        await begin_write(session)
        package_id = await session.scalar(sa.select(TvPackage.id).where(TvPackage.code == code))
        session.add(
            ContractTvPackage(
                contract_id=contract_id,
                package_id=package_id,
                started_on=started_on,
                ended_on=ended_on,
                free_until=free_until,
            )
        )
        await session.commit()


async def add_option(
    session_factory: Any,
    contract_id: int,
    code: str,
    *,
    started_on: date,
    ended_on: date | None = None,
    free_until: date | None = None,
) -> None:
    async with session_factory() as session:
        await begin_write(session)
        option_id = await session.scalar(
            sa.select(ServiceOption.id).where(ServiceOption.code == code)
        )
        session.add(
            ContractOption(
                contract_id=contract_id,
                option_id=option_id,
                started_on=started_on,
                ended_on=ended_on,
                free_until=free_until,
            )
        )
        await session.commit()


async def add_personal_channels(
    session_factory: Any,
    contract_id: int,
    count: int,
    *,
    started_on: date,
    fee: Decimal = Decimal("15.00"),
    ended_on: date | None = None,
) -> None:
    async with session_factory() as session:
        await begin_write(session)
        channel_ids = (
            await session.scalars(
                sa.select(Channel.id)
                .where(sa.not_(Channel.must_carry))
                .order_by(Channel.number)
                .limit(count)
            )
        ).all()
        for channel_id in channel_ids:
            session.add(
                ContractPersonalChannel(
                    contract_id=contract_id,
                    channel_id=channel_id,
                    monthly_fee=fee,
                    started_on=started_on,
                    ended_on=ended_on,
                )
            )
        await session.commit()


async def add_multiroom(
    session_factory: Any,
    contract_id: int,
    *,
    started_on: date,
    fee: Decimal = Decimal("50.00"),
    ended_on: date | None = None,
    serial: str = "SN-1",
) -> None:
    async with session_factory() as session:
        await begin_write(session)
        session.add(
            MultiroomDevice(
                contract_id=contract_id,
                serial=serial,
                monthly_fee=fee,
                started_on=started_on,
                ended_on=ended_on,
            )
        )
        await session.commit()


async def add_full_line_up(session_factory: Any, contract_id: int, *, started_on: date) -> None:
    """Tariff (the contract's) + 2 packages + 7 Personal TV channels + 2 Multiroom receivers
    + 1 option."""
    for code in ("base", "sport"):
        await add_package(session_factory, contract_id, code, started_on=started_on)
    await add_personal_channels(session_factory, contract_id, 7, started_on=started_on)
    await add_multiroom(session_factory, contract_id, started_on=started_on, serial="SN-1")
    await add_multiroom(session_factory, contract_id, started_on=started_on, serial="SN-2")
    await add_option(session_factory, contract_id, "static-ip", started_on=started_on)


@contextlib.asynccontextmanager
async def on_a_free_tariff(session_factory: Any, contract_id: int) -> AsyncIterator[None]:
    """Put the contract on a tariff with no fee for the block (a catalogue row of that test
    only: the catalogue outlives the test, so the row is removed after)."""
    async with session_factory() as session:
        await begin_write(session)
        free = Tariff(
            code="test-free",
            name="Бесплатный",
            region_code="MOW",
            monthly_fee=Decimal("0"),
            speed_mbps=1,
        )
        session.add(free)
        await session.flush()
        old = await session.scalar(sa.select(Contract.tariff_id).where(Contract.id == contract_id))
        await session.execute(
            sa.update(Contract).where(Contract.id == contract_id).values(tariff_id=free.id)
        )
        await session.commit()
    try:
        yield
    finally:
        async with session_factory() as session:
            await begin_write(session)
            await session.execute(
                sa.update(Contract).where(Contract.id == contract_id).values(tariff_id=old)
            )
            await session.execute(sa.delete(Tariff).where(Tariff.code == "test-free"))
            await session.commit()


FULL_LINE_UP_FEES = [
    TARIFF_FEE,
    PACKAGE_FEES["base"],
    PACKAGE_FEES["sport"],
    Decimal("105.00"),  # Personal TV: 7 × 15.00, one item
    Decimal("50.00"),
    Decimal("50.00"),
    OPTION_FEES["static-ip"],
]


# -- daily share ---------------------------------------------------------------------------


def test_daily_share_is_rounded_half_up_per_item() -> None:
    june, july, february = date(2026, 6, 10), date(2026, 7, 10), date(2026, 2, 10)
    # The SPEC's example: 590.00 / 30 = 19.666… → 19.67.
    assert daily_share(Decimal("590.00"), june) == Decimal("19.67")
    # Exactly half a kopeck goes up: 15.15 / 30 = 0.505 → 0.51; 0.15 / 30 = 0.005 → 0.01.
    assert daily_share(Decimal("15.15"), june) == Decimal("0.51")
    assert daily_share(Decimal("0.15"), june) == Decimal("0.01")
    assert daily_share(Decimal("0.14"), june) == Decimal("0.00")
    # The month's length counts: 31 days in July, 28 in February 2026.
    assert daily_share(Decimal("590.00"), july) == Decimal("19.03")
    assert daily_share(Decimal("590.00"), february) == Decimal("21.07")
    assert days_in_month(date(2028, 2, 1)) == 29
    # Per item, then summed: 50.00 / 30 = 1.666… → 1.67 twice is 3.34, not 100 / 30 → 3.33.
    assert daily_share(Decimal("50.00"), june) * 2 == Decimal("3.34")
    assert daily_share(Decimal("100.00"), june) == Decimal("3.33")


# -- monthly charges -----------------------------------------------------------------------


async def test_monthly_charges_list_every_item_of_the_day(
    session_factory: Any, settings: Any
) -> None:
    # given a contract with every kind of item and one without any extra
    start = date(2026, 6, 1)
    made = await make_subscriber(
        session_factory, settings, contracts=2, opened_days_ago=opened_days_ago_for(start)
    )
    full, bare = made.contract_ids
    await add_full_line_up(session_factory, full, started_on=start)

    # when
    async with session_factory() as session:
        charges = await monthly_charges(session, [full, bare, 999_999], on=date(2026, 6, 15))

    # then: one statement answers for all, in a stable order
    assert [(i.kind, i.monthly_fee) for i in charges[full]] == [
        (TARIFF, TARIFF_FEE),
        (TV_PACKAGE, PACKAGE_FEES["base"]),
        (TV_PACKAGE, PACKAGE_FEES["sport"]),
        (PERSONAL_TV, Decimal("105.00")),
        (MULTIROOM_DEVICE, Decimal("50.00")),
        (MULTIROOM_DEVICE, Decimal("50.00")),
        (OPTION, OPTION_FEES["static-ip"]),
    ]
    assert charges[full][0].name == "Домашний 100"
    assert charges[full][3] == ChargeItem(PERSONAL_TV, "Персональное ТВ", Decimal("105.00"), 7)
    assert charges[full][4].name.endswith("SN-1")
    assert charges[bare] == [ChargeItem(TARIFF, "Домашний 100", TARIFF_FEE)]
    assert charges[999_999] == []

    async with session_factory() as session:
        totals = await monthly_totals(session, [full, bare], on=date(2026, 6, 15))
        daily = await daily_totals(session, [full], on=date(2026, 6, 15))
    assert totals == {full: sum(FULL_LINE_UP_FEES), bare: TARIFF_FEE}
    assert daily[full] == sum(daily_share(fee, date(2026, 6, 15)) for fee in FULL_LINE_UP_FEES)


async def test_items_count_only_on_their_days(session_factory: Any, settings: Any) -> None:
    # given items with periods and a free period
    made = await make_subscriber(
        session_factory, settings, opened_days_ago=opened_days_ago_for(date(2026, 5, 1))
    )
    cid = made.contract_ids[0]
    await add_package(
        session_factory, cid, "cinema", started_on=date(2026, 6, 10), ended_on=date(2026, 6, 20)
    )
    await add_option(
        session_factory, cid, "antivirus", started_on=date(2026, 6, 1), free_until=date(2026, 6, 15)
    )
    await add_personal_channels(
        session_factory, cid, 5, started_on=date(2026, 6, 1), ended_on=date(2026, 6, 5)
    )

    async def kinds(day: date) -> list[str]:
        async with session_factory() as session:
            return [i.kind for i in (await monthly_charges(session, [cid], on=day))[cid]]

    # then: started_on ≤ D < ended_on; not before free_until
    assert await kinds(date(2026, 6, 4)) == [TARIFF, PERSONAL_TV]
    assert await kinds(date(2026, 6, 5)) == [TARIFF]
    assert await kinds(date(2026, 6, 9)) == [TARIFF]
    assert await kinds(date(2026, 6, 10)) == [TARIFF, TV_PACKAGE]
    assert await kinds(date(2026, 6, 15)) == [TARIFF, TV_PACKAGE, OPTION]
    assert await kinds(date(2026, 6, 19)) == [TARIFF, TV_PACKAGE, OPTION]
    assert await kinds(date(2026, 6, 20)) == [TARIFF, OPTION]


async def test_must_carry_channels_are_free_and_multiroom_does_not_multiply_packages(
    session_factory: Any, settings: Any
) -> None:
    # given a personal channel row that names a must-carry channel (never charged), one
    # package and three Multiroom receivers
    start = date(2026, 6, 1)
    made = await make_subscriber(
        session_factory, settings, opened_days_ago=opened_days_ago_for(start)
    )
    cid = made.contract_ids[0]
    async with session_factory() as session:
        await begin_write(session)
        must_carry = await session.scalar(sa.select(Channel.id).where(Channel.must_carry).limit(1))
        session.add(
            ContractPersonalChannel(
                contract_id=cid,
                channel_id=must_carry,
                monthly_fee=Decimal("15.00"),
                started_on=start,
            )
        )
        await session.commit()
    await add_package(session_factory, cid, "base", started_on=start)
    for n in range(3):
        await add_multiroom(session_factory, cid, started_on=start, serial=f"SN-{n}")

    async with session_factory() as session:
        items = (await monthly_charges(session, [cid], on=date(2026, 6, 2)))[cid]
    assert [i.kind for i in items] == [TARIFF, TV_PACKAGE] + [MULTIROOM_DEVICE] * 3


async def test_a_scheduled_tariff_counts_from_its_day(session_factory: Any, settings: Any) -> None:
    made = await make_subscriber(
        session_factory, settings, opened_days_ago=opened_days_ago_for(date(2026, 5, 1))
    )
    cid = made.contract_ids[0]
    async with session_factory() as session:
        await begin_write(session)
        dearer = await session.scalar(
            sa.select(Tariff.id).where(Tariff.region_code == "MOW", Tariff.code == "home-300")
        )
        await session.execute(
            sa.update(Contract)
            .where(Contract.id == cid)
            .values(scheduled_tariff_id=dearer, scheduled_tariff_from=date(2026, 6, 10))
        )
        await session.commit()
    async with session_factory() as session:
        before = await monthly_totals(session, [cid], on=date(2026, 6, 9))
        after = await monthly_totals(session, [cid], on=date(2026, 6, 10))
    assert before[cid] == TARIFF_FEE and after[cid] == Decimal("750.00")
