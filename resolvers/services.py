"""Services (SPEC §3 "Services"): the tariff, TV packages, Personal TV, Multiroom, options.

Every verb takes the contract's id (the caller has checked who may act on it) and `today`
(the UTC day, given by tests to move time), writes in its caller's one transaction (the
unit of work commits it), and raises `DomainError` for an expected failure.

**When an item is charged.** The billing day charges day D in advance, at the start of D, for
every item on that day (`resolvers/charges.py`: `started_on <= D < coalesce(ended_on, ∞)`).
So the rows are dated from the day of the request, never from the clock or from whether
today's billing has run yet:
- an item connected on day T starts on T + 1 (`started_on = T + 1`): today is never charged
  for it, whether today's billing ran before or runs after the request. "Charged from the
  next billing day";
- an item disconnected on day T ends on T + 1 (`ended_on = T + 1`, the first day not
  charged): today was (or will be, by today's run) paid in full and stays paid, tomorrow is
  not charged. An item that never started (connected today) gets `ended_on = started_on`:
  a period of no days, never charged, kept for the history;
- so a disconnection and a reconnection on the same day leave no gap and no double day,
  and the total charged for a month is exactly Σ over its days of each item's daily share.
Either way the item is on or off at once for the subscriber: "connected" means a row with
`ended_on IS NULL`, which is also what the partial unique indexes allow only once per item.

**The tariff** changes from the next billing day: `scheduled_tariff_id` from T + 1, which
`resolvers/charges.py` already charges from that day; `apply_scheduled_tariffs` (called by
the billing day) moves due schedules into `tariff_id`. A schedule that is due but not applied
yet counts as the current tariff everywhere here.

**Money rules for a new paid item** (packages, Personal TV channels added, Multiroom
receivers, options; a free item skips them): refused with NOT_ELIGIBLE while the contract is
SUSPENDED or a promised payment is OPEN, and with INSUFFICIENT_FUNDS when the balance does
not cover the item's first day (`daily_share(fee, T + 1)`). A dearer tariff is refused while
a promise is open. Disconnecting is always allowed. A CLOSED contract connects nothing. A
PAUSED contract (a voluntary pause is running: resolvers/pause.py) connects no paid item and
changes no tariff (NOT_ELIGIBLE) until the pause ends or is resumed.

**Concurrency.** Each verb locks the contract's row first (PostgreSQL `FOR UPDATE`; SQLite
serialises writers with BEGIN IMMEDIATE), so two requests on one contract queue up and the
second sees what the first did; the partial unique indexes are the last line of defence
(an IntegrityError becomes CONFLICT).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import begin_write
from core.errors import DomainError, ErrorCode
from core.ids import to_global_id
from core.settings import Settings
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
from models.base import table_of, utcnow
from resolvers import events
from resolvers.charges import daily_share
from resolvers.promised import open_promises

CENT = Decimal("0.01")
# No valid Personal TV request names more channels than the catalogue has; this only keeps
# a hostile list from becoming a huge IN (…).
MAX_CHANNEL_IDS = 1000
NAMED_IN_MESSAGE = 20

_contracts = table_of(Contract)
_tariffs = table_of(Tariff)
_channels = table_of(Channel)
_contract_packages = table_of(ContractTvPackage)
_personal = table_of(ContractPersonalChannel)
_multiroom = table_of(MultiroomDevice)
_contract_options = table_of(ContractOption)

T = TypeVar("T")


# --------------------------------------------------------------------------- #
# shared rules
# --------------------------------------------------------------------------- #


def _today(today: date | None) -> date:
    return today if today is not None else utcnow().date()


def tariff_on(contract: Contract, day: date) -> int:
    """The tariff a contract is on for `day`: the scheduled one from its effective day (even
    before the billing day has applied it), the current one otherwise."""
    scheduled_from = contract.scheduled_tariff_from
    if contract.scheduled_tariff_id is not None and scheduled_from is not None:
        if scheduled_from <= day:
            return contract.scheduled_tariff_id
    return contract.tariff_id


def pending_tariff_change(contract: Contract, *, today: date) -> tuple[int, date] | None:
    """(tariff id, effective from) of a change still to come, for `Contract.scheduledTariff`;
    None when there is none or when it is already in effect."""
    scheduled_from = contract.scheduled_tariff_from
    if contract.scheduled_tariff_id is None or scheduled_from is None or scheduled_from <= today:
        return None
    return contract.scheduled_tariff_id, scheduled_from


def _ended_on(started_on: date, today: date) -> date:
    # Today is paid (or will be by today's run); a row that has not started is never charged.
    return max(started_on, today + timedelta(days=1))


def _money(value: Any) -> Decimal:
    # SQLite keeps NUMERIC as REAL: read back as kopecks.
    return Decimal(str(value)).quantize(CENT)


async def _in_transaction(
    session: AsyncSession, work: Callable[[], Awaitable[T]], *, conflict: str
) -> T:
    """Run `work` in the writing transaction, flushed at its end: a unique index refusing a
    second active row (a concurrent twin request) is CONFLICT (and the unit of work rolls
    everything back)."""
    await begin_write(session)
    try:
        result = await work()
        await session.flush()
    except IntegrityError:
        raise DomainError(ErrorCode.CONFLICT, conflict) from None
    return result


async def _lock_contract(session: AsyncSession, contract_id: int) -> Contract:
    contract = await session.scalar(
        sa.select(Contract)
        .where(_contracts.c.id == contract_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if contract is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such contract.", field="contractNumber")
    return contract


def _refuse_closed(contract: Contract) -> None:
    if contract.status == "CLOSED":
        raise DomainError(ErrorCode.NOT_ELIGIBLE, "The contract is closed.")


PAUSED_MESSAGE = "The service is paused: resume it to connect paid services or change the tariff."


def _refuse_paused(contract: Contract) -> None:
    if contract.status == "PAUSED":
        raise DomainError(ErrorCode.NOT_ELIGIBLE, PAUSED_MESSAGE)


async def _has_open_promise(session: AsyncSession, contract_id: int) -> bool:
    return contract_id in await open_promises(session, [contract_id])


async def _check_new_paid_item(
    session: AsyncSession, contract: Contract, *, monthly_fee: Decimal, first_day: date
) -> None:
    """The money rules of a new item costing `monthly_fee` a month from `first_day`."""
    _refuse_closed(contract)
    if monthly_fee <= 0:
        return
    _refuse_paused(contract)
    if contract.status == "SUSPENDED":
        raise DomainError(
            ErrorCode.NOT_ELIGIBLE,
            "The contract is suspended for non-payment: top up to connect paid services.",
        )
    assert contract.id is not None
    if await _has_open_promise(session, contract.id):
        raise DomainError(
            ErrorCode.NOT_ELIGIBLE,
            "Paid services cannot be connected while a promised payment is open.",
        )
    first_charge = daily_share(monthly_fee, first_day)
    if _money(contract.balance) < first_charge:
        raise DomainError(
            ErrorCode.INSUFFICIENT_FUNDS,
            f"The balance does not cover the first day's charge of {first_charge} RUB.",
        )


async def _services_changed(
    session: AsyncSession, contract: Contract, service: str, change: str, **data: Any
) -> None:
    """`contract.services_changed` in the verb's transaction (docs/events.md)."""
    await events.record_event(
        session,
        "contract.services_changed",
        contract_number=contract.number,
        data={"service": service, "change": change, **data},
    )


# --------------------------------------------------------------------------- #
# tariff
# --------------------------------------------------------------------------- #


async def change_tariff(
    session: AsyncSession,
    *,
    settings: Settings,
    contract_id: int,
    tariff_id: int,
    today: date | None = None,
) -> Contract:
    """Schedule a change to `tariff_id` from tomorrow (the next billing day). Returns the
    contract with `scheduled_tariff_id` / `scheduled_tariff_from` set. Once per day: a
    cancelled change still counts as the day's change."""
    del settings
    day = _today(today)

    async def work() -> Contract:
        contract = await _lock_contract(session, contract_id)
        _refuse_closed(contract)
        _refuse_paused(contract)
        tariff = await session.get(Tariff, tariff_id, populate_existing=True)
        if tariff is None:
            raise DomainError(ErrorCode.NOT_FOUND, "No such tariff.", field="tariffId")
        if tariff.region_code != contract.region_code:
            raise DomainError(
                ErrorCode.INVALID, "This tariff is not offered in your region.", field="tariffId"
            )
        if tariff.archived:
            raise DomainError(
                ErrorCode.INVALID, "This tariff is no longer available.", field="tariffId"
            )
        current_id = tariff_on(contract, day)
        if tariff.id == current_id:
            raise DomainError(
                ErrorCode.INVALID, "You are on this tariff already.", field="tariffId"
            )
        if contract.tariff_changed_on == day:
            raise DomainError(
                ErrorCode.NOT_ELIGIBLE, "The tariff can be changed once per day: try tomorrow."
            )
        current_fee = await session.scalar(
            sa.select(_tariffs.c.monthly_fee).where(_tariffs.c.id == current_id)
        )
        assert contract.id is not None
        if _money(tariff.monthly_fee) > _money(current_fee) and await _has_open_promise(
            session, contract.id
        ):
            raise DomainError(
                ErrorCode.NOT_ELIGIBLE,
                "A dearer tariff cannot be chosen while a promised payment is open.",
                field="tariffId",
            )
        # A schedule already in effect (not yet applied by the billing day) becomes the
        # current tariff, so that today keeps being charged at it.
        contract.tariff_id = current_id
        contract.scheduled_tariff_id = tariff.id
        contract.scheduled_tariff_from = day + timedelta(days=1)
        contract.tariff_changed_on = day
        await session.flush()
        return contract

    return await _in_transaction(session, work, conflict="The tariff was changed meanwhile.")


async def cancel_tariff_change(
    session: AsyncSession, *, settings: Settings, contract_id: int, today: date | None = None
) -> Contract:
    """Undo a change still to come (NOT_FOUND when none is). `tariff_changed_on` stays: the
    day's change is spent."""
    del settings
    day = _today(today)

    async def work() -> Contract:
        contract = await _lock_contract(session, contract_id)
        if pending_tariff_change(contract, today=day) is None:
            raise DomainError(ErrorCode.NOT_FOUND, "No tariff change is scheduled.")
        contract.scheduled_tariff_id = None
        contract.scheduled_tariff_from = None
        await session.flush()
        return contract

    return await _in_transaction(session, work, conflict="The tariff was changed meanwhile.")


def _tariff_event(number: Any, tariff_id: Any) -> sa.Select[Any]:
    """(contract number, data) of `contract.tariff_changed`: the tariff now in force."""
    return sa.select(
        number,
        events.json_object(
            "tariffCode",
            _tariffs.c.code,
            "tariffName",
            _tariffs.c.name,
            "speedMbps",
            _tariffs.c.speed_mbps,
            "trafficGb",
            _tariffs.c.traffic_gb,
            "monthlyFee",
            events.money_text(_tariffs.c.monthly_fee),
        ),
    ).where(_tariffs.c.id == tariff_id)


async def apply_scheduled_tariffs(
    session: AsyncSession, *, day: date, at: datetime | None = None
) -> int:
    """Make every scheduled tariff effective by `day` the contract's tariff and clear the
    schedule, each with its `contract.tariff_changed` event (the tariff in force, its
    speed): one UPDATE (and the events), in the caller's writing transaction (no commit).
    Returns how many contracts changed. Charges do not depend on it (`resolvers/charges.py`
    reads the schedule), it keeps `tariff_id` current."""
    due = (_contracts.c.scheduled_tariff_from <= day,)
    return await events.update_with_events(
        session,
        "contract.tariff_changed",
        table=_contracts,
        where=due,
        values={
            "tariff_id": _contracts.c.scheduled_tariff_id,
            "scheduled_tariff_id": None,
            "scheduled_tariff_from": None,
        },
        rows_before=lambda: _tariff_event(
            _contracts.c.number, _contracts.c.scheduled_tariff_id
        ).where(*due),
        rows_after=lambda changed: _tariff_event(changed.c.number, changed.c.tariff_id),
        at=at,
    )


# --------------------------------------------------------------------------- #
# TV packages
# --------------------------------------------------------------------------- #


async def _reward_ends(
    session: AsyncSession, model: Any, contract_id: int, item_id: int, day: date
) -> date | None:
    """When a bonus reward that gives this item free (a row with an end date that nobody
    disconnected) stops, if one is running after `day`."""
    table = model.__table__
    item = table.c.package_id if "package_id" in table.c else table.c.option_id
    ends = await session.scalar(
        sa.select(sa.func.max(table.c.ended_on)).where(
            table.c.contract_id == contract_id,
            item == item_id,
            table.c.disconnected_at.is_(None),
            table.c.free_until.is_not(None),
            table.c.ended_on > day,
        )
    )
    return ends


async def connect_tv_package(
    session: AsyncSession,
    *,
    settings: Settings,
    contract_id: int,
    package_id: int,
    today: date | None = None,
) -> ContractTvPackage:
    """Connect a package now, charged from tomorrow. Returns the new row."""
    del settings
    day = _today(today)
    first_day = day + timedelta(days=1)

    async def work() -> ContractTvPackage:
        contract = await _lock_contract(session, contract_id)
        package = await session.get(TvPackage, package_id, populate_existing=True)
        if package is None:
            raise DomainError(ErrorCode.NOT_FOUND, "No such TV package.", field="packageId")
        if package.archived:
            raise DomainError(
                ErrorCode.INVALID, "This TV package is no longer available.", field="packageId"
            )
        if await _active_package(session, contract_id, package_id) is not None:
            raise DomainError(
                ErrorCode.CONFLICT, "This TV package is connected already.", field="packageId"
            )
        # Free now as a bonus reward: the paid connection starts when the free period ends.
        start = max(
            first_day,
            await _reward_ends(session, ContractTvPackage, contract_id, package_id, day) or day,
        )
        await _check_new_paid_item(
            session, contract, monthly_fee=_money(package.monthly_fee), first_day=start
        )
        row = ContractTvPackage(contract_id=contract_id, package_id=package_id, started_on=start)
        session.add(row)
        await session.flush()
        await _services_changed(
            session,
            contract,
            "TV_PACKAGE",
            "CONNECTED",
            itemId=to_global_id("TvPackage", package_id),
            chargedFrom=start,
        )
        return row

    return await _in_transaction(session, work, conflict="This TV package is connected already.")


async def disconnect_tv_package(
    session: AsyncSession,
    *,
    settings: Settings,
    contract_id: int,
    package_id: int,
    today: date | None = None,
) -> ContractTvPackage:
    """Disconnect a package now; today stays paid. Returns the ended row."""
    del settings
    day = _today(today)

    async def work() -> ContractTvPackage:
        contract = await _lock_contract(session, contract_id)
        row = await _active_package(session, contract_id, package_id)
        if row is None:
            raise DomainError(
                ErrorCode.NOT_FOUND, "This TV package is not connected.", field="packageId"
            )
        row.ended_on = _ended_on(row.started_on, day)
        row.disconnected_at = utcnow()
        await session.flush()
        await _services_changed(
            session,
            contract,
            "TV_PACKAGE",
            "DISCONNECTED",
            itemId=to_global_id("TvPackage", package_id),
            chargedUntil=row.ended_on,
        )
        return row

    return await _in_transaction(session, work, conflict="The package was changed meanwhile.")


async def _active_package(
    session: AsyncSession, contract_id: int, package_id: int
) -> ContractTvPackage | None:
    return await session.scalar(
        sa.select(ContractTvPackage)
        .where(
            _contract_packages.c.contract_id == contract_id,
            _contract_packages.c.package_id == package_id,
            _contract_packages.c.ended_on.is_(None),
        )
        .execution_options(populate_existing=True)
    )


# --------------------------------------------------------------------------- #
# Personal TV
# --------------------------------------------------------------------------- #


def _named(ids: Sequence[int]) -> str:
    shown = ", ".join(str(i) for i in sorted(ids)[:NAMED_IN_MESSAGE])
    return shown + (", …" if len(ids) > NAMED_IN_MESSAGE else "")


async def set_personal_tv_channels(
    session: AsyncSession,
    *,
    settings: Settings,
    contract_id: int,
    channel_ids: Sequence[int],
    today: date | None = None,
) -> list[ContractPersonalChannel]:
    """Make the contract's Personal TV exactly `channel_ids` (an empty list turns it off).

    Must-carry channels may be in the list: they are in every line-up anyway, free, and are
    neither stored nor counted. The paid channels must number 0 or `personal_tv_min_channels`
    to `personal_tv_max_channels`. Channels dropped end today (today stays paid), new ones are
    charged from tomorrow at `personal_tv_channel_fee` each; the money rules apply to the
    added channels together (`daily_share(fee × added, tomorrow)`). Returns the channels
    connected now, by channel id."""
    day = _today(today)
    first_day = day + timedelta(days=1)
    wanted = list(dict.fromkeys(channel_ids))
    if len(wanted) > MAX_CHANNEL_IDS:
        raise DomainError(ErrorCode.INVALID, "Too many channels.", field="channelIds")

    async def work() -> list[ContractPersonalChannel]:
        contract = await _lock_contract(session, contract_id)
        found = await session.execute(
            sa.select(_channels.c.id, _channels.c.must_carry, _channels.c.archived).where(
                _channels.c.id.in_(wanted)
            )
        )
        known = {row.id: row for row in found.all()}
        unknown = [i for i in wanted if i not in known]
        if unknown:
            raise DomainError(
                ErrorCode.INVALID, f"Unknown channel ids: {_named(unknown)}.", field="channelIds"
            )
        paid = {i for i in wanted if not known[i].must_carry}
        low, high = settings.personal_tv_min_channels, settings.personal_tv_max_channels
        if paid and not low <= len(paid) <= high:
            raise DomainError(
                ErrorCode.INVALID,
                f"Personal TV takes {low} to {high} channels besides the free public ones "
                f"(or none, to turn it off); {len(paid)} chosen.",
                field="channelIds",
            )
        current = {
            row.channel_id: row
            for row in (
                await session.scalars(
                    sa.select(ContractPersonalChannel)
                    .where(
                        _personal.c.contract_id == contract_id,
                        _personal.c.ended_on.is_(None),
                    )
                    .execution_options(populate_existing=True)
                )
            ).all()
        }
        added = sorted(paid - current.keys())
        removed = sorted(current.keys() - paid)
        archived = [i for i in added if known[i].archived]
        if archived:
            raise DomainError(
                ErrorCode.INVALID,
                f"These channels are no longer available: {_named(archived)}.",
                field="channelIds",
            )
        if added:
            fee = _money(settings.personal_tv_channel_fee)
            await _check_new_paid_item(
                session, contract, monthly_fee=fee * len(added), first_day=first_day
            )
        now = utcnow()
        for channel_id in removed:
            row = current.pop(channel_id)
            row.ended_on = _ended_on(row.started_on, day)
            row.disconnected_at = now
        for channel_id in added:
            row = ContractPersonalChannel(
                contract_id=contract_id,
                channel_id=channel_id,
                monthly_fee=_money(settings.personal_tv_channel_fee),
                started_on=first_day,
            )
            session.add(row)
            current[channel_id] = row
        await session.flush()
        if added or removed:
            await _services_changed(
                session,
                contract,
                "PERSONAL_TV",
                "CHANGED",
                channelIds=[to_global_id("Channel", i) for i in sorted(current)],
                added=[to_global_id("Channel", i) for i in added],
                removed=[to_global_id("Channel", i) for i in removed],
            )
        return [current[i] for i in sorted(current)]

    return await _in_transaction(
        session, work, conflict="Personal TV was changed meanwhile: try again."
    )


# --------------------------------------------------------------------------- #
# Multiroom
# --------------------------------------------------------------------------- #


async def add_multiroom_device(
    session: AsyncSession, *, settings: Settings, contract_id: int, today: date | None = None
) -> MultiroomDevice:
    """Add an extra TV receiver (at most `multiroom_max_devices` at a time), rented at
    `multiroom_device_fee` a month from tomorrow. Packages are still charged once per
    contract. Returns the new device with its serial."""
    day = _today(today)
    first_day = day + timedelta(days=1)

    async def work() -> MultiroomDevice:
        contract = await _lock_contract(session, contract_id)
        _refuse_closed(contract)
        active = await session.scalar(
            sa.select(sa.func.count()).where(
                _multiroom.c.contract_id == contract_id, _multiroom.c.ended_on.is_(None)
            )
        )
        if (active or 0) >= settings.multiroom_max_devices:
            raise DomainError(
                ErrorCode.NOT_ELIGIBLE,
                f"At most {settings.multiroom_max_devices} Multiroom receivers per contract.",
            )
        fee = _money(settings.multiroom_device_fee)
        await _check_new_paid_item(session, contract, monthly_fee=fee, first_day=first_day)
        device = MultiroomDevice(
            contract_id=contract_id,
            serial="MR-" + secrets.token_hex(4).upper(),
            monthly_fee=fee,
            started_on=first_day,
        )
        session.add(device)
        await session.flush()
        await _services_changed(
            session,
            contract,
            "MULTIROOM",
            "CONNECTED",
            itemId=to_global_id("MultiroomDevice", device.id or 0),
            serial=device.serial,
            chargedFrom=first_day,
        )
        return device

    return await _in_transaction(session, work, conflict="Multiroom was changed meanwhile.")


async def remove_multiroom_device(
    session: AsyncSession,
    *,
    settings: Settings,
    contract_id: int,
    device_id: int,
    today: date | None = None,
) -> MultiroomDevice:
    """Return a receiver now; today stays paid. NOT_FOUND unless it is one of this
    contract's receivers in use."""
    del settings
    day = _today(today)

    async def work() -> MultiroomDevice:
        contract = await _lock_contract(session, contract_id)
        device = await session.scalar(
            sa.select(MultiroomDevice)
            .where(
                _multiroom.c.id == device_id,
                _multiroom.c.contract_id == contract_id,
                _multiroom.c.ended_on.is_(None),
            )
            .execution_options(populate_existing=True)
        )
        if device is None:
            raise DomainError(
                ErrorCode.NOT_FOUND,
                "No such Multiroom receiver on this contract.",
                field="deviceId",
            )
        device.ended_on = _ended_on(device.started_on, day)
        device.disconnected_at = utcnow()
        await session.flush()
        await _services_changed(
            session,
            contract,
            "MULTIROOM",
            "DISCONNECTED",
            itemId=to_global_id("MultiroomDevice", device_id),
            serial=device.serial,
            chargedUntil=device.ended_on,
        )
        return device

    return await _in_transaction(session, work, conflict="Multiroom was changed meanwhile.")


# --------------------------------------------------------------------------- #
# service options
# --------------------------------------------------------------------------- #


async def activate_option(
    session: AsyncSession,
    *,
    settings: Settings,
    contract_id: int,
    option_id: int,
    today: date | None = None,
) -> ContractOption:
    """Switch an option on now, charged from tomorrow. Returns the new row."""
    del settings
    day = _today(today)
    first_day = day + timedelta(days=1)

    async def work() -> ContractOption:
        contract = await _lock_contract(session, contract_id)
        option = await session.get(ServiceOption, option_id, populate_existing=True)
        if option is None:
            raise DomainError(ErrorCode.NOT_FOUND, "No such service option.", field="optionId")
        if option.archived:
            raise DomainError(
                ErrorCode.INVALID, "This service option is no longer available.", field="optionId"
            )
        if await _active_option(session, contract_id, option_id) is not None:
            raise DomainError(
                ErrorCode.CONFLICT, "This service option is on already.", field="optionId"
            )
        start = max(
            first_day,
            await _reward_ends(session, ContractOption, contract_id, option_id, day) or day,
        )
        await _check_new_paid_item(
            session, contract, monthly_fee=_money(option.monthly_fee), first_day=start
        )
        row = ContractOption(contract_id=contract_id, option_id=option_id, started_on=start)
        session.add(row)
        await session.flush()
        await _services_changed(
            session,
            contract,
            "OPTION",
            "CONNECTED",
            itemId=to_global_id("ServiceOption", option_id),
            code=option.code,
            chargedFrom=start,
        )
        return row

    return await _in_transaction(session, work, conflict="This service option is on already.")


async def deactivate_option(
    session: AsyncSession,
    *,
    settings: Settings,
    contract_id: int,
    option_id: int,
    today: date | None = None,
) -> ContractOption:
    """Switch an option off now; today stays paid. Returns the ended row."""
    del settings
    day = _today(today)

    async def work() -> ContractOption:
        contract = await _lock_contract(session, contract_id)
        row = await _active_option(session, contract_id, option_id)
        if row is None:
            raise DomainError(
                ErrorCode.NOT_FOUND, "This service option is not on.", field="optionId"
            )
        row.ended_on = _ended_on(row.started_on, day)
        row.disconnected_at = utcnow()
        await session.flush()
        await _services_changed(
            session,
            contract,
            "OPTION",
            "DISCONNECTED",
            itemId=to_global_id("ServiceOption", option_id),
            chargedUntil=row.ended_on,
        )
        return row

    return await _in_transaction(session, work, conflict="The option was changed meanwhile.")


async def _active_option(
    session: AsyncSession, contract_id: int, option_id: int
) -> ContractOption | None:
    return await session.scalar(
        sa.select(ContractOption)
        .where(
            _contract_options.c.contract_id == contract_id,
            _contract_options.c.option_id == option_id,
            _contract_options.c.ended_on.is_(None),
        )
        .execution_options(populate_existing=True)
    )
