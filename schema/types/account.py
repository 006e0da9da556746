"""Subscribers, contracts, balances and sessions. Objects here are built only on paths that
have checked the caller may see them (resolvers/accounts.may_see_*)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any

import strawberry

from core.errors import DomainError
from core.ids import to_global_id
from models.base import utcnow
from resolvers import bonus, payments, services
from resolvers.pagination import Page, check_first
from schema.context import Info
from schema.errors import bad_input
from schema.scalars import Money
from schema.types.catalog import Channel, Region, ServiceOption, Tariff, TvPackage
from schema.types.money import (
    ExpenseSummary,
    LedgerEntry,
    LedgerKind,
    Payment,
    PromisedPayment,
    PromisedPaymentOffer,
)
from schema.types.node import Node
from schema.types.pagination import Connection


@strawberry.enum
class LegalStatus(Enum):
    INDIVIDUAL = "INDIVIDUAL"
    LEGAL_ENTITY = "LEGAL_ENTITY"


@strawberry.enum
class ContractStatus(Enum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    CLOSED = "CLOSED"


@strawberry.type(description="The money on a contract.")
class Balance:
    contract_pk: strawberry.Private[int]
    amount: Money
    currency: str

    @strawberry.field(description="What can be spent before the contract is suspended.")
    def available_amount(self) -> Money:
        return Money(max(self.amount, Decimal("0.00")))

    @strawberry.field(
        description="Days until the balance runs out at today's charges; null "
        "when nothing is charged."
    )
    async def days_left(self, info: Info) -> int | None:
        daily = await info.context.loaders.daily_charge.load(self.contract_pk)
        if not daily:
            return None
        return max(0, int(self.amount // daily))

    @strawberry.field(description="The promised payment to be repaid, if one is open.")
    async def open_promised_payment(self, info: Info) -> PromisedPayment | None:
        row = await info.context.loaders.open_promise.load(self.contract_pk)
        return None if row is None else PromisedPayment.from_row(row)


@strawberry.type(description="A tariff change that takes effect on a coming billing day.")
class ScheduledTariff:
    tariff: Tariff
    effective_from: date


@strawberry.type(description="A Personal TV channel chosen by the subscriber.")
class PersonalTvChannel:
    channel: Channel
    monthly_fee: Money


@strawberry.type(description="An extra TV receiver (Multiroom).")
class MultiroomDevice(Node):
    serial: str
    monthly_fee: Money
    connected_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> MultiroomDevice:
        return cls(
            id=to_global_id("MultiroomDevice", row.id),
            serial=row.serial,
            monthly_fee=row.monthly_fee,
            connected_at=row.connected_at,
        )


@strawberry.type(description="A service option switched on, free until a day if a reward.")
class ContractServiceOption:
    option: ServiceOption
    free_until: date | None


@strawberry.enum
class ChargeKind(Enum):
    TARIFF = "TARIFF"
    TV_PACKAGE = "TV_PACKAGE"
    PERSONAL_TV = "PERSONAL_TV"
    MULTIROOM_DEVICE = "MULTIROOM_DEVICE"
    OPTION = "OPTION"


@strawberry.type(description="One item of what the next month costs.")
class MonthlyCharge:
    kind: ChargeKind
    name: str
    quantity: int
    monthly_fee: Money


@strawberry.type(description="What the next month costs, item by item.")
class MonthlyCharges:
    items: list[MonthlyCharge]
    total: Money


@strawberry.type(description="A personal account: one contract of a subscriber.")
class Contract(Node):
    pk: strawberry.Private[int]
    subscriber_pk: strawberry.Private[int]
    region_code: strawberry.Private[str]
    tariff_pk: strawberry.Private[int]
    balance_amount: strawberry.Private[Any]
    row: strawberry.Private[Any]
    number: str
    address: str
    status: ContractStatus
    opened_on: date

    @strawberry.field
    def balance(self, info: Info) -> Balance:
        return Balance(
            contract_pk=self.pk,
            amount=self.balance_amount,
            currency=info.context.settings.currency,
        )

    @strawberry.field(description="Whether a promised payment can be taken now.")
    async def promised_payment_offer(self, info: Info) -> PromisedPaymentOffer:
        offers = info.context.loaders.promised_payment_offers(info.context.settings)
        return PromisedPaymentOffer.from_offer(await offers.load(self.pk))

    @strawberry.field(description="Every promised payment, newest first.")
    async def promised_payments(self, info: Info) -> list[PromisedPayment]:
        rows = await info.context.loaders.promises.load(self.pk)
        return [PromisedPayment.from_row(row) for row in rows]

    @strawberry.field
    async def region(self, info: Info) -> Region:
        return Region.from_row(await info.context.loaders.region.load(self.region_code))

    @strawberry.field(description="The tariff in force today.")
    async def tariff(self, info: Info) -> Tariff:
        # A change scheduled for today is in force even before the billing day has run.
        tariff_id = services.tariff_on(self.row, utcnow().date())
        row = await info.context.loaders.catalog_item.load(("Tariff", tariff_id))
        return Tariff.from_row(row)

    @strawberry.field(description="The tariff change to come, if one is scheduled.")
    async def scheduled_tariff(self, info: Info) -> ScheduledTariff | None:
        pending = services.pending_tariff_change(self.row, today=utcnow().date())
        if pending is None:
            return None
        tariff_id, effective_from = pending
        tariff = await info.context.loaders.catalog_item.load(("Tariff", tariff_id))
        return ScheduledTariff(tariff=Tariff.from_row(tariff), effective_from=effective_from)

    @strawberry.field(
        description="Personal TV: the channels chosen (must-carry ones are free "
        "and always in `channels`)."
    )
    async def personal_tv_channels(self, info: Info) -> list[PersonalTvChannel]:
        rows = await info.context.loaders.personal_channels.load(self.pk)
        return [
            PersonalTvChannel(channel=Channel.from_row(row), monthly_fee=row.personal_fee)
            for row in rows
        ]

    @strawberry.field(description="Extra TV receivers.")
    async def multiroom_devices(self, info: Info) -> list[MultiroomDevice]:
        rows = await info.context.loaders.multiroom_devices.load(self.pk)
        return [MultiroomDevice.from_row(row) for row in rows]

    @strawberry.field(description="Service options switched on.")
    async def options(self, info: Info) -> list[ContractServiceOption]:
        rows = await info.context.loaders.options.load(self.pk)
        return [
            ContractServiceOption(option=ServiceOption.from_row(row), free_until=row.free_until)
            for row in rows
        ]

    @strawberry.field(
        description="The channel line-up received: must-carry ∪ packages ∪ "
        "Personal TV, each channel once."
    )
    async def channels(self, info: Info) -> list[Channel]:
        rows = await info.context.loaders.channel_lineup.load(self.pk)
        return [Channel.from_row(row) for row in rows]

    @strawberry.field(description="What the next month costs, item by item.")
    async def monthly_charges(self, info: Info) -> MonthlyCharges:
        items = await info.context.loaders.monthly_charges.load(self.pk)
        return MonthlyCharges(
            items=[
                MonthlyCharge(
                    kind=ChargeKind(item.kind),
                    name=item.name,
                    quantity=item.quantity,
                    monthly_fee=item.monthly_fee,
                )
                for item in items
            ],
            total=Money(sum((item.monthly_fee for item in items), Decimal("0.00"))),
        )

    @strawberry.field(description="The TV packages connected now.")
    async def tv_packages(self, info: Info) -> list[TvPackage]:
        rows = await info.context.loaders.tv_packages_of_contract.load(self.pk)
        return [TvPackage.from_row(row) for row in rows]

    @strawberry.field(description="Top-ups, newest first.")
    async def payments(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[Payment]:
        settings = info.context.settings
        try:
            if after is None:
                # The first page of many contracts comes from one statement (a loader).
                limit = check_first(first, settings.max_page_size)
                rows = await info.context.loaders.first_payments(limit + 1).load(self.pk)
                page: Page[Any] = payments.page_of_newest(rows, limit)
            else:
                page = await payments.payments_of_contract(
                    info.context.reader,
                    contract_id=self.pk,
                    first=first,
                    after=after,
                    max_page_size=settings.max_page_size,
                )
        except DomainError as error:
            raise bad_input(error) from None
        return Connection.from_page(page, Payment.from_row)

    @strawberry.field(description="Balance changes, newest first; filter by kind and period.")
    async def ledger(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        kinds: list[LedgerKind] | None = None,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None,
    ) -> Connection[LedgerEntry]:
        try:
            # The same page of every contract asked for comes from one statement.
            pages = info.context.loaders.ledger_pages(
                first=first,
                after=after,
                kinds=[kind.value for kind in kinds] if kinds else None,
                since=from_,
                until=to,
            )
            page = await pages.load(self.pk)
        except DomainError as error:
            raise bad_input(error) from None
        return Connection.from_page(page, LedgerEntry.from_row)

    @strawberry.field(description="Totals of the days [from, to] (UTC, at most 366 days).")
    async def expense_summary(
        self,
        info: Info,
        from_: Annotated[date, strawberry.argument(name="from")],
        to: date,
    ) -> ExpenseSummary:
        try:
            summaries = info.context.loaders.expense_summaries(since=from_, until=to)
            summary = await summaries.load(self.pk)
        except DomainError as error:
            raise bad_input(error) from None
        return ExpenseSummary.from_summary(summary)

    @classmethod
    def from_row(cls, row: Any) -> Contract:
        return cls(
            id=to_global_id("Contract", row.id),
            pk=row.id,
            subscriber_pk=row.subscriber_id,
            region_code=row.region_code,
            tariff_pk=row.tariff_id,
            balance_amount=row.balance,
            row=row,
            number=row.number,
            address=row.address,
            status=ContractStatus(row.status),
            opened_on=row.opened_on,
        )


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


@strawberry.type
class ExpiringPoints:
    points: int
    expires_at: datetime = strawberry.field(description="The earliest of them expires then.")


@strawberry.type(
    description="Bonus points of a subscriber: 1 per full 5 RUB of top-ups, kept 12 months."
)
class BonusAccount:
    subscriber_pk: strawberry.Private[int]
    points: int

    @strawberry.field(description="Points that expire within 30 days; null when none do.")
    async def expiring_soon(self, info: Info) -> ExpiringPoints | None:
        found = await info.context.loaders.expiring_points.load(self.subscriber_pk)
        return (
            None
            if found is None
            else ExpiringPoints(points=found.points, expires_at=found.expires_at)
        )

    @strawberry.field(description="The points ledger, newest first.")
    async def history(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[BonusEntry]:
        try:
            page = await bonus.bonus_history_page(
                info.context.reader,
                subscriber_id=self.subscriber_pk,
                first=first,
                after=after,
                max_page_size=info.context.settings.max_page_size,
            )
        except DomainError as error:
            raise bad_input(error) from None
        return Connection.from_page(page, BonusEntry.from_row)


@strawberry.type(description="An individual or a legal entity with one or more contracts.")
class Subscriber(Node):
    pk: strawberry.Private[int]
    login: str | None
    legal_status: LegalStatus
    display_name: str
    email: str | None
    phone: str | None

    @strawberry.field
    async def contracts(self, info: Info) -> list[Contract]:
        rows = await info.context.loaders.contracts_of_subscriber.load(self.pk)
        return [Contract.from_row(row) for row in rows]

    @strawberry.field
    async def bonus_account(self, info: Info) -> BonusAccount:
        points = await info.context.loaders.bonus_points.load(self.pk)
        return BonusAccount(subscriber_pk=self.pk, points=points)

    @classmethod
    def from_row(cls, row: Any) -> Subscriber:
        return cls(
            id=to_global_id("Subscriber", row.id),
            pk=row.id,
            login=row.login,
            legal_status=LegalStatus(row.legal_status),
            display_name=row.display_name,
            email=row.email,
            phone=row.phone,
        )


@strawberry.type(description="A signed-in session of the caller.")
class SessionInfo:
    id: strawberry.ID
    created_at: datetime
    last_used_at: datetime
    client_address: str | None
    user_agent: str | None
    current: bool

    @classmethod
    def from_row(cls, row: Any, *, current_session_id: int) -> SessionInfo:
        return cls(
            id=to_global_id("Session", row.id),
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            client_address=row.client_address,
            user_agent=row.user_agent,
            current=row.id == current_session_id,
        )
