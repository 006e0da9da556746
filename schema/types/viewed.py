"""GraphQL objects read through their declaration (resolvers/views.py).

A `Viewed` object is a view's row: a loader's row with the view's values labelled, or, for
an object a mutation or a search names, just its key (its row is then loaded when a field
asks, one statement per type and request). Its fields are `value()` and `link()` fields
whose resolvers know nothing of the type: what a field is comes from the view. The
one-statement answers (schema/sql_answers.py) read the same declarations.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, ClassVar, TypeVar

import strawberry

from core.errors import DomainError
from core.views import Link, Page, plain_argument, python_value, value_label
from resolvers.views import VIEWS
from schema.context import Info
from schema.errors import bad_input
from schema.types.pagination import Connection, CountedConnection

T = TypeVar("T", bound="Viewed")

# The GraphQL class of each view, by view name (filled by `viewed`).
CLASSES: dict[str, type[Viewed]] = {}


@strawberry.type
class Viewed:
    VIEW: ClassVar[str]
    # Not GraphQL fields: a loader's row (or None: only the key is known) and the key.
    row: strawberry.Private[Any]
    key: strawberry.Private[Any]

    @classmethod
    def of_row(cls: type[T], row: Any) -> T:
        return cls(row=row, key=getattr(row, VIEWS[cls.VIEW].key, None))  # type: ignore[call-arg]

    @classmethod
    def of_key(cls: type[T], key: Any) -> T:
        """An object whose row is loaded when a field asks for it."""
        return cls(row=None, key=key)  # type: ignore[call-arg]

    @classmethod
    def from_row(cls: type[T], row: Any) -> T:
        """An object named by a row of its table (a mutation's, a search's)."""
        return cls.of_key(getattr(row, VIEWS[cls.VIEW].key))

    async def loaded_row(self, info: Info) -> Any:
        if self.row is None:
            self.row = await info.context.loaders.row_of(self.VIEW).load(self.key)
        return self.row


def viewed(cls: type[T]) -> type[T]:
    """Register the GraphQL class of the view `cls.VIEW` (after @strawberry.type)."""
    assert cls.VIEW in VIEWS, f"no view {cls.VIEW}"
    CLASSES[cls.VIEW] = cls
    return cls


def _value_of(root: Viewed, name: str) -> Any:
    value = VIEWS[root.VIEW].values[name]
    return python_value(value.kind, getattr(root.row, value_label(root.VIEW, name)), value.id_of)


async def _value_later(root: Viewed, info: Info, name: str) -> Any:
    await root.loaded_row(info)
    return _value_of(root, name)


def value(*, name: str | None = None, description: str | None = None) -> Any:
    """A field whose value is the view's `Value` of the same (GraphQL) name (`name`: when
    the Python name is not it, e.g. `from_`)."""

    def resolve(root: strawberry.Parent[Viewed], info: strawberry.Info) -> Any:
        if root.row is None:
            return _value_later(root, info, info.field_name)
        return _value_of(root, info.field_name)

    return strawberry.field(resolver=resolve, name=name, description=description)


def _checked(link: Link, arguments: dict[str, Any]) -> None:
    if link.check is not None:
        try:
            link.check(arguments)
        except DomainError as error:
            raise bad_input(error) from None


def _objects(link: Link, found: Any) -> Any:
    if link.scalar is not None:
        return [python_value(link.kind, getattr(row, link.scalar)) for row in found]
    target = CLASSES[link.target]
    if link.many:
        return [target.of_row(row) for row in found]
    return None if found is None else target.of_row(found)


async def linked_objects(root: Viewed, info: Info, name: str, **arguments: Any) -> Any:
    """The objects (or scalars) the view's `Link` called `name` reads for `root`; a GraphQL
    error for an argument the link's check refuses."""
    link = VIEWS[root.VIEW].fields[name]
    assert isinstance(link, Link)
    _checked(link, arguments)
    if link.rows is None:  # the same row, as another type
        row = await root.loaded_row(info)
        return CLASSES[link.target](row=row, key=root.key)  # type: ignore[call-arg]
    if link.from_parent:
        row = await root.loaded_row(info)
        arguments = {**arguments, **{arg: getattr(row, c) for arg, c in link.from_parent}}
    key = None if link.key is None else getattr(await root.loaded_row(info), link.parent)
    found = await info.context.loaders.linked(root.VIEW, name, **arguments).load(key)
    return _objects(link, found)


def link(*, description: str | None = None, deprecation_reason: str | None = None) -> Any:
    """A field whose objects are the view's `Link` of the same (GraphQL) name."""

    def resolve(root: strawberry.Parent[Viewed], info: strawberry.Info) -> Awaitable[Any]:
        return linked_objects(root, info, info.field_name)

    return strawberry.field(
        resolver=resolve, description=description, deprecation_reason=deprecation_reason
    )


async def paged(
    root: Viewed,
    info: Info,
    name: str,
    *,
    first: int | None,
    after: str | None,
    connection: type[Connection[Any]] = Connection,
    **arguments: Any,
) -> Any:
    """A page of the view's `Page` called `name` for `root` (a `connection`: for a counted
    page, a CountedConnection whose `totalCount` is read when asked); a GraphQL error for a
    `first`, an argument or a cursor the page refuses."""
    page_link = VIEWS[root.VIEW].fields[name]
    assert isinstance(page_link, Page)
    assert page_link.counted or not issubclass(connection, CountedConnection)
    given = {argument: plain_argument(value) for argument, value in arguments.items()}
    loaders = info.context.loaders
    try:
        loader = loaders.page(
            root.VIEW,
            name,
            first=first,
            after=after,
            max_page_size=info.context.settings.max_page_size,
            **given,
        )
    except DomainError as error:
        raise bad_input(error) from None
    if page_link.parent == VIEWS[root.VIEW].key and root.key is not None:
        key = root.key
    else:
        key = getattr(await root.loaded_row(info), page_link.parent)
    page = await loader.load(key)
    found = connection.from_page(page, CLASSES[page_link.target].of_row)
    if page_link.counted:
        found.count = lambda: loaders.count(root.VIEW, name, **given).load(key)
    return found


async def root_objects(info: Info, name: str, *, key: Any = None, **arguments: Any) -> Any:
    """The objects of the root field `name` (a `Link` of the view "Query"; `key` the
    caller's session for a link with a key); a GraphQL error for an argument the link's
    check refuses."""
    link = VIEWS["Query"].fields[name]
    assert isinstance(link, Link)
    _checked(link, arguments)
    found = await info.context.loaders.linked("Query", name, **arguments).load(key)
    return _objects(link, found)
