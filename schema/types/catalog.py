"""Catalogue types: regions, tariffs, channels, TV packages, options, bonus rewards."""

from __future__ import annotations

from enum import Enum
from typing import Any

import strawberry

from core.ids import to_global_id
from schema.context import Info
from schema.scalars import Money
from schema.types.node import Node
from schema.types.viewed import Viewed, link, value, viewed


@viewed
@strawberry.type
class Region(Viewed):
    VIEW = "Region"
    code: str = value()
    name: str = value()


@viewed
@strawberry.type(description="An Internet plan of one region.")
class Tariff(Viewed, Node):
    VIEW = "Tariff"
    id: strawberry.ID = value()
    code: str = value()
    name: str = value()
    region_code: str = value()
    region: Region = link(description="The region the tariff is sold in (`regionCode`'s).")
    monthly_fee: Money = value()
    speed_mbps: int = value()
    traffic_gb: int | None = value(description="Traffic allowance; null: unlimited.")
    unlimited: bool = value()
    description: str = value()
    archived: bool = value()


@viewed
@strawberry.type
class Channel(Viewed, Node):
    VIEW = "Channel"
    id: strawberry.ID = value()
    number: int = value()
    name: str = value()
    genre: str = value()
    hd: bool = value()
    must_carry: bool = value(
        description="A public channel: free and always in every TV contract's line-up."
    )


@viewed
@strawberry.type
class TvPackage(Viewed, Node):
    VIEW = "TvPackage"
    id: strawberry.ID = value()
    code: str = value()
    name: str = value()
    monthly_fee: Money = value()
    description: str = value()
    archived: bool = value()
    channels: list[Channel] = link()


@viewed
@strawberry.type(description="A paid service option: static IP, antivirus, speed boost…")
class ServiceOption(Viewed, Node):
    VIEW = "ServiceOption"
    id: strawberry.ID = value()
    code: str = value()
    name: str = value()
    monthly_fee: Money = value()
    description: str = value()
    archived: bool = value()


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
        return None if self.tv_package_pk is None else TvPackage.of_key(self.tv_package_pk)

    @strawberry.field(description="SPEED_BOOST: the option given for `durationDays`.")
    async def service_option(self, info: Info) -> ServiceOption | None:
        return None if self.option_pk is None else ServiceOption.of_key(self.option_pk)

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
