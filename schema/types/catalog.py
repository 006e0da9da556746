"""Catalogue types: regions, tariffs, channels, TV packages, options, bonus rewards."""

from __future__ import annotations

from enum import Enum
from typing import Any

import strawberry

from core.ids import to_global_id
from schema.context import Info
from schema.scalars import Money
from schema.types.enums import values_described
from schema.types.node import ID_DESCRIPTION, Node
from schema.types.viewed import Viewed, link, value, viewed


@viewed
@strawberry.type(description="A region where the operator sells its tariffs.")
class Region(Viewed):
    VIEW = "Region"
    code: str = value(
        description='The region\'s code (e.g. "MOW"), as `tariffs(region:)` takes it.'
    )
    name: str = value(description="The region's name.")


@viewed
@strawberry.type(description="An Internet plan of one region.")
class Tariff(Viewed, Node):
    VIEW = "Tariff"
    id: strawberry.ID = value(description=ID_DESCRIPTION)
    code: str = value(description='A stable code, unique within the region (e.g. "home-100").')
    name: str = value(description="The name shown to subscribers.")
    region_code: str = value(description="The code of the tariff's region (`Region.code`).")
    region: Region = link(description="The region the tariff is sold in (`regionCode`'s).")
    monthly_fee: Money = value(description="The fee per month, charged by the day.")
    speed_mbps: int = value(description="The speed, in Mbit/s.")
    traffic_gb: int | None = value(description="Traffic allowance in GB; null: unlimited.")
    unlimited: bool = value(description="true when there is no traffic allowance.")
    description: str = value(description="What to know about it; may be empty.")
    archived: bool = value(description="Off sale: no longer offered, but contracts on it keep it.")


@viewed
@strawberry.type(description="A TV channel.")
class Channel(Viewed, Node):
    VIEW = "Channel"
    id: strawberry.ID = value(description=ID_DESCRIPTION)
    number: int = value(description="Its number in the line-up (unique).")
    name: str = value(description="Its name (unique).")
    genre: str = value(description='Its genre, a name in Russian (e.g. "Новости", "Спорт").')
    hd: bool = value(description="true for an HD channel.")
    must_carry: bool = value(
        description="A public channel: free and always in every TV contract's line-up."
    )


@viewed
@strawberry.type(
    description="A TV package: a set of channels for one monthly fee per contract, whatever "
    "the number of TVs."
)
class TvPackage(Viewed, Node):
    VIEW = "TvPackage"
    id: strawberry.ID = value(description=ID_DESCRIPTION)
    code: str = value(description='A stable, unique code (e.g. "base").')
    name: str = value(description="The name shown to subscribers.")
    monthly_fee: Money = value(description="The fee per month, charged by the day.")
    description: str = value(description="What to know about it; may be empty.")
    archived: bool = value(
        description="Off sale: no longer offered, but contracts that have it keep it."
    )
    channels: list[Channel] = link(
        description="Its channels, by number (must-carry ones are in no package)."
    )


@viewed
@strawberry.type(description="A paid service option: static IP, antivirus, speed boost…")
class ServiceOption(Viewed, Node):
    VIEW = "ServiceOption"
    id: strawberry.ID = value(description=ID_DESCRIPTION)
    code: str = value(description='A stable, unique code (e.g. "static-ip").')
    name: str = value(description="The name shown to subscribers.")
    monthly_fee: Money = value(description="The fee per month, charged by the day.")
    description: str = value(description="What to know about it; may be empty.")
    archived: bool = value(
        description="Off sale: no longer offered, but contracts that have it keep it."
    )


@values_described(
    {
        "BALANCE_CREDIT": "Money credited to the balance (`creditAmount`).",
        "TV_PACKAGE": "A TV package, free for `durationDays` (`tvPackage`).",
        "SPEED_BOOST": "A speed-boost service option, free for `durationDays` (`serviceOption`).",
    }
)
@strawberry.enum(description="What a bonus reward gives.")
class RewardKind(Enum):
    BALANCE_CREDIT = "BALANCE_CREDIT"
    TV_PACKAGE = "TV_PACKAGE"
    SPEED_BOOST = "SPEED_BOOST"


@strawberry.type(description="A reward that bonus points buy.")
class BonusReward(Node):
    code: str = strawberry.field(description="A stable, unique code.")
    name: str = strawberry.field(description="The name shown to subscribers.")
    kind: RewardKind = strawberry.field(description="What the reward gives.")
    points_price: int = strawberry.field(description="What it costs, in bonus points.")
    credit_amount: Money | None = strawberry.field(
        description="BALANCE_CREDIT: the credit; null for the other kinds."
    )
    duration_days: int | None = strawberry.field(
        description="TV_PACKAGE and SPEED_BOOST: how many days it is free; null for BALANCE_CREDIT."
    )
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
