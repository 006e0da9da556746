"""Catalogue administration for staff: create, edit, archive and restore tariffs, service
options, channels, TV packages and bonus rewards; every write audited.

The catalogue tables are seeded once per test session and not emptied between tests, so
every test makes its own items (codes and names carry the test's tag, removed afterwards)
and leaves the seeded items as they were.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel, col

from core.db import RequestReader, begin_write, unit_of_work
from core.errors import DomainError, ErrorCode
from models import (
    AuditEntry,
    BonusReward,
    Channel,
    Contract,
    ContractTvPackage,
    LedgerEntry,
    ServiceOption,
    Tariff,
    TvPackage,
    TvPackageChannel,
)
from models.base import utcnow
from resolvers import catalog_admin as admin
from resolvers.billing import run_billing_day
from resolvers.catalog import (
    list_bonus_rewards,
    list_channels,
    list_service_options,
    list_tariffs,
    list_tv_packages,
)
from resolvers.charges import daily_share
from resolvers.lineup import tv_packages_of_contracts
from tests.conftest import _empty_non_catalog_tables
from tests.factories import make_staff, make_subscriber

ADDRESS = "10.0.0.7"
FIRST_TEST_CHANNEL = 9000


# -- fixtures and helpers ---------------------------------------------------------------------


async def _delete_tagged(engine: AsyncEngine, tag: str) -> None:
    like = f"%{tag}%"
    packages = sa.select(col(TvPackage.id)).where(col(TvPackage.code).like(like))
    channels = sa.select(col(Channel.id)).where(col(Channel.name).like(like))
    async with engine.begin() as conn:
        await conn.execute(sa.delete(BonusReward).where(col(BonusReward.code).like(like)))
        await conn.execute(
            sa.delete(TvPackageChannel).where(
                sa.or_(
                    col(TvPackageChannel.package_id).in_(packages),
                    col(TvPackageChannel.channel_id).in_(channels),
                )
            )
        )
        await conn.execute(sa.delete(TvPackage).where(col(TvPackage.code).like(like)))
        await conn.execute(sa.delete(Channel).where(col(Channel.name).like(like)))
        await conn.execute(sa.delete(ServiceOption).where(col(ServiceOption.code).like(like)))
        await conn.execute(sa.delete(Tariff).where(col(Tariff.code).like(like)))


@pytest.fixture
async def tag(engine: AsyncEngine) -> AsyncIterator[str]:
    """A tag for this test's catalogue items; they are deleted afterwards (with the
    contracts and audit rows that point at them) so that the seeded catalogue is what the
    other tests see."""
    value = uuid.uuid4().hex[:8]
    yield value
    await _empty_non_catalog_tables(engine)
    await _delete_tagged(engine, value)


@pytest.fixture
async def staff_id(session_factory: Any, settings: Any) -> int:
    made, _, _ = await make_staff(session_factory, settings)
    return made


async def call(session_factory: Any, verb: Callable[..., Awaitable[Any]], **kw: Any) -> Any:
    async with unit_of_work(session_factory) as session:
        return await verb(session, **kw)


async def refused(
    session_factory: Any, verb: Callable[..., Awaitable[Any]], **kw: Any
) -> DomainError:
    with pytest.raises(DomainError) as caught:
        await call(session_factory, verb, **kw)
    return caught.value


async def fetch(session_factory: Any, model: type[SQLModel], row_id: int | None) -> Any:
    async with session_factory() as session:
        return await session.get(model, row_id)


async def count(session_factory: Any, model: type[SQLModel], **equal: Any) -> int:
    """How many rows of `model` have these column values."""
    async with session_factory() as session:
        statement = sa.select(sa.func.count()).select_from(model).filter_by(**equal)
        return int(await session.scalar(statement) or 0)


async def audit_rows(session_factory: Any) -> list[AuditEntry]:
    async with session_factory() as session:
        return list(
            (await session.execute(sa.select(AuditEntry).order_by(col(AuditEntry.id)))).scalars()
        )


def assert_audit(
    entry: AuditEntry,
    *,
    staff_id: int,
    action: str,
    target: SQLModel,
    before: dict[str, Any] | None,
    after: dict[str, Any],
) -> None:
    assert entry.actor_staff_id == staff_id
    assert entry.actor == f"staff:{staff_id}"
    assert entry.action == action
    assert entry.target_type == type(target).__name__
    assert entry.target_id == str(getattr(target, "id"))  # noqa: B009
    assert (json.loads(entry.before) if entry.before else None) == before
    assert json.loads(entry.after or "null") == after
    assert entry.client_address == ADDRESS


async def with_reader(engine: AsyncEngine, read: Callable[[Any], Awaitable[Any]]) -> Any:
    reader = RequestReader(engine)
    try:
        return await read(reader)
    finally:
        await reader.close()


async def next_channel_number(session_factory: Any) -> int:
    async with session_factory() as session:
        highest = await session.scalar(sa.select(sa.func.max(col(Channel.number))))
    return max(FIRST_TEST_CHANNEL - 1, int(highest or 0)) + 1


async def seeded_channel_ids(session_factory: Any, *, must_carry: bool, n: int) -> list[int]:
    async with session_factory() as session:
        return list(
            (
                await session.execute(
                    sa.select(col(Channel.id))
                    .where(
                        col(Channel.must_carry).is_(must_carry), col(Channel.archived).is_(False)
                    )
                    .order_by(col(Channel.number))
                    .limit(n)
                )
            ).scalars()
        )


async def seeded_id(session_factory: Any, model: type[SQLModel], code: str) -> int:
    async with session_factory() as session:
        found = await session.scalar(
            sa.select(col(model.id)).where(col(model.code) == code)  # type: ignore[attr-defined]
        )
    assert found is not None
    return int(found)


def id_of(row: Any) -> int:
    assert row.id is not None
    return int(row.id)


async def package_channel_ids(session_factory: Any, package_id: int | None) -> list[int]:
    async with session_factory() as session:
        return sorted(
            (
                await session.execute(
                    sa.select(col(TvPackageChannel.channel_id)).where(
                        col(TvPackageChannel.package_id) == package_id
                    )
                )
            ).scalars()
        )


def tariff_input(tag: str, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "region": "MOW",
        "code": f"fiber-{tag}",
        "name": f"Оптика {tag}",
        "monthly_fee": Decimal("499.00"),
        "speed_mbps": 500,
        "traffic_gb": 1000,
        "description": "Для всей семьи",
    }
    values.update(overrides)
    return values


async def new_tariff(session_factory: Any, staff_id: int, tag: str, **overrides: Any) -> Tariff:
    tariff: Tariff = await call(
        session_factory,
        admin.create_tariff,
        staff_id=staff_id,
        client_address=ADDRESS,
        **tariff_input(tag, **overrides),
    )
    return tariff


async def new_channel(
    session_factory: Any, staff_id: int, tag: str, suffix: str = "", **overrides: Any
) -> Channel:
    values: dict[str, Any] = {
        "number": await next_channel_number(session_factory),
        "name": f"Канал {tag}{suffix}",
        "genre": "Кино",
        "hd": True,
        "must_carry": False,
    }
    values.update(overrides)
    channel: Channel = await call(
        session_factory, admin.create_channel, staff_id=staff_id, client_address=ADDRESS, **values
    )
    return channel


async def new_package(
    session_factory: Any, staff_id: int, tag: str, channel_ids: list[int], **overrides: Any
) -> TvPackage:
    values: dict[str, Any] = {
        "code": f"pack-{tag}",
        "name": f"Пакет {tag}",
        "monthly_fee": Decimal("199.00"),
        "description": "Тестовый пакет",
        "channel_ids": channel_ids,
    }
    values.update(overrides)
    package: TvPackage = await call(
        session_factory,
        admin.create_tv_package,
        staff_id=staff_id,
        client_address=ADDRESS,
        **values,
    )
    return package


# -- tariffs ----------------------------------------------------------------------------------


async def test_staff_create_a_tariff_with_an_audit_entry(
    session_factory: Any, engine: AsyncEngine, staff_id: int, tag: str
) -> None:
    # when
    tariff = await new_tariff(
        session_factory, staff_id, tag, traffic_gb=None, name=f"  Оптика  {tag} "
    )

    # then the row, with the name tidied and unlimited traffic
    row = await fetch(session_factory, Tariff, tariff.id)
    assert (row.region_code, row.code, row.name) == ("MOW", f"fiber-{tag}", f"Оптика {tag}")
    assert (row.monthly_fee, row.speed_mbps, row.traffic_gb) == (Decimal("499.00"), 500, None)
    assert (row.description, row.archived) == ("Для всей семьи", False)
    # on sale in its region
    on_sale = await with_reader(engine, lambda r: list_tariffs(r, region="MOW"))
    assert tariff.id in {t.id for t in on_sale}
    # and audited
    (entry,) = await audit_rows(session_factory)
    assert_audit(
        entry,
        staff_id=staff_id,
        action="createTariff",
        target=tariff,
        before=None,
        after={
            "region": "MOW",
            "slug": f"fiber-{tag}",
            "name": f"Оптика {tag}",
            "monthly_fee": "499.00",
            "speed_mbps": 500,
            "traffic_gb": None,
            "description": "Для всей семьи",
        },
    )


async def test_an_edit_changes_only_the_given_fields(
    session_factory: Any, staff_id: int, tag: str
) -> None:
    # given
    tariff = await new_tariff(session_factory, staff_id, tag)

    # when the name changes and traffic becomes unlimited
    edited = await call(
        session_factory,
        admin.update_tariff,
        staff_id=staff_id,
        tariff_id=tariff.id,
        name=f"Оптика Плюс {tag}",
        traffic_gb=None,
        client_address=ADDRESS,
    )

    # then just those
    row = await fetch(session_factory, Tariff, tariff.id)
    assert (row.name, row.traffic_gb) == (f"Оптика Плюс {tag}", None)
    assert (row.monthly_fee, row.speed_mbps, row.description) == (
        Decimal("499.00"),
        500,
        "Для всей семьи",
    )
    assert (edited.name, edited.traffic_gb) == (row.name, None)
    entry = (await audit_rows(session_factory))[-1]
    assert_audit(
        entry,
        staff_id=staff_id,
        action="updateTariff",
        target=tariff,
        before={"name": f"Оптика {tag}", "traffic_gb": 1000},
        after={"name": f"Оптика Плюс {tag}", "traffic_gb": None},
    )

    # when the speed and fee change (traffic left out: it stays unlimited)
    await call(
        session_factory,
        admin.update_tariff,
        staff_id=staff_id,
        tariff_id=tariff.id,
        monthly_fee=Decimal("550"),
        speed_mbps=1000,
        client_address=ADDRESS,
    )
    row = await fetch(session_factory, Tariff, tariff.id)
    assert (row.monthly_fee, row.speed_mbps, row.traffic_gb) == (Decimal("550.00"), 1000, None)
    entry = (await audit_rows(session_factory))[-1]
    assert json.loads(entry.before or "") == {"monthly_fee": "499.00", "speed_mbps": 500}
    assert json.loads(entry.after or "") == {"monthly_fee": "550.00", "speed_mbps": 1000}

    # and an edit that changes nothing writes nothing
    before = len(await audit_rows(session_factory))
    await call(
        session_factory,
        admin.update_tariff,
        staff_id=staff_id,
        tariff_id=tariff.id,
        speed_mbps=1000,
        client_address=ADDRESS,
    )
    assert len(await audit_rows(session_factory)) == before


async def test_an_archived_tariff_leaves_the_catalogue_and_can_be_restored(
    session_factory: Any, engine: AsyncEngine, staff_id: int, tag: str
) -> None:
    # given
    tariff = await new_tariff(session_factory, staff_id, tag)

    # when archived
    archived = await call(
        session_factory,
        admin.archive_tariff,
        staff_id=staff_id,
        tariff_id=tariff.id,
        client_address=ADDRESS,
    )

    # then off sale, still in the table
    assert archived.archived is True
    assert (await fetch(session_factory, Tariff, tariff.id)).archived is True
    on_sale = await with_reader(engine, lambda r: list_tariffs(r, region="MOW"))
    assert tariff.id not in {t.id for t in on_sale}
    entry = (await audit_rows(session_factory))[-1]
    assert_audit(
        entry,
        staff_id=staff_id,
        action="archiveTariff",
        target=tariff,
        before={"archived": False},
        after={"archived": True},
    )

    # archiving again changes nothing and audits nothing
    entries = len(await audit_rows(session_factory))
    await call(session_factory, admin.archive_tariff, staff_id=staff_id, tariff_id=tariff.id)
    assert len(await audit_rows(session_factory)) == entries

    # when restored
    await call(
        session_factory,
        admin.archive_tariff,
        staff_id=staff_id,
        tariff_id=tariff.id,
        archived=False,
        client_address=ADDRESS,
    )

    # then on sale again
    assert (await fetch(session_factory, Tariff, tariff.id)).archived is False
    on_sale = await with_reader(engine, lambda r: list_tariffs(r, region="MOW"))
    assert tariff.id in {t.id for t in on_sale}
    entry = (await audit_rows(session_factory))[-1]
    assert (entry.action, json.loads(entry.after or "")) == ("archiveTariff", {"archived": False})


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"region": "XXX"}, "region"),
        ({"region": ""}, "region"),
        ({"code": "Fiber"}, "code"),
        ({"code": "x"}, "code"),
        ({"code": "x" * 41}, "code"),
        ({"code": "fiber_1"}, "code"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "bad\x00name"}, "name"),
        ({"monthly_fee": Decimal("-0.01")}, "monthlyFee"),
        ({"monthly_fee": Decimal("100000.01")}, "monthlyFee"),
        ({"monthly_fee": Decimal("1.001")}, "monthlyFee"),
        ({"monthly_fee": Decimal("NaN")}, "monthlyFee"),
        ({"monthly_fee": 9.99}, "monthlyFee"),
        ({"speed_mbps": 0}, "speedMbps"),
        ({"speed_mbps": 100_001}, "speedMbps"),
        ({"speed_mbps": True}, "speedMbps"),
        ({"traffic_gb": 0}, "trafficGb"),
        ({"traffic_gb": 100_001}, "trafficGb"),
        ({"description": "x" * 501}, "description"),
    ],
)
async def test_an_invalid_tariff_is_refused_with_its_field(
    session_factory: Any, staff_id: int, tag: str, overrides: dict[str, Any], field: str
) -> None:
    # given
    tariffs = await count(session_factory, Tariff)

    # when
    error = await refused(
        session_factory, admin.create_tariff, staff_id=staff_id, **tariff_input(tag, **overrides)
    )

    # then
    assert (error.code, error.field) == (ErrorCode.INVALID, field)
    assert await count(session_factory, Tariff) == tariffs
    assert await audit_rows(session_factory) == []


async def test_edits_of_an_unknown_or_invalid_tariff_are_refused(
    session_factory: Any, staff_id: int, tag: str
) -> None:
    # given
    tariff = await new_tariff(session_factory, staff_id, tag)
    entries = len(await audit_rows(session_factory))

    # unknown ids
    for tariff_id in (10**9, 0, -1, 2**63, True):
        error = await refused(
            session_factory, admin.update_tariff, staff_id=staff_id, tariff_id=tariff_id, name="X"
        )
        assert (error.code, error.field) == (ErrorCode.NOT_FOUND, "tariffId")
        error = await refused(
            session_factory, admin.archive_tariff, staff_id=staff_id, tariff_id=tariff_id
        )
        assert (error.code, error.field) == (ErrorCode.NOT_FOUND, "tariffId")

    # an invalid value
    error = await refused(
        session_factory,
        admin.update_tariff,
        staff_id=staff_id,
        tariff_id=tariff.id,
        name="Новое имя",
        speed_mbps=0,
    )
    assert (error.code, error.field) == (ErrorCode.INVALID, "speedMbps")
    error = await refused(
        session_factory, admin.archive_tariff, staff_id=staff_id, tariff_id=tariff.id, archived="y"
    )
    assert (error.code, error.field) == (ErrorCode.INVALID, "archived")

    # nothing changed
    row = await fetch(session_factory, Tariff, tariff.id)
    assert (row.name, row.speed_mbps, row.archived) == (f"Оптика {tag}", 500, False)
    assert len(await audit_rows(session_factory)) == entries


async def test_a_tariff_code_is_unique_within_its_region(
    session_factory: Any, staff_id: int, tag: str
) -> None:
    # given
    await new_tariff(session_factory, staff_id, tag)

    # when the same code is created again in the region, or the seeded code reused
    again = await refused(
        session_factory, admin.create_tariff, staff_id=staff_id, **tariff_input(tag)
    )
    seeded = await refused(
        session_factory,
        admin.create_tariff,
        staff_id=staff_id,
        **tariff_input(tag, code="home-100", name=f"Дубль {tag}"),
    )

    # then CONFLICT on the code, and nothing written
    assert (again.code, again.field) == (ErrorCode.CONFLICT, "code")
    assert (seeded.code, seeded.field) == (ErrorCode.CONFLICT, "code")
    assert await count(session_factory, Tariff, name=f"Дубль {tag}") == 0
    assert len(await audit_rows(session_factory)) == 1

    # but another region may use it
    other = await new_tariff(session_factory, staff_id, tag, region="SPB")
    assert (await fetch(session_factory, Tariff, other.id)).region_code == "SPB"


async def test_a_duplicate_that_slips_past_the_check_is_a_conflict(
    session_factory: Any, staff_id: int, tag: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a tariff, a channel, and the duplicate checks blind (two staff members at once)
    await new_tariff(session_factory, staff_id, tag)
    channel = await new_channel(session_factory, staff_id, tag)

    async def blind(*_: Any) -> bool:
        return False

    monkeypatch.setattr(admin, "_exists", blind)
    entries = len(await audit_rows(session_factory))

    # when the unique constraints refuse them
    tariff = await refused(
        session_factory, admin.create_tariff, staff_id=staff_id, **tariff_input(tag)
    )
    by_name = await refused(
        session_factory,
        admin.create_channel,
        staff_id=staff_id,
        number=await next_channel_number(session_factory),
        name=channel.name,
        genre="Кино",
    )
    by_number = await refused(
        session_factory,
        admin.create_channel,
        staff_id=staff_id,
        number=channel.number,
        name=f"Другой {tag}",
        genre="Кино",
    )

    # then CONFLICT on the right field, and the transaction rolled back
    assert (tariff.code, tariff.field) == (ErrorCode.CONFLICT, "code")
    assert (by_name.code, by_name.field) == (ErrorCode.CONFLICT, "name")
    assert (by_number.code, by_number.field) == (ErrorCode.CONFLICT, "number")
    assert await count(session_factory, Tariff, code=f"fiber-{tag}") == 1
    assert await count(session_factory, Channel, number=channel.number) == 1
    assert await count(session_factory, Channel, name=f"Другой {tag}") == 0
    assert len(await audit_rows(session_factory)) == entries


async def test_a_new_price_applies_from_the_next_billing_day_and_the_ledger_keeps_the_past(
    session_factory: Any, settings: Any, staff_id: int, tag: str
) -> None:
    # given a contract on a new tariff, billed today at the old price
    tariff = await new_tariff(session_factory, staff_id, tag, monthly_fee=Decimal("300.00"))
    made = await make_subscriber(session_factory, settings, balance=Decimal("1000.00"))
    contract_id = made.contract_ids[0]
    async with session_factory() as session:
        await begin_write(session)
        await session.execute(
            sa.update(Contract).where(col(Contract.id) == contract_id).values(tariff_id=tariff.id)
        )
        await session.commit()
    today = utcnow().date()
    tomorrow = today + timedelta(days=1)
    await run_billing_day(session_factory, settings=settings, day=today)

    async def ledger() -> list[tuple[int | None, str, Decimal, Decimal]]:
        async with session_factory() as session:
            rows = (
                await session.execute(
                    sa.select(LedgerEntry)
                    .where(
                        col(LedgerEntry.contract_id) == contract_id,
                        col(LedgerEntry.kind) == "CHARGE",
                    )
                    .order_by(col(LedgerEntry.id))
                )
            ).scalars()
            return [(e.id, e.kind, e.amount, e.balance_after) for e in rows]

    past = await ledger()
    assert [(kind, amount) for _, kind, amount, _ in past] == [
        ("CHARGE", -daily_share(Decimal("300.00"), today))
    ]

    # when the price doubles
    await call(
        session_factory,
        admin.update_tariff,
        staff_id=staff_id,
        tariff_id=tariff.id,
        monthly_fee=Decimal("600.00"),
        client_address=ADDRESS,
    )

    # then the past charge is as it was
    assert await ledger() == past
    # and the next billing day charges the new price
    await run_billing_day(session_factory, settings=settings, day=tomorrow)
    now = await ledger()
    assert now[:-1] == past
    assert now[-1][1:3] == ("CHARGE", -daily_share(Decimal("600.00"), tomorrow))


# -- service options --------------------------------------------------------------------------


async def test_service_options_are_created_edited_archived_and_restored(
    session_factory: Any, engine: AsyncEngine, staff_id: int, tag: str
) -> None:
    # when created
    option = await call(
        session_factory,
        admin.create_service_option,
        staff_id=staff_id,
        code=f"backup-{tag}",
        name=f"Резервный канал {tag}",
        monthly_fee=Decimal("90.00"),
        description="LTE-модем на случай аварии",
        client_address=ADDRESS,
    )

    # then
    row = await fetch(session_factory, ServiceOption, option.id)
    assert (row.code, row.name, row.monthly_fee, row.archived) == (
        f"backup-{tag}",
        f"Резервный канал {tag}",
        Decimal("90.00"),
        False,
    )
    listed = await with_reader(engine, list_service_options)
    assert option.id in {o.id for o in listed}
    assert_audit(
        (await audit_rows(session_factory))[-1],
        staff_id=staff_id,
        action="createServiceOption",
        target=option,
        before=None,
        after={
            "slug": f"backup-{tag}",
            "name": f"Резервный канал {tag}",
            "monthly_fee": "90.00",
            "description": "LTE-модем на случай аварии",
        },
    )

    # when edited
    await call(
        session_factory,
        admin.update_service_option,
        staff_id=staff_id,
        option_id=option.id,
        monthly_fee=Decimal("95.50"),
        description="",
        client_address=ADDRESS,
    )
    row = await fetch(session_factory, ServiceOption, option.id)
    assert (row.monthly_fee, row.description, row.name) == (
        Decimal("95.50"),
        "",
        f"Резервный канал {tag}",
    )
    assert_audit(
        (await audit_rows(session_factory))[-1],
        staff_id=staff_id,
        action="updateServiceOption",
        target=option,
        before={"monthly_fee": "90.00", "description": "LTE-модем на случай аварии"},
        after={"monthly_fee": "95.50", "description": ""},
    )

    # when archived, then restored
    await call(
        session_factory,
        admin.archive_service_option,
        staff_id=staff_id,
        option_id=option.id,
        client_address=ADDRESS,
    )
    assert (await fetch(session_factory, ServiceOption, option.id)).archived is True
    assert option.id not in {o.id for o in await with_reader(engine, list_service_options)}
    assert_audit(
        (await audit_rows(session_factory))[-1],
        staff_id=staff_id,
        action="archiveServiceOption",
        target=option,
        before={"archived": False},
        after={"archived": True},
    )
    await call(
        session_factory,
        admin.archive_service_option,
        staff_id=staff_id,
        option_id=option.id,
        archived=False,
        client_address=ADDRESS,
    )
    assert (await fetch(session_factory, ServiceOption, option.id)).archived is False
    assert option.id in {o.id for o in await with_reader(engine, list_service_options)}
    assert len(await audit_rows(session_factory)) == 4


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"code": "static-ip"}, "code"),
        ({"code": "Static IP"}, "code"),
        ({"name": ""}, "name"),
        ({"monthly_fee": Decimal("-1")}, "monthlyFee"),
        ({"description": "x" * 501}, "description"),
    ],
)
async def test_an_invalid_or_duplicate_option_is_refused(
    session_factory: Any, staff_id: int, tag: str, overrides: dict[str, Any], field: str
) -> None:
    values: dict[str, Any] = {
        "code": f"opt-{tag}",
        "name": f"Опция {tag}",
        "monthly_fee": Decimal("10.00"),
    }
    values.update(overrides)

    error = await refused(session_factory, admin.create_service_option, staff_id=staff_id, **values)

    expected = ErrorCode.CONFLICT if values["code"] == "static-ip" else ErrorCode.INVALID
    assert (error.code, error.field) == (expected, field)
    assert await count(session_factory, ServiceOption, name=f"Опция {tag}") == 0
    assert await audit_rows(session_factory) == []


async def test_edits_of_an_unknown_option_are_not_found(
    session_factory: Any, staff_id: int
) -> None:
    for verb, kw in (
        (admin.update_service_option, {"name": "X"}),
        (admin.archive_service_option, {}),
    ):
        error = await refused(session_factory, verb, staff_id=staff_id, option_id=10**9, **kw)
        assert (error.code, error.field) == (ErrorCode.NOT_FOUND, "optionId")
    assert await audit_rows(session_factory) == []


# -- channels ---------------------------------------------------------------------------------


async def test_channels_are_created_edited_archived_and_restored(
    session_factory: Any, engine: AsyncEngine, staff_id: int, tag: str
) -> None:
    # when created
    channel = await new_channel(session_factory, staff_id, tag)

    # then
    row = await fetch(session_factory, Channel, channel.id)
    assert (row.name, row.genre, row.hd, row.must_carry, row.archived) == (
        f"Канал {tag}",
        "Кино",
        True,
        False,
        False,
    )
    assert channel.id in {c.id for c in await with_reader(engine, list_channels)}
    assert_audit(
        (await audit_rows(session_factory))[-1],
        staff_id=staff_id,
        action="createChannel",
        target=channel,
        before=None,
        after={
            "number": channel.number,
            "name": f"Канал {tag}",
            "genre": "Кино",
            "hd": True,
            "must_carry": False,
        },
    )

    # when edited
    number = await next_channel_number(session_factory)
    await call(
        session_factory,
        admin.update_channel,
        staff_id=staff_id,
        channel_id=channel.id,
        number=number,
        genre="Музыка",
        hd=False,
        client_address=ADDRESS,
    )
    row = await fetch(session_factory, Channel, channel.id)
    assert (row.number, row.name, row.genre, row.hd) == (number, f"Канал {tag}", "Музыка", False)
    assert_audit(
        (await audit_rows(session_factory))[-1],
        staff_id=staff_id,
        action="updateChannel",
        target=channel,
        before={"number": channel.number, "genre": "Кино", "hd": True},
        after={"number": number, "genre": "Музыка", "hd": False},
    )

    # when archived, then restored
    await call(
        session_factory,
        admin.archive_channel,
        staff_id=staff_id,
        channel_id=channel.id,
        client_address=ADDRESS,
    )
    assert (await fetch(session_factory, Channel, channel.id)).archived is True
    assert channel.id not in {c.id for c in await with_reader(engine, list_channels)}
    assert_audit(
        (await audit_rows(session_factory))[-1],
        staff_id=staff_id,
        action="archiveChannel",
        target=channel,
        before={"archived": False},
        after={"archived": True},
    )
    await call(
        session_factory,
        admin.archive_channel,
        staff_id=staff_id,
        channel_id=channel.id,
        archived=False,
        client_address=ADDRESS,
    )
    assert (await fetch(session_factory, Channel, channel.id)).archived is False
    assert channel.id in {c.id for c in await with_reader(engine, list_channels)}


async def test_a_must_carry_channel_cannot_be_archived(
    session_factory: Any, engine: AsyncEngine, staff_id: int
) -> None:
    # given a seeded must-carry channel
    (channel_id,) = await seeded_channel_ids(session_factory, must_carry=True, n=1)
    try:
        # when
        error = await refused(
            session_factory, admin.archive_channel, staff_id=staff_id, channel_id=channel_id
        )

        # then
        assert (error.code, error.field) == (ErrorCode.NOT_ELIGIBLE, "channelId")
        row = await fetch(session_factory, Channel, channel_id)
        assert (row.archived, row.must_carry) == (False, True)
        assert channel_id in {c.id for c in await with_reader(engine, list_channels)}
        assert await audit_rows(session_factory) == []
    finally:
        async with session_factory() as session:
            await begin_write(session)
            await session.execute(
                sa.update(Channel).where(col(Channel.id) == channel_id).values(archived=False)
            )
            await session.commit()


async def test_a_channel_in_a_package_cannot_become_must_carry(
    session_factory: Any, staff_id: int, tag: str
) -> None:
    # given a channel in a package, and an archived one
    channel = await new_channel(session_factory, staff_id, tag, "-a")
    await new_package(session_factory, staff_id, tag, [id_of(channel)])
    archived = await new_channel(session_factory, staff_id, tag, "-b")
    await call(session_factory, admin.archive_channel, staff_id=staff_id, channel_id=archived.id)
    entries = len(await audit_rows(session_factory))

    # when either is made must-carry
    for target in (channel, archived):
        error = await refused(
            session_factory,
            admin.update_channel,
            staff_id=staff_id,
            channel_id=target.id,
            must_carry=True,
        )

        # then
        assert (error.code, error.field) == (ErrorCode.NOT_ELIGIBLE, "mustCarry")
        assert (await fetch(session_factory, Channel, target.id)).must_carry is False
    assert len(await audit_rows(session_factory)) == entries

    # a channel in no package may be
    free = await new_channel(session_factory, staff_id, tag, "-c")
    await call(
        session_factory,
        admin.update_channel,
        staff_id=staff_id,
        channel_id=free.id,
        must_carry=True,
    )
    assert (await fetch(session_factory, Channel, free.id)).must_carry is True


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"number": 0}, ErrorCode.INVALID, "number"),
        ({"number": 10_000}, ErrorCode.INVALID, "number"),
        ({"name": ""}, ErrorCode.INVALID, "name"),
        ({"genre": ""}, ErrorCode.INVALID, "genre"),
        ({"genre": "x" * 41}, ErrorCode.INVALID, "genre"),
        ({"hd": "yes"}, ErrorCode.INVALID, "hd"),
        ({"must_carry": 1}, ErrorCode.INVALID, "mustCarry"),
        ({"number": 1}, ErrorCode.CONFLICT, "number"),
        ({"name": "Первый канал"}, ErrorCode.CONFLICT, "name"),
    ],
)
async def test_an_invalid_or_duplicate_channel_is_refused(
    session_factory: Any,
    staff_id: int,
    tag: str,
    overrides: dict[str, Any],
    code: ErrorCode,
    field: str,
) -> None:
    values: dict[str, Any] = {
        "number": await next_channel_number(session_factory),
        "name": f"Канал {tag}",
        "genre": "Кино",
    }
    values.update(overrides)

    error = await refused(session_factory, admin.create_channel, staff_id=staff_id, **values)

    assert (error.code, error.field) == (code, field)
    assert await count(session_factory, Channel, name=f"Канал {tag}") == 0
    assert await audit_rows(session_factory) == []


async def test_a_channel_edit_may_not_take_another_channels_number_or_name(
    session_factory: Any, staff_id: int, tag: str
) -> None:
    channel = await new_channel(session_factory, staff_id, tag)
    for kw, field in (({"number": 1}, "number"), ({"name": "Первый канал"}, "name")):
        error = await refused(
            session_factory, admin.update_channel, staff_id=staff_id, channel_id=channel.id, **kw
        )
        assert (error.code, error.field) == (ErrorCode.CONFLICT, field)
    row = await fetch(session_factory, Channel, channel.id)
    assert (row.number, row.name) == (channel.number, channel.name)

    # its own number and name are no conflict
    await call(
        session_factory,
        admin.update_channel,
        staff_id=staff_id,
        channel_id=channel.id,
        number=channel.number,
        name=channel.name,
    )
    error = await refused(
        session_factory, admin.update_channel, staff_id=staff_id, channel_id=10**9
    )
    assert (error.code, error.field) == (ErrorCode.NOT_FOUND, "channelId")
    assert len(await audit_rows(session_factory)) == 1


# -- TV packages ------------------------------------------------------------------------------


async def test_tv_packages_are_created_and_their_line_up_edited(
    session_factory: Any, engine: AsyncEngine, staff_id: int, tag: str
) -> None:
    # given
    a, b, c = await seeded_channel_ids(session_factory, must_carry=False, n=3)

    # when created (a duplicate id is dropped)
    package = await new_package(session_factory, staff_id, tag, [b, a, b])

    # then
    row = await fetch(session_factory, TvPackage, package.id)
    assert (row.code, row.name, row.monthly_fee, row.archived) == (
        f"pack-{tag}",
        f"Пакет {tag}",
        Decimal("199.00"),
        False,
    )
    assert await package_channel_ids(session_factory, package.id) == sorted([a, b])
    assert package.id in {p.id for p in await with_reader(engine, list_tv_packages)}
    assert_audit(
        (await audit_rows(session_factory))[-1],
        staff_id=staff_id,
        action="createTvPackage",
        target=package,
        before=None,
        after={
            "slug": f"pack-{tag}",
            "name": f"Пакет {tag}",
            "monthly_fee": "199.00",
            "description": "Тестовый пакет",
            "channel_ids": sorted([a, b]),
        },
    )

    # when the line-up is replaced and the fee changed
    await call(
        session_factory,
        admin.update_tv_package,
        staff_id=staff_id,
        package_id=package.id,
        monthly_fee=Decimal("249.00"),
        channel_ids=[c, b],
        client_address=ADDRESS,
    )

    # then
    assert await package_channel_ids(session_factory, package.id) == sorted([b, c])
    assert (await fetch(session_factory, TvPackage, package.id)).monthly_fee == Decimal("249.00")
    assert_audit(
        (await audit_rows(session_factory))[-1],
        staff_id=staff_id,
        action="updateTvPackage",
        target=package,
        before={"monthly_fee": "199.00", "channel_ids": sorted([a, b])},
        after={"monthly_fee": "249.00", "channel_ids": sorted([b, c])},
    )

    # when only the name changes, the line-up stays
    await call(
        session_factory,
        admin.update_tv_package,
        staff_id=staff_id,
        package_id=package.id,
        name=f"Пакет+ {tag}",
        client_address=ADDRESS,
    )
    assert await package_channel_ids(session_factory, package.id) == sorted([b, c])
    entry = (await audit_rows(session_factory))[-1]
    assert json.loads(entry.after or "") == {"name": f"Пакет+ {tag}"}


async def test_a_package_line_up_takes_only_catalogue_channels(
    session_factory: Any, staff_id: int, tag: str
) -> None:
    # given
    (must_carry,) = await seeded_channel_ids(session_factory, must_carry=True, n=1)
    (regular,) = await seeded_channel_ids(session_factory, must_carry=False, n=1)
    archived = await new_channel(session_factory, staff_id, tag, "-old")
    await call(session_factory, admin.archive_channel, staff_id=staff_id, channel_id=archived.id)
    entries = len(await audit_rows(session_factory))

    # when / then
    for channel_ids in ([], [10**9], [regular, must_carry], [archived.id], ["1"], None):
        error = await refused(
            session_factory,
            admin.create_tv_package,
            staff_id=staff_id,
            code=f"pack-{tag}",
            name="Пакет",
            monthly_fee=Decimal("1.00"),
            channel_ids=channel_ids,
        )
        assert (error.code, error.field) == (ErrorCode.INVALID, "channelIds"), channel_ids
    assert await count(session_factory, TvPackage, code=f"pack-{tag}") == 0
    assert len(await audit_rows(session_factory)) == entries


async def test_a_package_keeps_a_channel_archived_after_it_was_added(
    session_factory: Any, staff_id: int, tag: str
) -> None:
    # given a package whose channel was archived later
    channel = await new_channel(session_factory, staff_id, tag, "-a")
    package = await new_package(session_factory, staff_id, tag, [id_of(channel)])
    await call(session_factory, admin.archive_channel, staff_id=staff_id, channel_id=channel.id)
    (other,) = await seeded_channel_ids(session_factory, must_carry=False, n=1)

    # when the line-up is edited keeping it
    await call(
        session_factory,
        admin.update_tv_package,
        staff_id=staff_id,
        package_id=package.id,
        channel_ids=[channel.id, other],
    )

    # then it stays
    assert await package_channel_ids(session_factory, package.id) == sorted([id_of(channel), other])


async def test_package_duplicates_and_unknown_ids_are_refused(
    session_factory: Any, staff_id: int, tag: str
) -> None:
    (regular,) = await seeded_channel_ids(session_factory, must_carry=False, n=1)
    error = await refused(
        session_factory,
        admin.create_tv_package,
        staff_id=staff_id,
        code="base",
        name=f"Пакет {tag}",
        monthly_fee=Decimal("1.00"),
        channel_ids=[regular],
    )
    assert (error.code, error.field) == (ErrorCode.CONFLICT, "code")
    for verb, kw in ((admin.update_tv_package, {"name": "X"}), (admin.archive_tv_package, {})):
        error = await refused(session_factory, verb, staff_id=staff_id, package_id=10**9, **kw)
        assert (error.code, error.field) == (ErrorCode.NOT_FOUND, "packageId")
    assert await count(session_factory, TvPackage, name=f"Пакет {tag}") == 0
    assert await audit_rows(session_factory) == []


async def test_an_archived_package_leaves_the_catalogue_but_stays_on_contracts(
    session_factory: Any, settings: Any, engine: AsyncEngine, staff_id: int, tag: str
) -> None:
    # given a contract with a new package
    channel_ids = await seeded_channel_ids(session_factory, must_carry=False, n=2)
    package = await new_package(session_factory, staff_id, tag, channel_ids)
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    async with session_factory() as session:
        await begin_write(session)
        session.add(
            ContractTvPackage(
                contract_id=contract_id, package_id=id_of(package), started_on=utcnow().date()
            )
        )
        await session.commit()

    # when archived
    await call(
        session_factory,
        admin.archive_tv_package,
        staff_id=staff_id,
        package_id=package.id,
        client_address=ADDRESS,
    )

    # then off the catalogue
    assert (await fetch(session_factory, TvPackage, package.id)).archived is True
    assert package.id not in {p.id for p in await with_reader(engine, list_tv_packages)}
    # but the contract keeps it, with its channels
    async with session_factory() as session:
        (link,) = (
            await session.execute(
                sa.select(ContractTvPackage).where(
                    col(ContractTvPackage.contract_id) == contract_id
                )
            )
        ).scalars()
    assert (link.package_id, link.ended_on) == (package.id, None)
    on_contract = await with_reader(engine, lambda r: tv_packages_of_contracts(r, [contract_id]))
    assert [p.id for p in on_contract[contract_id]] == [package.id]
    assert await package_channel_ids(session_factory, package.id) == sorted(channel_ids)
    assert_audit(
        (await audit_rows(session_factory))[-1],
        staff_id=staff_id,
        action="archiveTvPackage",
        target=package,
        before={"archived": False},
        after={"archived": True},
    )

    # when restored, it is back on sale
    await call(
        session_factory,
        admin.archive_tv_package,
        staff_id=staff_id,
        package_id=package.id,
        archived=False,
    )
    assert package.id in {p.id for p in await with_reader(engine, list_tv_packages)}


# -- bonus rewards ----------------------------------------------------------------------------


async def test_rewards_of_each_kind_are_created(
    session_factory: Any, engine: AsyncEngine, staff_id: int, tag: str
) -> None:
    # given
    channel_ids = await seeded_channel_ids(session_factory, must_carry=False, n=1)
    package = await new_package(session_factory, staff_id, tag, channel_ids)
    boost = await seeded_id(session_factory, ServiceOption, "speed-boost")
    kinds: list[tuple[dict[str, Any], dict[str, Any]]] = [
        (
            {"kind": "BALANCE_CREDIT", "credit_amount": Decimal("50")},
            {"credit_amount": "50.00"},
        ),
        (
            {"kind": "TV_PACKAGE", "tv_package_id": package.id, "duration_days": 30},
            {"tv_package_id": package.id, "duration_days": 30},
        ),
        (
            {"kind": "SPEED_BOOST", "option_id": boost, "duration_days": 7},
            {"option_id": boost, "duration_days": 7},
        ),
    ]
    for n, (kw, audited) in enumerate(kinds):
        # when
        reward = await call(
            session_factory,
            admin.create_bonus_reward,
            staff_id=staff_id,
            code=f"reward-{n}-{tag}",
            name=f"Награда {n} {tag}",
            points_price=100 + n,
            client_address=ADDRESS,
            **kw,
        )

        # then
        row = await fetch(session_factory, BonusReward, reward.id)
        assert (row.code, row.kind, row.points_price, row.archived) == (
            f"reward-{n}-{tag}",
            kw["kind"],
            100 + n,
            False,
        )
        assert (row.credit_amount, row.tv_package_id, row.option_id, row.duration_days) == (
            kw.get("credit_amount"),
            kw.get("tv_package_id"),
            kw.get("option_id"),
            kw.get("duration_days"),
        )
        assert reward.id in {r.id for r in await with_reader(engine, list_bonus_rewards)}
        assert_audit(
            (await audit_rows(session_factory))[-1],
            staff_id=staff_id,
            action="createBonusReward",
            target=reward,
            before=None,
            after={
                "slug": f"reward-{n}-{tag}",
                "name": f"Награда {n} {tag}",
                "kind": kw["kind"],
                "points_price": 100 + n,
                **audited,
            },
        )


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"kind": "FREE_BEER"}, ErrorCode.INVALID, "kind"),
        ({"points_price": 0}, ErrorCode.INVALID, "pointsPrice"),
        ({"points_price": 1_000_001}, ErrorCode.INVALID, "pointsPrice"),
        ({"credit_amount": None}, ErrorCode.INVALID, "creditAmount"),
        ({"credit_amount": Decimal("0.00")}, ErrorCode.INVALID, "creditAmount"),
        ({"duration_days": 7}, ErrorCode.INVALID, "durationDays"),
        (
            {"kind": "TV_PACKAGE", "credit_amount": None, "duration_days": 30},
            ErrorCode.INVALID,
            "tvPackageId",
        ),
        (
            {
                "kind": "TV_PACKAGE",
                "credit_amount": None,
                "tv_package_id": 10**9,
                "duration_days": 30,
            },
            ErrorCode.INVALID,
            "tvPackageId",
        ),
        (
            {
                "kind": "TV_PACKAGE",
                "credit_amount": None,
                "tv_package_id": "base",
                "duration_days": 0,
            },
            ErrorCode.INVALID,
            "durationDays",
        ),
        (
            {
                "kind": "TV_PACKAGE",
                "credit_amount": None,
                "tv_package_id": "base",
                "duration_days": 366,
            },
            ErrorCode.INVALID,
            "durationDays",
        ),
        (
            {"kind": "TV_PACKAGE", "tv_package_id": "base", "duration_days": 30},
            ErrorCode.INVALID,
            "creditAmount",
        ),
        (
            {"kind": "SPEED_BOOST", "credit_amount": None, "duration_days": 7},
            ErrorCode.INVALID,
            "optionId",
        ),
        (
            {"kind": "SPEED_BOOST", "credit_amount": None, "option_id": "speed-boost"},
            ErrorCode.INVALID,
            "durationDays",
        ),
        ({"code": "credit-100"}, ErrorCode.CONFLICT, "code"),
    ],
)
async def test_an_invalid_or_duplicate_reward_is_refused(
    session_factory: Any,
    staff_id: int,
    tag: str,
    overrides: dict[str, Any],
    code: ErrorCode,
    field: str,
) -> None:
    values: dict[str, Any] = {
        "code": f"reward-{tag}",
        "name": f"Награда {tag}",
        "kind": "BALANCE_CREDIT",
        "points_price": 100,
        "credit_amount": Decimal("50.00"),
    }
    values.update(overrides)
    # seeded items by code: their ids differ between databases
    if values.get("tv_package_id") == "base":
        values["tv_package_id"] = await seeded_id(session_factory, TvPackage, "base")
    if values.get("option_id") == "speed-boost":
        values["option_id"] = await seeded_id(session_factory, ServiceOption, "speed-boost")

    error = await refused(session_factory, admin.create_bonus_reward, staff_id=staff_id, **values)

    assert (error.code, error.field) == (code, field)
    assert await count(session_factory, BonusReward, name=f"Награда {tag}") == 0
    assert await audit_rows(session_factory) == []


async def test_a_reward_for_an_archived_package_is_refused(
    session_factory: Any, staff_id: int, tag: str
) -> None:
    channel_ids = await seeded_channel_ids(session_factory, must_carry=False, n=1)
    package = await new_package(session_factory, staff_id, tag, channel_ids)
    await call(session_factory, admin.archive_tv_package, staff_id=staff_id, package_id=package.id)

    error = await refused(
        session_factory,
        admin.create_bonus_reward,
        staff_id=staff_id,
        code=f"reward-{tag}",
        name=f"Награда {tag}",
        kind="TV_PACKAGE",
        points_price=100,
        tv_package_id=package.id,
        duration_days=30,
    )

    assert (error.code, error.field) == (ErrorCode.INVALID, "tvPackageId")
    assert await count(session_factory, BonusReward, code=f"reward-{tag}") == 0


async def test_a_reward_is_edited_archived_and_restored(
    session_factory: Any, engine: AsyncEngine, staff_id: int, tag: str
) -> None:
    # given
    boost = await seeded_id(session_factory, ServiceOption, "speed-boost")
    reward = await call(
        session_factory,
        admin.create_bonus_reward,
        staff_id=staff_id,
        code=f"boost-{tag}",
        name=f"Турбо {tag}",
        kind="SPEED_BOOST",
        points_price=150,
        option_id=boost,
        duration_days=7,
    )

    # when edited
    await call(
        session_factory,
        admin.update_bonus_reward,
        staff_id=staff_id,
        reward_id=reward.id,
        points_price=120,
        duration_days=14,
        client_address=ADDRESS,
    )

    # then
    row = await fetch(session_factory, BonusReward, reward.id)
    assert (row.points_price, row.duration_days, row.option_id, row.name) == (
        120,
        14,
        boost,
        f"Турбо {tag}",
    )
    assert_audit(
        (await audit_rows(session_factory))[-1],
        staff_id=staff_id,
        action="updateBonusReward",
        target=reward,
        before={"points_price": 150, "duration_days": 7},
        after={"points_price": 120, "duration_days": 14},
    )

    # a field of another kind, or a bad value, is refused
    entries = len(await audit_rows(session_factory))
    for kw, field in (
        ({"credit_amount": Decimal("10")}, "creditAmount"),
        ({"duration_days": 0}, "durationDays"),
        ({"option_id": 10**9}, "optionId"),
        ({"points_price": -5}, "pointsPrice"),
    ):
        error = await refused(
            session_factory, admin.update_bonus_reward, staff_id=staff_id, reward_id=reward.id, **kw
        )
        assert (error.code, error.field) == (ErrorCode.INVALID, field)
    assert (await fetch(session_factory, BonusReward, reward.id)).duration_days == 14
    assert len(await audit_rows(session_factory)) == entries

    # when archived, then restored
    await call(
        session_factory,
        admin.archive_bonus_reward,
        staff_id=staff_id,
        reward_id=reward.id,
        client_address=ADDRESS,
    )
    assert (await fetch(session_factory, BonusReward, reward.id)).archived is True
    assert reward.id not in {r.id for r in await with_reader(engine, list_bonus_rewards)}
    assert_audit(
        (await audit_rows(session_factory))[-1],
        staff_id=staff_id,
        action="archiveBonusReward",
        target=reward,
        before={"archived": False},
        after={"archived": True},
    )
    await call(
        session_factory,
        admin.archive_bonus_reward,
        staff_id=staff_id,
        reward_id=reward.id,
        archived=False,
    )
    assert reward.id in {r.id for r in await with_reader(engine, list_bonus_rewards)}

    # unknown ids
    for verb, extra in (
        (admin.update_bonus_reward, {"name": "X"}),
        (admin.archive_bonus_reward, {}),
    ):
        error = await refused(session_factory, verb, staff_id=staff_id, reward_id=10**9, **extra)
        assert (error.code, error.field) == (ErrorCode.NOT_FOUND, "rewardId")
