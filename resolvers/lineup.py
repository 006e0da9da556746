"""What a contract has connected now (read side): TV packages, Personal TV channels,
Multiroom receivers, service options, the channel line-up it receives, and what the next
month costs. Each reader is one statement for all the contracts asked for.

"Connected now" is a row with `ended_on IS NULL` (resolvers/services.py): an item
disconnected today is gone at once, even though today stays paid, and an item connected
today shows at once, though it is charged from tomorrow. Packages and options given free by a
bonus reward show until their free period ends (`_has_now`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa

from core.db import ReadQuery, one_of
from models import (
    Channel,
    Contract,
    ContractOption,
    ContractPersonalChannel,
    ContractTvPackage,
    MultiroomDevice,
    ServiceOption,
    TvPackage,
    TvPackageChannel,
)
from models.base import table_of, utcnow
from resolvers.catalog import CHANNEL_COLUMNS, OPTION_COLUMNS, PACKAGE_COLUMNS
from resolvers.charges import ChargeItem, monthly_charges

_links = table_of(ContractTvPackage)
_packages = table_of(TvPackage)
_package_channels = table_of(TvPackageChannel)
_channels = table_of(Channel)
_personal = table_of(ContractPersonalChannel)
_multiroom = table_of(MultiroomDevice)
_options = table_of(ServiceOption)
_contract_options = table_of(ContractOption)
_contracts = table_of(Contract)


def _has_now(table: Any) -> sa.ColumnElement[bool]:
    """Connected now, or given free by a bonus reward that has not run out: reward rows end
    on their own (`ended_on` set from the start) and nobody disconnected them."""
    return sa.and_(
        table.c.disconnected_at.is_(None),
        sa.or_(table.c.ended_on.is_(None), table.c.ended_on > sa.bindparam("today", type_=sa.Date)),
    )


def packages_now(contracts: Any) -> sa.Select[Any]:
    """The packages connected now of the contracts `contracts(contract_id)` admits (archived
    ones too: they stay on the contracts that have them). A package free by a reward and its
    paid connection from the day after are one package. Parameter: `today`."""
    return (
        sa.select(_links.c.contract_id, *PACKAGE_COLUMNS)
        .join(_packages, _packages.c.id == _links.c.package_id)
        .where(contracts(_links.c.contract_id), _has_now(_links))
        .distinct()
    )


def personal_channels_now(contracts: Any) -> sa.Select[Any]:
    """The Personal TV channels chosen now: the channel's columns plus `personal_fee` (its
    monthly fee on this contract) and `started_on`."""
    return (
        sa.select(
            _personal.c.contract_id,
            _personal.c.monthly_fee.label("personal_fee"),
            _personal.c.started_on,
            *CHANNEL_COLUMNS,
        )
        .join(_channels, _channels.c.id == _personal.c.channel_id)
        .where(contracts(_personal.c.contract_id), _personal.c.ended_on.is_(None))
    )


def multiroom_devices_now(contracts: Any) -> sa.Select[Any]:
    """The Multiroom receivers in use now."""
    return sa.select(
        _multiroom.c.id,
        _multiroom.c.contract_id,
        _multiroom.c.serial,
        _multiroom.c.monthly_fee,
        _multiroom.c.started_on,
        _multiroom.c.connected_at,
    ).where(contracts(_multiroom.c.contract_id), _multiroom.c.ended_on.is_(None))


def options_now(contracts: Any) -> sa.Select[Any]:
    """The service options on now (archived ones too), with free_until and started_on."""
    return (
        sa.select(
            _contract_options.c.contract_id,
            _contract_options.c.free_until,
            _contract_options.c.started_on,
            *OPTION_COLUMNS,
        )
        .join(_options, _options.c.id == _contract_options.c.option_id)
        .where(contracts(_contract_options.c.contract_id), _has_now(_contract_options))
    )


def line_up(contracts: Any) -> sa.Select[Any]:
    """The channels each contract receives now (`Contract.channels`): the must-carry
    channels ∪ the channels of its connected packages ∪ its Personal TV channels, each once.

    Every contract is a TV contract: the must-carry channels are in every line-up, also of a
    contract with no package and no Personal TV (they are free and nothing removes them).
    Channels archived in the catalogue stay in the line-ups that have them, like archived
    packages."""
    # (contract, channel) pairs from the three sources; UNION removes the duplicates.
    must_carry = (
        sa.select(_contracts.c.id.label("contract_id"), _channels.c.id.label("channel_id"))
        .select_from(_contracts.join(_channels, _channels.c.must_carry.is_(True)))
        .where(contracts(_contracts.c.id))
    )
    from_packages = (
        sa.select(_links.c.contract_id, _package_channels.c.channel_id)
        .join(_package_channels, _package_channels.c.package_id == _links.c.package_id)
        .where(contracts(_links.c.contract_id), _has_now(_links))
    )
    personal = sa.select(_personal.c.contract_id, _personal.c.channel_id).where(
        contracts(_personal.c.contract_id), _personal.c.ended_on.is_(None)
    )
    pairs = sa.union(must_carry, from_packages, personal).subquery("line_up")
    return sa.select(pairs.c.contract_id, *CHANNEL_COLUMNS).join(
        _channels, _channels.c.id == pairs.c.channel_id
    )


def _of_contracts(rows: Any, *order: str) -> ReadQuery:
    statement = rows(lambda column: one_of(column, "ids")).subquery()
    return ReadQuery(
        sa.select(statement).order_by(statement.c.contract_id, *(statement.c[o] for o in order))
    )


_PACKAGES_OF_CONTRACTS = _of_contracts(packages_now, "monthly_fee", "id")
_PERSONAL_CHANNELS_OF_CONTRACTS = _of_contracts(personal_channels_now, "number")
_MULTIROOM_DEVICES_OF_CONTRACTS = _of_contracts(multiroom_devices_now, "id")
_OPTIONS_OF_CONTRACTS = _of_contracts(options_now, "monthly_fee", "id")
_LINE_UP_OF_CONTRACTS = _of_contracts(line_up, "number")


async def _grouped(
    reader: Any, query: ReadQuery, contract_ids: Sequence[int]
) -> dict[int, list[Any]]:
    found: dict[int, list[Any]] = defaultdict(list)
    if not contract_ids:
        return found
    rows = await reader.fetch(query, ids=list(dict.fromkeys(contract_ids)), today=utcnow().date())
    for row in rows:
        found[row.contract_id].append(row)
    return found


async def tv_packages_of_contracts(
    reader: Any, contract_ids: Sequence[int]
) -> dict[int, list[Any]]:
    """The packages connected now (archived ones too: they stay on the contracts that have
    them), one statement for all the contracts asked for."""
    return await _grouped(reader, _PACKAGES_OF_CONTRACTS, contract_ids)


async def personal_channels_of_contracts(
    reader: Any, contract_ids: Sequence[int]
) -> dict[int, list[Any]]:
    """The Personal TV channels chosen now, by channel number: the channel's columns plus
    `personal_fee` (the monthly fee of that channel for this contract) and `started_on`."""
    return await _grouped(reader, _PERSONAL_CHANNELS_OF_CONTRACTS, contract_ids)


async def multiroom_devices_of_contracts(
    reader: Any, contract_ids: Sequence[int]
) -> dict[int, list[Any]]:
    """The Multiroom receivers in use now: id, serial, monthly_fee, started_on,
    connected_at."""
    return await _grouped(reader, _MULTIROOM_DEVICES_OF_CONTRACTS, contract_ids)


async def options_of_contracts(reader: Any, contract_ids: Sequence[int]) -> dict[int, list[Any]]:
    """The service options on now (archived ones too), with free_until and started_on."""
    return await _grouped(reader, _OPTIONS_OF_CONTRACTS, contract_ids)


async def channel_lineup_of_contracts(
    reader: Any, contract_ids: Sequence[int]
) -> dict[int, list[Any]]:
    """`line_up` of each contract asked for, by channel number: one statement."""
    return await _grouped(reader, _LINE_UP_OF_CONTRACTS, contract_ids)


async def monthly_charges_view(
    reader: Any, contract_ids: Sequence[int], *, today: date | None = None
) -> dict[int, list[ChargeItem]]:
    """What the next month costs, item by item (`Contract.monthlyCharges`): the items charged
    tomorrow (the next billing day) with their monthly fees, so a tariff change and items
    connected today show, and items disconnected today do not. An item free tomorrow (a
    bonus reward) is left out."""
    day = (today if today is not None else utcnow().date()) + timedelta(days=1)
    return await monthly_charges(reader, contract_ids, on=day)
