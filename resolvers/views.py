"""The read declarations of Kabinet's GraphQL types: one `View` each (core/views.py says
what a view is).

Each field is written here once: its column or SQL expression, how it is written, and for
an object or a list the rows it is read from. The executor's per-request loaders
(resolvers/loaders.py) and the one-statement answers built in PostgreSQL
(schema/sql_answers.py) are both made from these, so a derived value (the money available,
the days left, the tariff in force, the line-up) has one implementation: the SQL here or in
the domain module it names.

A view's rows are selected for any filter on the column that names their parent (`key`);
every statement made from them takes the request's parameters (`parameters`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from core.settings import Settings
from core.views import Cursor, Filter, Kind, Link, Page, Value, View, column, const, global_id
from models import (
    AuthSession,
    BonusAccount,
    Channel,
    Contract,
    Payment,
    PromisedPayment,
    Region,
    ServiceOption,
    Tariff,
    TvPackage,
    TvPackageChannel,
)
from models.base import MONEY, UTCDateTime, table_of
from resolvers import (
    access,
    accounts,
    autopay,
    bonus,
    catalog,
    charges,
    expenses,
    lineup,
    notifications,
    pause,
    promised,
    social_access,
)
from resolvers.catalog import (
    CHANNEL_COLUMNS,
    OPTION_COLUMNS,
    PACKAGE_COLUMNS,
    REGION_COLUMNS,
    TARIFF_COLUMNS,
)
from resolvers.pagination import decode_id_cursor
from resolvers.payments import PAYMENT_COLUMNS

_contracts = table_of(Contract)
_tariffs = table_of(Tariff)
_regions = table_of(Region)
_channels = table_of(Channel)
_packages = table_of(TvPackage)
_package_channels = table_of(TvPackageChannel)
_options = table_of(ServiceOption)
_payments = table_of(Payment)
_bonus = table_of(BonusAccount)
_sessions = table_of(AuthSession)
_promises = table_of(PromisedPayment)

TODAY = sa.bindparam("today", type_=sa.Date)
TOMORROW = sa.bindparam("tomorrow", type_=sa.Date)  # the next billing day
NOW = sa.bindparam("now", type_=UTCDateTime)
# What the billing day charges a PAUSED contract a day, in kopecks (resolvers/pause.py).
PAUSE_KOPECKS = sa.bindparam("pause_kopecks", type_=sa.BigInteger)
EXPIRING_WITHIN = timedelta(days=30)  # BonusAccount.expiringSoon


def parameters(settings: Settings, now: datetime) -> dict[str, Any]:
    """The request's values of the parameters every statement made from a view takes."""
    return {
        "today": now.date(),
        "tomorrow": now.date() + timedelta(days=1),
        "now": now,
        "expiring_until": now + EXPIRING_WITHIN,
        "currency": settings.currency,
        "pause_kopecks": int(settings.pause_daily_fee * 100),
        # The promised-payment offer's settings (resolvers/promised.py holds the rule).
        **promised.offer_parameters(settings, now.date()),
    }


def _all(_column: Any) -> Any:
    return sa.true()


def _text(sql: str) -> Any:
    return sa.literal_column(sql)


# --------------------------------------------------------------------------- #
# rows, by any filter on the column naming their parent
# --------------------------------------------------------------------------- #


def subscriber_rows(keep: Filter) -> sa.Select[Any]:
    return accounts.subscribers_where(keep)


def contract_rows(keep: Filter, key: str = "id") -> sa.Select[Any]:
    """Contracts with the tariff in force today (`tariff_now`)."""
    return sa.select(
        *accounts.CONTRACT_COLUMNS,
        charges.tariff_in_force(_contracts, TODAY).label("tariff_now"),
    ).where(keep(_contracts.c[key]))


def _contracts_of_subscribers(keep: Filter) -> sa.Select[Any]:
    return contract_rows(keep, "subscriber_id")


def _region_rows(keep: Filter) -> sa.Select[Any]:
    return sa.select(*REGION_COLUMNS).where(keep(_regions.c.code))


def _tariff_rows(keep: Filter) -> sa.Select[Any]:
    return sa.select(*TARIFF_COLUMNS).where(keep(_tariffs.c.id))


def _package_rows(keep: Filter) -> sa.Select[Any]:
    return sa.select(*PACKAGE_COLUMNS).where(keep(_packages.c.id))


def _channel_rows(keep: Filter) -> sa.Select[Any]:
    return sa.select(*CHANNEL_COLUMNS).where(keep(_channels.c.id))


def _option_rows(keep: Filter) -> sa.Select[Any]:
    return sa.select(*OPTION_COLUMNS).where(keep(_options.c.id))


def _channels_of_packages(keep: Filter) -> sa.Select[Any]:
    return (
        sa.select(_package_channels.c.package_id, *CHANNEL_COLUMNS)
        .join(_channels, _channels.c.id == _package_channels.c.channel_id)
        .where(keep(_package_channels.c.package_id))
    )


def _payments_of_contracts(keep: Filter) -> sa.Select[Any]:
    return sa.select(*PAYMENT_COLUMNS).where(keep(_payments.c.contract_id))


def _payment_rows(keep: Filter) -> sa.Select[Any]:
    return sa.select(*PAYMENT_COLUMNS).where(keep(_payments.c.id))


def _promise_rows(keep: Filter) -> sa.Select[Any]:
    return sa.select(*promised.PROMISE_COLUMNS).where(keep(_promises.c.id))


def _charged_tomorrow(keep: Filter) -> sa.Select[Any]:
    """What the next month costs, item by item (`Contract.monthlyCharges`): the items the
    next billing day charges (resolvers/charges.py), so a tariff change and items connected
    today show and items disconnected today do not; an item free tomorrow is left out.
    `kind_rank` orders them as charges.KINDS."""
    items = charges.charge_items(TOMORROW, keep)
    rank = sa.case(
        *(
            (items.c.kind == _text(f"'{kind}'"), _text(str(i)))
            for i, kind in enumerate(charges.KINDS)
        )
    )
    return sa.select(items, rank.label("kind_rank"))


def _monthly_total(row: Any) -> Any:
    items = charges.charge_items(TOMORROW, lambda column: column == row.c.id)
    total = sa.select(sa.func.sum(items.c.monthly_fee)).scalar_subquery()
    return sa.func.coalesce(total, _text("0.00"))


def _of_contract(target: str, rows: Any, order: tuple[str, ...]) -> Link:
    """A contract's list: the rows `rows` selects for it (by their `contract_id`), in
    `order`."""
    return Link(target, rows, key="contract_id", many=True, order=order)


def _reasons(target: str, column: str) -> Link:
    """A list of the offer's reasons against (resolvers/promised.py), one column of each."""
    return Link(
        target,
        promised.reason_rows,
        key="contract_id",
        parent="contract_id",
        many=True,
        order=("position",),
        scalar=column,
    )


def _listed(target: str, rows: Any, order: tuple[str, ...], **more: Any) -> Link:
    """A root's list: every row `rows` selects (it has no parent), in `order`."""
    return Link(target, rows, key=None, many=True, order=order, **more)


# --------------------------------------------------------------------------- #
# derived values
# --------------------------------------------------------------------------- #


def _available(row: Any) -> Any:
    """Balance.availableAmount: what can be spent before suspension, never below zero."""
    return sa.case((row.c.balance > _text("0"), row.c.balance), else_=_text("0.00"))


def _days_left(row: Any) -> Any:
    """Balance.daysLeft: whole days the balance lasts at today's charge; null when nothing
    is charged (resolvers/charges.py owns the charge and the rule, which the low-balance
    reminder of the billing day reads too; a PAUSED contract is charged the pause's fee
    instead)."""
    daily = charges.daily_kopecks_of(row.c.id, TODAY)
    per_day = sa.case((row.c.status == _text("'PAUSED'"), PAUSE_KOPECKS), else_=daily.c.kopecks)
    return sa.select(charges.days_left_of(row.c.balance, per_day)).scalar_subquery()


def _points(row: Any) -> Any:
    points = sa.select(_bonus.c.points).where(_bonus.c.subscriber_id == row.c.id)
    return sa.func.coalesce(points.scalar_subquery(), _text("0"))


# --------------------------------------------------------------------------- #
# cursors
# --------------------------------------------------------------------------- #


def _read_id_cursor(cursor: str) -> tuple[int]:
    found = decode_id_cursor(cursor)
    assert found is not None
    return (found,)


# A list newest first by id: the cursor is the id.
_ID_CURSOR = Cursor((column("id"),), _read_id_cursor)
# The ledger, newest first on (created_at, id): the cursor is "created_at|id".
_LEDGER_CURSOR = Cursor(
    (column("created_at", Kind.DATETIME), column("id")), expenses.read_ledger_cursor
)


# --------------------------------------------------------------------------- #
# the views
# --------------------------------------------------------------------------- #

_MONEY = Kind.MONEY
# The period an ExpenseSummary was asked for, passed on to its lists.
_PERIOD = (("from", "since"), ("to", "until"))

VIEWS: dict[str, View] = {
    view.name: view
    for view in (
        View(
            "Query",
            {
                "regions": _listed("Region", catalog.regions_listed, catalog.REGION_ORDER),
                "tariffs": _listed(
                    "Tariff",
                    catalog.tariffs_on_sale,
                    catalog.TARIFF_ORDER,
                    arguments=("region",),
                    check=lambda given: catalog.check_region_code(given.get("region")),
                ),
                "tvPackages": _listed("TvPackage", catalog.packages_on_sale, catalog.PACKAGE_ORDER),
                "channels": _listed("Channel", catalog.channels_on_air, catalog.CHANNEL_ORDER),
                # The caller's: a root link with a key reads for the caller's session.
                "mySessions": Link(
                    "SessionInfo",
                    access.live_sessions_beside,
                    key="caller_session",
                    many=True,
                    order=("-id",),
                ),
                "serviceOptions": _listed(
                    "ServiceOption", catalog.options_on_sale, catalog.OPTION_ORDER
                ),
            },
        ),
        View(
            "Subscriber",
            {
                "id": global_id("Subscriber"),
                "login": column("login"),
                "legalStatus": column("legal_status"),
                "displayName": column("display_name"),
                "email": column("email"),
                "phone": column("phone"),
                "contracts": Link(
                    "Contract",
                    _contracts_of_subscribers,
                    key="subscriber_id",
                    many=True,
                    order=("id",),
                ),
                "bonusAccount": Link("BonusAccount"),
                # Every kind of reminder with its channel in force (resolvers/notifications.py).
                "notifications": Link(
                    "NotificationSetting",
                    notifications.setting_rows,
                    key="subscriber_id",
                    many=True,
                    order=("position",),
                ),
            },
            rows=subscriber_rows,
        ),
        View(
            "NotificationSetting",
            {"kind": column("kind"), "channel": column("channel")},
        ),
        View(
            "BonusAccount",
            {
                # The subscriber's: "BonusAccount:<subscriber id>".
                "id": global_id("BonusAccount"),
                "points": Value(_points, type_=sa.Integer),
                "expiringSoon": Link(
                    "ExpiringPoints", bonus.expiring_points_where, key="subscriber_id"
                ),
            },
            rows=subscriber_rows,
        ),
        View(
            "ExpiringPoints",
            {
                "points": Value(lambda row: row.c.points, type_=sa.Integer),
                "expiresAt": column("expires_at", Kind.DATETIME),
            },
        ),
        View(
            "Contract",
            {
                "id": global_id("Contract"),
                "number": column("number"),
                "address": column("address"),
                "status": column("status"),
                "openedOn": column("opened_on", Kind.DATE),
                "balance": Link("Balance"),
                "promisedPaymentOffer": Link(
                    "PromisedPaymentOffer", promised.offer_rows, key="contract_id"
                ),
                "promisedPayments": _of_contract(
                    "PromisedPayment", promised.promises_where, ("-issued_at", "-id")
                ),
                "region": Link("Region", _region_rows, key="code", parent="region_code"),
                "tariff": Link("Tariff", _tariff_rows, key="id", parent="tariff_now"),
                "pause": Link("ContractPause", pause.pause_rows, key="contract_id"),
                "socialAccess": Link(
                    "SocialAccess", social_access.social_access_rows, key="contract_id"
                ),
                "tvPackages": _of_contract("TvPackage", lineup.packages_now, ("monthly_fee", "id")),
                "personalTvChannels": _of_contract(
                    "PersonalTvChannel", lineup.personal_channels_now, ("number",)
                ),
                "multiroomDevices": _of_contract(
                    "MultiroomDevice", lineup.multiroom_devices_now, ("id",)
                ),
                "options": _of_contract(
                    "ContractServiceOption", lineup.options_now, ("monthly_fee", "id")
                ),
                "channels": _of_contract("Channel", lineup.line_up, ("number",)),
                "monthlyCharges": Link("MonthlyCharges"),
                "payments": Page(
                    "Payment", _payments_of_contracts, _ID_CURSOR, key="contract_id", counted=True
                ),
                "ledger": Page(
                    "LedgerEntry",
                    expenses.ledger_entries,
                    _LEDGER_CURSOR,
                    order=("created_at", "id"),
                    key="contract_id",
                    max_first=expenses.MAX_PAGE_SIZE,
                    arguments=("kinds", "from", "to"),
                    check=expenses.check_ledger_filters,
                    counted=True,
                ),
                "expenseSummary": Link(
                    "ExpenseSummary",
                    expenses.summary_rows,
                    key="contract_id",
                    arguments=("from", "to"),
                    check=expenses.check_summary_period,
                ),
                "paymentMethods": _of_contract(
                    "SavedPaymentMethod", autopay.methods_where, ("id",)
                ),
                "autopay": Link("Autopay", autopay.rules_where, key="contract_id"),
            },
            rows=contract_rows,
        ),
        View(
            "SavedPaymentMethod",
            {
                "id": global_id("SavedPaymentMethod"),
                "title": column("title"),
                "createdAt": column("created_at", Kind.DATETIME),
            },
        ),
        View(
            "Autopay",
            {
                # The contract's: "Autopay:<contract id>".
                "id": global_id("Autopay", "contract_id"),
                "mode": column("mode"),
                "amount": column("amount", _MONEY),
                "threshold": column("threshold", _MONEY),
                "dayOfMonth": column("day_of_month"),
                "enabled": column("enabled"),
                "failuresInRow": column("failures_in_row"),
                "updatedAt": column("updated_at", Kind.DATETIME),
                "paymentMethod": Link(
                    "SavedPaymentMethod", autopay.method_rows, key="id", parent="payment_method_id"
                ),
            },
            key="contract_id",
        ),
        View(
            "ExpenseSummary",
            {
                "from": column("since", Kind.DATE),
                "to": column("until", Kind.DATE),
                "totalCharged": Value(lambda row: row.c.total_charged, _MONEY, type_=MONEY),
                "totalCredited": Value(lambda row: row.c.total_credited, _MONEY, type_=MONEY),
                "byCategory": Link(
                    "CategoryTotal",
                    expenses.category_rows,
                    key="contract_id",
                    parent="contract_id",
                    many=True,
                    order=("kind_rank", "kind"),
                    from_parent=_PERIOD,
                ),
                "byMonth": Link(
                    "MonthTotal",
                    expenses.month_rows,
                    key="contract_id",
                    parent="contract_id",
                    many=True,
                    order=("position",),
                    from_parent=_PERIOD,
                ),
            },
            key="contract_id",
        ),
        View(
            "CategoryTotal",
            {
                "kind": column("kind"),
                "total": Value(lambda row: row.c.total, _MONEY, type_=MONEY),
            },
        ),
        View(
            "MonthTotal",
            {
                "month": column("month"),
                "charged": Value(lambda row: row.c.charged, _MONEY, type_=MONEY),
                "credited": Value(lambda row: row.c.credited, _MONEY, type_=MONEY),
            },
        ),
        View(
            "Balance",
            {
                # The contract's: "Balance:<contract id>" (a cache keeps one per contract).
                "id": global_id("Balance"),
                "amount": column("balance", _MONEY),
                "currency": const("currency", sa.Text),
                "availableAmount": Value(_available, _MONEY, type_=MONEY),
                "daysLeft": Value(_days_left, type_=sa.Integer),
                "openPromisedPayment": Link(
                    "PromisedPayment", promised.open_promises_where, key="contract_id"
                ),
            },
            rows=contract_rows,
        ),
        View(
            "MonthlyCharges",
            {
                "items": _of_contract(
                    "MonthlyCharge", _charged_tomorrow, ("kind_rank", "position")
                ),
                "total": Value(_monthly_total, _MONEY, type_=MONEY),
            },
            rows=contract_rows,
        ),
        View(
            "MonthlyCharge",
            {
                "kind": column("kind"),
                "name": column("name"),
                "quantity": Value(lambda row: row.c.quantity, type_=sa.Integer),
                "monthlyFee": Value(lambda row: row.c.monthly_fee, _MONEY, type_=MONEY),
            },
        ),
        View(
            "PromisedPayment",
            {
                "id": global_id("PromisedPayment"),
                "amount": column("amount", _MONEY),
                "fee": column("fee", _MONEY),
                "status": column("status"),
                "issuedAt": column("issued_at", Kind.DATETIME),
                "dueAt": column("due_at", Kind.DATETIME),
                "settledAt": column("settled_at", Kind.DATETIME),
            },
            rows=_promise_rows,
        ),
        View(
            "PromisedPaymentOffer",
            {
                # The contract's: "PromisedPaymentOffer:<contract id>".
                "id": global_id("PromisedPaymentOffer", "contract_id"),
                "available": Value(lambda row: row.c.available, type_=sa.Boolean),
                "maxAmount": column("max_amount", _MONEY),
                "termDays": const("promised_term_days", sa.Integer),
                # The same tiers for every contract: read as a root's rows.
                "feeTiers": Link(
                    "PromiseFeeTier",
                    promised.fee_tier_rows,
                    key=None,
                    many=True,
                    order=("position",),
                ),
                # Why not: the codes (as an enum, and as strings before it), the texts.
                "reasonCodes": _reasons("PromisedPaymentRefusal", "code"),
                "reasons": _reasons("String", "code"),
                "messages": _reasons("String", "message"),
            },
            key="contract_id",
        ),
        View(
            "ContractPause",
            {
                "from": column("starts_on", Kind.DATE),
                "to": column("ends_on", Kind.DATE),
            },
            key="contract_id",
        ),
        View(
            "SocialAccess",
            {
                "active": Value(lambda row: row.c.active, type_=sa.Boolean),
                "until": column("until", Kind.DATETIME),
            },
            key="contract_id",
        ),
        View(
            "PromiseFeeTier",
            {
                "upTo": column("up_to", _MONEY),
                "fee": column("fee", _MONEY),
            },
        ),
        View(
            "Region",
            {"code": column("code"), "name": column("name")},
            rows=_region_rows,
            key="code",
        ),
        View(
            "Tariff",
            {
                "id": global_id("Tariff"),
                "code": column("code"),
                "name": column("name"),
                "regionCode": column("region_code"),
                "region": Link("Region", _region_rows, key="code", parent="region_code"),
                "monthlyFee": column("monthly_fee", _MONEY),
                "speedMbps": column("speed_mbps"),
                "trafficGb": column("traffic_gb"),
                "unlimited": Value(lambda row: row.c.traffic_gb.is_(None), type_=sa.Boolean),
                "description": column("description"),
                "archived": column("archived"),
            },
            rows=_tariff_rows,
        ),
        View(
            "TvPackage",
            {
                "id": global_id("TvPackage"),
                "code": column("code"),
                "name": column("name"),
                "monthlyFee": column("monthly_fee", _MONEY),
                "description": column("description"),
                "archived": column("archived"),
                "channels": Link(
                    "Channel", _channels_of_packages, key="package_id", many=True, order=("number",)
                ),
            },
            rows=_package_rows,
        ),
        View(
            "Channel",
            {
                "id": global_id("Channel"),
                "number": column("number"),
                "name": column("name"),
                "genre": column("genre"),
                "hd": column("hd"),
                "mustCarry": column("must_carry"),
            },
            rows=_channel_rows,
        ),
        View(
            "ServiceOption",
            {
                "id": global_id("ServiceOption"),
                "code": column("code"),
                "name": column("name"),
                "monthlyFee": column("monthly_fee", _MONEY),
                "description": column("description"),
                "archived": column("archived"),
            },
            rows=_option_rows,
        ),
        View(
            "SessionInfo",
            {
                "id": global_id("Session"),
                "createdAt": column("created_at", Kind.DATETIME),
                "lastUsedAt": column("last_used_at", Kind.DATETIME),
                "clientAddress": column("client_address"),
                "userAgent": column("user_agent"),
                "current": Value(lambda row: row.c.id == row.c.caller_session, type_=sa.Boolean),
            },
        ),
        View(
            "PersonalTvChannel",
            {"channel": Link("Channel"), "monthlyFee": column("personal_fee", _MONEY)},
        ),
        View(
            "MultiroomDevice",
            {
                "id": global_id("MultiroomDevice"),
                "serial": column("serial"),
                "monthlyFee": column("monthly_fee", _MONEY),
                "connectedAt": column("connected_at", Kind.DATETIME),
            },
        ),
        View(
            "ContractServiceOption",
            {"option": Link("ServiceOption"), "freeUntil": column("free_until", Kind.DATE)},
        ),
        View(
            "LedgerEntry",
            {
                "id": global_id("LedgerEntry"),
                "kind": column("kind"),
                "amount": column("amount", _MONEY),
                "balanceAfter": column("balance_after", _MONEY),
                "description": column("description"),
                "reference": column("reference"),
                "createdAt": column("created_at", Kind.DATETIME),
            },
        ),
        View(
            "Payment",
            {
                "id": global_id("Payment"),
                "amount": column("amount", _MONEY),
                "method": column("method"),
                "status": column("status"),
                "createdAt": column("created_at", Kind.DATETIME),
                "confirmedAt": column("confirmed_at", Kind.DATETIME),
            },
            rows=_payment_rows,
        ),
    )
}
