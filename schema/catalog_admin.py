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
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.utils.str_converters import to_camel_case

from resolvers import catalog_admin
from resolvers.catalog_admin import Entity
from schema.context import Info
from schema.errors import UserError
from schema.mutation_support import STAFF, mutation, pk_of, run, signed_in
from schema.scalars import Money
from schema.types.catalog import BonusReward, Channel, RewardKind, ServiceOption, Tariff, TvPackage


@strawberry.type
class TariffPayload:
    errors: list[UserError]
    tariff: Tariff | None = None


@strawberry.type
class TvPackagePayload:
    errors: list[UserError]
    tv_package: TvPackage | None = None


@strawberry.type
class ChannelPayload:
    errors: list[UserError]
    channel: Channel | None = None


@strawberry.type
class ServiceOptionPayload:
    errors: list[UserError]
    service_option: ServiceOption | None = None


@strawberry.type
class BonusRewardPayload:
    errors: list[UserError]
    bonus_reward: BonusReward | None = None


@strawberry.input
class CreateTariffInput:
    region: str
    code: str
    name: str
    monthly_fee: Money
    speed_mbps: int
    traffic_gb: int | None = None
    description: str = ""


@strawberry.input
class UpdateTariffInput:
    tariff_id: strawberry.ID
    name: str | None = None
    monthly_fee: Money | None = None
    speed_mbps: int | None = None
    traffic_gb: int | None = strawberry.field(
        default=None, description="Set with `unlimited` false; see `unlimited`."
    )
    unlimited: bool | None = strawberry.field(
        default=None, description="true: no traffic allowance (trafficGb is ignored)."
    )
    description: str | None = None


@strawberry.input
class ArchiveInput:
    id: strawberry.ID
    archived: bool = True


@strawberry.input
class CreateTvPackageInput:
    code: str
    name: str
    monthly_fee: Money
    channel_ids: list[strawberry.ID]
    description: str = ""


@strawberry.input
class UpdateTvPackageInput:
    package_id: strawberry.ID
    name: str | None = None
    monthly_fee: Money | None = None
    channel_ids: list[strawberry.ID] | None = None
    description: str | None = None


@strawberry.input
class CreateChannelInput:
    number: int
    name: str
    genre: str
    hd: bool = False
    must_carry: bool = False


@strawberry.input
class UpdateChannelInput:
    channel_id: strawberry.ID
    number: int | None = None
    name: str | None = None
    genre: str | None = None
    hd: bool | None = None
    must_carry: bool | None = None


@strawberry.input
class CreateServiceOptionInput:
    code: str
    name: str
    monthly_fee: Money
    description: str = ""


@strawberry.input
class UpdateServiceOptionInput:
    option_id: strawberry.ID
    name: str | None = None
    monthly_fee: Money | None = None
    description: str | None = None


@strawberry.input
class CreateBonusRewardInput:
    code: str
    name: str
    kind: RewardKind
    points_price: int
    credit_amount: Money | None = None
    tv_package_id: strawberry.ID | None = None
    option_id: strawberry.ID | None = None
    duration_days: int | None = None


@strawberry.input
class UpdateBonusRewardInput:
    reward_id: strawberry.ID
    name: str | None = None
    points_price: int | None = None
    credit_amount: Money | None = None
    tv_package_id: strawberry.ID | None = None
    option_id: strawberry.ID | None = None
    duration_days: int | None = None


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
        resolve.__annotations__ = {"info": Info, "input": input_type, "return": self.payload}
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
