"""The root Query: thin fields that call one verb in resolvers/ and map rows to types."""

from __future__ import annotations

import strawberry

from resolvers import catalog
from resolvers.errors import DomainError
from schema.context import Info
from schema.errors import bad_input
from schema.types.catalog import (
    CATALOG_NODE_TYPES,
    BonusReward,
    Channel,
    Region,
    ServiceOption,
    Tariff,
    TvPackage,
)
from schema.types.node import Node, from_global_id


@strawberry.type
class Query:
    @strawberry.field(description="Regions where the operator sells its tariffs.")
    async def regions(self, info: Info) -> list[Region]:
        return [Region.from_row(row) for row in await catalog.list_regions(info.context.reader)]

    @strawberry.field(description="Tariffs on sale, of one region (a region code) if given.")
    async def tariffs(self, info: Info, region: str | None = None) -> list[Tariff]:
        try:
            rows = await catalog.list_tariffs(info.context.reader, region=region)
        except DomainError as error:
            raise bad_input(error) from None
        return [Tariff.from_row(row) for row in rows]

    @strawberry.field(description="TV packages on sale, with their channels.")
    async def tv_packages(self, info: Info) -> list[TvPackage]:
        rows = await catalog.list_tv_packages(info.context.reader)
        return [TvPackage.from_row(row) for row in rows]

    @strawberry.field(description="Every channel the operator carries.")
    async def channels(self, info: Info) -> list[Channel]:
        return [Channel.from_row(row) for row in await catalog.list_channels(info.context.reader)]

    @strawberry.field(description="Service options on sale.")
    async def service_options(self, info: Info) -> list[ServiceOption]:
        rows = await catalog.list_service_options(info.context.reader)
        return [ServiceOption.from_row(row) for row in rows]

    @strawberry.field(description="Rewards that bonus points buy.")
    async def bonus_rewards(self, info: Info) -> list[BonusReward]:
        rows = await catalog.list_bonus_rewards(info.context.reader)
        return [BonusReward.from_row(row) for row in rows]

    @strawberry.field(description="Any object by its global ID; null when unknown or not yours.")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        decoded = from_global_id(id)
        if decoded is None:
            return None
        type_name, raw_pk = decoded
        node_type = CATALOG_NODE_TYPES.get(type_name)
        if node_type is None or not raw_pk.isdigit() or len(raw_pk) > 18:
            return None
        row = await info.context.loaders.catalog_item.load((type_name, int(raw_pk)))
        return None if row is None else node_type.from_row(row)
