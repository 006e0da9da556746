"""Catalogue types: regions, tariffs, channels, TV packages, options, bonus rewards."""

from __future__ import annotations

from enum import Enum
from typing import Any

import strawberry

from core.ids import to_global_id
from schema.context import Info
from schema.scalars import Money
from schema.types.node import Node


@strawberry.type
class Region:
    code: str
    name: str

    @classmethod
    def from_row(cls, row: Any) -> Region:
        return cls(code=row.code, name=row.name)


@strawberry.type(description="An Internet plan of one region.")
class Tariff(Node):
    code: str
    name: str
    region_code: str
    monthly_fee: Money
    speed_mbps: int
    traffic_gb: int | None = strawberry.field(description="Traffic allowance; null: unlimited.")
    unlimited: bool
    description: str
    archived: bool

    @classmethod
    def from_row(cls, row: Any) -> Tariff:
        return cls(
            id=to_global_id("Tariff", row.id),
            code=row.code,
            name=row.name,
            region_code=row.region_code,
            monthly_fee=row.monthly_fee,
            speed_mbps=row.speed_mbps,
            traffic_gb=row.traffic_gb,
            unlimited=row.traffic_gb is None,
            description=row.description,
            archived=row.archived,
        )


@strawberry.type
class Channel(Node):
    number: int
    name: str
    genre: str
    hd: bool
    must_carry: bool = strawberry.field(
        description="A public channel: free and always in every TV contract's line-up."
    )

    @classmethod
    def from_row(cls, row: Any) -> Channel:
        return cls(
            id=to_global_id("Channel", row.id),
            number=row.number,
            name=row.name,
            genre=row.genre,
            hd=row.hd,
            must_carry=row.must_carry,
        )


@strawberry.type
class TvPackage(Node):
    pk: strawberry.Private[int]
    code: str
    name: str
    monthly_fee: Money
    description: str
    archived: bool

    @strawberry.field
    async def channels(self, info: Info) -> list[Channel]:
        rows = await info.context.loaders.channels_by_package.load(self.pk)
        return [Channel.from_row(row) for row in rows]

    @classmethod
    def from_row(cls, row: Any) -> TvPackage:
        return cls(
            id=to_global_id("TvPackage", row.id),
            pk=row.id,
            code=row.code,
            name=row.name,
            monthly_fee=row.monthly_fee,
            description=row.description,
            archived=row.archived,
        )


@strawberry.type(description="A paid service option: static IP, antivirus, speed boost…")
class ServiceOption(Node):
    code: str
    name: str
    monthly_fee: Money
    description: str
    archived: bool

    @classmethod
    def from_row(cls, row: Any) -> ServiceOption:
        return cls(
            id=to_global_id("ServiceOption", row.id),
            code=row.code,
            name=row.name,
            monthly_fee=row.monthly_fee,
            description=row.description,
            archived=row.archived,
        )


@strawberry.enum
class RewardKind(Enum):
    BALANCE_CREDIT = "BALANCE_CREDIT"
    TV_PACKAGE = "TV_PACKAGE"
    SPEED_BOOST = "SPEED_BOOST"


@strawberry.type(description="A reward that bonus points buy.")
class BonusReward(Node):
    code: str
    name: str
    kind: RewardKind
    points_price: int
    credit_amount: Money | None = strawberry.field(description="BALANCE_CREDIT: the credit.")
    duration_days: int | None = strawberry.field(description="How long a package or boost lasts.")
    tv_package_pk: strawberry.Private[int | None]
    option_pk: strawberry.Private[int | None]

    @strawberry.field(description="TV_PACKAGE: the package given for `durationDays`.")
    async def tv_package(self, info: Info) -> TvPackage | None:
        if self.tv_package_pk is None:
            return None
        row = await info.context.loaders.catalog_item.load(("TvPackage", self.tv_package_pk))
        return None if row is None else TvPackage.from_row(row)

    @strawberry.field(description="SPEED_BOOST: the option given for `durationDays`.")
    async def service_option(self, info: Info) -> ServiceOption | None:
        if self.option_pk is None:
            return None
        row = await info.context.loaders.catalog_item.load(("ServiceOption", self.option_pk))
        return None if row is None else ServiceOption.from_row(row)

    @classmethod
    def from_row(cls, row: Any) -> BonusReward:
        return cls(
            id=to_global_id("BonusReward", row.id),
            code=row.code,
            name=row.name,
            kind=RewardKind(row.kind),
            points_price=row.points_price,
            credit_amount=row.credit_amount,
            duration_days=row.duration_days,
            tv_package_pk=row.tv_package_id,
            option_pk=row.option_id,
        )


CATALOG_NODE_TYPES: dict[str, Any] = {
    "Tariff": Tariff,
    "Channel": Channel,
    "TvPackage": TvPackage,
    "ServiceOption": ServiceOption,
    "BonusReward": BonusReward,
}
