"""Service mutations: tariff, TV, Personal TV, Multiroom, options, bonus rewards."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import DomainError, ErrorCode
from resolvers import bonus, services
from resolvers.bonus import Redemption
from schema.context import Info
from schema.errors import UserError
from schema.mutation_support import (
    SUBSCRIBER,
    ContractPayload,
    mutation,
    own_contract,
    pk_of,
    run,
    signed_in,
)
from schema.types.account import BonusAccount, Contract

ContractPayloadT = TypeVar("ContractPayloadT", bound=ContractPayload)


@strawberry.type
class ChangeTariffPayload(ContractPayload):
    pass


@strawberry.type
class CancelTariffChangePayload(ContractPayload):
    pass


@strawberry.type
class ConnectTvPackagePayload(ContractPayload):
    pass


@strawberry.type
class DisconnectTvPackagePayload(ContractPayload):
    pass


@strawberry.type
class SetPersonalTvChannelsPayload(ContractPayload):
    pass


@strawberry.type
class AddMultiroomDevicePayload(ContractPayload):
    pass


@strawberry.type
class RemoveMultiroomDevicePayload(ContractPayload):
    pass


@strawberry.type
class ActivateOptionPayload(ContractPayload):
    pass


@strawberry.type
class DeactivateOptionPayload(ContractPayload):
    pass


@strawberry.input
class ChangeTariffInput:
    contract_number: str
    tariff_id: strawberry.ID


@strawberry.input
class CancelTariffChangeInput:
    contract_number: str


@strawberry.input
class TvPackageInput:
    contract_number: str
    package_id: strawberry.ID


@strawberry.input
class ConnectTvPackageInput(TvPackageInput):
    pass


@strawberry.input
class DisconnectTvPackageInput(TvPackageInput):
    pass


@strawberry.input
class SetPersonalTvChannelsInput:
    contract_number: str
    channel_ids: list[strawberry.ID] = strawberry.field(
        description="The whole choice (replaces the previous one); an empty list turns "
        "Personal TV off. Must-carry channels are free and need not be listed."
    )


@strawberry.input
class AddMultiroomDeviceInput:
    contract_number: str


@strawberry.input
class RemoveMultiroomDeviceInput:
    contract_number: str
    device_id: strawberry.ID


@strawberry.input
class OptionInput:
    contract_number: str
    option_id: strawberry.ID


@strawberry.input
class ActivateOptionInput(OptionInput):
    pass


@strawberry.input
class DeactivateOptionInput(OptionInput):
    pass


async def _contract_change(
    info: Info,
    payload: type[ContractPayloadT],
    contract_number: str,
    verb: Callable[[AsyncSession, int], Awaitable[None]],
) -> ContractPayloadT:
    """Run a service verb on the caller's contract and answer with the contract."""

    async def work(session: AsyncSession) -> int:
        contract = await own_contract(info, contract_number)
        await verb(session, contract.id)
        return int(contract.id)

    return await run(info, payload, work, lambda contract_id: payload.of(info, contract_id))


@strawberry.input
class RedeemBonusInput:
    contract_number: str
    reward_id: strawberry.ID


@strawberry.type
class RedeemBonusPayload:
    errors: list[UserError]
    bonus_account: BonusAccount | None = None
    contract: Contract | None = None


@strawberry.type
class ServicesMutation:
    @mutation(
        access=SUBSCRIBER,
        description="Change the tariff from the next billing day (once a day; the region's "
        "tariffs on sale; not to a dearer one while a promised payment is open).",
    )
    async def change_tariff(self, info: Info, input: ChangeTariffInput) -> ChangeTariffPayload:
        settings = info.context.settings

        async def verb(session: AsyncSession, contract_id: int) -> None:
            tariff_id = pk_of(input.tariff_id, "Tariff", "tariffId")
            await services.change_tariff(
                session, settings=settings, contract_id=contract_id, tariff_id=tariff_id
            )

        return await _contract_change(info, ChangeTariffPayload, input.contract_number, verb)

    @mutation(
        access=SUBSCRIBER,
        description="Undo a scheduled tariff change.",
    )
    async def cancel_tariff_change(
        self, info: Info, input: CancelTariffChangeInput
    ) -> CancelTariffChangePayload:
        settings = info.context.settings

        async def verb(session: AsyncSession, contract_id: int) -> None:
            await services.cancel_tariff_change(session, settings=settings, contract_id=contract_id)

        return await _contract_change(info, CancelTariffChangePayload, input.contract_number, verb)

    @mutation(
        access=SUBSCRIBER,
        description="Connect a TV package now; charged from the next billing day.",
    )
    async def connect_tv_package(
        self,
        info: Info,
        input: ConnectTvPackageInput,
    ) -> ConnectTvPackagePayload:
        settings = info.context.settings

        async def verb(session: AsyncSession, contract_id: int) -> None:
            package_id = pk_of(input.package_id, "TvPackage", "packageId")
            await services.connect_tv_package(
                session, settings=settings, contract_id=contract_id, package_id=package_id
            )

        return await _contract_change(info, ConnectTvPackagePayload, input.contract_number, verb)

    @mutation(
        access=SUBSCRIBER,
        description="Disconnect a TV package now (today stays paid).",
    )
    async def disconnect_tv_package(
        self,
        info: Info,
        input: DisconnectTvPackageInput,
    ) -> DisconnectTvPackagePayload:
        settings = info.context.settings

        async def verb(session: AsyncSession, contract_id: int) -> None:
            package_id = pk_of(input.package_id, "TvPackage", "packageId")
            await services.disconnect_tv_package(
                session, settings=settings, contract_id=contract_id, package_id=package_id
            )

        return await _contract_change(info, DisconnectTvPackagePayload, input.contract_number, verb)

    @mutation(
        access=SUBSCRIBER,
        description="Choose the Personal TV channels (5 to 60 paid ones, or none).",
    )
    async def set_personal_tv_channels(
        self, info: Info, input: SetPersonalTvChannelsInput
    ) -> SetPersonalTvChannelsPayload:
        settings = info.context.settings

        async def verb(session: AsyncSession, contract_id: int) -> None:
            if len(input.channel_ids) > 1000:
                raise DomainError(ErrorCode.INVALID, "Too many channels.", field="channelIds")
            ids = [pk_of(channel, "Channel", "channelIds") for channel in input.channel_ids]
            await services.set_personal_tv_channels(
                session, settings=settings, contract_id=contract_id, channel_ids=ids
            )

        return await _contract_change(
            info, SetPersonalTvChannelsPayload, input.contract_number, verb
        )

    @mutation(
        access=SUBSCRIBER,
        description="Add an extra TV receiver (up to 4; packages are charged once).",
    )
    async def add_multiroom_device(
        self, info: Info, input: AddMultiroomDeviceInput
    ) -> AddMultiroomDevicePayload:
        settings = info.context.settings

        async def verb(session: AsyncSession, contract_id: int) -> None:
            await services.add_multiroom_device(session, settings=settings, contract_id=contract_id)

        return await _contract_change(info, AddMultiroomDevicePayload, input.contract_number, verb)

    @mutation(
        access=SUBSCRIBER,
        description="Return an extra TV receiver.",
    )
    async def remove_multiroom_device(
        self, info: Info, input: RemoveMultiroomDeviceInput
    ) -> RemoveMultiroomDevicePayload:
        settings = info.context.settings

        async def verb(session: AsyncSession, contract_id: int) -> None:
            device_id = pk_of(input.device_id, "MultiroomDevice", "deviceId")
            await services.remove_multiroom_device(
                session, settings=settings, contract_id=contract_id, device_id=device_id
            )

        return await _contract_change(
            info, RemoveMultiroomDevicePayload, input.contract_number, verb
        )

    @mutation(
        access=SUBSCRIBER,
        description="Switch a service option on; charged from the next billing day.",
    )
    async def activate_option(
        self,
        info: Info,
        input: ActivateOptionInput,
    ) -> ActivateOptionPayload:
        settings = info.context.settings

        async def verb(session: AsyncSession, contract_id: int) -> None:
            option_id = pk_of(input.option_id, "ServiceOption", "optionId")
            await services.activate_option(
                session, settings=settings, contract_id=contract_id, option_id=option_id
            )

        return await _contract_change(info, ActivateOptionPayload, input.contract_number, verb)

    @mutation(
        access=SUBSCRIBER,
        description="Switch a service option off.",
    )
    async def deactivate_option(
        self,
        info: Info,
        input: DeactivateOptionInput,
    ) -> DeactivateOptionPayload:
        settings = info.context.settings

        async def verb(session: AsyncSession, contract_id: int) -> None:
            option_id = pk_of(input.option_id, "ServiceOption", "optionId")
            await services.deactivate_option(
                session, settings=settings, contract_id=contract_id, option_id=option_id
            )

        return await _contract_change(info, DeactivateOptionPayload, input.contract_number, verb)

    @mutation(
        access=SUBSCRIBER,
        description="Spend bonus points (oldest first) on a reward for a contract.",
    )
    async def redeem_bonus(self, info: Info, input: RedeemBonusInput) -> RedeemBonusPayload:
        context = info.context
        principal = signed_in(info)

        async def redeem(session: AsyncSession) -> tuple[int, Redemption]:
            contract = await own_contract(info, input.contract_number)
            reward_id = pk_of(input.reward_id, "BonusReward", "rewardId")
            redeemed = await bonus.redeem_bonus(
                session,
                settings=context.settings,
                subscriber_id=contract.subscriber_id,
                contract_id=contract.id,
                reward_id=reward_id,
                actor=principal.actor,
            )
            return contract.id, redeemed

        async def answer(result: tuple[int, Redemption]) -> RedeemBonusPayload:
            contract_id, _ = result
            return RedeemBonusPayload(
                errors=[],
                bonus_account=BonusAccount.of_key(principal.id),
                contract=(await ContractPayload.of(info, contract_id)).contract,
            )

        return await run(info, RedeemBonusPayload, redeem, answer)
