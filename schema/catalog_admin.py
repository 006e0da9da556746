"""Staff mutations that edit the catalogue (every one audited; nothing is deleted: archived
items leave the public lists and stay on the contracts that have them).

The fifteen fields are wired from one table: for each entity of
resolvers.catalog_admin.ENTITIES a `Wiring` names its GraphQL type, payload and inputs and
which input fields carry global IDs of which type; `create()`, `update()` and `archive()`
make its three fields. Each decodes the input (global IDs to keys, enums to their values)
and calls the generic verb through the one mutation shape (`run`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.utils.str_converters import to_camel_case

from resolvers import catalog_admin
from resolvers.catalog_admin import Entity
from schema.context import Info
from schema.errors import UserError
from schema.mutation_support import ERRORS, INPUT, STAFF, mutation, pk_of, run, signed_in
from schema.scalars import Money
from schema.types.catalog import BonusReward, Channel, RewardKind, ServiceOption, Tariff, TvPackage

# The descriptions the inputs share (SPEC §2; the limits are resolvers/catalog_admin.py's).
CODE = "A stable code: 2 to 40 lower-case letters, digits or '-', unique; it cannot change later."
NAME = "The name shown to subscribers, 1 to 100 characters."
NEW_NAME = "The new name, 1 to 100 characters; null: unchanged."
FEE = "The fee per month, 0.00 to 100,000.00 RUB, charged by the day."
NEW_FEE = (
    "The new fee per month, 0.00 to 100,000.00 RUB: every contract with it pays it from the "
    "next billing day; null: unchanged."
)
DESCRIPTION = "What to know about it, at most 500 characters; may be empty."
NEW_DESCRIPTION = "The new description, at most 500 characters; null: unchanged."
UNCHANGED = "; null: unchanged."


def _payload(item: str) -> str:
    return f"The {item} as it is after the change; null on failure."


@strawberry.type(description="What a staff tariff mutation answers.")
class TariffPayload:
    errors: list[UserError] = strawberry.field(description=ERRORS)
    tariff: Tariff | None = strawberry.field(default=None, description=_payload("tariff"))


@strawberry.type(description="What a staff TV package mutation answers.")
class TvPackagePayload:
    errors: list[UserError] = strawberry.field(description=ERRORS)
    tv_package: TvPackage | None = strawberry.field(
        default=None, description=_payload("TV package")
    )


@strawberry.type(description="What a staff channel mutation answers.")
class ChannelPayload:
    errors: list[UserError] = strawberry.field(description=ERRORS)
    channel: Channel | None = strawberry.field(default=None, description=_payload("channel"))


@strawberry.type(description="What a staff service option mutation answers.")
class ServiceOptionPayload:
    errors: list[UserError] = strawberry.field(description=ERRORS)
    service_option: ServiceOption | None = strawberry.field(
        default=None, description=_payload("service option")
    )


@strawberry.type(description="What a staff bonus reward mutation answers.")
class BonusRewardPayload:
    errors: list[UserError] = strawberry.field(description=ERRORS)
    bonus_reward: BonusReward | None = strawberry.field(
        default=None, description=_payload("bonus reward")
    )


@strawberry.input(description="Staff: a new tariff of one region.")
class CreateTariffInput:
    region: str = strawberry.field(
        description="The region's code (`Region.code`); it cannot change later."
    )
    code: str = strawberry.field(
        description="A stable code: 2 to 40 lower-case letters, digits or '-', unique "
        "within the region; it cannot change later."
    )
    name: str = strawberry.field(description=NAME)
    monthly_fee: Money = strawberry.field(description=FEE)
    speed_mbps: int = strawberry.field(description="The speed in Mbit/s, 1 to 100,000.")
    traffic_gb: int | None = strawberry.field(
        default=None, description="The traffic allowance in GB, 1 to 100,000; null: unlimited."
    )
    description: str = strawberry.field(default="", description=DESCRIPTION)


@strawberry.input(description="Staff: what to change in a tariff (null fields stay as they are).")
class UpdateTariffInput:
    tariff_id: strawberry.ID = strawberry.field(description="The `Tariff.id`.")
    name: str | None = strawberry.field(default=None, description=NEW_NAME)
    monthly_fee: Money | None = strawberry.field(default=None, description=NEW_FEE)
    speed_mbps: int | None = strawberry.field(
        default=None, description="The new speed in Mbit/s, 1 to 100,000" + UNCHANGED
    )
    traffic_gb: int | None = strawberry.field(
        default=None, description="Set with `unlimited` false; see `unlimited`."
    )
    unlimited: bool | None = strawberry.field(
        default=None, description="true: no traffic allowance (trafficGb is ignored)."
    )
    description: str | None = strawberry.field(default=None, description=NEW_DESCRIPTION)


@strawberry.input(
    description="Staff: an item to take off sale or put back on sale. Archived items leave "
    "the public lists; contracts that have one keep it."
)
class ArchiveInput:
    id: strawberry.ID = strawberry.field(
        description="The item's ID, of the mutation's type (a `Tariff.id` for "
        "`archiveTariff`, ...)."
    )
    archived: bool = strawberry.field(
        default=True, description="true: take it off sale; false: put it back on sale."
    )


@strawberry.input(description="Staff: a new TV package.")
class CreateTvPackageInput:
    code: str = strawberry.field(description=CODE)
    name: str = strawberry.field(description=NAME)
    monthly_fee: Money = strawberry.field(description=FEE)
    channel_ids: list[strawberry.ID] = strawberry.field(
        description="Its line-up, `Channel.id`s: at least one, none must-carry or archived."
    )
    description: str = strawberry.field(default="", description=DESCRIPTION)


@strawberry.input(
    description="Staff: what to change in a TV package (null fields stay as they are)."
)
class UpdateTvPackageInput:
    package_id: strawberry.ID = strawberry.field(description="The `TvPackage.id`.")
    name: str | None = strawberry.field(default=None, description=NEW_NAME)
    monthly_fee: Money | None = strawberry.field(default=None, description=NEW_FEE)
    channel_ids: list[strawberry.ID] | None = strawberry.field(
        default=None,
        description="The whole new line-up, at once for every contract with the package: at "
        "least one channel, none must-carry, no archived one it did not have" + UNCHANGED,
    )
    description: str | None = strawberry.field(default=None, description=NEW_DESCRIPTION)


@strawberry.input(description="Staff: a new channel.")
class CreateChannelInput:
    number: int = strawberry.field(description="Its number, 1 to 9,999, unique.")
    name: str = strawberry.field(description="Its name, 1 to 100 characters, unique.")
    genre: str = strawberry.field(description="Its genre, 1 to 40 characters.")
    hd: bool = strawberry.field(default=False, description="true for an HD channel.")
    must_carry: bool = strawberry.field(
        default=False,
        description="true: a public channel, free and in every TV contract's line-up (never "
        "in a package, never archived).",
    )


@strawberry.input(description="Staff: what to change in a channel (null fields stay as they are).")
class UpdateChannelInput:
    channel_id: strawberry.ID = strawberry.field(description="The `Channel.id`.")
    number: int | None = strawberry.field(
        default=None, description="The new number, 1 to 9,999, unique" + UNCHANGED
    )
    name: str | None = strawberry.field(
        default=None, description="The new name, 1 to 100 characters, unique" + UNCHANGED
    )
    genre: str | None = strawberry.field(
        default=None, description="The new genre, 1 to 40 characters" + UNCHANGED
    )
    hd: bool | None = strawberry.field(default=None, description="HD or not" + UNCHANGED)
    must_carry: bool | None = strawberry.field(
        default=None,
        description="true makes it must-carry: NOT_ELIGIBLE while it is archived or in a "
        "package" + UNCHANGED,
    )


@strawberry.input(description="Staff: a new service option.")
class CreateServiceOptionInput:
    code: str = strawberry.field(description=CODE)
    name: str = strawberry.field(description=NAME)
    monthly_fee: Money = strawberry.field(description=FEE)
    description: str = strawberry.field(default="", description=DESCRIPTION)


@strawberry.input(
    description="Staff: what to change in a service option (null fields stay as they are)."
)
class UpdateServiceOptionInput:
    option_id: strawberry.ID = strawberry.field(description="The `ServiceOption.id`.")
    name: str | None = strawberry.field(default=None, description=NEW_NAME)
    monthly_fee: Money | None = strawberry.field(default=None, description=NEW_FEE)
    description: str | None = strawberry.field(default=None, description=NEW_DESCRIPTION)


@strawberry.input(
    description="Staff: a new bonus reward. Each kind takes its own fields: BALANCE_CREDIT "
    "`creditAmount`; TV_PACKAGE `tvPackageId` and `durationDays`; SPEED_BOOST `optionId` "
    "and `durationDays`. A field of another kind is refused."
)
class CreateBonusRewardInput:
    code: str = strawberry.field(description=CODE)
    name: str = strawberry.field(description=NAME)
    kind: RewardKind = strawberry.field(description="What it gives; it cannot change later.")
    points_price: int = strawberry.field(description="Its price in points, 1 to 1,000,000.")
    credit_amount: Money | None = strawberry.field(
        default=None, description="BALANCE_CREDIT: the credit, 0.01 to 100,000.00 RUB."
    )
    tv_package_id: strawberry.ID | None = strawberry.field(
        default=None, description="TV_PACKAGE: the `TvPackage.id`, not archived."
    )
    option_id: strawberry.ID | None = strawberry.field(
        default=None, description="SPEED_BOOST: the `ServiceOption.id`, not archived."
    )
    duration_days: int | None = strawberry.field(
        default=None, description="TV_PACKAGE and SPEED_BOOST: days free, 1 to 365."
    )


@strawberry.input(
    description="Staff: what to change in a bonus reward (null fields stay as they are; a "
    "field its kind does not have is refused)."
)
class UpdateBonusRewardInput:
    reward_id: strawberry.ID = strawberry.field(description="The `BonusReward.id`.")
    name: str | None = strawberry.field(default=None, description=NEW_NAME)
    points_price: int | None = strawberry.field(
        default=None, description="The new price in points, 1 to 1,000,000" + UNCHANGED
    )
    credit_amount: Money | None = strawberry.field(
        default=None,
        description="BALANCE_CREDIT: the new credit, 0.01 to 100,000.00 RUB" + UNCHANGED,
    )
    tv_package_id: strawberry.ID | None = strawberry.field(
        default=None, description="TV_PACKAGE: the new `TvPackage.id`" + UNCHANGED
    )
    option_id: strawberry.ID | None = strawberry.field(
        default=None, description="SPEED_BOOST: the new `ServiceOption.id`" + UNCHANGED
    )
    duration_days: int | None = strawberry.field(
        default=None,
        description="TV_PACKAGE and SPEED_BOOST: the new days free, 1 to 365" + UNCHANGED,
    )


# -- the wiring ------------------------------------------------------------------------------


def _traffic(arguments: dict[str, Any]) -> dict[str, Any]:
    """updateTariff: `unlimited: true` is no allowance (None); otherwise `trafficGb`, when
    given, and else the allowance stays as it is."""
    unlimited = arguments.pop("unlimited")
    if unlimited:
        arguments["traffic_gb"] = None
    elif arguments["traffic_gb"] is None:
        arguments["traffic_gb"] = catalog_admin.UNSET
    return arguments


def _as_they_are(arguments: dict[str, Any]) -> dict[str, Any]:
    return arguments


Verb = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Wiring:
    """An entity of the catalogue table as GraphQL sees it."""

    entity: Entity
    noun: str  # in the descriptions: "Staff: a new tariff.", "Staff: edit a tariff."
    node: Any  # the GraphQL type of its rows (with `from_row`)
    payload: Any
    field: str  # the payload's field that carries the row
    create_input: type
    update_input: type
    refs: Mapping[str, str] = dataclasses.field(default_factory=dict)  # ID field -> its type
    update_arguments: Callable[[dict[str, Any]], dict[str, Any]] = _as_they_are

    def _arguments(self, input: Any) -> dict[str, Any]:
        """The verb's keywords from an input: global IDs decoded to keys (NOT_FOUND on the
        entity's id field, or on the field that carried a wrong one), enums to values."""
        arguments: dict[str, Any] = {}
        for item in dataclasses.fields(input):
            value = getattr(input, item.name)
            if item.name in (self.entity.id_arg, "id"):
                type_name, field = self.entity.model.__name__, self.entity.id_input
            else:
                type_name, field = self.refs.get(item.name, ""), to_camel_case(item.name)
            if type_name and isinstance(value, list):
                value = [pk_of(one, type_name, field) for one in value]
            elif type_name and value is not None:
                value = pk_of(value, type_name, field)
            elif isinstance(value, Enum):
                value = value.value
            arguments[item.name] = value
        return arguments

    def _field(self, name: str, input_type: type, description: str, verb: Verb) -> Any:
        """A staff mutation field `name(input: input_type!)` that runs `verb(session,
        staff_id=..., client_address=..., **arguments)` and answers with the payload."""

        async def resolve(info: Info, input: Any) -> Any:
            staff_id = signed_in(info).id
            client = info.context.client_address

            async def work(session: AsyncSession) -> Any:
                arguments = self._arguments(input)
                return await verb(session, staff_id=staff_id, client_address=client, **arguments)

            return await run(
                info,
                self.payload,
                work,
                lambda row: self.payload(errors=[], **{self.field: self.node.from_row(row)}),
            )

        resolve.__name__ = name
        resolve.__annotations__ = {
            "info": Info,
            "input": Annotated[input_type, INPUT],
            "return": self.payload,
        }
        return mutation(access=STAFF, description=description)(resolve)

    def create(self) -> Any:
        async def verb(session: AsyncSession, **arguments: Any) -> Any:
            return await catalog_admin.create(session, self.entity, **arguments)

        return self._field(
            self.entity.action("create"), self.create_input, f"Staff: a new {self.noun}.", verb
        )

    def update(self) -> Any:
        async def verb(session: AsyncSession, **arguments: Any) -> Any:
            row_id = arguments.pop(self.entity.id_arg)
            return await catalog_admin.update(
                session, self.entity, row_id=row_id, **self.update_arguments(arguments)
            )

        return self._field(
            self.entity.action("update"), self.update_input, f"Staff: edit a {self.noun}.", verb
        )

    def archive(self) -> Any:
        async def verb(session: AsyncSession, **arguments: Any) -> Any:
            return await catalog_admin.archive(
                session, self.entity, row_id=arguments.pop("id"), **arguments
            )

        return self._field(
            self.entity.action("archive"), ArchiveInput, "Staff: archive or restore.", verb
        )


TARIFF = Wiring(
    catalog_admin.TARIFF,
    "tariff",
    Tariff,
    TariffPayload,
    "tariff",
    CreateTariffInput,
    UpdateTariffInput,
    update_arguments=_traffic,
)
TV_PACKAGE = Wiring(
    catalog_admin.TV_PACKAGE,
    "TV package",
    TvPackage,
    TvPackagePayload,
    "tv_package",
    CreateTvPackageInput,
    UpdateTvPackageInput,
    refs={"channel_ids": "Channel"},
)
CHANNEL = Wiring(
    catalog_admin.CHANNEL,
    "channel",
    Channel,
    ChannelPayload,
    "channel",
    CreateChannelInput,
    UpdateChannelInput,
)
SERVICE_OPTION = Wiring(
    catalog_admin.SERVICE_OPTION,
    "service option",
    ServiceOption,
    ServiceOptionPayload,
    "service_option",
    CreateServiceOptionInput,
    UpdateServiceOptionInput,
)
BONUS_REWARD = Wiring(
    catalog_admin.BONUS_REWARD,
    "bonus reward",
    BonusReward,
    BonusRewardPayload,
    "bonus_reward",
    CreateBonusRewardInput,
    UpdateBonusRewardInput,
    refs={"tv_package_id": "TvPackage", "option_id": "ServiceOption"},
)


@strawberry.type
class CatalogMutation:
    create_tariff = TARIFF.create()
    update_tariff = TARIFF.update()
    archive_tariff = TARIFF.archive()
    create_tv_package = TV_PACKAGE.create()
    update_tv_package = TV_PACKAGE.update()
    archive_tv_package = TV_PACKAGE.archive()
    create_channel = CHANNEL.create()
    update_channel = CHANNEL.update()
    archive_channel = CHANNEL.archive()
    create_service_option = SERVICE_OPTION.create()
    update_service_option = SERVICE_OPTION.update()
    archive_service_option = SERVICE_OPTION.archive()
    create_bonus_reward = BONUS_REWARD.create()
    update_bonus_reward = BONUS_REWARD.update()
    archive_bonus_reward = BONUS_REWARD.archive()
