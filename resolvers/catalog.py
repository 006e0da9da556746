"""Reading the catalogue: lean Core selects of just the columns the API returns."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import Row
from sqlalchemy.sql.base import Executable

from models import (
    BonusReward,
    Channel,
    Region,
    ServiceOption,
    Tariff,
    TvPackage,
    TvPackageChannel,
)
from resolvers.errors import DomainError, ErrorCode


class Reader(Protocol):
    async def rows(self, statement: Executable) -> Sequence[Row[Any]]: ...


_regions = Region.__table__  # type: ignore[attr-defined]
_tariffs = Tariff.__table__  # type: ignore[attr-defined]
_channels = Channel.__table__  # type: ignore[attr-defined]
_packages = TvPackage.__table__  # type: ignore[attr-defined]
_package_channels = TvPackageChannel.__table__  # type: ignore[attr-defined]
_options = ServiceOption.__table__  # type: ignore[attr-defined]
_rewards = BonusReward.__table__  # type: ignore[attr-defined]

REGION_COLUMNS = (_regions.c.code, _regions.c.name)
TARIFF_COLUMNS = (
    _tariffs.c.id,
    _tariffs.c.code,
    _tariffs.c.name,
    _tariffs.c.region_code,
    _tariffs.c.monthly_fee,
    _tariffs.c.speed_mbps,
    _tariffs.c.traffic_gb,
    _tariffs.c.description,
    _tariffs.c.archived,
)
CHANNEL_COLUMNS = (
    _channels.c.id,
    _channels.c.number,
    _channels.c.name,
    _channels.c.genre,
    _channels.c.hd,
    _channels.c.must_carry,
)
PACKAGE_COLUMNS = (
    _packages.c.id,
    _packages.c.code,
    _packages.c.name,
    _packages.c.monthly_fee,
    _packages.c.description,
    _packages.c.archived,
)
OPTION_COLUMNS = (
    _options.c.id,
    _options.c.code,
    _options.c.name,
    _options.c.monthly_fee,
    _options.c.description,
    _options.c.archived,
)
REWARD_COLUMNS = (
    _rewards.c.id,
    _rewards.c.code,
    _rewards.c.name,
    _rewards.c.kind,
    _rewards.c.points_price,
    _rewards.c.credit_amount,
    _rewards.c.tv_package_id,
    _rewards.c.option_id,
    _rewards.c.duration_days,
)

_REGIONS = sa.select(*REGION_COLUMNS).order_by(_regions.c.code)
_TARIFFS = (
    sa.select(*TARIFF_COLUMNS)
    .where(_tariffs.c.archived.is_(False))
    .order_by(_tariffs.c.region_code, _tariffs.c.monthly_fee, _tariffs.c.id)
)
_CHANNELS = (
    sa.select(*CHANNEL_COLUMNS).where(_channels.c.archived.is_(False)).order_by(_channels.c.number)
)
_PACKAGES = (
    sa.select(*PACKAGE_COLUMNS)
    .where(_packages.c.archived.is_(False))
    .order_by(_packages.c.monthly_fee, _packages.c.id)
)
_OPTIONS = (
    sa.select(*OPTION_COLUMNS)
    .where(_options.c.archived.is_(False))
    .order_by(_options.c.monthly_fee, _options.c.id)
)
_REWARDS = (
    sa.select(*REWARD_COLUMNS)
    .where(_rewards.c.archived.is_(False))
    .order_by(_rewards.c.points_price, _rewards.c.id)
)
_CHANNELS_OF_PACKAGES = (
    sa.select(_package_channels.c.package_id, *CHANNEL_COLUMNS)
    .join(_channels, _channels.c.id == _package_channels.c.channel_id)
    .where(_package_channels.c.package_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(_package_channels.c.package_id, _channels.c.number)
)

MAX_REGION_CODE = 16


async def list_regions(reader: Reader) -> Sequence[Row[Any]]:
    return await reader.rows(_REGIONS)


async def list_tariffs(reader: Reader, *, region: str | None = None) -> Sequence[Row[Any]]:
    """Tariffs on sale (not archived), of one region when `region` is given."""
    if region is None:
        return await reader.rows(_TARIFFS)
    if not region or len(region) > MAX_REGION_CODE:
        raise DomainError(ErrorCode.INVALID, "Unknown region code.", field="region")
    return await reader.rows(_TARIFFS.where(_tariffs.c.region_code == region))


async def list_channels(reader: Reader) -> Sequence[Row[Any]]:
    return await reader.rows(_CHANNELS)


async def list_tv_packages(reader: Reader) -> Sequence[Row[Any]]:
    return await reader.rows(_PACKAGES)


async def list_service_options(reader: Reader) -> Sequence[Row[Any]]:
    return await reader.rows(_OPTIONS)


async def list_bonus_rewards(reader: Reader) -> Sequence[Row[Any]]:
    return await reader.rows(_REWARDS)


async def channels_by_package(
    reader: Reader, package_ids: Sequence[int]
) -> dict[int, list[Row[Any]]]:
    """Channels of several packages in one statement, keyed by package id."""
    found: dict[int, list[Row[Any]]] = defaultdict(list)
    for row in await reader.rows(_CHANNELS_OF_PACKAGES.params(ids=list(package_ids))):
        found[row.package_id].append(row)
    return found


_BY_ID = {
    "Tariff": sa.select(*TARIFF_COLUMNS).where(
        _tariffs.c.id.in_(sa.bindparam("ids", expanding=True))
    ),
    "Channel": sa.select(*CHANNEL_COLUMNS).where(
        _channels.c.id.in_(sa.bindparam("ids", expanding=True))
    ),
    "TvPackage": sa.select(*PACKAGE_COLUMNS).where(
        _packages.c.id.in_(sa.bindparam("ids", expanding=True))
    ),
    "ServiceOption": sa.select(*OPTION_COLUMNS).where(
        _options.c.id.in_(sa.bindparam("ids", expanding=True))
    ),
    "BonusReward": sa.select(*REWARD_COLUMNS).where(
        _rewards.c.id.in_(sa.bindparam("ids", expanding=True))
    ),
}
CATALOG_TYPES = frozenset(_BY_ID)


async def catalog_items_by_id(
    reader: Reader, type_name: str, ids: Sequence[int]
) -> dict[int, Row[Any]]:
    """Catalogue rows of one type by id (archived ones too: contracts may still have them)."""
    rows = await reader.rows(_BY_ID[type_name].params(ids=list(ids)))
    return {row.id: row for row in rows}
