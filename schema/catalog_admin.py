"""Staff mutations that edit the catalogue (every one audited; nothing is deleted: archived
items leave the public lists and stay on the contracts that have them)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from resolvers import catalog_admin
from schema.context import Info
from schema.errors import UserError
from schema.mutation_support import STAFF, mutation, pk_of, principal_id, run
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


async def _run(
    info: Info,
    payload: Any,
    field: str,
    node_type: Any,
    verb: Callable[[AsyncSession, int, str | None], Awaitable[Any]],
) -> Any:
    staff_id = principal_id(info)
    client = info.context.client_address
    return await run(
        info,
        payload,
        lambda session: verb(session, staff_id, client),
        lambda row: payload(errors=[], **{field: node_type.from_row(row)}),
    )


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


def _channel_pks(ids: list[strawberry.ID] | None) -> list[int] | None:
    return None if ids is None else [pk_of(i, "Channel", "channelIds") for i in ids]


def _optional_pk(global_id: str | None, type_name: str, field: str) -> int | None:
    return None if global_id is None else pk_of(global_id, type_name, field)


@strawberry.type
class CatalogMutation:
    @mutation(access=STAFF, description="Staff: a new tariff.")
    async def create_tariff(self, info: Info, input: CreateTariffInput) -> TariffPayload:
        return await _run(
            info,
            TariffPayload,
            "tariff",
            Tariff,
            lambda s, staff, client: catalog_admin.create_tariff(
                s,
                staff_id=staff,
                region=input.region,
                code=input.code,
                name=input.name,
                monthly_fee=input.monthly_fee,
                speed_mbps=input.speed_mbps,
                traffic_gb=input.traffic_gb,
                description=input.description,
                client_address=client,
            ),
        )

    @mutation(access=STAFF, description="Staff: edit a tariff.")
    async def update_tariff(self, info: Info, input: UpdateTariffInput) -> TariffPayload:
        traffic: Any = catalog_admin.UNSET
        if input.unlimited:
            traffic = None
        elif input.traffic_gb is not None:
            traffic = input.traffic_gb
        return await _run(
            info,
            TariffPayload,
            "tariff",
            Tariff,
            lambda s, staff, client: catalog_admin.update_tariff(
                s,
                staff_id=staff,
                tariff_id=pk_of(input.tariff_id, "Tariff", "tariffId"),
                name=input.name,
                monthly_fee=input.monthly_fee,
                speed_mbps=input.speed_mbps,
                traffic_gb=traffic,
                description=input.description,
                client_address=client,
            ),
        )

    @mutation(access=STAFF, description="Staff: archive or restore.")
    async def archive_tariff(self, info: Info, input: ArchiveInput) -> TariffPayload:
        return await _run(
            info,
            TariffPayload,
            "tariff",
            Tariff,
            lambda s, staff, client: catalog_admin.archive_tariff(
                s,
                staff_id=staff,
                tariff_id=pk_of(input.id, "Tariff", "tariffId"),
                archived=input.archived,
                client_address=client,
            ),
        )

    @mutation(access=STAFF, description="Staff: a new TV package.")
    async def create_tv_package(self, info: Info, input: CreateTvPackageInput) -> TvPackagePayload:
        return await _run(
            info,
            TvPackagePayload,
            "tv_package",
            TvPackage,
            lambda s, staff, client: catalog_admin.create_tv_package(
                s,
                staff_id=staff,
                code=input.code,
                name=input.name,
                monthly_fee=input.monthly_fee,
                description=input.description,
                channel_ids=_channel_pks(input.channel_ids),
                client_address=client,
            ),
        )

    @mutation(access=STAFF, description="Staff: edit a TV package.")
    async def update_tv_package(self, info: Info, input: UpdateTvPackageInput) -> TvPackagePayload:
        return await _run(
            info,
            TvPackagePayload,
            "tv_package",
            TvPackage,
            lambda s, staff, client: catalog_admin.update_tv_package(
                s,
                staff_id=staff,
                package_id=pk_of(input.package_id, "TvPackage", "packageId"),
                name=input.name,
                monthly_fee=input.monthly_fee,
                description=input.description,
                channel_ids=_channel_pks(input.channel_ids),
                client_address=client,
            ),
        )

    @mutation(access=STAFF, description="Staff: archive or restore.")
    async def archive_tv_package(self, info: Info, input: ArchiveInput) -> TvPackagePayload:
        return await _run(
            info,
            TvPackagePayload,
            "tv_package",
            TvPackage,
            lambda s, staff, client: catalog_admin.archive_tv_package(
                s,
                staff_id=staff,
                package_id=pk_of(input.id, "TvPackage", "packageId"),
                archived=input.archived,
                client_address=client,
            ),
        )

    @mutation(access=STAFF, description="Staff: a new channel.")
    async def create_channel(self, info: Info, input: CreateChannelInput) -> ChannelPayload:
        return await _run(
            info,
            ChannelPayload,
            "channel",
            Channel,
            lambda s, staff, client: catalog_admin.create_channel(
                s,
                staff_id=staff,
                number=input.number,
                name=input.name,
                genre=input.genre,
                hd=input.hd,
                must_carry=input.must_carry,
                client_address=client,
            ),
        )

    @mutation(access=STAFF, description="Staff: edit a channel.")
    async def update_channel(self, info: Info, input: UpdateChannelInput) -> ChannelPayload:
        return await _run(
            info,
            ChannelPayload,
            "channel",
            Channel,
            lambda s, staff, client: catalog_admin.update_channel(
                s,
                staff_id=staff,
                channel_id=pk_of(input.channel_id, "Channel", "channelId"),
                number=input.number,
                name=input.name,
                genre=input.genre,
                hd=input.hd,
                must_carry=input.must_carry,
                client_address=client,
            ),
        )

    @mutation(access=STAFF, description="Staff: archive or restore.")
    async def archive_channel(self, info: Info, input: ArchiveInput) -> ChannelPayload:
        return await _run(
            info,
            ChannelPayload,
            "channel",
            Channel,
            lambda s, staff, client: catalog_admin.archive_channel(
                s,
                staff_id=staff,
                channel_id=pk_of(input.id, "Channel", "channelId"),
                archived=input.archived,
                client_address=client,
            ),
        )

    @mutation(access=STAFF, description="Staff: a new service option.")
    async def create_service_option(
        self, info: Info, input: CreateServiceOptionInput
    ) -> ServiceOptionPayload:
        return await _run(
            info,
            ServiceOptionPayload,
            "service_option",
            ServiceOption,
            lambda s, staff, client: catalog_admin.create_service_option(
                s,
                staff_id=staff,
                code=input.code,
                name=input.name,
                monthly_fee=input.monthly_fee,
                description=input.description,
                client_address=client,
            ),
        )

    @mutation(access=STAFF, description="Staff: edit a service option.")
    async def update_service_option(
        self, info: Info, input: UpdateServiceOptionInput
    ) -> ServiceOptionPayload:
        return await _run(
            info,
            ServiceOptionPayload,
            "service_option",
            ServiceOption,
            lambda s, staff, client: catalog_admin.update_service_option(
                s,
                staff_id=staff,
                option_id=pk_of(input.option_id, "ServiceOption", "optionId"),
                name=input.name,
                monthly_fee=input.monthly_fee,
                description=input.description,
                client_address=client,
            ),
        )

    @mutation(access=STAFF, description="Staff: archive or restore.")
    async def archive_service_option(self, info: Info, input: ArchiveInput) -> ServiceOptionPayload:
        return await _run(
            info,
            ServiceOptionPayload,
            "service_option",
            ServiceOption,
            lambda s, staff, client: catalog_admin.archive_service_option(
                s,
                staff_id=staff,
                option_id=pk_of(input.id, "ServiceOption", "optionId"),
                archived=input.archived,
                client_address=client,
            ),
        )

    @mutation(access=STAFF, description="Staff: a new bonus reward.")
    async def create_bonus_reward(
        self, info: Info, input: CreateBonusRewardInput
    ) -> BonusRewardPayload:
        return await _run(
            info,
            BonusRewardPayload,
            "bonus_reward",
            BonusReward,
            lambda s, staff, client: catalog_admin.create_bonus_reward(
                s,
                staff_id=staff,
                code=input.code,
                name=input.name,
                kind=input.kind.value,
                points_price=input.points_price,
                credit_amount=input.credit_amount,
                tv_package_id=_optional_pk(input.tv_package_id, "TvPackage", "tvPackageId"),
                option_id=_optional_pk(input.option_id, "ServiceOption", "optionId"),
                duration_days=input.duration_days,
                client_address=client,
            ),
        )

    @mutation(access=STAFF, description="Staff: edit a bonus reward.")
    async def update_bonus_reward(
        self, info: Info, input: UpdateBonusRewardInput
    ) -> BonusRewardPayload:
        return await _run(
            info,
            BonusRewardPayload,
            "bonus_reward",
            BonusReward,
            lambda s, staff, client: catalog_admin.update_bonus_reward(
                s,
                staff_id=staff,
                reward_id=pk_of(input.reward_id, "BonusReward", "rewardId"),
                name=input.name,
                points_price=input.points_price,
                credit_amount=input.credit_amount,
                tv_package_id=_optional_pk(input.tv_package_id, "TvPackage", "tvPackageId"),
                option_id=_optional_pk(input.option_id, "ServiceOption", "optionId"),
                duration_days=input.duration_days,
                client_address=client,
            ),
        )

    @mutation(access=STAFF, description="Staff: archive or restore.")
    async def archive_bonus_reward(self, info: Info, input: ArchiveInput) -> BonusRewardPayload:
        return await _run(
            info,
            BonusRewardPayload,
            "bonus_reward",
            BonusReward,
            lambda s, staff, client: catalog_admin.archive_bonus_reward(
                s,
                staff_id=staff,
                reward_id=pk_of(input.id, "BonusReward", "rewardId"),
                archived=input.archived,
                client_address=client,
            ),
        )
