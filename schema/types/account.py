"""Subscribers, contracts, balances and sessions. Objects here are built only on paths that
have checked the caller may see them (resolvers/accounts.may_see_*)."""

from __future__ import annotations

from datetime import date, datetime
from enum import Enum
from typing import Annotated, Any

import strawberry

from core.errors import DomainError
from core.ids import to_global_id
from models.base import utcnow
from resolvers import bonus, services
from schema.context import Info
from schema.errors import bad_input
from schema.scalars import Money
from schema.types.catalog import Channel, Region, ServiceOption, Tariff, TvPackage
from schema.types.money import (
    ExpenseSummary,
    LedgerEntryConnection,
    LedgerKind,
    PaymentConnection,
    PromisedPayment,
    PromisedPaymentOffer,
)
from schema.types.node import Node
from schema.types.pagination import Connection
from schema.types.viewed import Viewed, link, linked_objects, paged, value, viewed


@strawberry.enum
class LegalStatus(Enum):
    INDIVIDUAL = "INDIVIDUAL"
    LEGAL_ENTITY = "LEGAL_ENTITY"


@strawberry.enum
class ContractStatus(Enum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    CLOSED = "CLOSED"


@viewed
@strawberry.type(description="The money on a contract.")
class Balance(Viewed):
    VIEW = "Balance"
    id: strawberry.ID = value(
        description="The contract's balance, for a client's cache: stable, one per contract "
        "(not fetchable by `node`)."
    )
    amount: Money = value()
    currency: str = value()
    available_amount: Money = value(
        description="What can be spent before the contract is suspended."
    )
    days_left: int | None = value(
        description="Days until the balance runs out at today's charges; null "
        "when nothing is charged."
    )
    open_promised_payment: PromisedPayment | None = link(
        description="The promised payment to be repaid, if one is open."
    )


@strawberry.type(description="A tariff change that takes effect on a coming billing day.")
class ScheduledTariff:
    tariff: Tariff
    effective_from: date


@viewed
@strawberry.type(description="A Personal TV channel chosen by the subscriber.")
class PersonalTvChannel(Viewed):
    VIEW = "PersonalTvChannel"
    channel: Channel = link()
    monthly_fee: Money = value()


@viewed
@strawberry.type(description="An extra TV receiver (Multiroom).")
class MultiroomDevice(Viewed, Node):
    VIEW = "MultiroomDevice"
    id: strawberry.ID = value()
    serial: str = value()
    monthly_fee: Money = value()
    connected_at: datetime = value()


@viewed
@strawberry.type(description="A service option switched on, free until a day if a reward.")
class ContractServiceOption(Viewed):
    VIEW = "ContractServiceOption"
    option: ServiceOption = link()
    free_until: date | None = value()


@strawberry.enum
class ChargeKind(Enum):
    TARIFF = "TARIFF"
    TV_PACKAGE = "TV_PACKAGE"
    PERSONAL_TV = "PERSONAL_TV"
    MULTIROOM_DEVICE = "MULTIROOM_DEVICE"
    OPTION = "OPTION"


@viewed
@strawberry.type(description="One item of what the next month costs.")
class MonthlyCharge(Viewed):
    VIEW = "MonthlyCharge"
    kind: ChargeKind = value()
    name: str = value()
    quantity: int = value()
    monthly_fee: Money = value()


@viewed
@strawberry.type(description="What the next month costs, item by item.")
class MonthlyCharges(Viewed):
    VIEW = "MonthlyCharges"
    items: list[MonthlyCharge] = link()
    total: Money = value()


@viewed
@strawberry.type(description="A personal account: one contract of a subscriber.")
class Contract(Viewed, Node):
    VIEW = "Contract"
    id: strawberry.ID = value()
    number: str = value()
    address: str = value()
    status: ContractStatus = value()
    opened_on: date = value()

    @strawberry.field
    async def balance(self, info: Info) -> Balance:
        return await linked_objects(self, info, "balance")  # type: ignore[no-any-return]

    @strawberry.field(description="Whether a promised payment can be taken now.")
    async def promised_payment_offer(self, info: Info) -> PromisedPaymentOffer:
        return await linked_objects(self, info, "promisedPaymentOffer")  # type: ignore[no-any-return]

    @strawberry.field(description="Every promised payment, newest first.")
    async def promised_payments(self, info: Info) -> list[PromisedPayment]:
        return await linked_objects(self, info, "promisedPayments")  # type: ignore[no-any-return]

    @strawberry.field
    async def region(self, info: Info) -> Region:
        return await linked_objects(self, info, "region")  # type: ignore[no-any-return]

    @strawberry.field(description="The tariff in force today.")
    async def tariff(self, info: Info) -> Tariff:
        return await linked_objects(self, info, "tariff")  # type: ignore[no-any-return]

    @strawberry.field(description="The tariff change to come, if one is scheduled.")
    async def scheduled_tariff(self, info: Info) -> ScheduledTariff | None:
        row = await self.loaded_row(info)
        pending = services.pending_tariff_change(row, today=utcnow().date())
        if pending is None:
            return None
        tariff_id, effective_from = pending
        return ScheduledTariff(tariff=Tariff.of_key(tariff_id), effective_from=effective_from)

    @strawberry.field(
        description="Personal TV: the channels chosen (must-carry ones are free "
        "and always in `channels`)."
    )
    async def personal_tv_channels(self, info: Info) -> list[PersonalTvChannel]:
        return await linked_objects(self, info, "personalTvChannels")  # type: ignore[no-any-return]

    @strawberry.field(description="Extra TV receivers.")
    async def multiroom_devices(self, info: Info) -> list[MultiroomDevice]:
        return await linked_objects(self, info, "multiroomDevices")  # type: ignore[no-any-return]

    @strawberry.field(description="Service options switched on.")
    async def options(self, info: Info) -> list[ContractServiceOption]:
        return await linked_objects(self, info, "options")  # type: ignore[no-any-return]

    @strawberry.field(
        description="The channel line-up received: must-carry ∪ packages ∪ "
        "Personal TV, each channel once."
    )
    async def channels(self, info: Info) -> list[Channel]:
        return await linked_objects(self, info, "channels")  # type: ignore[no-any-return]

    @strawberry.field(description="What the next month costs, item by item.")
    async def monthly_charges(self, info: Info) -> MonthlyCharges:
        return await linked_objects(self, info, "monthlyCharges")  # type: ignore[no-any-return]

    @strawberry.field(description="The TV packages connected now.")
    async def tv_packages(self, info: Info) -> list[TvPackage]:
        return await linked_objects(self, info, "tvPackages")  # type: ignore[no-any-return]

    @strawberry.field(description="Top-ups, newest first.")
    async def payments(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> PaymentConnection:
        return await paged(  # type: ignore[no-any-return]
            self, info, "payments", first=first, after=after, connection=PaymentConnection
        )

    @strawberry.field(
        description="Balance changes, newest first; filter by kind and period. The period is "
        "of instants, half-open: entries made at or after `from` and before `to` (either may "
        "be left out). `expenseSummary` takes whole days instead."
    )
    async def ledger(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        kinds: list[LedgerKind] | None = None,
        from_: Annotated[
            datetime | None,
            strawberry.argument(
                name="from",
                description="Entries made at or after this instant (included).",
            ),
        ] = None,
        to: Annotated[
            datetime | None,
            strawberry.argument(description="Entries made before this instant (excluded)."),
        ] = None,
    ) -> LedgerEntryConnection:
        # The same page of every contract asked for comes from one statement.
        return await paged(  # type: ignore[no-any-return]
            self,
            info,
            "ledger",
            first=first,
            after=after,
            connection=LedgerEntryConnection,
            kinds=kinds,
            **{"from": from_, "to": to},
        )

    @strawberry.field(
        description="Totals of the days from `from` to `to`, both included, each day from "
        "00:00 UTC to the next (at most 366 days). `ledger` takes instants instead: the same "
        'period is `ledger(from: "<from>T00:00:00Z", to: "<the day after to>T00:00:00Z")`.'
    )
    async def expense_summary(
        self,
        info: Info,
        from_: Annotated[
            date,
            strawberry.argument(name="from", description="The first day (included, UTC)."),
        ],
        to: Annotated[date, strawberry.argument(description="The last day (included, UTC).")],
    ) -> ExpenseSummary:
        period = {"from": from_, "to": to}
        return await linked_objects(self, info, "expenseSummary", **period)  # type: ignore[no-any-return]


@strawberry.enum
class BonusEntryKind(Enum):
    ACCRUAL = "ACCRUAL"
    REDEMPTION = "REDEMPTION"
    EXPIRY = "EXPIRY"
    ADJUSTMENT = "ADJUSTMENT"


@strawberry.type(description="A change of bonus points.")
class BonusEntry(Node):
    kind: BonusEntryKind
    points: int = strawberry.field(description="Signed: spent and expired points negative.")
    expires_at: datetime | None = strawberry.field(description="Accruals: when they expire.")
    description: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> BonusEntry:
        return cls(
            id=to_global_id("BonusEntry", row.id),
            kind=BonusEntryKind(row.kind),
            points=row.points,
            expires_at=row.expires_at,
            description=row.description,
            created_at=row.created_at,
        )


@viewed
@strawberry.type
class ExpiringPoints(Viewed):
    VIEW = "ExpiringPoints"
    points: int = value()
    expires_at: datetime = value(description="The earliest of them expires then.")


@viewed
@strawberry.type(
    description="Bonus points of a subscriber: 1 per full 5 RUB of top-ups, kept 12 months."
)
class BonusAccount(Viewed):
    VIEW = "BonusAccount"
    id: strawberry.ID = value(
        description="The subscriber's bonus account, for a client's cache: stable, one per "
        "subscriber (not fetchable by `node`)."
    )
    points: int = value()

    @strawberry.field(description="Points that expire within 30 days; null when none do.")
    async def expiring_soon(self, info: Info) -> ExpiringPoints | None:
        return await linked_objects(self, info, "expiringSoon")  # type: ignore[no-any-return]

    @strawberry.field(description="The points ledger, newest first.")
    async def history(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[BonusEntry]:
        try:
            page = await bonus.bonus_history_page(
                info.context.reader,
                subscriber_id=self.key,
                first=first,
                after=after,
                max_page_size=info.context.settings.max_page_size,
            )
        except DomainError as error:
            raise bad_input(error) from None
        return Connection.from_page(page, BonusEntry.from_row)


@viewed
@strawberry.type(description="An individual or a legal entity with one or more contracts.")
class Subscriber(Viewed, Node):
    VIEW = "Subscriber"
    id: strawberry.ID = value()
    login: str | None = value()
    legal_status: LegalStatus = value()
    display_name: str = value()
    email: str | None = value()
    phone: str | None = value()

    @strawberry.field
    async def contracts(self, info: Info) -> list[Contract]:
        return await linked_objects(self, info, "contracts")  # type: ignore[no-any-return]

    @strawberry.field
    async def bonus_account(self, info: Info) -> BonusAccount:
        return await linked_objects(self, info, "bonusAccount")  # type: ignore[no-any-return]


@viewed
@strawberry.type(description="A signed-in session of the caller.")
class SessionInfo(Viewed):
    VIEW = "SessionInfo"
    id: strawberry.ID = value()
    created_at: datetime = value()
    last_used_at: datetime = value()
    client_address: str | None = value()
    user_agent: str | None = value()
    current: bool = value()
