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

# The arguments every connection field takes (lists are forward-only, SPEC §4).
FIRST = strawberry.argument(
    description="How many items to return: 0 to 100, 20 when not given. Above 100: a GraphQL "
    "error BAD_USER_INPUT."
)
AFTER = strawberry.argument(
    description="Return the items after this cursor (an `endCursor` or an edge's `cursor` "
    "of this list); none: from the start. A cursor that is not one: a GraphQL error "
    "BAD_USER_INPUT."
)


@strawberry.type(
    description="Where a page lies in its list (Relay). Lists go forward only: ask for the "
    "next page with `after: endCursor` while `hasNextPage` is true."
)
class PageInfo:
    has_next_page: bool = strawberry.field(description="true when more items follow this page.")
    has_previous_page: bool = strawberry.field(
        description="true when the page was asked for with `after`: items come before it."
    )
    start_cursor: str | None = strawberry.field(
        description="The cursor of the page's first item; null when the page is empty."
    )
    end_cursor: str | None = strawberry.field(
        description="The cursor of the page's last item, to pass as `after` for the next "
        "page; null when the page is empty."
    )


# Edge[T] and Connection[T] become one GraphQL type per item type (PaymentEdge,
# PaymentConnection, ...): their descriptions are written to read well for every one.
@strawberry.type(description="One item of a page, with its cursor.")
class Edge(Generic[T]):
    cursor: str = strawberry.field(
        description="Opaque: pass it as `after` to continue the list after this item."
    )
    node: T = strawberry.field(description="The item.")


@strawberry.type(
    description="One page of a list (a Relay connection), in the order the field that "
    "returns it states: `edges` with the items and `pageInfo` to ask for the next page."
)
class Connection(Generic[T]):
    edges: list[Edge[T]] = strawberry.field(
        description="The page's items in order, each with its cursor; empty past the end."
    )
    page_info: PageInfo = strawberry.field(
        description="Whether more items follow, and the cursor to continue from."
    )
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
