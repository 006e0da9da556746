"""Service mutations: tariff, TV, Personal TV, Multiroom, options, bonus rewards."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import DomainError, ErrorCode
from resolvers import bonus, services
from resolvers.bonus import Redemption
from schema.context import Info
from schema.errors import UserError
from schema.mutation_support import (
    CONTRACT_NUMBER,
    ERRORS,
    INPUT,
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


@strawberry.type(description="What `changeTariff` answers: the contract after the change.")
class ChangeTariffPayload(ContractPayload):
    pass


@strawberry.type(description="What `cancelTariffChange` answers: the contract after the change.")
class CancelTariffChangePayload(ContractPayload):
    pass


@strawberry.type(description="What `connectTvPackage` answers: the contract after the change.")
class ConnectTvPackagePayload(ContractPayload):
    pass


@strawberry.type(description="What `disconnectTvPackage` answers: the contract after the change.")
class DisconnectTvPackagePayload(ContractPayload):
    pass


@strawberry.type(description="What `setPersonalTvChannels` answers: the contract after the change.")
class SetPersonalTvChannelsPayload(ContractPayload):
    pass


@strawberry.type(description="What `addMultiroomDevice` answers: the contract after the change.")
class AddMultiroomDevicePayload(ContractPayload):
    pass


@strawberry.type(description="What `removeMultiroomDevice` answers: the contract after the change.")
class RemoveMultiroomDevicePayload(ContractPayload):
    pass


@strawberry.type(description="What `activateOption` answers: the contract after the change.")
class ActivateOptionPayload(ContractPayload):
    pass


@strawberry.type(description="What `deactivateOption` answers: the contract after the change.")
class DeactivateOptionPayload(ContractPayload):
    pass


@strawberry.input(description="The contract and the tariff to change to.")
class ChangeTariffInput:
    contract_number: str = strawberry.field(description=CONTRACT_NUMBER)
    tariff_id: strawberry.ID = strawberry.field(
        description="The `Tariff.id` of a tariff of the contract's region, on sale."
    )


@strawberry.input(description="The contract whose scheduled tariff change to undo.")
class CancelTariffChangeInput:
    contract_number: str = strawberry.field(description=CONTRACT_NUMBER)


@strawberry.input
class TvPackageInput:
    contract_number: str = strawberry.field(description=CONTRACT_NUMBER)
    package_id: strawberry.ID = strawberry.field(description="The `TvPackage.id`.")


@strawberry.input(description="The contract and the TV package to connect.")
class ConnectTvPackageInput(TvPackageInput):
    pass


@strawberry.input(description="The contract and the TV package to disconnect.")
class DisconnectTvPackageInput(TvPackageInput):
    pass


@strawberry.input(description="The contract and its whole Personal TV choice.")
class SetPersonalTvChannelsInput:
    contract_number: str = strawberry.field(description=CONTRACT_NUMBER)
    channel_ids: list[strawberry.ID] = strawberry.field(
        description="The whole choice (replaces the previous one); an empty list turns "
        "Personal TV off. Must-carry channels are free and need not be listed."
    )


@strawberry.input(description="The contract to add a TV receiver to.")
class AddMultiroomDeviceInput:
    contract_number: str = strawberry.field(description=CONTRACT_NUMBER)


@strawberry.input(description="The contract and the TV receiver to return.")
class RemoveMultiroomDeviceInput:
    contract_number: str = strawberry.field(description=CONTRACT_NUMBER)
    device_id: strawberry.ID = strawberry.field(description="The `MultiroomDevice.id`.")


@strawberry.input
class OptionInput:
    contract_number: str = strawberry.field(description=CONTRACT_NUMBER)
    option_id: strawberry.ID = strawberry.field(description="The `ServiceOption.id`.")


@strawberry.input(description="The contract and the service option to switch on.")
class ActivateOptionInput(OptionInput):
    pass


@strawberry.input(description="The contract and the service option to switch off.")
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


@strawberry.input(description="The reward to buy with bonus points, and for which contract.")
class RedeemBonusInput:
    contract_number: str = strawberry.field(description=CONTRACT_NUMBER)
    reward_id: strawberry.ID = strawberry.field(description="The `BonusReward.id`.")


@strawberry.type(description="What `redeemBonus` answers.")
class RedeemBonusPayload:
    errors: list[UserError] = strawberry.field(description=ERRORS)
    bonus_account: BonusAccount | None = strawberry.field(
        default=None, description="The subscriber's bonus points after it; null on failure."
    )
    contract: Contract | None = strawberry.field(
        default=None, description="The contract after the reward; null on failure."
    )


@strawberry.type
class ServicesMutation:
    @mutation(
        access=SUBSCRIBER,
        description="Change the tariff from the next billing day (once a day; the region's "
        "tariffs on sale; not to a dearer one while a promised payment is open).",
    )
    async def change_tariff(
        self, info: Info, input: Annotated[ChangeTariffInput, INPUT]
    ) -> ChangeTariffPayload:
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
        self, info: Info, input: Annotated[CancelTariffChangeInput, INPUT]
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
        input: Annotated[ConnectTvPackageInput, INPUT],
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
        input: Annotated[DisconnectTvPackageInput, INPUT],
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
        self, info: Info, input: Annotated[SetPersonalTvChannelsInput, INPUT]
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
        self, info: Info, input: Annotated[AddMultiroomDeviceInput, INPUT]
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
        self, info: Info, input: Annotated[RemoveMultiroomDeviceInput, INPUT]
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
        input: Annotated[ActivateOptionInput, INPUT],
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
        input: Annotated[DeactivateOptionInput, INPUT],
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
    async def redeem_bonus(
        self, info: Info, input: Annotated[RedeemBonusInput, INPUT]
    ) -> RedeemBonusPayload:
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
