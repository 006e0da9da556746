"""Batch loaders: every key asked for in one tick of the event loop becomes one query.

Loaders live on the request's context (created per request, never at module level), so a
field that many objects ask for costs one SQL statement per request whatever the list size.
"""

from __future__ import annotations

import asyncio
import functools
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as postgresql_types

from core.db import ReadQuery, RequestReader, one_of
from core.settings import Settings
from core.views import Link, RowRef, order_columns, value_label
from core.views import Page as PageLink
from models.base import utcnow
from resolvers import accounts, catalog, payments, views
from resolvers.pagination import Page, check_first

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

BatchFn = Callable[[Sequence[K]], Awaitable[dict[K, V]]]


class BatchLoader(Generic[K, V]):
    """A minimal DataLoader: `load(key)` returns the value the batch function found for it
    (or `default`); results are cached for the life of the loader (one request)."""

    __slots__ = ("_batch_fn", "_cache", "_default", "_dispatching", "_pending")

    def __init__(self, batch_fn: BatchFn[K, V], default: V) -> None:
        self._batch_fn = batch_fn
        self._default = default
        self._cache: dict[K, asyncio.Future[V]] = {}
        self._pending: list[K] | None = None
        self._dispatching: asyncio.Future[None] | None = None

    def load(self, key: K) -> asyncio.Future[V]:
        future = self._cache.get(key)
        if future is not None:
            return future
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._cache[key] = future
        if self._pending is None:
            # The batch starts on the loop's next round: it takes every key asked for
            # until then.
            self._pending = []
            self._dispatching = asyncio.ensure_future(self._dispatch())
        self._pending.append(key)
        return future

    async def _dispatch(self) -> None:
        keys, self._pending = self._pending or [], None
        try:
            found = await self._batch_fn(keys)
        except Exception as error:  # every waiter sees the failure, none hangs
            for key in keys:
                future = self._cache.pop(key)
                if not future.done():
                    future.set_exception(error)
            return
        for key in keys:
            future = self._cache[key]
            if not future.done():
                future.set_result(found.get(key, self._default))


# --------------------------------------------------------------------------- #
# loaders made from the read declarations (resolvers/views.py)
# --------------------------------------------------------------------------- #


def _selected(view_name: str, rows: Any) -> list[Any]:
    """The rows' columns, and the values of the view and of the views read from the same row
    (Balance is the contract's row), labelled by `value_label`."""
    found: list[Any] = list(rows.c)
    row = RowRef(rows)
    pending = [view_name]
    while pending:
        view = views.VIEWS[pending.pop()]
        found += [
            value.expression(row).label(value_label(view.name, name))
            for name, value in view.values.items()
        ]
        pending += [
            field.target
            for field in view.fields.values()
            if isinstance(field, Link) and field.rows is None
        ]
    return found


def _in_ids(column: Any) -> Any:
    return one_of(column, "ids")


def _everything(_column: Any) -> Any:
    return sa.true()


@functools.cache
def _rows_query(view_name: str) -> ReadQuery:
    """A view's rows by its key (parameter `ids`)."""
    view = views.VIEWS[view_name]
    assert view.rows is not None, f"{view_name} has no rows of its own"
    rows = view.rows(_in_ids).subquery("r")
    return ReadQuery(sa.select(*_selected(view_name, rows)))


@functools.cache
def _link_query(view_name: str, field: str, given: frozenset[str]) -> ReadQuery:
    """A link's rows for the parents in parameter `ids` (a root's: all of them), in order;
    the arguments in `given` are parameters `argument_<name>`."""
    link = views.VIEWS[view_name].fields[field]
    assert isinstance(link, Link) and link.rows is not None
    names = (*link.arguments, *(name for name, _ in link.from_parent))
    arguments: dict[str, Any] = {
        name: sa.bindparam(f"argument_{name}") if name in given else None for name in names
    }
    keep = _everything if link.key is None else _in_ids
    rows = link.rows(keep, **arguments).subquery("r")
    order = ([] if link.key is None else [rows.c[link.key]]) + order_columns(rows, link.order)
    selected = list(rows.c) if link.scalar is not None else _selected(link.target, rows)
    return ReadQuery(sa.select(*selected).order_by(*order))


def _before(columns: list[Any], values: list[Any]) -> Any:
    """(c1, c2, ...) < (v1, v2, ...), written so that the range on an index of the columns
    is plain: c1 <= v1 AND (c1 < v1 OR (c2 <= v2 AND ...))."""
    (column, value), rest = (columns[0], values[0]), (columns[1:], values[1:])
    if not rest[0]:
        return column < value
    return sa.and_(column <= value, sa.or_(column < value, _before(*rest)))


def _cursor_label(index: int) -> str:
    return f"cursor__{index}"


@functools.cache
def _page_query(
    view_name: str, field: str, given: frozenset[str], after: bool, postgresql: bool
) -> ReadQuery:
    """The first `limit` rows of a connection of each parent in `ids`, in its order, after
    the keyset values `after_<i>` when `after`; the arguments in `given` are parameters
    `argument_<name>`. Rows carry their cursor's parts (`_cursor_label`).

    PostgreSQL reads each parent's rows in a LATERAL subquery that stops after `limit` rows
    (an index on the parent and the order is read, not every row); SQLite, which has no
    LATERAL, numbers each parent's rows with a window function and keeps the first
    `limit`. Both filter and order by the same clauses."""
    page = views.VIEWS[view_name].fields[field]
    assert isinstance(page, PageLink)
    arguments: dict[str, Any] = {
        name: sa.bindparam(f"argument_{name}") if name in given else None for name in page.arguments
    }
    limit = sa.bindparam("limit", type_=sa.Integer)

    def after_the_cursor(rows: Any) -> list[Any]:
        if not after:
            return []
        order = [rows.c[name] for name in page.order]
        values = [sa.bindparam(f"after_{i}", type_=column.type) for i, column in enumerate(order)]
        return [_before(order, values)]

    def newest_first(rows: Any) -> list[Any]:
        return [rows.c[name].desc() for name in page.order]

    def selected(rows: Any) -> list[Any]:
        ref = RowRef(rows)
        return [
            *_selected(page.target, rows),
            *(
                part.expression(ref).label(_cursor_label(i))
                for i, part in enumerate(page.cursor.parts)
            ),
        ]

    if postgresql:
        key_type = page.rows(_in_ids, **arguments).subquery().c[page.key].type
        ids = sa.bindparam("ids", type_=postgresql_types.ARRAY(key_type))
        parents = sa.select(sa.func.unnest(ids).label("parent")).subquery("parents")
        parent = RowRef(parents).c.parent
        every = page.rows(lambda column: column == parent, **arguments).subquery("every")
        lateral = (
            sa.select(every)
            .where(*after_the_cursor(every))
            .order_by(*newest_first(every))
            .limit(limit)
            .lateral("p")
        )
        return ReadQuery(
            sa.select(*selected(lateral))
            .select_from(parents.join(lateral, sa.true()))
            .order_by(lateral.c[page.key], *newest_first(lateral))
        )
    rows = page.rows(_in_ids, **arguments).subquery("p")
    ranked = (
        sa.select(
            *selected(rows),
            sa.func.row_number()
            .over(partition_by=rows.c[page.key], order_by=newest_first(rows))
            .label("position"),
        )
        .where(*after_the_cursor(rows))
        .subquery("ranked")
    )
    return ReadQuery(
        sa.select(*[c for c in ranked.c if c.key != "position"])
        .where(ranked.c.position <= limit)
        .order_by(ranked.c[page.key], *newest_first(ranked))
    )


@functools.cache
def _count_query(view_name: str, field: str, given: frozenset[str]) -> ReadQuery:
    """How many rows a connection has for each parent in `ids` (every page together), of
    the arguments in `given` (parameters `argument_<name>`); a parent with none has no row."""
    page = views.VIEWS[view_name].fields[field]
    assert isinstance(page, PageLink) and page.counted
    arguments: dict[str, Any] = {
        name: sa.bindparam(f"argument_{name}") if name in given else None for name in page.arguments
    }
    rows = page.rows(_in_ids, **arguments).subquery("r")
    key = rows.c[page.key]
    return ReadQuery(sa.select(key, sa.func.count().label("total")).group_by(key))


def _hashable(value: Any) -> Hashable:
    return tuple(value) if isinstance(value, list) else value


class Loaders:
    """Per-request batch loaders, each made on first use: a field that many objects ask for
    costs one statement per request."""

    def __init__(self, reader: RequestReader, settings: Settings) -> None:
        self._reader = reader
        self._made: dict[Hashable, BatchLoader[Any, Any]] = {}
        # The values of the parameters of every statement made from a view.
        self._parameters = views.parameters(settings, utcnow())

    def row_of(self, view_name: str) -> BatchLoader[Any, Any]:
        """A view's row by its key: one statement per view asked for."""
        query, view = _rows_query(view_name), views.VIEWS[view_name]

        async def fetch(reader: Any, keys: Sequence[Any]) -> dict[Any, Any]:
            rows = await reader.fetch(query, ids=list(keys), **self._parameters)
            return {getattr(row, view.key): row for row in rows}

        return self._loader(("row_of", view_name), fetch, None)

    def linked(self, view_name: str, field: str, **arguments: Any) -> BatchLoader[Any, Any]:
        """The rows a link of `view_name` reads for each parent key (a root's: for the key
        None): a list or one row (None when none). One statement per link and arguments."""
        link = views.VIEWS[view_name].fields[field]
        assert isinstance(link, Link)
        given = {name: value for name, value in arguments.items() if value is not None}
        query = _link_query(view_name, field, frozenset(given))
        values = {f"argument_{name}": value for name, value in given.items()}

        async def fetch(reader: Any, keys: Sequence[Any]) -> dict[Any, Any]:
            rows = await reader.fetch(query, ids=list(keys), **values, **self._parameters)
            if link.key is None:
                return {None: rows if link.many else (rows[0] if rows else None)}
            if not link.many:
                return {getattr(row, link.key): row for row in rows}
            found: dict[Any, list[Any]] = defaultdict(list)
            for row in rows:
                found[getattr(row, link.key)].append(row)
            return found

        name = ("linked", view_name, field, tuple(sorted(given.items())))
        return self._loader(name, fetch, [] if link.many else None)

    def page(
        self,
        view_name: str,
        field: str,
        *,
        first: int | None,
        after: str | None,
        max_page_size: int,
        **arguments: Any,
    ) -> BatchLoader[Any, Page[Any]]:
        """A page of a connection of each parent key: its first `first` rows (at most the
        page's `max_first`, else `max_page_size`) after the cursor `after`, of the rows its
        arguments filter. One statement. Raises DomainError for a value the page refuses
        (`first`, the page's check of its arguments, then `after`)."""
        page = views.VIEWS[view_name].fields[field]
        assert isinstance(page, PageLink)
        limit = check_first(first, page.max_first or max_page_size)
        given = {
            name: value for name, value in page.checked(arguments).items() if value is not None
        }
        keyset = None if after is None else page.cursor.read(after)
        query = _page_query(
            view_name, field, frozenset(given), keyset is not None, self._reader.is_postgresql
        )
        values = {f"argument_{name}": value for name, value in given.items()}
        values.update({f"after_{i}": value for i, value in enumerate(keyset or ())})
        labels = [_cursor_label(i) for i in range(len(page.cursor.parts))]

        async def fetch(reader: Any, keys: Sequence[Any]) -> dict[Any, Page[Any]]:
            rows = await reader.fetch(
                query, ids=list(keys), limit=limit + 1, **values, **self._parameters
            )
            grouped: dict[Any, list[Any]] = defaultdict(list)
            for row in rows:
                grouped[getattr(row, page.key)].append(row)
            pages = {}
            for key in keys:
                items = grouped[key][:limit]
                pages[key] = Page(
                    items=items,
                    cursors=[
                        page.cursor.text([getattr(row, label) for label in labels]) for row in items
                    ],
                    has_next_page=len(grouped[key]) > limit,
                    has_previous_page=after is not None,
                )
            return pages

        name = (
            "page",
            view_name,
            field,
            limit,
            after,
            tuple(sorted((key, _hashable(value)) for key, value in given.items())),
        )
        return self._loader(name, fetch, None)

    def count(self, view_name: str, field: str, **arguments: Any) -> BatchLoader[Any, int]:
        """How many rows a connection of each parent key has, of its arguments (`totalCount`,
        every page together). One statement for every parent asked for. Raises DomainError
        for an argument the page refuses."""
        page = views.VIEWS[view_name].fields[field]
        assert isinstance(page, PageLink)
        given = {
            name: value for name, value in page.checked(arguments).items() if value is not None
        }
        query = _count_query(view_name, field, frozenset(given))
        values = {f"argument_{name}": value for name, value in given.items()}

        async def fetch(reader: Any, keys: Sequence[Any]) -> dict[Any, int]:
            rows = await reader.fetch(query, ids=list(keys), **values, **self._parameters)
            return {getattr(row, page.key): int(row.total) for row in rows}

        name = (
            "count",
            view_name,
            field,
            tuple(sorted((key, _hashable(value)) for key, value in given.items())),
        )
        return self._loader(name, fetch, 0)

    def _loader(
        self,
        name: Hashable,
        fetch: Callable[[Any, Sequence[Any]], Awaitable[dict[Any, Any]]],
        default: Any,
    ) -> BatchLoader[Any, Any]:
        loader = self._made.get(name)
        if loader is None:
            reader = self._reader

            async def batch(keys: Sequence[Any]) -> dict[Any, Any]:
                return await fetch(reader, keys)

            loader = self._made[name] = BatchLoader(batch, default=default)
        return loader

    @property
    def catalog_item(self) -> BatchLoader[tuple[str, int], Any]:
        """Catalogue rows by ("Type", pk): one statement per type asked for."""
        return self._loader("catalog_item", _catalog_items, None)

    @property
    def contract_by_number(self) -> BatchLoader[str, Any]:
        return self._loader("contract_by_number", accounts.contracts_by_number, None)

    @property
    def receipt_of_payment(self) -> BatchLoader[int, Any]:
        return self._loader("receipt_of_payment", payments.receipt_for_payment, None)

    @property
    def payment_by_id(self) -> BatchLoader[int, Any]:
        return self._loader("payment_by_id", payments.payments_by_id, None)


async def _catalog_items(
    reader: Any, keys: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], Any]:
    by_type: dict[str, list[int]] = {}
    for type_name, pk in keys:
        by_type.setdefault(type_name, []).append(pk)
    # One statement per type, asked for together (on PostgreSQL: sent together).
    found_per_type = await asyncio.gather(
        *(catalog.catalog_items_by_id(reader, type_name, pks) for type_name, pks in by_type.items())
    )
    found: dict[tuple[str, int], Any] = {}
    for type_name, rows in zip(by_type, found_per_type, strict=True):
        found.update(((type_name, pk), row) for pk, row in rows.items())
    return found
