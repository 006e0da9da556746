"""The vocabulary of read declarations: one `View` per GraphQL type (issue 14).

A view says, once, where a type's rows come from and what each of its fields is:

- `Value`: an SQL expression over the type's row (a plain column or a derived value such
  as the available balance or the tariff in force), and how it is written (`Kind`: money
  with two places, a date, a UTC time, a global ID of a type, a cursor, ...);
- `Link`: another view's rows for this row (one or many), found by a function that selects
  them for any filter on the column naming the parent: `rows(filter)`;
- `Page`: a connection of another view's rows, newest first by its ordering columns, cut
  at `first`, with a cursor written by SQL as the executor writes it (`Cursor`).

Both ways of answering are made from these declarations and from nothing else:
`resolvers/loaders.py` turns a link into a per-request batch loader (one statement for all
the parents asked for: the filter is `key IN (...)`), and `schema/sql_answers.py` turns a
whole document into one statement that builds the JSON in PostgreSQL (the filter is
`key = parent.column`, correlated). The encoders of each kind are here, as the Python value
the executor serialises and as the SQL text PostgreSQL writes; `tests/test_views.py` holds
the two forms of every kind to the same text.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from core.ids import encode_cursor, to_global_id

Filter = Callable[[Any], Any]  # a column naming the parent -> a condition on it
Rows = Callable[[Filter], sa.Select[Any]]


def _text(sql: str) -> Any:
    return sa.literal_column(sql)


class Kind(enum.Enum):
    """How a value is written in an answer."""

    PLAIN = "plain"  # strings, integers, booleans and enum names: as they are
    MONEY = "money"  # a decimal string with two places: "1234.50"
    DATE = "date"  # "YYYY-MM-DD"
    DATETIME = "datetime"  # Python's isoformat() of the UTC time
    ID = "id"  # a global ID: url-safe base64 of "Type:pk" (the Value names the type)
    CURSOR = "cursor"  # url-safe base64 of the key


def base64url_sql(value: Any) -> ColumnElement[Any]:
    """url-safe base64 of a text, as Python's base64.urlsafe_b64encode (PostgreSQL)."""
    encoded = sa.func.encode(sa.func.convert_to(value, _text("'UTF8'")), _text("'base64'"))
    # PostgreSQL breaks base64 lines at 76 characters; url-safe alphabet as Python's.
    return sa.func.translate(encoded, _text("'+/' || chr(10)"), _text("'-_'"))


def _datetime_sql(value: Any) -> ColumnElement[Any]:
    utc = sa.func.timezone(_text("'UTC'"), value)
    whole = sa.func.to_char(utc, _text("""'YYYY-MM-DD"T"HH24:MI:SS"+00:00"'"""))
    precise = sa.func.to_char(utc, _text("""'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'"""))
    return sa.case(
        (sa.func.to_char(value, _text("'US'")) == _text("'000000'"), whole), else_=precise
    )


def json_sql(kind: Kind, value: Any, type_name: str | None = None) -> ColumnElement[Any]:
    """`value` as PostgreSQL writes it into an answer's JSON (the executor's text)."""
    if kind is Kind.MONEY:
        return sa.cast(sa.func.round(value, _text("2")), sa.Text)
    if kind is Kind.DATE:
        return sa.func.to_char(value, _text("'YYYY-MM-DD'"))
    if kind is Kind.DATETIME:
        return _datetime_sql(value)
    if kind is Kind.ID:
        assert type_name is not None
        return base64url_sql(_text(f"'{type_name}:'") + sa.cast(value, sa.Text))
    if kind is Kind.CURSOR:
        return base64url_sql(sa.cast(value, sa.Text))
    return value


def python_value(kind: Kind, value: Any, type_name: str | None = None) -> Any:
    """`value` as the executor takes it (its scalars write the rest)."""
    if value is None:
        return None
    if kind is Kind.ID:
        assert type_name is not None
        return to_global_id(type_name, value)
    if kind is Kind.CURSOR:
        return encode_cursor(value)
    return value


@dataclass(frozen=True, slots=True)
class Value:
    """A field read from the row: `sql(row)` is its value, written as `kind`."""

    sql: Callable[[Any], Any]
    kind: Kind = Kind.PLAIN
    type_: Any = None  # the SQL type of a derived value (so that SQLite's rows decode it)
    id_of: str | None = None  # Kind.ID: the type named in the ID

    def expression(self, row: Any) -> ColumnElement[Any]:
        found = self.sql(row)
        return found if self.type_ is None else sa.type_coerce(found, self.type_)


def column(name: str, kind: Kind = Kind.PLAIN) -> Value:
    return Value(lambda row: row.c[name], kind)


def global_id(type_name: str, key: str = "id") -> Value:
    return Value(lambda row: row.c[key], Kind.ID, id_of=type_name)


def const(parameter: str, type_: Any) -> Value:
    """A value the request gives (a statement parameter, e.g. the currency)."""
    return Value(lambda _row: sa.bindparam(parameter, type_=type_), Kind.PLAIN, type_=type_)


@dataclass(frozen=True, slots=True)
class Link:
    """Another view's rows for this row.

    `rows(filter)` selects the target's rows with the column `key` naming the parent, for
    the parents `filter(key column)` admits; `parent` is the column of this row that `key`
    is compared with. `rows=None` is the same row read as another type (Balance is the
    contract's row). `order` lists the rows' columns a list is ordered by ("-id": newest
    first)."""

    target: str
    rows: Rows | None = None
    key: str | None = "parent_key"  # None: a root's rows (no parent)
    parent: str = "id"
    many: bool = False
    order: tuple[str, ...] = ()
    # Arguments the rows take (`rows(filter, name=value)`, None when not given), and the
    # check of their values (a DomainError for one the field refuses), run by both ways.
    arguments: tuple[str, ...] = ()
    check: Callable[[Mapping[str, Any]], None] | None = None
    # Arguments the parent's row gives rather than the document ((name, its column), ...):
    # an object made for arguments passes them on to its lists (ExpenseSummary's period).
    from_parent: tuple[tuple[str, str], ...] = ()
    # A list of scalars rather than objects: the rows' column `scalar`, written as `kind`
    # (`target` is then the GraphQL name of the scalar, for reading only).
    scalar: str | None = None
    kind: Kind = Kind.PLAIN


@dataclass(frozen=True, slots=True)
class Cursor:
    """How a page's cursor is written and read back.

    Written: url-safe base64 of the texts of `parts` (values over the row) joined by "|", as
    `core.ids.encode_cursor` writes them; each part as its kind's text (`cursor_text`: a time
    as Python's isoformat()), so that PostgreSQL's text (`sql`) is the executor's (`text`).
    Read: `read(after)` gives the values of the page's `order` columns the page goes on
    after, or raises a DomainError (field "after") for a cursor that is not valid."""

    parts: tuple[Value, ...]
    read: Callable[[str], tuple[Any, ...]]

    def sql(self, row: Any) -> ColumnElement[Any]:
        """The cursor of `row`, as PostgreSQL writes it."""
        texts = [
            sa.cast(json_sql(part.kind, part.sql(row), part.id_of), sa.Text) for part in self.parts
        ]
        joined = texts[0]
        for text in texts[1:]:
            joined = joined + _text("'|'") + text
        return base64url_sql(joined)

    def text(self, values: Sequence[Any]) -> str:
        """The cursor of a row whose parts' values (`part.expression(row)`) are `values`."""
        return encode_cursor(
            *(cursor_text(part.kind, value) for part, value in zip(self.parts, values, strict=True))
        )


def cursor_text(kind: Kind, value: Any) -> str:
    """A cursor part's text: what `json_sql(kind, ...)` writes, cast to text."""
    if kind in (Kind.DATE, Kind.DATETIME):
        return str(value.isoformat())
    if kind is Kind.PLAIN and isinstance(value, int | str) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"a cursor part of kind {kind} and type {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class Page:
    """A connection of another view's rows for this row, ordered by the columns `order`,
    each descending (newest first), cut at `first` (at most `max_first`; None: the
    settings' page size) and going on after the row whose cursor `after` is (`cursor`).

    `rows(filter, **arguments)` selects the rows for the parents `filter(key column)`
    admits, as a `Link`'s do; `arguments` names the field's filters the rows take (a
    statement parameter each, None when not given), and `check(given)` checks their values
    and returns them as the rows take them (a DomainError for one the field refuses); both
    ways run it, on the arguments as `plain_argument` writes them.

    `counted`: the connection has `totalCount`, the number of the rows its arguments select
    for the parent, on every page together (one count over `rows`: the index the page reads
    has the parent's column first, so it is one indexed count)."""

    target: str
    rows: Callable[..., sa.Select[Any]]
    cursor: Cursor
    order: tuple[str, ...] = ("id",)
    key: str = "parent_key"
    parent: str = "id"
    max_first: int | None = None
    arguments: tuple[str, ...] = ()
    check: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None
    counted: bool = False

    def checked(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments' values as the rows take them (DomainError: refused)."""
        values = {name: given.get(name) for name in self.arguments}
        return values if self.check is None else dict(self.check(values))


def plain_argument(value: Any) -> Any:
    """An argument's value as a check and the rows take it: an enum by its value, a list
    item by item (the executor and the compiler get enum members from GraphQL)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [plain_argument(item) for item in value]
    return value


Field = Value | Link | Page


@dataclass(frozen=True, slots=True)
class View:
    """The one read declaration of a GraphQL type."""

    name: str
    fields: Mapping[str, Field]
    # The rows of the type by its key (`key` the column): node(id), payloads, roots.
    rows: Rows | None = None
    key: str = "id"
    values: Mapping[str, Value] = field(init=False)

    def __post_init__(self) -> None:
        values = {name: f for name, f in self.fields.items() if isinstance(f, Value)}
        object.__setattr__(self, "values", values)


def value_label(view: str, name: str) -> str:
    """The label of a view's value in a loader's row."""
    return f"{view}__{name}"


def order_columns(rows: Any, order: tuple[str, ...]) -> list[Any]:
    return [rows.c[name[1:]].desc() if name.startswith("-") else rows.c[name] for name in order]


class RowRef:
    """A row of a named FROM item (a subquery's alias), whose columns are referred to by
    name: a value or a filter written over it may sit in a nested select (a union inside a
    scalar subquery, say) without that select taking the FROM item into its own FROM list.
    `row.c.balance` and `row.c["balance"]` are columns of the row."""

    __slots__ = ("c", "name")

    def __init__(self, rows: Any) -> None:
        self.name: str = rows.name
        self.c = _Columns(
            {
                column.key: sa.literal_column(f'{rows.name}."{column.key}"', type_=column.type)
                for column in rows.c
            }
        )


class _Columns:
    __slots__ = ("_columns",)

    def __init__(self, columns: dict[str, Any]) -> None:
        self._columns = columns

    def __getitem__(self, name: str) -> Any:
        return self._columns[name]

    def __getattr__(self, name: str) -> Any:
        try:
            return self._columns[name]
        except KeyError:
            raise AttributeError(name) from None
