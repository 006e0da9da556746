"""Column types and helpers shared by the tables."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

__all__ = [
    "ID",
    "Field",
    "SQLModel",
    "UTCDateTime",
    "id_field",
    "money_field",
    "string_length",
    "table_of",
    "utcnow",
]

# Named constraints so that migrations can drop and alter them on both databases.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the rowid alias.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MONEY = sa.Numeric(12, 2, asdecimal=True)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on both databases (SQLite keeps no zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def table_of(model: type[SQLModel]) -> sa.Table:
    """The Core table a model is mapped to (SQLModel does not declare `__table__`)."""
    table = sa.inspect(model).local_table
    if not isinstance(table, sa.Table):
        raise TypeError(f"{model.__name__} is not mapped to a table")
    return table


def string_length(column: sa.ColumnElement[Any]) -> int | None:
    """The declared length of a string column (None when it has none)."""
    return column.type.length if isinstance(column.type, sa.String) else None


def utcnow() -> datetime:
    return datetime.now(UTC)


def id_field() -> Any:
    return Field(default=None, primary_key=True, sa_type=ID)


def money_field(*, nullable: bool = False, default: Decimal | None = None, **kw: Any) -> Any:
    if default is None and not nullable:
        return Field(sa_type=MONEY, nullable=nullable, **kw)
    return Field(default=default, sa_type=MONEY, nullable=nullable, **kw)


def created_at_field() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


def ts_field(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable, index=index)


OnDelete = Literal["CASCADE", "SET NULL", "RESTRICT"]


def fk(
    target: str, *, nullable: bool = False, index: bool = True, ondelete: OnDelete | None = None
) -> Any:
    return Field(
        default=None,
        sa_type=ID,
        foreign_key=target,
        nullable=nullable,
        index=index,
        ondelete=ondelete or "RESTRICT",
    )


def enum_check(column: str, values: tuple[str, ...], name: str) -> sa.CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=name)
