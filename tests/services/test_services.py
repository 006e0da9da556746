"""The service verbs (resolvers/services.py): tariff change, TV packages, Personal TV,
Multiroom and options, with their money rules, on both databases.

The helpers at the top are shared with test_lineup.py and test_simulation.py.

Dates: "today" is 10 June 2026 (a 30-day month), so an item connected today is charged from
11 June at fee / 30 a day. The contracts were opened on 1 May 2026.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from core.db import begin_write, unit_of_work
from core.errors import DomainError, ErrorCode
from models import (
    Channel,
    Contract,
    ContractOption,
    ContractPersonalChannel,
    ContractTvPackage,
    LedgerEntry,
    MultiroomDevice,
    PromisedPayment,
    ServiceOption,
    Tariff,
    TvPackage,
)
from models.base import utcnow
from resolvers import services
from resolvers.billing import run_billing_day
from tests.factories import make_subscriber
from tests.money.test_charges import fund, opened_days_ago_for
from tests.money.test_ledger import assert_ledger_balanced

TODAY = date(2026, 6, 10)
TOMORROW = date(2026, 6, 11)
OPENED = date(2026, 5, 1)

# Catalogue prices (kabinet/catalog_data.py), MOW.
HOME_100 = Decimal("590.00")
BASE_FEE = Decimal("249.00")
SPORT_FEE = Decimal("399.00")
STATIC_IP_FEE = Decimal("150.00")


# -- helpers shared with the other service tests -------------------------------------------


def share_of_june(monthly_fee: Decimal) -> Decimal:
    """fee / 30 half-up to kopecks, written out here rather than taken from charges.py."""
    kopecks = int(monthly_fee * 100)
    return Decimal((2 * kopecks + 30) // 60) / 100


async def new_contract(
    session_factory: Any, settings: Any, *, balance: Decimal = Decimal("1000.00")
) -> int:
    """A MOW contract on home-100 opened on 1 May 2026, funded through the ledger."""
    made = await make_subscriber(
        session_factory, settings, opened_days_ago=opened_days_ago_for(OPENED)
    )
    if balance:
        await fund(session_factory, made.contract_ids[0], balance)
    return made.contract_ids[0]


async def catalog_id(session_factory: Any, model: Any, code: str, region: str = "MOW") -> int:
    async with session_factory() as session:
        statement = sa.select(model.id).where(model.code == code)
        if model is Tariff:
            statement = statement.where(Tariff.region_code == region)
        found = await session.scalar(statement)
    assert found is not None, code
    return int(found)


async def paid_channel_ids(session_factory: Any, count: int, *, skip: int = 0) -> list[int]:
    """`count` channels that are not must-carry, by number, after the first `skip`."""
    async with session_factory() as session:
        found = await session.scalars(
            sa.select(Channel.id)
            .where(sa.not_(Channel.must_carry))
            .order_by(Channel.number)
            .offset(skip)
            .limit(count)
        )
        ids = [int(i) for i in found.all()]
    assert len(ids) == count
    return ids


async def must_carry_ids(session_factory: Any) -> list[int]:
    async with session_factory() as session:
        found = await session.scalars(
            sa.select(Channel.id).where(Channel.must_carry).order_by(Channel.number)
        )
        return [int(i) for i in found.all()]


async def call(session_factory: Any, verb: Callable[..., Awaitable[Any]], **kw: Any) -> Any:
    async with unit_of_work(session_factory) as session:
        return await verb(session, **kw)


async def refused(
    session_factory: Any,
    verb: Callable[..., Awaitable[Any]],
    code: ErrorCode,
    *,
    field: str | None = None,
    **kw: Any,
) -> DomainError:
    with pytest.raises(DomainError) as caught:
        await call(session_factory, verb, **kw)
    assert caught.value.code == code, caught.value.message
    assert caught.value.field == field
    return caught.value


_ITEM = {
    ContractTvPackage: "package_id",
    ContractOption: "option_id",
    ContractPersonalChannel: "channel_id",
    MultiroomDevice: "serial",
}


async def periods(session_factory: Any, model: Any, contract_id: int) -> list[tuple[Any, ...]]:
    """(item, started_on, ended_on) of every row of the contract, in insertion order."""
    item = getattr(model, _ITEM[model])
    async with session_factory() as session:
        rows = (
            await session.execute(
                sa.select(item, model.started_on, model.ended_on)
                .where(model.contract_id == contract_id)
                .order_by(model.id)
            )
        ).all()
    return [tuple(row) for row in rows]


async def contract_row(session_factory: Any, contract_id: int) -> Contract:
    async with session_factory() as session:
        found = await session.get(Contract, contract_id)
    assert found is not None
    return found


async def set_status(session_factory: Any, contract_id: int, status: str) -> None:
    async with session_factory() as session:
        await begin_write(session)
        await session.execute(
            sa.update(Contract).where(Contract.id == contract_id).values(status=status)
        )
        await session.commit()


async def open_a_promise(session_factory: Any, contract_id: int) -> None:
    """An OPEN promised payment (its money movement does not matter to these rules)."""
    async with session_factory() as session:
        await begin_write(session)
        session.add(
            PromisedPayment(
                contract_id=contract_id,
                amount=Decimal("100.00"),
                fee=Decimal("0.00"),
                status="OPEN",
                due_at=utcnow() + timedelta(days=3),
            )
        )
        await session.commit()


async def balance_of(session_factory: Any, contract_id: int) -> Decimal:
    async with session_factory() as session:
        value = await session.scalar(sa.select(Contract.balance).where(Contract.id == contract_id))
    return Decimal(str(value)).quantize(Decimal("0.01"))


@contextlib.asynccontextmanager
async def archived(session_factory: Any, model: Any, item_id: int) -> AsyncIterator[None]:
    """Archive a catalogue row for the block (the catalogue outlives the test: restored)."""
    async with session_factory() as session:
        await begin_write(session)
        await session.execute(sa.update(model).where(model.id == item_id).values(archived=True))
        await session.commit()
    try:
        yield
    finally:
        async with session_factory() as session:
            await begin_write(session)
            await session.execute(
                sa.update(model).where(model.id == item_id).values(archived=False)
            )
            await session.commit()


# -- tariff --------------------------------------------------------------------------------


async def test_change_tariff_schedules_it_from_tomorrow(
    session_factory: Any, settings: Any
) -> None:
    # given a contract on home-100
    cid = await new_contract(session_factory, settings)
    home_100 = await catalog_id(session_factory, Tariff, "home-100")
    home_300 = await catalog_id(session_factory, Tariff, "home-300")

    # when it changes to home-300 today
    contract = await call(
        session_factory,
        services.change_tariff,
        settings=settings,
        contract_id=cid,
        tariff_id=home_300,
        today=TODAY,
    )

    # then the change waits for tomorrow: today is still home-100
    assert contract.scheduled_tariff_id == home_300
    stored = await contract_row(session_factory, cid)
    assert stored.tariff_id == home_100
    assert (stored.scheduled_tariff_id, stored.scheduled_tariff_from) == (home_300, TOMORROW)
    assert stored.tariff_changed_on == TODAY
    assert services.tariff_on(stored, TODAY) == home_100
    assert services.tariff_on(stored, TOMORROW) == home_300
    assert services.pending_tariff_change(stored, today=TODAY) == (home_300, TOMORROW)
    assert services.pending_tariff_change(stored, today=TOMORROW) is None


async def test_change_tariff_refusals(session_factory: Any, settings: Any) -> None:
    # given
    cid = await new_contract(session_factory, settings)
    args = {"settings": settings, "contract_id": cid, "today": TODAY}
    verb = services.change_tariff
    spb = await catalog_id(session_factory, Tariff, "home-300", region="SPB")
    archived_tariff = await catalog_id(session_factory, Tariff, "start-30")
    home_100 = await catalog_id(session_factory, Tariff, "home-100")

    # then: unknown, another region's, archived, the current one
    await refused(
        session_factory, verb, ErrorCode.NOT_FOUND, field="tariffId", tariff_id=999_999, **args
    )
    await refused(session_factory, verb, ErrorCode.INVALID, field="tariffId", tariff_id=spb, **args)
    await refused(
        session_factory,
        verb,
        ErrorCode.INVALID,
        field="tariffId",
        tariff_id=archived_tariff,
        **args,
    )
    await refused(
        session_factory, verb, ErrorCode.INVALID, field="tariffId", tariff_id=home_100, **args
    )
    # and nothing was scheduled
    stored = await contract_row(session_factory, cid)
    assert stored.scheduled_tariff_id is None and stored.tariff_changed_on is None


async def test_change_tariff_once_per_day_and_cancel(session_factory: Any, settings: Any) -> None:
    # given a change made today
    cid = await new_contract(session_factory, settings)
    home_300 = await catalog_id(session_factory, Tariff, "home-300")
    home_500 = await catalog_id(session_factory, Tariff, "home-500")
    args = {"settings": settings, "contract_id": cid}
    await call(session_factory, services.change_tariff, tariff_id=home_300, today=TODAY, **args)

    # then a second one today is refused
    error = await refused(
        session_factory,
        services.change_tariff,
        ErrorCode.NOT_ELIGIBLE,
        tariff_id=home_500,
        today=TODAY,
        **args,
    )
    assert "once per day" in error.message
    assert (await contract_row(session_factory, cid)).scheduled_tariff_id == home_300

    # when it is cancelled
    await call(session_factory, services.cancel_tariff_change, today=TODAY, **args)

    # then the schedule is gone, the day's change is spent, and nothing is left to cancel
    stored = await contract_row(session_factory, cid)
    assert stored.scheduled_tariff_id is None and stored.scheduled_tariff_from is None
    assert stored.tariff_changed_on == TODAY
    await refused(
        session_factory,
        services.change_tariff,
        ErrorCode.NOT_ELIGIBLE,
        tariff_id=home_500,
        today=TODAY,
        **args,
    )
    await refused(
        session_factory, services.cancel_tariff_change, ErrorCode.NOT_FOUND, today=TODAY, **args
    )

    # when tomorrow comes, another change is allowed
    await call(session_factory, services.change_tariff, tariff_id=home_500, today=TOMORROW, **args)
    stored = await contract_row(session_factory, cid)
    assert (stored.scheduled_tariff_id, stored.scheduled_tariff_from) == (
        home_500,
        TOMORROW + timedelta(days=1),
    )


async def test_a_change_in_effect_cannot_be_cancelled_and_is_folded_by_the_next(
    session_factory: Any, settings: Any
) -> None:
    # given a change made on the 10th, in effect from the 11th, not applied by a billing day
    cid = await new_contract(session_factory, settings)
    home_300 = await catalog_id(session_factory, Tariff, "home-300")
    econom = await catalog_id(session_factory, Tariff, "econom-50")
    args = {"settings": settings, "contract_id": cid}
    await call(session_factory, services.change_tariff, tariff_id=home_300, today=TODAY, **args)
    day_12 = date(2026, 6, 12)

    # then on the 12th it is the current tariff: nothing to cancel, not "a change" to make
    await refused(
        session_factory, services.cancel_tariff_change, ErrorCode.NOT_FOUND, today=day_12, **args
    )
    await refused(
        session_factory,
        services.change_tariff,
        ErrorCode.INVALID,
        field="tariffId",
        tariff_id=home_300,
        today=day_12,
        **args,
    )

    # when the 12th changes to econom-50
    await call(session_factory, services.change_tariff, tariff_id=econom, today=day_12, **args)

    # then home-300 became the current tariff (the 12th is charged at it), econom from the 13th
    stored = await contract_row(session_factory, cid)
    assert stored.tariff_id == home_300
    assert (stored.scheduled_tariff_id, stored.scheduled_tariff_from) == (econom, date(2026, 6, 13))


async def test_a_dearer_tariff_is_refused_while_a_promise_is_open(
    session_factory: Any, settings: Any
) -> None:
    # given an open promised payment
    cid = await new_contract(session_factory, settings)
    await open_a_promise(session_factory, cid)
    home_300 = await catalog_id(session_factory, Tariff, "home-300")
    econom = await catalog_id(session_factory, Tariff, "econom-50")
    args = {"settings": settings, "contract_id": cid, "today": TODAY}

    # then a dearer tariff is refused, a cheaper one is fine
    await refused(
        session_factory,
        services.change_tariff,
        ErrorCode.NOT_ELIGIBLE,
        field="tariffId",
        tariff_id=home_300,
        **args,
    )
    assert (await contract_row(session_factory, cid)).scheduled_tariff_id is None
    await call(session_factory, services.change_tariff, tariff_id=econom, **args)
    assert (await contract_row(session_factory, cid)).scheduled_tariff_id == econom


async def test_tariff_change_on_suspended_and_closed_contracts(
    session_factory: Any, settings: Any
) -> None:
    # given a suspended and a closed contract
    suspended = await new_contract(session_factory, settings, balance=Decimal("0"))
    closed = await new_contract(session_factory, settings)
    await set_status(session_factory, suspended, "SUSPENDED")
    await set_status(session_factory, closed, "CLOSED")
    econom = await catalog_id(session_factory, Tariff, "econom-50")

    # then the suspended one may change (a tariff is not a new paid item), the closed may not
    await call(
        session_factory,
        services.change_tariff,
        settings=settings,
        contract_id=suspended,
        tariff_id=econom,
        today=TODAY,
    )
    assert (await contract_row(session_factory, suspended)).scheduled_tariff_id == econom
    await refused(
        session_factory,
        services.change_tariff,
        ErrorCode.NOT_ELIGIBLE,
        settings=settings,
        contract_id=closed,
        tariff_id=econom,
        today=TODAY,
    )
    assert (await contract_row(session_factory, closed)).scheduled_tariff_id is None


async def test_apply_scheduled_tariffs_moves_the_due_ones(
    session_factory: Any, settings: Any
) -> None:
    # given one change effective tomorrow and one effective the day after
    first = await new_contract(session_factory, settings)
    second = await new_contract(session_factory, settings)
    home_300 = await catalog_id(session_factory, Tariff, "home-300")
    econom = await catalog_id(session_factory, Tariff, "econom-50")
    home_100 = await catalog_id(session_factory, Tariff, "home-100")
    await call(
        session_factory,
        services.change_tariff,
        settings=settings,
        contract_id=first,
        tariff_id=home_300,
        today=TODAY,
    )
    await call(
        session_factory,
        services.change_tariff,
        settings=settings,
        contract_id=second,
        tariff_id=econom,
        today=TOMORROW,
    )

    # when tomorrow's billing day applies the schedules (twice: the second is a no-op)
    for expected in (1, 0):
        async with session_factory() as session:
            await begin_write(session)
            assert await services.apply_scheduled_tariffs(session, day=TOMORROW) == expected
            await session.commit()

    # then only the first moved
    one = await contract_row(session_factory, first)
    two = await contract_row(session_factory, second)
    assert (one.tariff_id, one.scheduled_tariff_id, one.scheduled_tariff_from) == (
        home_300,
        None,
        None,
    )
    assert (two.tariff_id, two.scheduled_tariff_id) == (home_100, econom)


# -- TV packages ---------------------------------------------------------------------------


async def test_connect_and_disconnect_a_package(session_factory: Any, settings: Any) -> None:
    # given
    cid = await new_contract(session_factory, settings)
    sport = await catalog_id(session_factory, TvPackage, "sport")
    args = {"settings": settings, "contract_id": cid, "package_id": sport}

    # when it is connected on the 10th
    row = await call(session_factory, services.connect_tv_package, today=TODAY, **args)

    # then it is on from now, charged from the 11th; no money moved
    assert (row.package_id, row.started_on, row.ended_on) == (sport, TOMORROW, None)
    assert await periods(session_factory, ContractTvPackage, cid) == [(sport, TOMORROW, None)]
    assert await balance_of(session_factory, cid) == Decimal("1000.00")

    # when it is disconnected on the 20th
    day_20 = date(2026, 6, 20)
    row = await call(session_factory, services.disconnect_tv_package, today=day_20, **args)

    # then the 20th is the last day charged
    assert await periods(session_factory, ContractTvPackage, cid) == [
        (sport, TOMORROW, date(2026, 6, 21))
    ]
    assert row.disconnected_at is not None

    # when it is connected again later: a new row
    await call(session_factory, services.connect_tv_package, today=date(2026, 6, 25), **args)
    assert await periods(session_factory, ContractTvPackage, cid) == [
        (sport, TOMORROW, date(2026, 6, 21)),
        (sport, date(2026, 6, 26), None),
    ]
    await assert_ledger_balanced(session_factory)


async def test_a_package_connected_and_disconnected_the_same_day_costs_nothing(
    session_factory: Any, settings: Any
) -> None:
    # given a package connected and disconnected on the 10th, then connected again
    cid = await new_contract(session_factory, settings)
    sport = await catalog_id(session_factory, TvPackage, "sport")
    args = {"settings": settings, "contract_id": cid, "package_id": sport, "today": TODAY}
    await call(session_factory, services.connect_tv_package, **args)
    await call(session_factory, services.disconnect_tv_package, **args)
    await call(session_factory, services.connect_tv_package, **args)
    await call(session_factory, services.disconnect_tv_package, **args)

    # then both periods are empty
    assert await periods(session_factory, ContractTvPackage, cid) == [
        (sport, TOMORROW, TOMORROW),
        (sport, TOMORROW, TOMORROW),
    ]

    # and billing the 10th and the 11th charges the tariff only
    for day in (TODAY, TOMORROW):
        await run_billing_day(session_factory, settings=settings, day=day)
    assert await balance_of(session_factory, cid) == Decimal("1000.00") - 2 * share_of_june(
        HOME_100
    )
    await assert_ledger_balanced(session_factory)


async def test_connect_package_refusals(session_factory: Any, settings: Any) -> None:
    # given
    cid = await new_contract(session_factory, settings)
    sport = await catalog_id(session_factory, TvPackage, "sport")
    music = await catalog_id(session_factory, TvPackage, "music")
    args = {"settings": settings, "contract_id": cid, "today": TODAY}
    verb = services.connect_tv_package

    # then unknown and archived packages are refused
    await refused(
        session_factory, verb, ErrorCode.NOT_FOUND, field="packageId", package_id=999_999, **args
    )
    async with archived(session_factory, TvPackage, music):
        await refused(
            session_factory, verb, ErrorCode.INVALID, field="packageId", package_id=music, **args
        )
    assert await periods(session_factory, ContractTvPackage, cid) == []

    # and a package connected already is a CONFLICT
    await call(session_factory, verb, package_id=sport, **args)
    await refused(
        session_factory, verb, ErrorCode.CONFLICT, field="packageId", package_id=sport, **args
    )
    assert await periods(session_factory, ContractTvPackage, cid) == [(sport, TOMORROW, None)]

    # and disconnecting one not connected is NOT_FOUND
    await refused(
        session_factory,
        services.disconnect_tv_package,
        ErrorCode.NOT_FOUND,
        field="packageId",
        package_id=music,
        **args,
    )


async def test_an_archived_package_stays_on_the_contract(
    session_factory: Any, settings: Any
) -> None:
    # given a package connected before it was archived
    cid = await new_contract(session_factory, settings)
    music = await catalog_id(session_factory, TvPackage, "music")
    args = {"settings": settings, "contract_id": cid, "package_id": music}
    await call(session_factory, services.connect_tv_package, today=TODAY, **args)

    async with archived(session_factory, TvPackage, music):
        # when a billing day runs
        await run_billing_day(session_factory, settings=settings, day=TOMORROW)

        # then it is still charged, and can be disconnected but not connected again
        expected = share_of_june(HOME_100) + share_of_june(Decimal("149.00"))
        assert await balance_of(session_factory, cid) == Decimal("1000.00") - expected
        await call(session_factory, services.disconnect_tv_package, today=TOMORROW, **args)
        await refused(
            session_factory,
            services.connect_tv_package,
            ErrorCode.INVALID,
            field="packageId",
            today=TOMORROW,
            **args,
        )
    assert await periods(session_factory, ContractTvPackage, cid) == [
        (music, TOMORROW, date(2026, 6, 12))
    ]
    await assert_ledger_balanced(session_factory)


async def test_the_unique_index_is_the_last_line_of_defence(
    session_factory: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a connected package, and a verb that fails to see it (as a racing twin would)
    cid = await new_contract(session_factory, settings)
    sport = await catalog_id(session_factory, TvPackage, "sport")
    args = {"settings": settings, "contract_id": cid, "package_id": sport, "today": TODAY}
    await call(session_factory, services.connect_tv_package, **args)

    async def sees_nothing(*_args: Any) -> None:
        return None

    monkeypatch.setattr(services, "_active_package", sees_nothing)

    # then the database refuses the second active row: CONFLICT, nothing written
    await refused(session_factory, services.connect_tv_package, ErrorCode.CONFLICT, **args)
    assert await periods(session_factory, ContractTvPackage, cid) == [(sport, TOMORROW, None)]


# -- money rules (shared by every new paid item) -------------------------------------------


async def _connect_sport(session_factory: Any, settings: Any, cid: int) -> Any:
    sport = await catalog_id(session_factory, TvPackage, "sport")
    return await call(
        session_factory,
        services.connect_tv_package,
        settings=settings,
        contract_id=cid,
        package_id=sport,
        today=TODAY,
    )


async def _activate_static_ip(session_factory: Any, settings: Any, cid: int) -> Any:
    static_ip = await catalog_id(session_factory, ServiceOption, "static-ip")
    return await call(
        session_factory,
        services.activate_option,
        settings=settings,
        contract_id=cid,
        option_id=static_ip,
        today=TODAY,
    )


async def _add_device(session_factory: Any, settings: Any, cid: int) -> Any:
    return await call(
        session_factory,
        services.add_multiroom_device,
        settings=settings,
        contract_id=cid,
        today=TODAY,
    )


async def _choose_five_channels(session_factory: Any, settings: Any, cid: int) -> Any:
    return await call(
        session_factory,
        services.set_personal_tv_channels,
        settings=settings,
        contract_id=cid,
        channel_ids=await paid_channel_ids(session_factory, 5),
        today=TODAY,
    )


# (connect, table, first day's charge on 11 June)
NEW_PAID_ITEMS = {
    "package": (_connect_sport, ContractTvPackage, share_of_june(SPORT_FEE)),  # 13.30
    "option": (_activate_static_ip, ContractOption, share_of_june(STATIC_IP_FEE)),  # 5.00
    "multiroom": (_add_device, MultiroomDevice, share_of_june(Decimal("50.00"))),  # 1.67
    "personal_tv": (_choose_five_channels, ContractPersonalChannel, share_of_june(Decimal("75"))),
}


@pytest.mark.parametrize("item", sorted(NEW_PAID_ITEMS))
async def test_a_new_paid_item_needs_its_first_day_on_the_balance(
    session_factory: Any, settings: Any, item: str
) -> None:
    connect, table, first_day = NEW_PAID_ITEMS[item]
    # given a balance one kopeck short of the first day
    cid = await new_contract(session_factory, settings, balance=first_day - Decimal("0.01"))

    # then it is refused and nothing is written
    with pytest.raises(DomainError) as caught:
        await connect(session_factory, settings, cid)
    assert caught.value.code == ErrorCode.INSUFFICIENT_FUNDS
    assert str(first_day) in caught.value.message
    assert await periods(session_factory, table, cid) == []

    # when the kopeck arrives, it is connected (and nothing is debited before the billing day)
    await fund(session_factory, cid, Decimal("0.01"))
    await connect(session_factory, settings, cid)
    assert len(await periods(session_factory, table, cid)) >= 1
    assert await balance_of(session_factory, cid) == first_day
    await assert_ledger_balanced(session_factory)


@pytest.mark.parametrize("item", sorted(NEW_PAID_ITEMS))
@pytest.mark.parametrize("state", ["SUSPENDED", "PROMISE_OPEN", "CLOSED"])
async def test_a_new_paid_item_is_not_eligible(
    session_factory: Any, settings: Any, item: str, state: str
) -> None:
    connect, table, _ = NEW_PAID_ITEMS[item]
    # given a well-funded contract that is suspended, has an open promise, or is closed
    cid = await new_contract(session_factory, settings)
    if state == "PROMISE_OPEN":
        await open_a_promise(session_factory, cid)
    else:
        await set_status(session_factory, cid, state)

    # then the new item is refused
    with pytest.raises(DomainError) as caught:
        await connect(session_factory, settings, cid)
    assert caught.value.code == ErrorCode.NOT_ELIGIBLE
    assert await periods(session_factory, table, cid) == []


async def test_disconnecting_is_allowed_while_suspended(
    session_factory: Any, settings: Any
) -> None:
    # given every kind of item, then a suspension
    cid = await new_contract(session_factory, settings)
    for connect, _, _ in NEW_PAID_ITEMS.values():
        await connect(session_factory, settings, cid)
    device = (await periods(session_factory, MultiroomDevice, cid))[0]
    await set_status(session_factory, cid, "SUSPENDED")
    await open_a_promise(session_factory, cid)
    args = {"settings": settings, "contract_id": cid, "today": date(2026, 6, 15)}

    # when everything is disconnected
    await call(
        session_factory,
        services.disconnect_tv_package,
        package_id=await catalog_id(session_factory, TvPackage, "sport"),
        **args,
    )
    await call(
        session_factory,
        services.deactivate_option,
        option_id=await catalog_id(session_factory, ServiceOption, "static-ip"),
        **args,
    )
    async with session_factory() as session:
        device_id = await session.scalar(
            sa.select(MultiroomDevice.id).where(MultiroomDevice.serial == device[0])
        )
    await call(session_factory, services.remove_multiroom_device, device_id=device_id, **args)
    await call(session_factory, services.set_personal_tv_channels, channel_ids=[], **args)

    # then every row ends on the 16th
    for table in (ContractTvPackage, ContractOption, MultiroomDevice, ContractPersonalChannel):
        assert {p[1:] for p in await periods(session_factory, table, cid)} == {
            (TOMORROW, date(2026, 6, 16))
        }


async def test_a_free_item_skips_the_money_rules(session_factory: Any, settings: Any) -> None:
    # given an operator renting receivers for free, and a suspended contract with nothing
    free = settings.model_copy(update={"multiroom_device_fee": Decimal("0.00")})
    cid = await new_contract(session_factory, settings, balance=Decimal("0"))
    await set_status(session_factory, cid, "SUSPENDED")
    await open_a_promise(session_factory, cid)

    # when a receiver is added
    device = await call(
        session_factory, services.add_multiroom_device, settings=free, contract_id=cid, today=TODAY
    )

    # then it is
    assert device.monthly_fee == Decimal("0.00")
    assert len(await periods(session_factory, MultiroomDevice, cid)) == 1


# -- Personal TV ---------------------------------------------------------------------------


async def _set_channels(
    session_factory: Any, settings: Any, cid: int, ids: list[int], today: date = TODAY
) -> Any:
    return await call(
        session_factory,
        services.set_personal_tv_channels,
        settings=settings,
        contract_id=cid,
        channel_ids=ids,
        today=today,
    )


async def _active_channels(session_factory: Any, cid: int) -> set[int]:
    return {
        channel
        for channel, _, ended in await periods(session_factory, ContractPersonalChannel, cid)
        if ended is None
    }


@pytest.mark.parametrize(("count", "accepted"), [(4, False), (5, True), (60, True), (61, False)])
async def test_personal_tv_limits(
    session_factory: Any, settings: Any, count: int, accepted: bool
) -> None:
    # given
    cid = await new_contract(session_factory, settings)
    ids = await paid_channel_ids(session_factory, count)

    # when / then
    if accepted:
        rows = await _set_channels(session_factory, settings, cid, ids)
        assert sorted(r.channel_id for r in rows) == sorted(ids)
        assert {r.monthly_fee for r in rows} == {settings.personal_tv_channel_fee}
        assert await _active_channels(session_factory, cid) == set(ids)
    else:
        error = await refused(
            session_factory,
            services.set_personal_tv_channels,
            ErrorCode.INVALID,
            field="channelIds",
            settings=settings,
            contract_id=cid,
            channel_ids=ids,
            today=TODAY,
        )
        assert "5 to 60" in error.message
        assert await periods(session_factory, ContractPersonalChannel, cid) == []


async def test_personal_tv_empty_list_turns_it_off(session_factory: Any, settings: Any) -> None:
    # given 6 channels chosen on the 1st of June
    cid = await new_contract(session_factory, settings)
    ids = await paid_channel_ids(session_factory, 6)
    await _set_channels(session_factory, settings, cid, ids, today=date(2026, 6, 1))

    # when the list is emptied on the 10th
    assert await _set_channels(session_factory, settings, cid, []) == []

    # then every channel ends on the 11th (the 10th is paid)
    assert {p[1:] for p in await periods(session_factory, ContractPersonalChannel, cid)} == {
        (date(2026, 6, 2), TOMORROW)
    }
    assert await _active_channels(session_factory, cid) == set()


async def test_must_carry_channels_are_free_and_not_counted(
    session_factory: Any, settings: Any
) -> None:
    # given
    cid = await new_contract(session_factory, settings)
    must_carry = await must_carry_ids(session_factory)
    assert len(must_carry) == 20
    four = await paid_channel_ids(session_factory, 4)
    five = await paid_channel_ids(session_factory, 5)

    # then 4 paid channels are too few even with every must-carry channel added
    await refused(
        session_factory,
        services.set_personal_tv_channels,
        ErrorCode.INVALID,
        field="channelIds",
        settings=settings,
        contract_id=cid,
        channel_ids=four + must_carry,
        today=TODAY,
    )

    # when 5 paid channels come with 2 must-carry ones (and a repeat)
    rows = await _set_channels(session_factory, settings, cid, [*must_carry[:2], *five, five[0]])

    # then only the 5 paid ones are rows
    assert sorted(r.channel_id for r in rows) == sorted(five)
    assert await _active_channels(session_factory, cid) == set(five)

    # and a list of must-carry channels only is Personal TV off
    assert await _set_channels(session_factory, settings, cid, must_carry) == []
    assert await _active_channels(session_factory, cid) == set()


async def test_unknown_channels_are_named(session_factory: Any, settings: Any) -> None:
    cid = await new_contract(session_factory, settings)
    five = await paid_channel_ids(session_factory, 5)
    error = await refused(
        session_factory,
        services.set_personal_tv_channels,
        ErrorCode.INVALID,
        field="channelIds",
        settings=settings,
        contract_id=cid,
        channel_ids=[*five, 999_998, 999_999],
        today=TODAY,
    )
    assert "999998" in error.message and "999999" in error.message
    assert await periods(session_factory, ContractPersonalChannel, cid) == []


async def test_an_archived_channel_cannot_be_chosen(session_factory: Any, settings: Any) -> None:
    cid = await new_contract(session_factory, settings)
    five = await paid_channel_ids(session_factory, 5)
    async with archived(session_factory, Channel, five[0]):
        error = await refused(
            session_factory,
            services.set_personal_tv_channels,
            ErrorCode.INVALID,
            field="channelIds",
            settings=settings,
            contract_id=cid,
            channel_ids=five,
            today=TODAY,
        )
    assert str(five[0]) in error.message


async def test_personal_tv_changes_only_the_difference(session_factory: Any, settings: Any) -> None:
    # given channels A (6) chosen on the 1st
    cid = await new_contract(session_factory, settings)
    a = await paid_channel_ids(session_factory, 6)
    b = a[3:] + await paid_channel_ids(session_factory, 3, skip=6)
    await _set_channels(session_factory, settings, cid, a, today=date(2026, 6, 1))

    # when B (3 of A and 3 new) is chosen on the 10th
    rows = await _set_channels(session_factory, settings, cid, b)

    # then the 3 dropped end on the 11th, the 3 kept are untouched, the 3 new start the 11th
    assert sorted(r.channel_id for r in rows) == sorted(b)
    found = {
        (p[0], p[1], p[2]) for p in await periods(session_factory, ContractPersonalChannel, cid)
    }
    june_2 = date(2026, 6, 2)
    assert found == (
        {(c, june_2, TOMORROW) for c in a[:3]}
        | {(c, june_2, None) for c in a[3:]}
        | {(c, TOMORROW, None) for c in b[3:]}
    )

    # and the same list again changes nothing, even while suspended (nothing new)
    await set_status(session_factory, cid, "SUSPENDED")
    await _set_channels(session_factory, settings, cid, list(reversed(b)))
    assert {
        (p[0], p[1], p[2]) for p in await periods(session_factory, ContractPersonalChannel, cid)
    } == found


# -- Multiroom -----------------------------------------------------------------------------


async def test_four_receivers_and_not_a_fifth(session_factory: Any, settings: Any) -> None:
    # given
    cid = await new_contract(session_factory, settings)

    # when 4 receivers are added
    devices = [await _add_device(session_factory, settings, cid) for _ in range(4)]

    # then each has a serial, the fee and starts tomorrow
    assert all(re.fullmatch(r"MR-[0-9A-F]{8}", d.serial) for d in devices)
    assert len({d.serial for d in devices}) == 4
    assert {(d.monthly_fee, d.started_on, d.ended_on) for d in devices} == {
        (settings.multiroom_device_fee, TOMORROW, None)
    }

    # and a 5th is refused
    error = await refused(
        session_factory,
        services.add_multiroom_device,
        ErrorCode.NOT_ELIGIBLE,
        settings=settings,
        contract_id=cid,
        today=TODAY,
    )
    assert "4" in error.message
    assert len(await periods(session_factory, MultiroomDevice, cid)) == 4

    # when one is returned, another may be added
    await call(
        session_factory,
        services.remove_multiroom_device,
        settings=settings,
        contract_id=cid,
        device_id=devices[0].id,
        today=TODAY,
    )
    await _add_device(session_factory, settings, cid)
    found = await periods(session_factory, MultiroomDevice, cid)
    assert len(found) == 5 and sum(1 for p in found if p[2] is None) == 4
    assert found[0] == (devices[0].serial, TOMORROW, TOMORROW)  # never charged


async def test_remove_receiver_refusals(session_factory: Any, settings: Any) -> None:
    # given a receiver on one contract and another contract
    mine = await new_contract(session_factory, settings)
    other = await new_contract(session_factory, settings)
    device = await _add_device(session_factory, settings, mine)
    verb = services.remove_multiroom_device

    # then another contract's receiver and an unknown id are NOT_FOUND
    for contract_id, device_id in ((other, device.id), (mine, 999_999)):
        await refused(
            session_factory,
            verb,
            ErrorCode.NOT_FOUND,
            field="deviceId",
            settings=settings,
            contract_id=contract_id,
            device_id=device_id,
            today=TODAY,
        )
    assert await periods(session_factory, MultiroomDevice, mine) == [
        (device.serial, TOMORROW, None)
    ]

    # and a returned one is NOT_FOUND the second time
    day_20 = date(2026, 6, 20)
    args = {"settings": settings, "contract_id": mine, "device_id": device.id, "today": day_20}
    await call(session_factory, verb, **args)
    await refused(session_factory, verb, ErrorCode.NOT_FOUND, field="deviceId", **args)
    assert await periods(session_factory, MultiroomDevice, mine) == [
        (device.serial, TOMORROW, date(2026, 6, 21))
    ]


async def test_a_package_is_charged_once_with_four_receivers(
    session_factory: Any, settings: Any
) -> None:
    # given home-100, Base and 4 Multiroom receivers, all connected on the 10th
    cid = await new_contract(session_factory, settings)
    base = await catalog_id(session_factory, TvPackage, "base")
    await call(
        session_factory,
        services.connect_tv_package,
        settings=settings,
        contract_id=cid,
        package_id=base,
        today=TODAY,
    )
    for _ in range(4):
        await _add_device(session_factory, settings, cid)

    # when the 11th is billed
    await run_billing_day(session_factory, settings=settings, day=TOMORROW)

    # then: 19.67 tariff + 8.30 Base once + 4 × 1.67 receivers = 34.65
    expected = Decimal("19.67") + Decimal("8.30") + 4 * Decimal("1.67")
    assert expected == Decimal("34.65")
    async with session_factory() as session:
        amounts = (
            await session.scalars(
                sa.select(LedgerEntry.amount).where(
                    LedgerEntry.contract_id == cid, LedgerEntry.kind == "CHARGE"
                )
            )
        ).all()
    assert [Decimal(str(a)).quantize(Decimal("0.01")) for a in amounts] == [-expected]
    assert await balance_of(session_factory, cid) == Decimal("1000.00") - expected
    await assert_ledger_balanced(session_factory)


# -- options -------------------------------------------------------------------------------


async def test_activate_and_deactivate_an_option(session_factory: Any, settings: Any) -> None:
    # given
    cid = await new_contract(session_factory, settings)
    static_ip = await catalog_id(session_factory, ServiceOption, "static-ip")
    antivirus = await catalog_id(session_factory, ServiceOption, "antivirus")
    args = {"settings": settings, "contract_id": cid, "today": TODAY}

    # when activated on the 10th
    row = await call(session_factory, services.activate_option, option_id=static_ip, **args)
    assert (row.option_id, row.started_on, row.ended_on) == (static_ip, TOMORROW, None)

    # then again is a CONFLICT, an unknown or archived option is refused
    await refused(
        session_factory,
        services.activate_option,
        ErrorCode.CONFLICT,
        field="optionId",
        option_id=static_ip,
        **args,
    )
    await refused(
        session_factory,
        services.activate_option,
        ErrorCode.NOT_FOUND,
        field="optionId",
        option_id=999_999,
        **args,
    )
    async with archived(session_factory, ServiceOption, antivirus):
        await refused(
            session_factory,
            services.activate_option,
            ErrorCode.INVALID,
            field="optionId",
            option_id=antivirus,
            **args,
        )
    # and deactivating one that is off is NOT_FOUND
    await refused(
        session_factory,
        services.deactivate_option,
        ErrorCode.NOT_FOUND,
        field="optionId",
        option_id=antivirus,
        **args,
    )
    assert await periods(session_factory, ContractOption, cid) == [(static_ip, TOMORROW, None)]

    # when deactivated on the 12th
    day_12 = date(2026, 6, 12)
    await call(
        session_factory,
        services.deactivate_option,
        settings=settings,
        contract_id=cid,
        option_id=static_ip,
        today=day_12,
    )
    assert await periods(session_factory, ContractOption, cid) == [
        (static_ip, TOMORROW, date(2026, 6, 13))
    ]


# -- concurrency ---------------------------------------------------------------------------


async def test_concurrent_connects_of_one_package_make_one_row(
    session_factory: Any, settings: Any, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite serialises writers: there is no race to lose")
    # given
    cid = await new_contract(session_factory, settings)
    sport = await catalog_id(session_factory, TvPackage, "sport")

    async def connect() -> str:
        try:
            await call(
                session_factory,
                services.connect_tv_package,
                settings=settings,
                contract_id=cid,
                package_id=sport,
                today=TODAY,
            )
        except DomainError as error:
            return error.code
        return "OK"

    # when 8 requests connect it at once
    outcomes = await asyncio.gather(*(connect() for _ in range(8)))

    # then one did, the others got CONFLICT, and there is one row
    assert sorted(outcomes) == ["CONFLICT"] * 7 + ["OK"]
    assert await periods(session_factory, ContractTvPackage, cid) == [(sport, TOMORROW, None)]


async def test_concurrent_receivers_stop_at_the_limit(session_factory: Any, settings: Any) -> None:
    # given
    cid = await new_contract(session_factory, settings)

    async def add() -> str:
        try:
            await _add_device(session_factory, settings, cid)
        except DomainError as error:
            return error.code
        return "OK"

    # when 7 receivers are asked for at once
    outcomes = await asyncio.gather(*(add() for _ in range(7)))

    # then 4 are added
    assert sorted(outcomes) == ["NOT_ELIGIBLE"] * 3 + ["OK"] * 4
    assert len(await periods(session_factory, MultiroomDevice, cid)) == 4
