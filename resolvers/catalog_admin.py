"""Catalogue administration for staff (SPEC §1, §2; issue 5 item 8): create, edit and
archive tariffs, TV packages, channels, service options and bonus rewards.

Every verb is one transaction: `begin_write`, validate, write, an audit entry (action = the
mutation's name, before and after = the fields that changed), commit; it returns the row.
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

import re
import unicodedata
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from enum import Enum
from typing import Any, Final, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel, col

from core.db import begin_write
from core.errors import DomainError, ErrorCode
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
    """The verb's transaction: begun as a writer, committed when the block ends, rolled back
    on any error. A unique violation (two staff members creating the same code at once on
    PostgreSQL; the checks before the write catch the usual case) is a CONFLICT on the field
    that `unique` maps the violated column to."""
    await begin_write(session)
    try:
        yield
        await session.commit()
    except IntegrityError as error:
        await session.rollback()
        if not _is_unique_violation(error):
            raise
        field = _conflict_field(error, unique)
        raise DomainError(
            ErrorCode.CONFLICT, f"Another item already has this {field}.", field=field
        ) from None
    except BaseException:
        await session.rollback()
        raise


async def _exists(session: AsyncSession, statement: sa.Select[Any]) -> bool:
    return await session.scalar(statement.limit(1)) is not None


def _conflict(field: str, message: str) -> DomainError:
    return DomainError(ErrorCode.CONFLICT, message, field=field)


async def _locked(session: AsyncSession, model: type[ItemT], row_id: object, field: str) -> ItemT:
    """The row, locked against concurrent edits until commit (PostgreSQL; SQLite's writer
    transaction already excludes them)."""
    found: ItemT | None = None
    if _is_id(row_id):
        statement: sa.Select[Any] = (
            sa.select(model)
            .where(col(model.id) == row_id)  # type: ignore[attr-defined]
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


async def _audit(
    session: AsyncSession,
    *,
    staff_id: int,
    action: str,
    row: SQLModel,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any],
    client_address: str | None,
) -> None:
    await record_audit(
        session,
        actor_staff_id=staff_id,
        action=action,
        target_type=type(row).__name__,
        target_id=getattr(row, "id"),  # noqa: B009 - every catalogue row has an id
        before=before,
        after=after,
        reason=None,
        client_address=client_address,
    )


async def _archive(
    session: AsyncSession,
    row: SQLModel,
    archived: object,
    *,
    staff_id: int,
    action: str,
    client_address: str | None,
) -> None:
    before, after = _apply(row, {"archived": _flag(archived, "archived")})
    if after:
        await session.flush()
        await _audit(
            session,
            staff_id=staff_id,
            action=action,
            row=row,
            before=before,
            after=after,
            client_address=client_address,
        )


async def _created(
    session: AsyncSession,
    row: SQLModel,
    *,
    staff_id: int,
    action: str,
    after: Mapping[str, Any],
    client_address: str | None,
) -> None:
    session.add(row)
    await session.flush()
    await _audit(
        session,
        staff_id=staff_id,
        action=action,
        row=row,
        before=None,
        after=after,
        client_address=client_address,
    )


async def _updated(
    session: AsyncSession,
    row: SQLModel,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    *,
    staff_id: int,
    action: str,
    client_address: str | None,
) -> None:
    if not after:
        return
    await session.flush()
    await _audit(
        session,
        staff_id=staff_id,
        action=action,
        row=row,
        before=before,
        after=after,
        client_address=client_address,
    )


def _given(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


# -- tariffs ---------------------------------------------------------------------------------


async def _region(session: AsyncSession, value: object) -> str:
    code = value.strip() if isinstance(value, str) else ""
    if not code or len(code) > MAX_REGION_CODE or await session.get(Region, code) is None:
        raise _invalid("region", "Unknown region code.")
    return code


def _tariff_values(
    *,
    name: object = None,
    monthly_fee: object = None,
    speed_mbps: object = None,
    traffic_gb: object = UNSET,
    description: object = None,
) -> dict[str, Any]:
    """The given fields, checked and normalised, by column name."""
    values: dict[str, Any] = {}
    if name is not None:
        values["name"] = _line(name, "name", NAME_LENGTH)
    if monthly_fee is not None:
        values["monthly_fee"] = _money(monthly_fee, "monthlyFee", maximum=MAX_FEE)
    if speed_mbps is not None:
        values["speed_mbps"] = _whole(speed_mbps, "speedMbps", SPEED_MBPS)
    if traffic_gb is not UNSET:
        values["traffic_gb"] = (
            None if traffic_gb is None else _whole(traffic_gb, "trafficGb", TRAFFIC_GB)
        )
    if description is not None:
        values["description"] = _description(description)
    return values


async def create_tariff(
    session: AsyncSession,
    *,
    staff_id: int,
    region: str,
    code: str,
    name: str,
    monthly_fee: Decimal,
    speed_mbps: int,
    traffic_gb: int | None,
    description: str = "",
    client_address: str | None = None,
) -> Tariff:
    """A new tariff of one region (`traffic_gb` None: unlimited); its code is unique within
    the region. Commits."""
    async with _writing(session):
        region_code = await _region(session, region)
        tariff_code = _code(code)
        values = _tariff_values(
            name=name,
            monthly_fee=monthly_fee,
            speed_mbps=speed_mbps,
            traffic_gb=traffic_gb,
            description=description,
        )
        _require(values, name="name", monthlyFee="monthly_fee", speedMbps="speed_mbps")
        values.setdefault("description", "")
        if await _exists(
            session,
            sa.select(col(Tariff.id)).where(
                col(Tariff.region_code) == region_code, col(Tariff.code) == tariff_code
            ),
        ):
            raise _conflict("code", "This region already has a tariff with this code.")
        tariff = Tariff(region_code=region_code, code=tariff_code, archived=False, **values)
        await _created(
            session,
            tariff,
            staff_id=staff_id,
            action="createTariff",
            after={"region": region_code, AUDIT_CODE_KEY: tariff_code, **values},
            client_address=client_address,
        )
    return tariff


async def update_tariff(
    session: AsyncSession,
    *,
    staff_id: int,
    tariff_id: int,
    name: str | None = None,
    monthly_fee: Decimal | None = None,
    speed_mbps: int | None = None,
    traffic_gb: int | Literal[Unset.UNSET] | None = UNSET,
    description: str | None = None,
    client_address: str | None = None,
) -> Tariff:
    """Change the given fields (None leaves a field as it is; for `traffic_gb` that is
    UNSET, and None makes it unlimited). A new price is what every contract on the tariff
    pays from the next billing day on: contracts pay the current catalogue price, and the
    charges already in the ledger stay as they were. The code and region do not change.
    Commits."""
    async with _writing(session):
        values = _tariff_values(
            name=name,
            monthly_fee=monthly_fee,
            speed_mbps=speed_mbps,
            traffic_gb=traffic_gb,
            description=description,
        )
        tariff = await _locked(session, Tariff, tariff_id, "tariffId")
        before, after = _apply(tariff, values)
        await _updated(
            session,
            tariff,
            before,
            after,
            staff_id=staff_id,
            action="updateTariff",
            client_address=client_address,
        )
    return tariff


async def archive_tariff(
    session: AsyncSession,
    *,
    staff_id: int,
    tariff_id: int,
    archived: bool = True,
    client_address: str | None = None,
) -> Tariff:
    """Take a tariff off sale (`archived=True`) or back on sale. Contracts on an archived
    tariff keep it; `changeTariff` no longer offers it. Commits."""
    async with _writing(session):
        tariff = await _locked(session, Tariff, tariff_id, "tariffId")
        await _archive(
            session,
            tariff,
            archived,
            staff_id=staff_id,
            action="archiveTariff",
            client_address=client_address,
        )
    return tariff


# -- service options -------------------------------------------------------------------------


def _priced_values(
    *, name: object = None, monthly_fee: object = None, description: object = None
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if name is not None:
        values["name"] = _line(name, "name", NAME_LENGTH)
    if monthly_fee is not None:
        values["monthly_fee"] = _money(monthly_fee, "monthlyFee", maximum=MAX_FEE)
    if description is not None:
        values["description"] = _description(description)
    return values


def _require(values: Mapping[str, Any], **fields: str) -> None:
    for field, key in fields.items():
        if key not in values:
            raise _invalid(field, "This field is required.")


async def create_service_option(
    session: AsyncSession,
    *,
    staff_id: int,
    code: str,
    name: str,
    monthly_fee: Decimal,
    description: str = "",
    client_address: str | None = None,
) -> ServiceOption:
    """A new service option (its code unique). Commits."""
    async with _writing(session):
        option_code = _code(code)
        values = _priced_values(name=name, monthly_fee=monthly_fee, description=description)
        _require(values, name="name", monthlyFee="monthly_fee")
        values.setdefault("description", "")
        if await _exists(
            session, sa.select(col(ServiceOption.id)).where(col(ServiceOption.code) == option_code)
        ):
            raise _conflict("code", "A service option with this code exists.")
        option = ServiceOption(code=option_code, archived=False, **values)
        await _created(
            session,
            option,
            staff_id=staff_id,
            action="createServiceOption",
            after={AUDIT_CODE_KEY: option_code, **values},
            client_address=client_address,
        )
    return option


async def update_service_option(
    session: AsyncSession,
    *,
    staff_id: int,
    option_id: int,
    name: str | None = None,
    monthly_fee: Decimal | None = None,
    description: str | None = None,
    client_address: str | None = None,
) -> ServiceOption:
    """Change the given fields (None: as it is). A new price applies from the next billing
    day to every contract with the option; past charges stay. Commits."""
    async with _writing(session):
        values = _priced_values(name=name, monthly_fee=monthly_fee, description=description)
        option = await _locked(session, ServiceOption, option_id, "optionId")
        before, after = _apply(option, values)
        await _updated(
            session,
            option,
            before,
            after,
            staff_id=staff_id,
            action="updateServiceOption",
            client_address=client_address,
        )
    return option


async def archive_service_option(
    session: AsyncSession,
    *,
    staff_id: int,
    option_id: int,
    archived: bool = True,
    client_address: str | None = None,
) -> ServiceOption:
    """Take an option off sale or back on sale; contracts that have it keep it. Commits."""
    async with _writing(session):
        option = await _locked(session, ServiceOption, option_id, "optionId")
        await _archive(
            session,
            option,
            archived,
            staff_id=staff_id,
            action="archiveServiceOption",
            client_address=client_address,
        )
    return option


# -- channels --------------------------------------------------------------------------------

_CHANNEL_UNIQUE = {"number": "number", "name": "name"}


def _channel_values(
    *,
    number: object = None,
    name: object = None,
    genre: object = None,
    hd: object = None,
    must_carry: object = None,
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if number is not None:
        values["number"] = _whole(number, "number", CHANNEL_NUMBER)
    if name is not None:
        values["name"] = _line(name, "name", NAME_LENGTH)
    if genre is not None:
        values["genre"] = _line(genre, "genre", GENRE_LENGTH)
    if hd is not None:
        values["hd"] = _flag(hd, "hd")
    if must_carry is not None:
        values["must_carry"] = _flag(must_carry, "mustCarry")
    return values


async def _check_channel_unique(
    session: AsyncSession, values: Mapping[str, Any], *, channel_id: int | None = None
) -> None:
    others = [] if channel_id is None else [col(Channel.id) != channel_id]
    if "number" in values and await _exists(
        session,
        sa.select(col(Channel.id)).where(col(Channel.number) == values["number"], *others),
    ):
        raise _conflict("number", "Another channel has this number.")
    if "name" in values and await _exists(
        session, sa.select(col(Channel.id)).where(col(Channel.name) == values["name"], *others)
    ):
        raise _conflict("name", "Another channel has this name.")


async def create_channel(
    session: AsyncSession,
    *,
    staff_id: int,
    number: int,
    name: str,
    genre: str,
    hd: bool = False,
    must_carry: bool = False,
    client_address: str | None = None,
) -> Channel:
    """A new channel (number and name unique). A must-carry channel is at once in every TV
    contract's line-up, free. Commits."""
    async with _writing(session, unique=_CHANNEL_UNIQUE):
        values = _channel_values(
            number=number, name=name, genre=genre, hd=hd, must_carry=must_carry
        )
        _require(values, number="number", name="name", genre="genre")
        values.setdefault("hd", False)
        values.setdefault("must_carry", False)
        await _check_channel_unique(session, values)
        channel = Channel(archived=False, **values)
        await _created(
            session,
            channel,
            staff_id=staff_id,
            action="createChannel",
            after=values,
            client_address=client_address,
        )
    return channel


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


async def update_channel(
    session: AsyncSession,
    *,
    staff_id: int,
    channel_id: int,
    number: int | None = None,
    name: str | None = None,
    genre: str | None = None,
    hd: bool | None = None,
    must_carry: bool | None = None,
    client_address: str | None = None,
) -> Channel:
    """Change the given fields (None: as it is). Making a channel must-carry is refused
    (NOT_ELIGIBLE, field mustCarry) while it is archived or in a package: must-carry
    channels are free in every line-up and never sold in a package. Commits."""
    async with _writing(session, unique=_CHANNEL_UNIQUE):
        values = _channel_values(
            number=number, name=name, genre=genre, hd=hd, must_carry=must_carry
        )
        channel = await _locked(session, Channel, channel_id, "channelId")
        assert channel.id is not None
        await _check_channel_unique(session, values, channel_id=channel.id)
        if values.get("must_carry") and not channel.must_carry:
            if channel.archived:
                raise DomainError(
                    ErrorCode.NOT_ELIGIBLE,
                    "An archived channel cannot be must-carry; restore it first.",
                    field="mustCarry",
                )
            packages = await _package_codes_of_channel(session, channel.id)
            if packages:
                raise DomainError(
                    ErrorCode.NOT_ELIGIBLE,
                    "A must-carry channel is in no package; take it out of these first: "
                    + ", ".join(packages),
                    field="mustCarry",
                )
        before, after = _apply(channel, values)
        await _updated(
            session,
            channel,
            before,
            after,
            staff_id=staff_id,
            action="updateChannel",
            client_address=client_address,
        )
    return channel


async def archive_channel(
    session: AsyncSession,
    *,
    staff_id: int,
    channel_id: int,
    archived: bool = True,
    client_address: str | None = None,
) -> Channel:
    """Take a channel off the catalogue (no longer offered for Personal TV or for new
    package line-ups) or restore it. Packages and Personal TV line-ups that have it keep
    it. A must-carry channel cannot be archived (NOT_ELIGIBLE): SPEC §2 keeps it in every
    TV contract's line-up. Commits."""
    async with _writing(session, unique=_CHANNEL_UNIQUE):
        channel = await _locked(session, Channel, channel_id, "channelId")
        if archived is True and channel.must_carry:
            raise DomainError(
                ErrorCode.NOT_ELIGIBLE,
                "A must-carry channel is in every line-up and cannot be archived.",
                field="channelId",
            )
        await _archive(
            session,
            channel,
            archived,
            staff_id=staff_id,
            action="archiveChannel",
            client_address=client_address,
        )
    return channel


# -- TV packages -----------------------------------------------------------------------------


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
    session: AsyncSession, package_id: int, *, current: Sequence[int], wanted: Sequence[int]
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


async def create_tv_package(
    session: AsyncSession,
    *,
    staff_id: int,
    code: str,
    name: str,
    monthly_fee: Decimal,
    description: str = "",
    channel_ids: Sequence[int],
    client_address: str | None = None,
) -> TvPackage:
    """A new TV package (code unique) with its channels (at least one; no must-carry or
    archived channels). Commits."""
    async with _writing(session):
        package_code = _code(code)
        values = _priced_values(name=name, monthly_fee=monthly_fee, description=description)
        _require(values, name="name", monthlyFee="monthly_fee")
        values.setdefault("description", "")
        wanted = await _channel_ids(session, channel_ids)
        if await _exists(
            session, sa.select(col(TvPackage.id)).where(col(TvPackage.code) == package_code)
        ):
            raise _conflict("code", "A TV package with this code exists.")
        package = TvPackage(code=package_code, archived=False, **values)
        await _created(
            session,
            package,
            staff_id=staff_id,
            action="createTvPackage",
            after={AUDIT_CODE_KEY: package_code, **values, "channel_ids": wanted},
            client_address=client_address,
        )
        assert package.id is not None
        await _set_package_channels(session, package.id, current=(), wanted=wanted)
    return package


async def update_tv_package(
    session: AsyncSession,
    *,
    staff_id: int,
    package_id: int,
    name: str | None = None,
    monthly_fee: Decimal | None = None,
    description: str | None = None,
    channel_ids: Sequence[int] | None = None,
    client_address: str | None = None,
) -> TvPackage:
    """Change the given fields (None: as it is); `channel_ids` replaces the whole line-up,
    at once for every contract with the package. A new price applies from the next billing
    day; past charges stay. Commits."""
    async with _writing(session):
        values = _priced_values(name=name, monthly_fee=monthly_fee, description=description)
        package = await _locked(session, TvPackage, package_id, "packageId")
        assert package.id is not None
        current = await _current_channel_ids(session, package.id)
        wanted = current
        if channel_ids is not None:
            wanted = await _channel_ids(session, channel_ids, current=current)
        before, after = _apply(package, values)
        if wanted != current:
            before["channel_ids"], after["channel_ids"] = current, wanted
            await _set_package_channels(session, package.id, current=current, wanted=wanted)
        await _updated(
            session,
            package,
            before,
            after,
            staff_id=staff_id,
            action="updateTvPackage",
            client_address=client_address,
        )
    return package


async def archive_tv_package(
    session: AsyncSession,
    *,
    staff_id: int,
    package_id: int,
    archived: bool = True,
    client_address: str | None = None,
) -> TvPackage:
    """Take a package off sale or back on sale. Contracts that have it keep it (and pay
    for it) until they disconnect it. Commits."""
    async with _writing(session):
        package = await _locked(session, TvPackage, package_id, "packageId")
        await _archive(
            session,
            package,
            archived,
            staff_id=staff_id,
            action="archiveTvPackage",
            client_address=client_address,
        )
    return package


# -- bonus rewards ---------------------------------------------------------------------------

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


async def _reward_values(
    session: AsyncSession,
    kind: str,
    *,
    current: BonusReward | None,
    credit_amount: object = None,
    tv_package_id: object = None,
    option_id: object = None,
    duration_days: object = None,
) -> dict[str, Any]:
    given = _given(
        credit_amount=credit_amount,
        tv_package_id=tv_package_id,
        option_id=option_id,
        duration_days=duration_days,
    )
    allowed = _REWARD_FIELDS[kind]
    for key in given:
        if key not in allowed:
            raise _invalid(_REWARD_INPUT[key], f"A {kind} reward has no {_REWARD_INPUT[key]}.")
    if current is None:
        for key in sorted(allowed):
            if key not in given:
                raise _invalid(_REWARD_INPUT[key], f"A {kind} reward needs this field.")
    values: dict[str, Any] = {}
    if "credit_amount" in given:
        values["credit_amount"] = _money(
            given["credit_amount"], "creditAmount", maximum=MAX_CREDIT, positive=True
        )
    if "duration_days" in given:
        values["duration_days"] = _whole(given["duration_days"], "durationDays", DURATION_DAYS)
    if "tv_package_id" in given:
        values["tv_package_id"] = await _usable(
            session,
            TvPackage,
            given["tv_package_id"],
            "tvPackageId",
            current=current.tv_package_id if current else None,
        )
    if "option_id" in given:
        values["option_id"] = await _usable(
            session,
            ServiceOption,
            given["option_id"],
            "optionId",
            current=current.option_id if current else None,
        )
    return values


async def create_bonus_reward(
    session: AsyncSession,
    *,
    staff_id: int,
    code: str,
    name: str,
    kind: str,
    points_price: int,
    credit_amount: Decimal | None = None,
    tv_package_id: int | None = None,
    option_id: int | None = None,
    duration_days: int | None = None,
    client_address: str | None = None,
) -> BonusReward:
    """A new reward (code unique). BALANCE_CREDIT needs `credit_amount` (> 0); TV_PACKAGE a
    `tv_package_id` and `duration_days` (1..365); SPEED_BOOST an `option_id` and
    `duration_days`. A field another kind has is refused. Commits."""
    async with _writing(session):
        reward_code = _code(code)
        reward_name = _line(name, "name", NAME_LENGTH)
        if kind not in REWARD_KINDS:
            raise _invalid("kind", f"The kind is one of {', '.join(REWARD_KINDS)}.")
        price = _whole(points_price, "pointsPrice", POINTS_PRICE)
        values = await _reward_values(
            session,
            kind,
            current=None,
            credit_amount=credit_amount,
            tv_package_id=tv_package_id,
            option_id=option_id,
            duration_days=duration_days,
        )
        if await _exists(
            session, sa.select(col(BonusReward.id)).where(col(BonusReward.code) == reward_code)
        ):
            raise _conflict("code", "A reward with this code exists.")
        after = {"name": reward_name, "kind": kind, "points_price": price, **values}
        reward = BonusReward(code=reward_code, archived=False, **after)
        await _created(
            session,
            reward,
            staff_id=staff_id,
            action="createBonusReward",
            after={AUDIT_CODE_KEY: reward_code, **after},
            client_address=client_address,
        )
    return reward


async def update_bonus_reward(
    session: AsyncSession,
    *,
    staff_id: int,
    reward_id: int,
    name: str | None = None,
    points_price: int | None = None,
    credit_amount: Decimal | None = None,
    tv_package_id: int | None = None,
    option_id: int | None = None,
    duration_days: int | None = None,
    client_address: str | None = None,
) -> BonusReward:
    """Change the given fields (None: as it is); the kind and code do not change, and a
    field of another kind is refused. Points already spent stay spent. Commits."""
    async with _writing(session):
        values: dict[str, Any] = {}
        if name is not None:
            values["name"] = _line(name, "name", NAME_LENGTH)
        if points_price is not None:
            values["points_price"] = _whole(points_price, "pointsPrice", POINTS_PRICE)
        reward = await _locked(session, BonusReward, reward_id, "rewardId")
        values |= await _reward_values(
            session,
            reward.kind,
            current=reward,
            credit_amount=credit_amount,
            tv_package_id=tv_package_id,
            option_id=option_id,
            duration_days=duration_days,
        )
        before, after = _apply(reward, values)
        await _updated(
            session,
            reward,
            before,
            after,
            staff_id=staff_id,
            action="updateBonusReward",
            client_address=client_address,
        )
    return reward


async def archive_bonus_reward(
    session: AsyncSession,
    *,
    staff_id: int,
    reward_id: int,
    archived: bool = True,
    client_address: str | None = None,
) -> BonusReward:
    """Take a reward out of the reward catalogue or back in; what was redeemed stays.
    Commits."""
    async with _writing(session):
        reward = await _locked(session, BonusReward, reward_id, "rewardId")
        await _archive(
            session,
            reward,
            archived,
            staff_id=staff_id,
            action="archiveBonusReward",
            client_address=client_address,
        )
    return reward
