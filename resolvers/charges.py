"""What a contract pays for (SPEC §2, §3 "Billing day"): its monthly charges on a given day.

One set-based select lists, per contract, every item charged that day with its monthly fee:
the tariff, each TV package, Personal TV (the sum of its channels' fees, one item), each
Multiroom receiver and each service option. The billing day uses the same select
(`charge_items`) for a whole range of contracts at once.

An item is on day D when `started_on <= D < coalesce(ended_on, ∞)` and it is not free that
day (`free_until IS NULL OR D >= free_until`). Must-carry channels are free and are never
rows; TV packages are rows of the contract, so Multiroom receivers do not multiply them.
The tariff is the contract's, or its scheduled tariff from the day the change takes effect.

The daily share of a monthly fee is `fee / days in that month`, rounded half-up to kopecks
for each item separately: 590.00 / 30 = 19.666… → 19.67; 15.15 / 30 = 0.505 → 0.51.
In SQL it is computed in whole kopecks, exactly on both databases (SQLite keeps NUMERIC as
REAL): `(2·k + d) div (2·d)` for `k` kopecks a month and `d` days, which is `k / d` rounded
half-up for k ≥ 0.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from core.db import ReadQuery, one_of, read_rows
from models import (
    Channel,
    Contract,
    ContractOption,
    ContractPersonalChannel,
    ContractTvPackage,
    MultiroomDevice,
    ServiceOption,
    Tariff,
    TvPackage,
)
from models.base import table_of

CENT = Decimal("0.01")
ZERO = Decimal("0.00")

TARIFF = "TARIFF"
TV_PACKAGE = "TV_PACKAGE"
PERSONAL_TV = "PERSONAL_TV"
MULTIROOM_DEVICE = "MULTIROOM_DEVICE"
OPTION = "OPTION"
# The order items are listed in for a contract.
KINDS = (TARIFF, TV_PACKAGE, PERSONAL_TV, MULTIROOM_DEVICE, OPTION)

PERSONAL_TV_NAME = "Персональное ТВ"
MULTIROOM_NAME = "Мультирум: приставка "

_contracts = table_of(Contract)
_tariffs = table_of(Tariff)
_packages = table_of(TvPackage)
_contract_packages = table_of(ContractTvPackage)
_channels = table_of(Channel)
_personal = table_of(ContractPersonalChannel)
_multiroom = table_of(MultiroomDevice)
_options = table_of(ServiceOption)
_contract_options = table_of(ContractOption)

ContractFilter = Callable[[Any], ColumnElement[bool]]
# A day as a value, or as SQL (a bound parameter, a column).
Day = date | ColumnElement[date]


@dataclass(frozen=True, slots=True)
class ChargeItem:
    kind: str  # one of KINDS
    name: str
    monthly_fee: Decimal
    quantity: int = 1  # Personal TV: the number of paid channels


def days_in_month(day: date) -> int:
    return calendar.monthrange(day.year, day.month)[1]


def daily_share(monthly_fee: Decimal, day: date) -> Decimal:
    """The day's share of one item's monthly fee: fee / days in `day`'s month, half-up to
    kopecks (SPEC §3). A contract's daily charge is the sum of its items' shares."""
    return (Decimal(monthly_fee) / days_in_month(day)).quantize(CENT, rounding=ROUND_HALF_UP)


class days_in_month_sql(FunctionElement[int]):
    """`days_in_month` of a day given as SQL (a parameter, a column)."""

    type = sa.Integer()
    inherit_cache = True


@compiles(days_in_month_sql, "postgresql")
def _days_in_month_postgresql(element: days_in_month_sql, compiler: Any, **kw: Any) -> str:
    day = compiler.process(next(iter(element.clauses)), **kw)
    return (
        f"CAST(EXTRACT(DAY FROM date_trunc('month', CAST({day} AS DATE))"
        " + interval '1 month - 1 day') AS INTEGER)"
    )


@compiles(days_in_month_sql, "sqlite")
def _days_in_month_sqlite(element: days_in_month_sql, compiler: Any, **kw: Any) -> str:
    day = compiler.process(next(iter(element.clauses)), **kw)
    return f"CAST(strftime('%d', {day}, 'start of month', '+1 month', '-1 day') AS INTEGER)"


def daily_kopecks(monthly_fee: Any, day: Day) -> ColumnElement[Any]:
    """`daily_share` in SQL, in whole kopecks (an integer), exact on both databases."""
    days: Any = (
        sa.literal_column(str(days_in_month(day)), sa.BigInteger)
        if isinstance(day, date)
        else sa.cast(days_in_month_sql(day), sa.BigInteger)
    )
    kopecks = sa.cast(sa.func.round(monthly_fee * 100), sa.BigInteger)
    return (kopecks * 2 + days) // (days * 2)


def _on(table: Any, day: Day, *, free_until: bool) -> list[ColumnElement[bool]]:
    clauses = [
        table.c.started_on <= day,
        sa.or_(table.c.ended_on.is_(None), table.c.ended_on > day),
    ]
    if free_until:
        clauses.append(sa.or_(table.c.free_until.is_(None), table.c.free_until <= day))
    return clauses


def tariff_in_force(contracts: Any, day: Any) -> ColumnElement[Any]:
    """The tariff id of each row of `contracts` (the table or an alias) on `day`: the
    scheduled one from the day it takes effect, the current one otherwise (in Python:
    resolvers/services.tariff_on)."""
    return sa.case(
        (
            sa.and_(
                contracts.c.scheduled_tariff_id.is_not(None),
                contracts.c.scheduled_tariff_from.is_not(None),
                contracts.c.scheduled_tariff_from <= day,
            ),
            contracts.c.scheduled_tariff_id,
        ),
        else_=contracts.c.tariff_id,
    )


def daily_kopecks_of(contract_id: Any, day: Day) -> sa.Subquery:
    """What the billing day debits for `day` from the contract `contract_id` (a column of an
    enclosing statement), in whole kopecks: one row, `kopecks` null when nothing is
    charged."""
    items = charge_items(day, lambda column: column == contract_id)
    total = sa.func.sum(daily_kopecks(items.c.monthly_fee, day))
    kopecks = sa.cast(total, sa.BigInteger).label("kopecks")
    return sa.select(kopecks).subquery("daily")


def days_left_of(balance: Any, daily: Any) -> Any:
    """The rule of `Balance.daysLeft`: whole days a `balance` (RUB) lasts at `daily` kopecks
    a day, 0 when it is used up; null when nothing is charged (`daily` null or 0)."""
    kopecks = sa.cast(sa.func.round(balance * _text("100")), sa.BigInteger)
    days = kopecks // daily  # whole days, toward zero
    lasts = sa.cast(sa.case((days > _text("0"), days), else_=_text("0")), sa.Integer)
    return sa.case((daily > _text("0"), lasts), else_=sa.null())


def daily_kopecks_by_contract(day: Day, contracts: ContractFilter) -> sa.Subquery:
    """`daily_kopecks_of` for every contract `contracts(contract_id column)` admits at once
    (contract_id, kopecks): one pass over the items, for the billing day's reminders; a
    contract with nothing charged has no row."""
    items = charge_items(day, contracts)
    total = sa.func.sum(daily_kopecks(items.c.monthly_fee, day))
    return (
        sa.select(items.c.contract_id, sa.cast(total, sa.BigInteger).label("kopecks"))
        .group_by(items.c.contract_id)
        .subquery("daily_by_contract")
    )


def _text(sql: str) -> Any:
    return sa.literal_column(sql)


def charge_items(day: Day, contracts: ContractFilter) -> sa.Subquery:
    """Every item charged on `day` for the contracts `contracts(contract_id_column)` selects,
    as rows (contract_id, kind, position, name, monthly_fee, quantity). The contract's status
    is not looked at: the caller decides whom to charge."""
    effective_tariff = tariff_in_force(_contracts, day)
    tariff = (
        sa.select(
            _contracts.c.id.label("contract_id"),
            sa.literal(TARIFF, sa.String).label("kind"),
            sa.literal(0, sa.BigInteger).label("position"),
            _tariffs.c.name.label("name"),
            _tariffs.c.monthly_fee.label("monthly_fee"),
            sa.literal(1, sa.Integer).label("quantity"),
        )
        .select_from(_contracts.join(_tariffs, _tariffs.c.id == effective_tariff))
        .where(contracts(_contracts.c.id))
    )
    packages = (
        sa.select(
            _contract_packages.c.contract_id,
            sa.literal(TV_PACKAGE, sa.String),
            _contract_packages.c.id,
            _packages.c.name,
            _packages.c.monthly_fee,
            sa.literal(1, sa.Integer),
        )
        .select_from(
            _contract_packages.join(_packages, _packages.c.id == _contract_packages.c.package_id)
        )
        .where(
            contracts(_contract_packages.c.contract_id),
            *_on(_contract_packages, day, free_until=True),
        )
    )
    personal = (
        sa.select(
            _personal.c.contract_id,
            sa.literal(PERSONAL_TV, sa.String),
            sa.literal(0, sa.BigInteger),
            sa.literal(PERSONAL_TV_NAME, sa.String),
            sa.func.sum(_personal.c.monthly_fee),
            sa.func.count(),
        )
        .select_from(_personal.join(_channels, _channels.c.id == _personal.c.channel_id))
        .where(
            contracts(_personal.c.contract_id),
            sa.not_(_channels.c.must_carry),
            *_on(_personal, day, free_until=False),
        )
        .group_by(_personal.c.contract_id)
    )
    multiroom = sa.select(
        _multiroom.c.contract_id,
        sa.literal(MULTIROOM_DEVICE, sa.String),
        _multiroom.c.id,
        sa.literal(MULTIROOM_NAME, sa.String) + _multiroom.c.serial,
        _multiroom.c.monthly_fee,
        sa.literal(1, sa.Integer),
    ).where(contracts(_multiroom.c.contract_id), *_on(_multiroom, day, free_until=False))
    options = (
        sa.select(
            _contract_options.c.contract_id,
            sa.literal(OPTION, sa.String),
            _contract_options.c.id,
            _options.c.name,
            _options.c.monthly_fee,
            sa.literal(1, sa.Integer),
        )
        .select_from(
            _contract_options.join(_options, _options.c.id == _contract_options.c.option_id)
        )
        .where(
            contracts(_contract_options.c.contract_id),
            *_on(_contract_options, day, free_until=True),
        )
    )
    return sa.union_all(tariff, packages, personal, multiroom, options).subquery("charge_items")


def _items_on_day() -> ReadQuery:
    items = charge_items(
        sa.bindparam("day", type_=sa.Date),
        lambda column: one_of(column, "ids"),
    )
    return ReadQuery(sa.select(items))


def _in_list(column: Any) -> ColumnElement[bool]:
    return column.in_(sa.bindparam("contract_ids", expanding=True))


def _money(value: Any) -> Decimal:
    # SQLite hands NUMERIC back as REAL-derived Decimals: round to kopecks as stored.
    return Decimal(str(value)).quantize(CENT) if value is not None else ZERO


_ITEMS_ON_DAY = _items_on_day()


async def monthly_charges(
    source: Any, contract_ids: Sequence[int], *, on: date
) -> dict[int, list[ChargeItem]]:
    """Each contract's items charged on day `on` with their monthly fees, in the order of
    KINDS and then connection. One statement for all the contracts. Contracts with no item
    (or unknown ids) get an empty list."""
    found: dict[int, list[ChargeItem]] = {cid: [] for cid in contract_ids}
    if not contract_ids:
        return found
    ids = list(dict.fromkeys(contract_ids))
    if hasattr(source, "fetch"):
        # A request's reader: the statement is built and compiled once (see _ITEMS_ON_DAY).
        fetched = await source.fetch(_ITEMS_ON_DAY, ids=ids, day=on)
    else:
        items = charge_items(on, _in_list)
        fetched = await read_rows(source, sa.select(items).params(contract_ids=ids))
    rows = sorted(fetched, key=lambda r: (r.contract_id, KINDS.index(r.kind), r.position))
    for row in rows:
        found.setdefault(row.contract_id, []).append(
            ChargeItem(row.kind, row.name, _money(row.monthly_fee), int(row.quantity))
        )
    return found


async def monthly_totals(
    source: Any, contract_ids: Sequence[int], *, on: date
) -> dict[int, Decimal]:
    """Σ monthly fees of the items charged on day `on`, per contract (0.00 for none)."""
    charges = await monthly_charges(source, contract_ids, on=on)
    return {cid: sum((i.monthly_fee for i in items), ZERO) for cid, items in charges.items()}


async def daily_totals(source: Any, contract_ids: Sequence[int], *, on: date) -> dict[int, Decimal]:
    """What the billing day debits for day `on`, per contract: Σ of the items' daily shares
    (for `Balance.daysLeft`)."""
    charges = await monthly_charges(source, contract_ids, on=on)
    totals: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for cid, items in charges.items():
        totals[cid] = sum((daily_share(i.monthly_fee, on) for i in items), ZERO)
    return dict(totals)
