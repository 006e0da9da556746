"""Catalogue administration for staff (SPEC §1, §2; issue 5 item 8): create, edit and
archive tariffs, TV packages, channels, service options and bonus rewards.

The five entities are one table (`ENTITIES`): each is its model, the verbs' keyword of its
id, its fields (keyword, column, the check that validates and normalises a value, whether a
create needs it and what it is otherwise, whether it may change later), the combinations
that must be unique, and its own rules beyond that (`Rules`: a TV package's line-up, a
reward's kind-dependent fields, what must-carry forbids a channel). Three verbs serve all
five: `create`, `update` and `archive`; `create_tariff`, `update_tariff`, ... are those
verbs bound to one entity of the table.

Every verb is one transaction (its caller's unit of work commits it): `begin_write`,
validate, write, an audit entry (action = the mutation's name, before and after = the fields
that changed), flush; it returns the row.
The caller has checked that `staff_id` is signed-in staff.

Nothing is ever deleted. Archiving takes an item off sale: the public catalogue lists
(`resolvers.catalog`) leave archived items out, but contracts that have one keep it (their
`contract_*` rows are not touched) and archived items can be edited and restored.

Prices: the billing day reads the catalogue's fee on the day it charges, so a changed price
applies to every contract that has the item from the next billing day on; the charges
already in the ledger are never rewritten.

Edits that change nothing write nothing and leave no audit entry.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from functools import partial
from typing import Any, Final, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel, col

from core.db import begin_write
from core.errors import DomainError, ErrorCode, InputProblems
from models import (
    BonusReward,
    Channel,
    Region,
    ServiceOption,
    Tariff,
    TvPackage,
    TvPackageChannel,
)
from models.bonus import REWARD_KINDS
from resolvers.audit import record_audit


class Unset(Enum):
    """`UNSET`: "leave as it is", where None is a value (`traffic_gb=None` is unlimited)."""

    UNSET = "UNSET"


UNSET: Final = Unset.UNSET

CODE = re.compile(r"[a-z0-9-]{2,40}")
NAME_LENGTH = (1, 100)
GENRE_LENGTH = (1, 40)
MAX_DESCRIPTION = 500
MAX_FEE = Decimal("100000.00")
MAX_CREDIT = Decimal("100000.00")
SPEED_MBPS = (1, 100_000)
TRAFFIC_GB = (1, 100_000)
CHANNEL_NUMBER = (1, 9999)
POINTS_PRICE = (1, 1_000_000)
DURATION_DAYS = (1, 365)
MAX_PACKAGE_CHANNELS = 1000
MAX_REGION_CODE = 16
MAX_ID = 2**63 - 1
CENT = Decimal("0.01")

# resolvers.audit drops every key that contains "code" (it may be a security code), so the
# catalogue code is logged as "slug" and the tariff's region_code as "region".
AUDIT_CODE_KEY = "slug"

ItemT = TypeVar("ItemT", bound=SQLModel)

_CODE_UNIQUE = {"code": "code"}


# -- validation ------------------------------------------------------------------------------


def _invalid(field: str, message: str) -> DomainError:
    return DomainError(ErrorCode.INVALID, message, field=field)


def _code(value: object) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not CODE.fullmatch(text):
        raise _invalid("code", "A code is 2 to 40 lower-case letters, digits or '-'.")
    return text


def _has_control(text: str, allowed: str = "") -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf") and ch not in allowed for ch in text)


def _line(value: object, field: str, length: tuple[int, int]) -> str:
    """One line of text: NFC, runs of white space made one space, trimmed."""
    low, high = length
    if not isinstance(value, str):
        raise _invalid(field, f"Give {low} to {high} characters.")
    text = " ".join(unicodedata.normalize("NFC", value).split())
    if not low <= len(text) <= high:
        raise _invalid(field, f"Give {low} to {high} characters.")
    if _has_control(text):
        raise _invalid(field, "The text contains control characters.")
    return text


def _description(value: object) -> str:
    if not isinstance(value, str):
        raise _invalid("description", "The description is text.")
    text = unicodedata.normalize("NFC", value).strip()
    if len(text) > MAX_DESCRIPTION:
        raise _invalid("description", f"The description is at most {MAX_DESCRIPTION} characters.")
    if _has_control(text, allowed="\n"):
        raise _invalid("description", "The description contains control characters.")
    return text


def _money(value: object, field: str, *, maximum: Decimal, positive: bool = False) -> Decimal:
    if isinstance(value, int) and not isinstance(value, bool):
        value = Decimal(value)
    if not isinstance(value, Decimal) or not value.is_finite():
        raise _invalid(field, "Give an amount in RUB.")
    if value < 0 or value > maximum:  # first: a huge exponent would not quantize
        raise _invalid(field, f"The amount is 0 to {maximum} RUB.")
    if value != value.quantize(CENT):
        raise _invalid(field, "The amount has at most two decimal places.")
    if positive and value == 0:
        raise _invalid(field, "The amount must be above zero.")
    return value.quantize(CENT)


def _whole(value: object, field: str, bounds: tuple[int, int]) -> int:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _invalid(field, f"Give a whole number from {low} to {high}.")
    return value


def _flag(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise _invalid(field, "Give true or false.")
    return value


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID


# -- the transaction -------------------------------------------------------------------------


def _is_unique_violation(error: IntegrityError) -> bool:
    sqlstate = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return sqlstate == "23505" or "UNIQUE constraint failed" in str(error.orig)


def _conflict_field(error: IntegrityError, columns: Mapping[str, str]) -> str:
    """The input field of the unique column named in the error: SQLite says
    `UNIQUE constraint failed: channels.number`, PostgreSQL `... "uq_channels_number"`."""
    text = str(error.orig)
    for column, field in columns.items():
        if f".{column}" in text or f'_{column}"' in text:
            return field
    return next(iter(columns.values()))


@asynccontextmanager
async def _writing(
    session: AsyncSession, *, unique: Mapping[str, str] = _CODE_UNIQUE
) -> AsyncIterator[None]:
    """The verb's writes: begun as a writer, flushed when the block ends (the unit of work
    commits them, or rolls them back on any error). A unique violation (two staff members
    creating the same code at once on PostgreSQL; the checks before the write catch the
    usual case) is a CONFLICT on the field that `unique` maps the violated column to."""
    await begin_write(session)
    try:
        yield
        await session.flush()
    except IntegrityError as error:
        if not _is_unique_violation(error):
            raise
        field = _conflict_field(error, unique)
        raise DomainError(
            ErrorCode.CONFLICT, f"Another item already has this {field}.", field=field
        ) from None


async def _exists(session: AsyncSession, statement: sa.Select[Any]) -> bool:
    return await session.scalar(statement.limit(1)) is not None


def _conflict(field: str, message: str) -> DomainError:
    return DomainError(ErrorCode.CONFLICT, message, field=field)


async def _locked(session: AsyncSession, model: type[ItemT], row_id: object, field: str) -> ItemT:
    """The row, locked against concurrent edits until commit (PostgreSQL; SQLite's writer
    transaction already excludes them)."""
    found: ItemT | None = None
    table: Any = model  # every catalogue model has an `id` column (SQLModel has none)
    if _is_id(row_id):
        statement: sa.Select[Any] = (
            sa.select(model)
            .where(col(table.id) == row_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        found = await session.scalar(statement)
    if found is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such catalogue item.", field=field)
    return found


def _apply(row: SQLModel, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Set the values that differ; returns (before, after) of just those."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for key, value in values.items():
        old = getattr(row, key)
        if old != value:
            before[key], after[key] = old, value
            setattr(row, key, value)
    return before, after


async def _record(
    session: AsyncSession,
    entity: Entity,
    verb: str,
    row: Any,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any],
    staff_id: int,
    client_address: str | None,
) -> None:
    """Write the change and its audit entry (action: the mutation's name); a change of
    nothing writes nothing."""
    if not after:
        return
    await session.flush()
    await record_audit(
        session,
        actor_staff_id=staff_id,
        action=entity.action(verb),
        target_type=entity.model.__name__,
        target_id=row.id,
        before=before,
        after=after,
        reason=None,
        client_address=client_address,
    )


# -- the table -------------------------------------------------------------------------------

NO_DEFAULT: Final = object()


@dataclass(frozen=True, slots=True)
class Field:
    """A column that the verbs' keyword `arg` sets. `check` validates and normalises a given
    value (raising INVALID on `input`, the input field's name); with `lookup` it also reads
    the database. A create without it is refused when `required`, else takes `default`.
    `nullable`: None is a value (a tariff's unlimited traffic), and UNSET leaves the field as
    it is; otherwise None leaves it. A field not `editable` is set once, by create."""

    arg: str
    input: str
    check: Callable[[Any], Any] | None = None
    lookup: Callable[[AsyncSession, Any], Awaitable[Any]] | None = None
    column: str = ""
    audit: str = ""  # its key in the audit entry (resolvers.audit drops keys with "code")
    required: bool = False
    default: Any = NO_DEFAULT
    nullable: bool = False
    editable: bool = True

    @property
    def key(self) -> str:
        return self.column or self.arg

    async def checked(self, session: AsyncSession, value: Any) -> Any:
        if value is None:
            return None  # nullable
        if self.check is not None:
            value = self.check(value)
        if self.lookup is not None:
            value = await self.lookup(session, value)
        return value


@dataclass(frozen=True, slots=True)
class Unique:
    """Columns no two rows share (checked before the write; a race that gets past the check
    is the database's unique violation, a CONFLICT on the same `field`)."""

    columns: tuple[str, ...]
    field: str
    message: str


@dataclass(slots=True)
class Link:
    """Rows of another table that an item has (a package's channels): as they are, as
    wanted, and how to write the difference."""

    key: str  # its key in the audit entry
    current: list[int]
    wanted: list[int]
    write: Callable[[AsyncSession, int, Sequence[int], Sequence[int]], Awaitable[None]]


class Rules:
    """An entity's rules beyond its fields; the defaults have none."""

    args: tuple[str, ...] = ()  # the verbs' keywords these rules read

    async def values(
        self,
        session: AsyncSession,
        row: Any,
        values: Mapping[str, Any],
        given: Mapping[str, Any],
    ) -> dict[str, Any]:
        """More column values, checked (`row` is None on create)."""
        return {}

    async def link(self, session: AsyncSession, row: Any, given: Mapping[str, Any]) -> Link | None:
        return None

    async def may_update(self, session: AsyncSession, row: Any, values: Mapping[str, Any]) -> None:
        return None

    def may_archive(self, row: Any, archived: object) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Entity:
    """One catalogue entity: its model (whose class name is the audit's target type and
    the actions' noun: createTariff, updateTariff, archiveTariff), the keyword and input
    field of its id, its fields, what is unique and its own rules."""

    model: type[SQLModel]
    id_arg: str
    id_input: str
    fields: tuple[Field, ...]
    unique: tuple[Unique, ...]
    rules: Rules = dataclasses.field(default_factory=Rules)

    def action(self, verb: str) -> str:
        return verb + self.model.__name__

    @property
    def conflicts(self) -> dict[str, str]:
        """The input field of each unique column, for a unique violation at the flush."""
        return {unique.columns[-1]: unique.field for unique in self.unique}

    def accept(self, given: Mapping[str, Any], *, creating: bool) -> None:
        args = {f.arg for f in self.fields if creating or f.editable} | set(self.rules.args)
        unknown = sorted(set(given) - args)
        if unknown:
            raise TypeError(f"unexpected arguments for {self.model.__name__}: {unknown}")


# -- checks of the fields --------------------------------------------------------------------


def _region_code(value: object) -> str:
    code = value.strip() if isinstance(value, str) else ""
    if not code or len(code) > MAX_REGION_CODE:
        raise _invalid("region", "Unknown region code.")
    return code


async def _known_region(session: AsyncSession, code: str) -> str:
    if await session.get(Region, code) is None:
        raise _invalid("region", "Unknown region code.")
    return code


def _kind(value: object) -> str:
    if value not in REWARD_KINDS:
        raise _invalid("kind", f"The kind is one of {', '.join(REWARD_KINDS)}.")
    assert isinstance(value, str)
    return value


def _name(value: object) -> str:
    return _line(value, "name", NAME_LENGTH)


def _fee(value: object) -> Decimal:
    return _money(value, "monthlyFee", maximum=MAX_FEE)


CODE_FIELD = Field("code", "code", _code, audit=AUDIT_CODE_KEY, required=True, editable=False)
NAME_FIELD = Field("name", "name", _name, required=True)
FEE_FIELD = Field("monthly_fee", "monthlyFee", _fee, required=True)
DESCRIPTION_FIELD = Field("description", "description", _description, default="")
PRICED_FIELDS = (CODE_FIELD, NAME_FIELD, FEE_FIELD, DESCRIPTION_FIELD)  # options, packages


def _code_unique(message: str, *scope: str) -> tuple[Unique, ...]:
    return (Unique((*scope, "code"), "code", message),)


# -- channels: what must-carry forbids -------------------------------------------------------


async def _package_codes_of_channel(session: AsyncSession, channel_id: int) -> list[str]:
    return list(
        (
            await session.execute(
                sa.select(col(TvPackage.code))
                .join(TvPackageChannel, col(TvPackageChannel.package_id) == col(TvPackage.id))
                .where(col(TvPackageChannel.channel_id) == channel_id)
                .order_by(col(TvPackage.code))
            )
        ).scalars()
    )


class ChannelRules(Rules):
    """A must-carry channel is free in every TV contract's line-up (SPEC §2): it is never in
    a package, never archived. Making a channel must-carry is refused (NOT_ELIGIBLE, field
    mustCarry) while it is archived or in a package; archiving a must-carry one is refused
    (NOT_ELIGIBLE)."""

    async def may_update(self, session: AsyncSession, row: Any, values: Mapping[str, Any]) -> None:
        if not values.get("must_carry") or row.must_carry:
            return
        if row.archived:
            raise DomainError(
                ErrorCode.NOT_ELIGIBLE,
                "An archived channel cannot be must-carry; restore it first.",
                field="mustCarry",
            )
        packages = await _package_codes_of_channel(session, row.id)
        if packages:
            raise DomainError(
                ErrorCode.NOT_ELIGIBLE,
                "A must-carry channel is in no package; take it out of these first: "
                + ", ".join(packages),
                field="mustCarry",
            )

    def may_archive(self, row: Any, archived: object) -> None:
        if archived is True and row.must_carry:
            raise DomainError(
                ErrorCode.NOT_ELIGIBLE,
                "A must-carry channel is in every line-up and cannot be archived.",
                field="channelId",
            )


# -- TV packages: the line-up ----------------------------------------------------------------


async def _channel_ids(
    session: AsyncSession, value: object, *, current: Iterable[int] = ()
) -> list[int]:
    """The package's line-up: existing channels, not must-carry (those are free in every
    line-up), not archived unless the package already has them; duplicates dropped."""
    if not isinstance(value, list | tuple) or not value:
        raise _invalid("channelIds", "Give at least one channel.")
    if len(value) > MAX_PACKAGE_CHANNELS or not all(_is_id(item) for item in value):
        raise _invalid("channelIds", "Unknown channel ids.")
    wanted = sorted(set(value))
    rows = (
        await session.execute(
            sa.select(col(Channel.id), col(Channel.must_carry), col(Channel.archived)).where(
                col(Channel.id).in_(wanted)
            )
        )
    ).all()
    found = {row.id: row for row in rows}
    missing = [channel_id for channel_id in wanted if channel_id not in found]
    if missing:
        raise _invalid("channelIds", f"Unknown channel ids: {missing}.")
    if any(row.must_carry for row in rows):
        raise _invalid(
            "channelIds", "Must-carry channels are free in every line-up, never in a package."
        )
    kept = set(current)
    if any(row.archived and row.id not in kept for row in rows):
        raise _invalid("channelIds", "An archived channel cannot be added to a package.")
    return wanted


async def _set_package_channels(
    session: AsyncSession, package_id: int, current: Sequence[int], wanted: Sequence[int]
) -> None:
    removed = sorted(set(current) - set(wanted))
    if removed:
        await session.execute(
            sa.delete(TvPackageChannel).where(
                col(TvPackageChannel.package_id) == package_id,
                col(TvPackageChannel.channel_id).in_(removed),
            )
        )
    for channel_id in sorted(set(wanted) - set(current)):
        session.add(TvPackageChannel(package_id=package_id, channel_id=channel_id))
    await session.flush()


async def _current_channel_ids(session: AsyncSession, package_id: int) -> list[int]:
    return sorted(
        (
            await session.execute(
                sa.select(col(TvPackageChannel.channel_id)).where(
                    col(TvPackageChannel.package_id) == package_id
                )
            )
        ).scalars()
    )


class TvPackageRules(Rules):
    """`channel_ids` is the package's whole line-up (at least one channel; no must-carry or
    archived ones), on create and, when given, on update: at once for every contract with
    the package."""

    args = ("channel_ids",)

    async def link(self, session: AsyncSession, row: Any, given: Mapping[str, Any]) -> Link:
        current = [] if row is None else await _current_channel_ids(session, row.id)
        wanted = current
        if row is None or given.get("channel_ids") is not None:
            wanted = await _channel_ids(session, given.get("channel_ids"), current=current)
        return Link("channel_ids", current, wanted, _set_package_channels)


# -- bonus rewards: the fields of each kind --------------------------------------------------

# The fields each kind of reward has; the others stay NULL.
_REWARD_FIELDS: dict[str, frozenset[str]] = {
    "BALANCE_CREDIT": frozenset({"credit_amount"}),
    "TV_PACKAGE": frozenset({"tv_package_id", "duration_days"}),
    "SPEED_BOOST": frozenset({"option_id", "duration_days"}),
}
_REWARD_INPUT = {
    "credit_amount": "creditAmount",
    "tv_package_id": "tvPackageId",
    "option_id": "optionId",
    "duration_days": "durationDays",
}


async def _usable(
    session: AsyncSession, model: type[SQLModel], value: object, field: str, *, current: object
) -> int:
    """An existing package or option for a reward; not archived unless the reward has it
    already."""
    row = await session.get(model, value) if _is_id(value) else None
    if row is None:
        raise _invalid(field, "No such catalogue item.")
    if getattr(row, "archived") and value != current:  # noqa: B009
        raise _invalid(field, "This item is archived.")
    assert isinstance(value, int)
    return value


class BonusRewardRules(Rules):
    """BALANCE_CREDIT needs `credit_amount` (> 0); TV_PACKAGE a `tv_package_id` and
    `duration_days` (1..365); SPEED_BOOST an `option_id` and `duration_days`. A field another
    kind has is refused; the kind does not change."""

    args = tuple(_REWARD_INPUT)

    async def values(
        self,
        session: AsyncSession,
        row: Any,
        values: Mapping[str, Any],
        given: Mapping[str, Any],
    ) -> dict[str, Any]:
        kind = values["kind"] if row is None else row.kind
        present = {key: given[key] for key in self.args if given.get(key) is not None}
        allowed = _REWARD_FIELDS[kind]
        for key in present:
            if key not in allowed:
                raise _invalid(_REWARD_INPUT[key], f"A {kind} reward has no {_REWARD_INPUT[key]}.")
        if row is None:
            for key in sorted(allowed):
                if key not in present:
                    raise _invalid(_REWARD_INPUT[key], f"A {kind} reward needs this field.")
        checked: dict[str, Any] = {}
        if "credit_amount" in present:
            checked["credit_amount"] = _money(
                present["credit_amount"], "creditAmount", maximum=MAX_CREDIT, positive=True
            )
        if "duration_days" in present:
            checked["duration_days"] = _whole(
                present["duration_days"], "durationDays", DURATION_DAYS
            )
        if "tv_package_id" in present:
            checked["tv_package_id"] = await _usable(
                session,
                TvPackage,
                present["tv_package_id"],
                "tvPackageId",
                current=row.tv_package_id if row is not None else None,
            )
        if "option_id" in present:
            checked["option_id"] = await _usable(
                session,
                ServiceOption,
                present["option_id"],
                "optionId",
                current=row.option_id if row is not None else None,
            )
        return checked


# -- the five entities -----------------------------------------------------------------------

TARIFF: Final = Entity(
    # A tariff of one region (`traffic_gb` None: unlimited); its code is unique within the
    # region. A new price is what every contract on the tariff pays from the next billing
    # day on; the code and region do not change. Archived: `changeTariff` no longer offers
    # it, contracts on it keep it.
    model=Tariff,
    id_arg="tariff_id",
    id_input="tariffId",
    fields=(
        Field(
            "region",
            "region",
            _region_code,
            _known_region,
            column="region_code",
            audit="region",
            required=True,
            editable=False,
        ),
        CODE_FIELD,
        NAME_FIELD,
        FEE_FIELD,
        Field(
            "speed_mbps",
            "speedMbps",
            lambda value: _whole(value, "speedMbps", SPEED_MBPS),
            required=True,
        ),
        Field(
            "traffic_gb",
            "trafficGb",
            lambda value: _whole(value, "trafficGb", TRAFFIC_GB),
            default=None,
            nullable=True,
        ),
        DESCRIPTION_FIELD,
    ),
    unique=_code_unique("This region already has a tariff with this code.", "region_code"),
)

SERVICE_OPTION: Final = Entity(
    # A service option (code unique); a new price applies from the next billing day to
    # every contract with the option. Archived: off sale, contracts that have it keep it.
    model=ServiceOption,
    id_arg="option_id",
    id_input="optionId",
    fields=PRICED_FIELDS,
    unique=_code_unique("A service option with this code exists."),
)

CHANNEL: Final = Entity(
    # A channel (number and name unique); a must-carry one is at once in every TV
    # contract's line-up, free. Archived: no longer offered for Personal TV or new package
    # line-ups; the line-ups that have it keep it.
    model=Channel,
    id_arg="channel_id",
    id_input="channelId",
    fields=(
        Field(
            "number",
            "number",
            lambda value: _whole(value, "number", CHANNEL_NUMBER),
            required=True,
        ),
        NAME_FIELD,
        Field("genre", "genre", lambda value: _line(value, "genre", GENRE_LENGTH), required=True),
        Field("hd", "hd", lambda value: _flag(value, "hd"), default=False),
        Field("must_carry", "mustCarry", lambda value: _flag(value, "mustCarry"), default=False),
    ),
    unique=(
        Unique(("number",), "number", "Another channel has this number."),
        Unique(("name",), "name", "Another channel has this name."),
    ),
    rules=ChannelRules(),
)

TV_PACKAGE: Final = Entity(
    # A TV package (code unique) with its line-up. A new price applies from the next billing
    # day; archived: off sale, contracts that have it keep it (and pay for it) until they
    # disconnect it.
    model=TvPackage,
    id_arg="package_id",
    id_input="packageId",
    fields=PRICED_FIELDS,
    unique=_code_unique("A TV package with this code exists."),
    rules=TvPackageRules(),
)

BONUS_REWARD: Final = Entity(
    # A reward that bonus points buy (code unique). Points already spent stay spent;
    # archived: out of the reward catalogue, what was redeemed stays.
    model=BonusReward,
    id_arg="reward_id",
    id_input="rewardId",
    fields=(
        CODE_FIELD,
        NAME_FIELD,
        Field("kind", "kind", _kind, required=True, editable=False),
        Field(
            "points_price",
            "pointsPrice",
            lambda value: _whole(value, "pointsPrice", POINTS_PRICE),
            required=True,
        ),
    ),
    unique=_code_unique("A reward with this code exists."),
    rules=BonusRewardRules(),
)

ENTITIES: Final = (TARIFF, TV_PACKAGE, CHANNEL, SERVICE_OPTION, BONUS_REWARD)


# -- the three verbs -------------------------------------------------------------------------


async def _checked(
    session: AsyncSession, entity: Entity, given: Mapping[str, Any], *, creating: bool
) -> dict[str, Any]:
    """The given fields, checked and normalised, by column; on create with the defaults.
    INVALID for every field at fault at once."""
    values: dict[str, Any] = {}
    problems = InputProblems()
    checked: set[str] = set()  # the fields given (a value refused is a problem noted)
    for item in entity.fields:
        if not (creating or item.editable):
            continue
        value = given.get(item.arg, UNSET)
        if value is UNSET or (value is None and not item.nullable):
            continue
        checked.add(item.key)
        with problems:
            values[item.key] = await item.checked(session, value)
    if creating:
        for item in entity.fields:
            if item.key in checked:
                continue
            if item.required:
                problems.add(_invalid(item.input, "This field is required."))
            if item.default is not NO_DEFAULT:
                values[item.key] = item.default
    problems.raise_found()
    return values


async def _check_unique(
    session: AsyncSession, entity: Entity, values: Mapping[str, Any], row_id: int | None
) -> None:
    model: Any = entity.model
    for unique in entity.unique:
        if not all(column in values for column in unique.columns):
            continue
        others = [] if row_id is None else [col(model.id) != row_id]
        equal = [col(getattr(model, column)) == values[column] for column in unique.columns]
        if await _exists(session, sa.select(col(model.id)).where(*equal, *others)):
            raise _conflict(unique.field, unique.message)


def _audited(entity: Entity, values: Mapping[str, Any]) -> dict[str, Any]:
    keys = {item.key: item.audit or item.key for item in entity.fields}
    return {keys.get(key, key): value for key, value in values.items()}


async def create(
    session: AsyncSession,
    entity: Entity,
    *,
    staff_id: int,
    client_address: str | None = None,
    **given: Any,
) -> Any:
    """A new item of `entity` from the given fields, not archived."""
    entity.accept(given, creating=True)
    async with _writing(session, unique=entity.conflicts):
        values = await _checked(session, entity, given, creating=True)
        values |= await entity.rules.values(session, None, values, given)
        link = await entity.rules.link(session, None, given)
        await _check_unique(session, entity, values, None)
        row = entity.model(archived=False, **values)
        after = _audited(entity, values)
        if link is not None:
            after[link.key] = link.wanted
        session.add(row)
        await _record(session, entity, "create", row, None, after, staff_id, client_address)
        if link is not None:
            await link.write(session, getattr(row, "id"), link.current, link.wanted)  # noqa: B009
    return row


async def update(
    session: AsyncSession,
    entity: Entity,
    *,
    staff_id: int,
    row_id: object,
    client_address: str | None = None,
    **given: Any,
) -> Any:
    """Change the given fields of an item (None leaves a field as it is; UNSET for a field
    where None is a value)."""
    entity.accept(given, creating=False)
    async with _writing(session, unique=entity.conflicts):
        values = await _checked(session, entity, given, creating=False)
        row: Any = await _locked(session, entity.model, row_id, entity.id_input)
        values |= await entity.rules.values(session, row, values, given)
        link = await entity.rules.link(session, row, given)
        await _check_unique(session, entity, values, row.id)
        await entity.rules.may_update(session, row, values)
        before, after = _apply(row, values)
        if link is not None and link.wanted != link.current:
            before[link.key], after[link.key] = link.current, link.wanted
            await link.write(session, row.id, link.current, link.wanted)
        await _record(session, entity, "update", row, before, after, staff_id, client_address)
    return row


async def archive(
    session: AsyncSession,
    entity: Entity,
    *,
    staff_id: int,
    row_id: object,
    archived: object = True,
    client_address: str | None = None,
) -> Any:
    """Take an item off sale (`archived=True`) or back on sale."""
    async with _writing(session, unique=entity.conflicts):
        row = await _locked(session, entity.model, row_id, entity.id_input)
        entity.rules.may_archive(row, archived)
        before, after = _apply(row, {"archived": _flag(archived, "archived")})
        await _record(session, entity, "archive", row, before, after, staff_id, client_address)
    return row


# -- the verbs by name: the three bound to each entity ---------------------------------------

Verb = Callable[..., Awaitable[Any]]


def _by_id(verb: Verb, entity: Entity) -> Verb:
    """`verb` for `entity`, its id given as the entity's own keyword (`tariff_id=...`)."""

    async def bound(session: AsyncSession, **given: Any) -> Any:
        if entity.id_arg not in given:
            raise TypeError(f"{entity.id_arg} is required")
        return await verb(session, entity, row_id=given.pop(entity.id_arg), **given)

    return bound


def _verbs(entity: Entity) -> tuple[Verb, Verb, Verb]:
    return partial(create, entity=entity), _by_id(update, entity), _by_id(archive, entity)


create_tariff, update_tariff, archive_tariff = _verbs(TARIFF)
create_tv_package, update_tv_package, archive_tv_package = _verbs(TV_PACKAGE)
create_channel, update_channel, archive_channel = _verbs(CHANNEL)
create_service_option, update_service_option, archive_service_option = _verbs(SERVICE_OPTION)
create_bonus_reward, update_bonus_reward, archive_bonus_reward = _verbs(BONUS_REWARD)
