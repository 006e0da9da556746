"""Relay connections: `edges { cursor node }` and `pageInfo` (SPEC §4)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, Self, TypeVar

import strawberry

from core.errors import DomainError
from resolvers.pagination import Page, check_first, decode_id_cursor
from schema.context import Info
from schema.errors import bad_input

T = TypeVar("T")


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    # Not a GraphQL field: how many nodes every page holds together, read when `totalCount`
    # asks (on the connections that have it: `CountedConnection`).
    count: strawberry.Private[Callable[[], Awaitable[int]] | None] = None

    @classmethod
    def from_page(cls, page: Page[Any], to_node: Callable[[Any], T]) -> Self:
        edges = [
            Edge(cursor=cursor, node=to_node(item))
            for item, cursor in zip(page.items, page.cursors, strict=True)
        ]
        return cls(
            edges=edges,
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                has_previous_page=page.has_previous_page,
                start_cursor=page.cursors[0] if page.cursors else None,
                end_cursor=page.cursors[-1] if page.cursors else None,
            ),
        )


@strawberry.type
class CountedConnection(Connection[T]):
    """A connection with `totalCount`: subclassed once per node type with the connection's
    own name (`class PaymentConnection(CountedConnection[Payment])`), so that adding the
    field renames nothing."""

    @strawberry.field(
        description="How many nodes there are on every page together, of the same arguments "
        '(`first` and `after` aside): for a front end\'s "N items".'
    )
    async def total_count(self) -> int:
        assert self.count is not None, "a counted connection made without its count"
        return await self.count()


def page_arguments(info: Info, first: int | None, after: str | None) -> tuple[int, int | None]:
    """`first` (at most KABINET_MAX_PAGE_SIZE, else a GraphQL error) and the id in `after`."""
    try:
        return check_first(first, info.context.settings.max_page_size), decode_id_cursor(after)
    except DomainError as error:
        raise bad_input(error) from None
