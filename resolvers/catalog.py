"""Reading the catalogue: lean Core selects of just the columns the API returns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import Row
from sqlalchemy.sql.base import Executable

from core.db import ReadQuery, one_of
from core.errors import DomainError, ErrorCode
from models import (
    BonusReward,
    Channel,
    Region,
    ServiceOption,
    Tariff,
    TvPackage,
    TvPackageChannel,
)
from models.base import table_of


class Reader(Protocol):
    async def rows(self, statement: Executable) -> Sequence[Row[Any]]: ...

    async def fetch(self, query: ReadQuery, **params: Any) -> list[Any]: ...


_regions = table_of(Region)
_tariffs = table_of(Tariff)
_channels = table_of(Channel)
_packages = table_of(TvPackage)
_package_channels = table_of(TvPackageChannel)
_options = table_of(ServiceOption)
_rewards = table_of(BonusReward)

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

# What the public catalogue lists, each as rows (for any filter: these have no parent) and
# an order; `Query.regions`, `tariffs`, … read them through resolvers/views.py.
REGION_ORDER = ("code",)
TARIFF_ORDER = ("region_code", "monthly_fee", "id")
PACKAGE_ORDER = ("monthly_fee", "id")
CHANNEL_ORDER = ("number",)
OPTION_ORDER = ("monthly_fee", "id")


def regions_listed(_keep: Any = None) -> sa.Select[Any]:
    return sa.select(*REGION_COLUMNS)


def tariffs_on_sale(_keep: Any = None, region: Any = None) -> sa.Select[Any]:
    """Tariffs not archived, of the region `region` when given (a value or SQL)."""
    statement = sa.select(*TARIFF_COLUMNS).where(_tariffs.c.archived.is_(False))
    if region is not None:
        statement = statement.where(_tariffs.c.region_code == region)
    return statement


def packages_on_sale(_keep: Any = None) -> sa.Select[Any]:
    return sa.select(*PACKAGE_COLUMNS).where(_packages.c.archived.is_(False))


def channels_on_air(_keep: Any = None) -> sa.Select[Any]:
    return sa.select(*CHANNEL_COLUMNS).where(_channels.c.archived.is_(False))


def options_on_sale(_keep: Any = None) -> sa.Select[Any]:
    return sa.select(*OPTION_COLUMNS).where(_options.c.archived.is_(False))


def _listed(rows: sa.Select[Any], order: tuple[str, ...]) -> ReadQuery:
    found = rows.subquery("listed")
    return ReadQuery(sa.select(found).order_by(*(found.c[name] for name in order)))


_REGIONS = _listed(regions_listed(), REGION_ORDER)
_TARIFFS = _listed(tariffs_on_sale(), TARIFF_ORDER)
_TARIFFS_OF_REGION = _listed(tariffs_on_sale(region=sa.bindparam("region")), TARIFF_ORDER)
_CHANNELS = _listed(channels_on_air(), CHANNEL_ORDER)
_PACKAGES = _listed(packages_on_sale(), PACKAGE_ORDER)
_OPTIONS = _listed(options_on_sale(), OPTION_ORDER)
_REWARDS = ReadQuery(
    sa.select(*REWARD_COLUMNS)
    .where(_rewards.c.archived.is_(False))
    .order_by(_rewards.c.points_price, _rewards.c.id)
)

MAX_REGION_CODE = 16


async def list_regions(reader: Reader) -> Sequence[Row[Any]]:
    return await reader.fetch(_REGIONS)


def check_region_code(region: str | None) -> None:
    """A region code as `tariffs(region)` takes it (None: every region)."""
    if region is not None and (not region or len(region) > MAX_REGION_CODE):
        raise DomainError(ErrorCode.INVALID, "Unknown region code.", field="region")


async def list_tariffs(reader: Reader, *, region: str | None = None) -> Sequence[Row[Any]]:
    """Tariffs on sale (not archived), of one region when `region` is given."""
    check_region_code(region)
    if region is None:
        return await reader.fetch(_TARIFFS)
    return await reader.fetch(_TARIFFS_OF_REGION, region=region)


async def list_channels(reader: Reader) -> Sequence[Row[Any]]:
    return await reader.fetch(_CHANNELS)


async def list_tv_packages(reader: Reader) -> Sequence[Row[Any]]:
    return await reader.fetch(_PACKAGES)


async def list_service_options(reader: Reader) -> Sequence[Row[Any]]:
    return await reader.fetch(_OPTIONS)


async def list_bonus_rewards(reader: Reader) -> Sequence[Row[Any]]:
    return await reader.fetch(_REWARDS)


_BY_ID = {
    "Tariff": ReadQuery(sa.select(*TARIFF_COLUMNS).where(one_of(_tariffs.c.id, "ids"))),
    "Channel": ReadQuery(sa.select(*CHANNEL_COLUMNS).where(one_of(_channels.c.id, "ids"))),
    "TvPackage": ReadQuery(sa.select(*PACKAGE_COLUMNS).where(one_of(_packages.c.id, "ids"))),
    "ServiceOption": ReadQuery(sa.select(*OPTION_COLUMNS).where(one_of(_options.c.id, "ids"))),
    "BonusReward": ReadQuery(sa.select(*REWARD_COLUMNS).where(one_of(_rewards.c.id, "ids"))),
}
CATALOG_TYPES = frozenset(_BY_ID)


def tariff_by_id(tariff_id: Any) -> sa.Select[Any]:
    """One tariff (an id, or a column of an enclosing statement), archived ones too."""
    return sa.select(*TARIFF_COLUMNS).where(_tariffs.c.id == tariff_id)


async def catalog_items_by_id(
    reader: Reader, type_name: str, ids: Sequence[int]
) -> dict[int, Row[Any]]:
    """Catalogue rows of one type by id (archived ones too: contracts may still have them)."""
    rows = await reader.fetch(_BY_ID[type_name], ids=list(ids))
    return {row.id: row for row in rows}
