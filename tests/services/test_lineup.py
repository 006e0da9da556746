"""The read side of services (resolvers/lineup.py): what contracts have connected, the
channel line-up they receive (must-carry ∪ packages ∪ Personal TV) and the next month's
charges, each one statement for many contracts."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import STATEMENT_LISTENERS, RequestReader
from models import Channel, ServiceOption, Tariff, TvPackage, TvPackageChannel
from resolvers import lineup, services
from resolvers.charges import MULTIROOM_DEVICE, OPTION, PERSONAL_TV, TARIFF, TV_PACKAGE, ChargeItem
from tests.services.test_services import (
    TODAY,
    TOMORROW,
    call,
    catalog_id,
    must_carry_ids,
    new_contract,
    paid_channel_ids,
)


@contextlib.asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[RequestReader]:
    reader = RequestReader(engine)
    try:
        yield reader
    finally:
        await reader.close()


@contextlib.contextmanager
def counting_statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Every SELECT sent, through SQLAlchemy or the PostgreSQL fast path (not BEGIN)."""
    seen: list[str] = []

    def note(statement: str) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        note(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
    STATEMENT_LISTENERS.append(note)
    try:
        yield seen
    finally:
        STATEMENT_LISTENERS.remove(note)
        event.remove(engine.sync_engine, "before_cursor_execute", on_execute)


async def _numbers_of(session_factory: Any, channel_ids: list[int]) -> set[int]:
    async with session_factory() as session:
        found = await session.scalars(sa.select(Channel.number).where(Channel.id.in_(channel_ids)))
        return set(found.all())


async def _package_channel_ids(session_factory: Any, package_id: int) -> list[int]:
    async with session_factory() as session:
        found = await session.scalars(
            sa.select(TvPackageChannel.channel_id).where(TvPackageChannel.package_id == package_id)
        )
        return [int(i) for i in found.all()]


async def test_a_contract_with_no_tv_receives_the_must_carry_channels(
    session_factory: Any, settings: Any, engine: AsyncEngine
) -> None:
    # given a contract with nothing connected
    cid = await new_contract(session_factory, settings)

    # when
    async with reading(engine) as reader:
        found = await lineup.channel_lineup_of_contracts(reader, [cid])

    # then the 20 public channels, by number
    assert [row.number for row in found[cid]] == list(range(1, 21))
    assert all(row.must_carry for row in found[cid])


async def test_the_line_up_is_must_carry_packages_and_personal_tv_once_each(
    session_factory: Any, settings: Any, engine: AsyncEngine
) -> None:
    # given one contract with Base and Personal TV channels, some of them also in Base,
    # and one with Sport only
    first = await new_contract(session_factory, settings)
    second = await new_contract(session_factory, settings)
    base = await catalog_id(session_factory, TvPackage, "base")
    sport = await catalog_id(session_factory, TvPackage, "sport")
    base_channels = await _package_channel_ids(session_factory, base)
    sport_channels = await _package_channel_ids(session_factory, sport)
    must_carry = await must_carry_ids(session_factory)
    not_in_base = [
        c for c in await paid_channel_ids(session_factory, 200 - 20) if c not in base_channels
    ]
    paid_in_base = [c for c in base_channels if c not in must_carry]
    personal = paid_in_base[:2] + not_in_base[:4]
    args = {"settings": settings, "today": TODAY}
    await call(
        session_factory, services.connect_tv_package, contract_id=first, package_id=base, **args
    )
    await call(
        session_factory,
        services.set_personal_tv_channels,
        contract_id=first,
        channel_ids=[must_carry[0], *personal],
        **args,
    )
    await call(
        session_factory, services.connect_tv_package, contract_id=second, package_id=sport, **args
    )

    # when both line-ups are read at once
    with counting_statements(engine) as statements:
        async with reading(engine) as reader:
            found = await lineup.channel_lineup_of_contracts(reader, [first, second, 999_999])

    # then one statement, each channel once, by number
    assert len(statements) == 1
    expected_first = await _numbers_of(session_factory, must_carry + base_channels + personal)
    expected_second = await _numbers_of(session_factory, must_carry + sport_channels)
    assert [row.number for row in found[first]] == sorted(expected_first)
    assert [row.number for row in found[second]] == sorted(expected_second)
    assert found.get(999_999, []) == []


async def test_nothing_removes_the_must_carry_channels(
    session_factory: Any, settings: Any, engine: AsyncEngine
) -> None:
    # given a contract whose Personal TV and package are built and then all taken away,
    # with must-carry channels named in every request
    cid = await new_contract(session_factory, settings)
    base = await catalog_id(session_factory, TvPackage, "base")
    must_carry = await must_carry_ids(session_factory)
    args = {"settings": settings, "contract_id": cid, "today": TODAY}
    await call(session_factory, services.connect_tv_package, package_id=base, **args)
    await call(
        session_factory,
        services.set_personal_tv_channels,
        channel_ids=must_carry + await paid_channel_ids(session_factory, 5),
        **args,
    )
    await call(
        session_factory, services.set_personal_tv_channels, channel_ids=must_carry[:3], **args
    )
    await call(session_factory, services.disconnect_tv_package, package_id=base, **args)

    # when
    async with reading(engine) as reader:
        found = await lineup.channel_lineup_of_contracts(reader, [cid])
        personal = await lineup.personal_channels_of_contracts(reader, [cid])

    # then the must-carry channels are all there, and nothing else
    assert [row.id for row in found[cid]] == must_carry
    assert personal.get(cid, []) == []


async def test_what_each_contract_has_connected(
    session_factory: Any, settings: Any, engine: AsyncEngine
) -> None:
    # given two contracts with packages, Personal TV, receivers and options, some of them
    # disconnected again
    first = await new_contract(session_factory, settings)
    second = await new_contract(session_factory, settings)
    base = await catalog_id(session_factory, TvPackage, "base")
    sport = await catalog_id(session_factory, TvPackage, "sport")
    static_ip = await catalog_id(session_factory, ServiceOption, "static-ip")
    antivirus = await catalog_id(session_factory, ServiceOption, "antivirus")
    channels = await paid_channel_ids(session_factory, 6)
    args = {"settings": settings, "today": TODAY}
    for package in (base, sport):
        await call(
            session_factory,
            services.connect_tv_package,
            contract_id=first,
            package_id=package,
            **args,
        )
    await call(
        session_factory, services.disconnect_tv_package, contract_id=first, package_id=sport, **args
    )
    for option in (static_ip, antivirus):
        await call(
            session_factory, services.activate_option, contract_id=second, option_id=option, **args
        )
    await call(
        session_factory, services.deactivate_option, contract_id=second, option_id=static_ip, **args
    )
    await call(
        session_factory,
        services.set_personal_tv_channels,
        contract_id=first,
        channel_ids=channels,
        **args,
    )
    kept = await call(session_factory, services.add_multiroom_device, contract_id=second, **args)
    gone = await call(session_factory, services.add_multiroom_device, contract_id=second, **args)
    await call(
        session_factory,
        services.remove_multiroom_device,
        contract_id=second,
        device_id=gone.id,
        **args,
    )
    ids = [first, second]

    # when
    with counting_statements(engine) as statements:
        async with reading(engine) as reader:
            packages = await lineup.tv_packages_of_contracts(reader, ids)
            personal = await lineup.personal_channels_of_contracts(reader, ids)
            devices = await lineup.multiroom_devices_of_contracts(reader, ids)
            options = await lineup.options_of_contracts(reader, ids)

    # then one statement each, what is on now only
    assert len(statements) == 4
    assert [row.id for row in packages[first]] == [base] and packages.get(second, []) == []
    assert sorted(row.id for row in personal[first]) == sorted(channels)
    numbers = [row.number for row in personal[first]]
    assert numbers == sorted(numbers)
    assert {(row.personal_fee, row.started_on) for row in personal[first]} == {
        (Decimal("15.00"), TOMORROW)
    }
    assert [(row.id, row.serial, row.monthly_fee) for row in devices[second]] == [
        (kept.id, kept.serial, Decimal("50.00"))
    ]
    assert devices.get(first, []) == []
    assert [(row.id, row.started_on, row.free_until) for row in options[second]] == [
        (antivirus, TOMORROW, None)
    ]


async def test_monthly_charges_view_is_what_tomorrow_costs(
    session_factory: Any, settings: Any, engine: AsyncEngine
) -> None:
    # given a tariff change, a package, 6 Personal TV channels, a receiver and an option
    # asked for today, and a package connected earlier and disconnected today
    cid = await new_contract(session_factory, settings)
    args = {"settings": settings, "contract_id": cid, "today": TODAY}
    early = {**args, "today": date(2026, 6, 1)}
    home_300 = await catalog_id(session_factory, Tariff, "home-300")
    base = await catalog_id(session_factory, TvPackage, "base")
    sport = await catalog_id(session_factory, TvPackage, "sport")
    static_ip = await catalog_id(session_factory, ServiceOption, "static-ip")
    await call(session_factory, services.connect_tv_package, package_id=sport, **early)
    await call(session_factory, services.change_tariff, tariff_id=home_300, **args)
    await call(session_factory, services.connect_tv_package, package_id=base, **args)
    await call(session_factory, services.disconnect_tv_package, package_id=sport, **args)
    await call(
        session_factory,
        services.set_personal_tv_channels,
        channel_ids=await paid_channel_ids(session_factory, 6),
        **args,
    )
    device = await call(session_factory, services.add_multiroom_device, **args)
    await call(session_factory, services.activate_option, option_id=static_ip, **args)

    # when
    async with reading(engine) as reader:
        view = await lineup.monthly_charges_view(reader, [cid], today=TODAY)
        today_view = await lineup.monthly_charges_view(reader, [cid], today=date(2026, 6, 9))

    # then the next month is the new tariff and the new items, without Sport
    assert view[cid] == [
        ChargeItem(TARIFF, "Домашний 300", Decimal("750.00")),
        ChargeItem(TV_PACKAGE, "Базовый", Decimal("249.00")),
        ChargeItem(PERSONAL_TV, "Персональное ТВ", Decimal("90.00"), 6),
        ChargeItem(MULTIROOM_DEVICE, "Мультирум: приставка " + device.serial, Decimal("50.00")),
        ChargeItem(OPTION, "Статический IP", Decimal("150.00")),
    ]
    # and as seen the day before, what the 10th cost: home-100 and Sport
    assert [(i.kind, i.monthly_fee) for i in today_view[cid]] == [
        (TARIFF, Decimal("590.00")),
        (TV_PACKAGE, Decimal("399.00")),
    ]
