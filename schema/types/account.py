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
from schema.types.autopay import Autopay, SavedPaymentMethod
from schema.types.catalog import Channel, Region, ServiceOption, Tariff, TvPackage
from schema.types.enums import values_described
from schema.types.money import (
    ExpenseSummary,
    LedgerEntryConnection,
    LedgerKind,
    PaymentConnection,
    PromisedPayment,
    PromisedPaymentOffer,
)
from schema.types.node import ID_DESCRIPTION, Node
from schema.types.pagination import AFTER, FIRST, Connection
from schema.types.viewed import Viewed, link, linked_objects, paged, value, viewed


@values_described(
    {
        "INDIVIDUAL": "A person, identified by a passport (series and number).",
        "LEGAL_ENTITY": "A company, identified by its INN.",
    }
)
@strawberry.enum(description="Whether a subscriber is a person or a company.")
class LegalStatus(Enum):
    INDIVIDUAL = "INDIVIDUAL"
    LEGAL_ENTITY = "LEGAL_ENTITY"


@values_described(
    {
        "ACTIVE": "In service: charged on every billing day.",
        "SUSPENDED": (
            "Blocked for non-payment (the balance went below zero) and not charged. "
            "It can still sign in, see everything, top up and take a promised payment, but not "
            "connect paid items; a credit that brings the balance to 0.00 or above lifts it."
        ),
        "CLOSED": "Closed: no top-ups, no promised payment, no services, no rewards.",
        "PAUSED": (
            "A voluntary pause is running (`Contract.pause`): charged only the pause's daily "
            "fee instead of the monthly fees, and paid items cannot be connected; top-ups are "
            "credited as usual. ACTIVE again after the pause's last day or `resumeService` "
            "(SUSPENDED if the balance is then below zero)."
        ),
    }
)
@strawberry.enum(description="Whether a contract is in service.")
class ContractStatus(Enum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    CLOSED = "CLOSED"
    PAUSED = "PAUSED"


@viewed
@strawberry.type(description="A voluntary pause of the service, planned or running.")
class ContractPause(Viewed):
    VIEW = "ContractPause"
    from_: date = value(name="from", description="Its first day (UTC), included.")
    to: date = value(
        description="Its last day (UTC), included: the contract is ACTIVE again the day after."
    )


@viewed
@strawberry.type(
    description="Free access to the socially significant sites while suspended for debt."
)
class SocialAccess(Viewed):
    VIEW = "SocialAccess"
    active: bool = value(
        description="Whether it is on now: until `until`, and only while the contract is SUSPENDED."
    )
    until: datetime = value(description="When it ends.")


@viewed
@strawberry.type(description="The money on a contract.")
class Balance(Viewed):
    VIEW = "Balance"
    id: strawberry.ID = value(
        description="The contract's balance, for a client's cache: stable, one per contract "
        "(not fetchable by `node`)."
    )
    amount: Money = value(description="The balance now; negative when in debt.")
    currency: str = value(description='The currency of every amount, ISO 4217: "RUB".')
    available_amount: Money = value(
        description="What can be spent before the contract is suspended: the balance when "
        "above zero, else 0.00."
    )
    days_left: int | None = value(
        description="Whole days the balance lasts at today's daily charge (0 when it is "
        "used up); null when nothing is charged."
    )
    open_promised_payment: PromisedPayment | None = link(
        description="The promised payment to be repaid, if one is open."
    )


@strawberry.type(description="A tariff change that takes effect on a coming billing day.")
class ScheduledTariff:
    tariff: Tariff = strawberry.field(description="The tariff to come.")
    effective_from: date = strawberry.field(
        description="The first day (UTC) on the new tariff: the next billing day after "
        "the change was asked for."
    )


@viewed
@strawberry.type(description="A Personal TV channel chosen by the subscriber.")
class PersonalTvChannel(Viewed):
    VIEW = "PersonalTvChannel"
    channel: Channel = link(description="The channel.")
    monthly_fee: Money = value(description="What this channel costs per month.")


@viewed
@strawberry.type(description="An extra TV receiver (Multiroom).")
class MultiroomDevice(Viewed, Node):
    VIEW = "MultiroomDevice"
    id: strawberry.ID = value(description=ID_DESCRIPTION)
    serial: str = value(description='The receiver\'s serial number, e.g. "MR-1A2B3C4D".')
    monthly_fee: Money = value(description="Its rental fee per month.")
    connected_at: datetime = value(description="When it was added.")


@viewed
@strawberry.type(description="A service option switched on, free until a day if a reward.")
class ContractServiceOption(Viewed):
    VIEW = "ContractServiceOption"
    option: ServiceOption = link(description="The option.")
    free_until: date | None = value(
        description="Free as a bonus reward: the first day (UTC) it is charged; null when "
        "it is paid as usual."
    )


@values_described(
    {
        "TARIFF": "The Internet tariff.",
        "TV_PACKAGE": "A TV package (charged once, whatever the number of TVs).",
        "PERSONAL_TV": "Personal TV: its paid channels, as one item.",
        "MULTIROOM_DEVICE": "The rental of an extra TV receiver (Multiroom).",
        "OPTION": "A service option.",
    }
)
@strawberry.enum(description="What a monthly charge is for.")
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
    kind: ChargeKind = value(description="What it is for.")
    name: str = value(
        description="Its name as the subscriber sees it: the tariff's, package's or "
        'option\'s name, "Персональное ТВ", "Мультирум: приставка <serial>".'
    )
    quantity: int = value(
        description="How many: Personal TV's paid channels; 1 for any other item."
    )
    monthly_fee: Money = value(
        description="Its fee per month (Personal TV: all its channels together)."
    )


@viewed
@strawberry.type(description="What the next month costs, item by item.")
class MonthlyCharges(Viewed):
    VIEW = "MonthlyCharges"
    items: list[MonthlyCharge] = link(
        description="What the next billing day charges, item by item: tariff, TV packages, "
        "Personal TV, Multiroom receivers, options. Items free then are left out."
    )
    total: Money = value(description="The sum of the items' monthly fees.")


@viewed
@strawberry.type(description="A personal account: one contract of a subscriber.")
class Contract(Viewed, Node):
    VIEW = "Contract"
    id: strawberry.ID = value(description=ID_DESCRIPTION)
    number: str = value(
        description="The contract number, which is also the personal account number "
        '(e.g. "770012345678"): the `contractNumber` of mutations.'
    )
    address: str = value(description="The address where the service is provided.")
    status: ContractStatus = value(description="Whether the contract is in service.")
    opened_on: date = value(description="The day the contract was opened.")

    @strawberry.field(description="The money on the contract now.")
    async def balance(self, info: Info) -> Balance:
        return await linked_objects(self, info, "balance")  # type: ignore[no-any-return]

    @strawberry.field(description="Whether a promised payment can be taken now.")
    async def promised_payment_offer(self, info: Info) -> PromisedPaymentOffer:
        return await linked_objects(self, info, "promisedPaymentOffer")  # type: ignore[no-any-return]

    @strawberry.field(description="Every promised payment, newest first.")
    async def promised_payments(self, info: Info) -> list[PromisedPayment]:
        return await linked_objects(self, info, "promisedPayments")  # type: ignore[no-any-return]

    @strawberry.field(
        description="The region the contract is served in: its tariffs are the region's."
    )
    async def region(self, info: Info) -> Region:
        return await linked_objects(self, info, "region")  # type: ignore[no-any-return]

    @strawberry.field(description="The tariff in force today.")
    async def tariff(self, info: Info) -> Tariff:
        return await linked_objects(self, info, "tariff")  # type: ignore[no-any-return]

    @strawberry.field(
        description="The voluntary pause planned or running (`pauseService`); null when none is."
    )
    async def pause(self, info: Info) -> ContractPause | None:
        return await linked_objects(self, info, "pause")  # type: ignore[no-any-return]

    @strawberry.field(
        description="Socially significant access taken in the current suspension "
        "(`activateSocialAccess`); null when none was (or the suspension was lifted)."
    )
    async def social_access(self, info: Info) -> SocialAccess | None:
        return await linked_objects(self, info, "socialAccess")  # type: ignore[no-any-return]

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

    @strawberry.field(description="Extra TV receivers (Multiroom), in the order added.")
    async def multiroom_devices(self, info: Info) -> list[MultiroomDevice]:
        return await linked_objects(self, info, "multiroomDevices")  # type: ignore[no-any-return]

    @strawberry.field(description="Service options switched on, cheapest first.")
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

    @strawberry.field(description="The TV packages connected now, cheapest first.")
    async def tv_packages(self, info: Info) -> list[TvPackage]:
        return await linked_objects(self, info, "tvPackages")  # type: ignore[no-any-return]

    @strawberry.field(description="Top-ups, newest first.")
    async def payments(
        self,
        info: Info,
        first: Annotated[int | None, FIRST] = None,
        after: Annotated[str | None, AFTER] = None,
    ) -> PaymentConnection:
        return await paged(  # type: ignore[no-any-return]
            self, info, "payments", first=first, after=after, connection=PaymentConnection
        )

    @strawberry.field(
        description="Balance changes, newest first (by time, then by id); filter by kind and "
        "by a period of instants, half-open: entries made at or after `from` and before `to` "
        "(either may be left out). `expenseSummary` takes whole days instead. A filter it "
        "refuses: a GraphQL error BAD_USER_INPUT."
    )
    async def ledger(
        self,
        info: Info,
        first: Annotated[int | None, FIRST] = None,
        after: Annotated[str | None, AFTER] = None,
        kinds: Annotated[
            list[LedgerKind] | None,
            strawberry.argument(description="Only entries of these kinds; null or empty: all."),
        ] = None,
        from_: Annotated[
            datetime | None,
            strawberry.argument(
                name="from",
                description="Only entries at or after this instant (included); give its "
                "offset. Null: from the first entry.",
            ),
        ] = None,
        to: Annotated[
            datetime | None,
            strawberry.argument(
                description="Only entries before this instant (excluded), which must be "
                "after `from`; give its offset. Null: no end."
            ),
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
        'period is `ledger(from: "<from>T00:00:00Z", to: "<the day after to>T00:00:00Z")`. '
        "A period it refuses: a GraphQL error BAD_USER_INPUT."
    )
    async def expense_summary(
        self,
        info: Info,
        from_: Annotated[
            date,
            strawberry.argument(
                name="from", description="The first day of the period (UTC), included."
            ),
        ],
        to: Annotated[
            date,
            strawberry.argument(
                description="The last day of the period (UTC), included; not before `from`."
            ),
        ],
    ) -> ExpenseSummary:
        period = {"from": from_, "to": to}
        return await linked_objects(self, info, "expenseSummary", **period)  # type: ignore[no-any-return]

    @strawberry.field(
        description="The cards and SBP accounts saved for autopay (titles only), oldest "
        "first; forgotten ones are left out."
    )
    async def payment_methods(self, info: Info) -> list[SavedPaymentMethod]:
        return await linked_objects(self, info, "paymentMethods")  # type: ignore[no-any-return]

    @strawberry.field(
        description="The autopay rule (`setAutopay`), also when switched off; null when "
        "none was ever set."
    )
    async def autopay(self, info: Info) -> Autopay | None:
        return await linked_objects(self, info, "autopay")  # type: ignore[no-any-return]


@values_described(
    {
        "ACCRUAL": "Earned by a successful top-up: 1 point per full 5 RUB, kept 12 months.",
        "REDEMPTION": "Spent on a reward (oldest points first).",
        "EXPIRY": "Expired: 12 months have passed since they were earned.",
        "ADJUSTMENT": "A correction of points; no operation of the API makes one today.",
    }
)
@strawberry.enum(description="What a change of bonus points was.")
class BonusEntryKind(Enum):
    ACCRUAL = "ACCRUAL"
    REDEMPTION = "REDEMPTION"
    EXPIRY = "EXPIRY"
    ADJUSTMENT = "ADJUSTMENT"


@strawberry.type(description="A change of bonus points.")
class BonusEntry(Node):
    kind: BonusEntryKind = strawberry.field(description="What the change was.")
    points: int = strawberry.field(description="Signed: spent and expired points negative.")
    expires_at: datetime | None = strawberry.field(
        description="ACCRUAL: when these points expire; null for the other kinds."
    )
    description: str = strawberry.field(
        description="What happened, in words for the subscriber (in Russian)."
    )
    created_at: datetime = strawberry.field(description="When the change was made.")

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
@strawberry.type(description="Bonus points that expire within 30 days.")
class ExpiringPoints(Viewed):
    VIEW = "ExpiringPoints"
    points: int = value(description="How many points expire within 30 days.")
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
    points: int = value(description="Points that can be spent now.")

    @strawberry.field(description="Points that expire within 30 days; null when none do.")
    async def expiring_soon(self, info: Info) -> ExpiringPoints | None:
        return await linked_objects(self, info, "expiringSoon")  # type: ignore[no-any-return]

    @strawberry.field(description="The points ledger, newest first.")
    async def history(
        self,
        info: Info,
        first: Annotated[int | None, FIRST] = None,
        after: Annotated[str | None, AFTER] = None,
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


@values_described(
    {
        "LOW_BALANCE": "The money runs low: after a billing day leaves `Balance.daysLeft` at "
        "or below 3 (a setting), once until it is back above.",
        "SUSPENSION": "The contract is suspended for debt, and the suspension is lifted.",
        "PROMISED_PAYMENT_DUE": "A promised payment is due tomorrow.",
        "PAUSE": "A voluntary pause starts tomorrow, or ends tomorrow.",
    }
)
@strawberry.enum(
    description="A kind of reminder. Letters with credentials, codes and receipts are no "
    "kind: they are always sent."
)
class NotificationKind(Enum):
    LOW_BALANCE = "LOW_BALANCE"
    SUSPENSION = "SUSPENSION"
    PROMISED_PAYMENT_DUE = "PROMISED_PAYMENT_DUE"
    PAUSE = "PAUSE"


@values_described(
    {
        "EMAIL": "A letter to the email on file (the default).",
        "SMS": "An SMS to the phone on file (one message, in Russian).",
        "BOTH": "A letter and an SMS.",
        "NONE": "Nothing.",
    }
)
@strawberry.enum(description="How a kind of reminder reaches the subscriber.")
class NotificationChannel(Enum):
    EMAIL = "EMAIL"
    SMS = "SMS"
    BOTH = "BOTH"
    NONE = "NONE"


@viewed
@strawberry.type(description="How one kind of reminder reaches the subscriber.")
class NotificationSetting(Viewed):
    VIEW = "NotificationSetting"
    kind: NotificationKind = value(description="The kind of reminder.")
    channel: NotificationChannel = value(
        description="The channel in force: EMAIL unless the subscriber chose another."
    )


@viewed
@strawberry.type(description="An individual or a legal entity with one or more contracts.")
class Subscriber(Viewed, Node):
    VIEW = "Subscriber"
    id: strawberry.ID = value(description=ID_DESCRIPTION)
    login: str | None = value(
        description="The login to sign in with; null until a contract is registered."
    )
    legal_status: LegalStatus = value(description="A person or a company.")
    display_name: str = value(description="The person's full name, or the company's name.")
    email: str | None = value(
        description="The email on file: letters (login and password, receipts, recovery "
        "codes) go there; null when there is none."
    )
    phone: str | None = value(
        description='The phone on file, E.164 ("+79161234567"): recovery codes go there by '
        "SMS when there is no email; null when there is none."
    )

    @strawberry.field(description="The subscriber's contracts, oldest first.")
    async def contracts(self, info: Info) -> list[Contract]:
        return await linked_objects(self, info, "contracts")  # type: ignore[no-any-return]

    @strawberry.field(description="The subscriber's bonus points, one account for all contracts.")
    async def bonus_account(self, info: Info) -> BonusAccount:
        return await linked_objects(self, info, "bonusAccount")  # type: ignore[no-any-return]

    @strawberry.field(
        description="Every kind of reminder, in a fixed order, with the channel it comes by "
        "(`updateNotificationSettings` changes them)."
    )
    async def notifications(self, info: Info) -> list[NotificationSetting]:
        return await linked_objects(self, info, "notifications")  # type: ignore[no-any-return]


@viewed
@strawberry.type(description="A signed-in session of the caller.")
class SessionInfo(Viewed):
    VIEW = "SessionInfo"
    id: strawberry.ID = value(description="The session's ID, for `revokeSession`.")
    created_at: datetime = value(description="When the session signed in.")
    last_used_at: datetime = value(description="When it was last used.")
    client_address: str | None = value(
        description="The client's IP address at sign-in; null when unknown."
    )
    user_agent: str | None = value(
        description="The User-Agent sent at sign-in (its first 300 characters); null when none."
    )
    current: bool = value(description="true for the session this request is made with.")
