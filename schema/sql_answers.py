"""Whole answers from one SQL statement (PostgreSQL), made from the read declarations.

The executor answers a document field by field: an object per row, a resolver call per
field, a loader per list, then graphql-core completes every value. Here a validated query
whose every field has a read declaration (resolvers/views.py) is turned, once, into one
SELECT that builds the JSON of the answer inside PostgreSQL (json_build_object and json_agg
over the rows the declarations select), the way PostGraphile answers. What a field is comes
from its declaration and nowhere else: the loaders the executor uses are made from the same
ones (resolvers/loaders.py). The same statement finds the caller of the access token
(auth/sessions.CALLER) and answers `me` only for a subscriber who may read it.

The executor answers everything else: a field with no declaration, an argument the
declaration does not take, a directive, a fragment on another type, a response key given
twice, a `first` the executor would refuse (so that it reports the error), a caller who is
not a signed-in subscriber, SQLite.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    NonNullTypeNode,
    NullValueNode,
    OperationType,
    SelectionSetNode,
    Undefined,
    VariableNode,
    get_named_type,
    get_operation_ast,
    value_from_ast,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.sql.elements import ColumnElement

from auth.sessions import CALLER, Principal, caller_parameters, principal_of
from core.db import ReadQuery, RequestReader
from core.errors import DomainError
from core.settings import Settings
from core.views import Link, Page, RowRef, Value, json_sql, order_columns, plain_argument
from models.base import UTCDateTime, utcnow
from resolvers import accounts, views
from resolvers.pagination import DEFAULT_PAGE_SIZE
from schema.documents import DOCUMENT_CACHE_BYTES, DOCUMENT_CACHE_ENTRIES, SizedCache

log = logging.getLogger("kabinet.graphql")

# json_build_object takes at most 100 arguments: 50 keys.
MAX_KEYS = 50
_EMPTY_LIST: Any = sa.literal_column("'[]'::json")


class NotCompiled(Exception):
    """The document has something the declarations do not build: the executor answers it."""


def _text(sql: str) -> Any:
    return sa.literal_column(sql)


def _object(pairs: list[Any]) -> ColumnElement[Any]:
    return sa.func.json_build_object(*pairs)


def _list_of(value: Any, order: list[Any]) -> ColumnElement[Any]:
    aggregated = sa.func.json_agg(aggregate_order_by(value, *order) if order else value)
    return sa.func.coalesce(aggregated, _EMPTY_LIST)


# --------------------------------------------------------------------------- #
# the compiler
# --------------------------------------------------------------------------- #


@dataclass(frozen=True, slots=True)
class _First:
    """A `first` argument: its statement parameter, and where its value comes from."""

    param: str
    variable: str | None
    value: int | None  # the literal, or the variable's default
    required: bool  # a variable of type Int!
    maximum: int | None  # the page's own largest `first` (None: the settings')


@dataclass(frozen=True, slots=True)
class _Argument:
    """A literal argument: its statement parameter and its value."""

    param: str
    value: Any


# The Python types of the literal arguments taken, and their SQL types.
_PARAMETER_TYPES: dict[type, Any] = {
    str: sa.Text(),
    int: sa.Integer(),
    bool: sa.Boolean(),
    date: sa.Date(),
    datetime: UTCDateTime(),
}


@dataclass(frozen=True, slots=True)
class CompiledQuery:
    with_caller: ReadQuery  # for a request with an access token: the caller's row and `data`
    without_caller: ReadQuery | None  # without one: `data` (None: the answer needs a caller)
    needs_caller: bool  # the answer is the caller's own (`me`, `mySessions`)
    firsts: tuple[_First, ...]
    arguments: tuple[_Argument, ...]

    def parameters(self, variables: dict[str, Any], max_page_size: int) -> dict[str, Any] | None:
        """The values of the arguments, or None when one is a value the executor would
        refuse (it then answers, errors included)."""
        found: dict[str, Any] = {argument.param: argument.value for argument in self.arguments}
        for first in self.firsts:
            value = first.value
            maximum = first.maximum or max_page_size
            if first.variable is not None and first.variable in variables:
                value = variables[first.variable]
            if value is None:
                if first.required:
                    return None
                value = min(DEFAULT_PAGE_SIZE, maximum)
            if type(value) is not int or not 0 <= value <= maximum:
                return None
            found[first.param] = value
        return found


class _Builder:
    def __init__(self, schema: GraphQLSchema, document: DocumentNode) -> None:
        self.schema = schema
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.firsts: list[_First] = []
        self.arguments: list[_Argument] = []
        self.variables: dict[str, Any] = {}
        self.needs_caller = False
        self.public: sa.Select[Any] | None = None  # the answer without a caller, if it needs none
        self._names = 0
        self._parents: list[str] = []
        # Who asks (auth/sessions.CALLER): `me` is this row's subscriber.
        self.caller = CALLER.cte("caller")

    def name(self, prefix: str) -> str:
        self._names += 1
        return f"{prefix}{self._names}"

    def type_of(self, node: FieldNode) -> str:
        parent = self.schema.type_map[self._parents[-1]]
        assert isinstance(parent, GraphQLObjectType)
        return get_named_type(parent.fields[node.name.value].type).name

    def _arguments(self, node: FieldNode) -> dict[str, Any]:
        return {argument.name.value: argument.value for argument in node.arguments or ()}

    def first_argument(self, given: Any, maximum: int | None) -> Any:
        """A page's `first` (at most `maximum`; None: the settings' page size)."""
        param = self.name("first")
        if given is None or isinstance(given, NullValueNode):
            self.firsts.append(_First(param, None, None, required=False, maximum=maximum))
        elif isinstance(given, IntValueNode):
            self.firsts.append(_First(param, None, int(given.value), False, maximum))
        elif isinstance(given, VariableNode):
            name = given.name.value
            default, required = self.variables[name]
            self.firsts.append(_First(param, name, default, required=required, maximum=maximum))
        else:
            raise NotCompiled("first given as something else")
        return sa.bindparam(param, type_=sa.Integer)

    def literal_arguments(
        self,
        node: FieldNode,
        names: tuple[str, ...],
        checked: Callable[[dict[str, Any]], Mapping[str, Any]],
        taken: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        """The arguments `names` of a field, each given as a literal (a statement parameter
        each, with the value the executor would have: graphql-core's coercion of the
        literal, as `plain_argument` writes it), as `checked` returns them; None for one not
        given. Another argument (but those in `taken`), a variable, or a value `checked`
        refuses (DomainError): the executor answers."""
        given = self._arguments(node)
        if set(given) - set(names) - taken:
            raise NotCompiled("an argument the declaration does not take")
        parent = self.schema.type_map[self._parents[-1]]
        assert isinstance(parent, GraphQLObjectType)
        declared = parent.fields[node.name.value].args
        values: dict[str, Any] = {}
        for name in names:
            literal = given.get(name)
            if literal is None or isinstance(literal, NullValueNode):
                values[name] = None
                continue
            if isinstance(literal, VariableNode) or name not in declared:
                raise NotCompiled("an argument given as a variable")
            value = value_from_ast(literal, declared[name].type)
            if value is Undefined or _parameter_type(plain_argument(value)) is None:
                raise NotCompiled("an argument of another kind")
            values[name] = plain_argument(value)
        try:
            values = dict(checked(values))
        except DomainError:
            raise NotCompiled("an argument the field refuses") from None
        found: dict[str, Any] = {}
        for name, value in values.items():
            type_ = None if value is None else _parameter_type(value)
            if type_ is None:
                found[name] = None
                continue
            param = self.name("argument")
            self.arguments.append(_Argument(param, value))
            found[name] = sa.bindparam(param, type_=type_)
        return found

    def fields(self, selection_set: SelectionSetNode | None, type_name: str) -> Iterator[Any]:
        if selection_set is None:
            return
        for selection in selection_set.selections:
            if selection.directives:
                raise NotCompiled("a directive")
            if isinstance(selection, FieldNode):
                yield selection
                continue
            if isinstance(selection, InlineFragmentNode):
                fragment: Any = selection
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments[selection.name.value]
                if fragment.directives:
                    raise NotCompiled("a directive")
            else:
                raise NotCompiled("an unknown selection")
            condition = fragment.type_condition
            if condition is not None and condition.name.value != type_name:
                raise NotCompiled("a fragment on another type")
            yield from self.fields(fragment.selection_set, type_name)

    def _pairs(
        self, node: FieldNode | Any, type_name: str, value_of: Callable[[FieldNode, str], Any]
    ) -> ColumnElement[Any]:
        pairs: list[Any] = []
        keys: set[str] = set()
        self._parents.append(type_name)
        try:
            for field in self.fields(node.selection_set, type_name):
                key = (field.alias or field.name).value
                if key in keys:
                    raise NotCompiled("a response key given twice")
                keys.add(key)
                name = field.name.value
                value = _text(f"'{type_name}'") if name == "__typename" else value_of(field, name)
                # Keys are GraphQL names ([_A-Za-z][_0-9A-Za-z]*): safe as literals.
                pairs += [_text(f"'{key}'"), value]
        finally:
            self._parents.pop()
        if len(keys) > MAX_KEYS:
            raise NotCompiled("too many fields for one object")
        return _object(pairs)

    def object(self, node: FieldNode | Any, view_name: str, row: RowRef | None) -> Any:
        """The JSON object `node` selects on the view `view_name`'s row `row`."""
        view = views.VIEWS.get(view_name)
        if view is None:
            raise NotCompiled(f"type {view_name}")

        def value_of(field: FieldNode, name: str) -> Any:
            declared = view.fields.get(name)
            if declared is None:
                raise NotCompiled(f"field {view_name}.{name}")
            if isinstance(declared, Value):
                if field.arguments:
                    raise NotCompiled("an argument")
                assert row is not None
                return json_sql(declared.kind, declared.sql(row), declared.id_of)
            if isinstance(declared, Page):
                assert row is not None
                return self.page(field, declared, row)
            return self.link(field, name, declared, row)

        return self._pairs(node, view_name, value_of)

    def link(self, node: FieldNode, name: str, link: Link, row: RowRef | None) -> Any:
        if link.rows is None:  # the same row, as another type
            if node.arguments:
                raise NotCompiled("an argument")
            return self.object(node, link.target, row)
        arguments = self.literal_arguments(node, link.arguments, _checked_by(link))
        if link.from_parent:
            assert row is not None
            arguments.update({arg: row.c[column] for arg, column in link.from_parent})
        if link.key is None:
            if name == "me":
                raise NotCompiled("me is not a link")
            statement = link.rows(_everything, **arguments)
        else:
            assert row is not None
            parent = row.c[link.parent]
            statement = link.rows(lambda column: column == parent, **arguments)
        rows = statement.subquery(self.name("r"))
        if link.scalar is not None:
            if node.selection_set is not None:
                raise NotCompiled("a selection on a scalar")
            written = json_sql(link.kind, rows.c[link.scalar])
            listed = _list_of(written, order_columns(rows, link.order))
            return sa.select(listed).select_from(rows).scalar_subquery()
        built = self.object(node, link.target, RowRef(rows))
        if link.many:
            listed = _list_of(built, order_columns(rows, link.order))
            return sa.select(listed).select_from(rows).scalar_subquery()
        return sa.select(built).select_from(rows).limit(1).scalar_subquery()

    def page(self, node: FieldNode, page: Page, row: RowRef) -> Any:
        given = self._arguments(node)
        if not isinstance(given.get("after", NullValueNode()), NullValueNode):
            raise NotCompiled("a page after a cursor")
        first = self.first_argument(given.get("first"), page.max_first)
        arguments = self.literal_arguments(
            node, page.arguments, page.checked, taken=frozenset({"first", "after"})
        )
        parent = row.c[page.parent]
        every = page.rows(lambda column: column == parent, **arguments)
        newest = every.subquery(self.name("all"))
        ordered = sa.select(newest).order_by(*(newest.c[name].desc() for name in page.order))
        rows = ordered.limit(first).subquery(self.name("page"))
        has_next = ordered.offset(first).exists()
        newest_first = [rows.c[name].desc() for name in page.order]
        oldest_first = [rows.c[name] for name in page.order]
        ref = RowRef(rows)
        cursor = page.cursor.sql(ref)
        connection_type = self.type_of(node)

        def connection_value(field: FieldNode, name: str) -> Any:
            if name == "edges":
                edge_type = self._edge_type(field, connection_type)
                edge = self._pairs(field, edge_type, edge_value)
                return _list_of(edge, newest_first)
            if name == "pageInfo":
                return self._pairs(field, "PageInfo", page_info_value)
            if name == "totalCount" and page.counted:
                # Every row of the arguments, on all pages: one count of the parent's rows.
                counted = every.subquery(self.name("counted"))
                return sa.select(sa.func.count()).select_from(counted).scalar_subquery()
            raise NotCompiled(f"field {connection_type}.{name}")

        def edge_value(field: FieldNode, name: str) -> Any:
            if name == "cursor":
                return cursor
            if name == "node":
                return self.object(field, page.target, ref)
            raise NotCompiled(f"edge field {name}")

        def page_info_value(field: FieldNode, name: str) -> Any:
            if name == "hasNextPage":
                return has_next
            if name == "hasPreviousPage":
                return sa.false()
            if name == "startCursor":
                return _first_of(cursor, newest_first)
            if name == "endCursor":
                return _first_of(cursor, oldest_first)
            raise NotCompiled(f"pageInfo field {name}")

        connection = self._pairs(node, connection_type, connection_value)
        # One row even for no rows: the aggregates answer an empty page.
        return sa.select(connection).select_from(rows).group_by(_text("()")).scalar_subquery()

    def _edge_type(self, node: FieldNode, connection_type: str) -> str:
        parent = self.schema.type_map[connection_type]
        assert isinstance(parent, GraphQLObjectType)
        return get_named_type(parent.fields[node.name.value].type).name

    def me(self, node: FieldNode) -> Any:
        if node.arguments:
            raise NotCompiled("an argument")
        self.needs_caller = True
        subscriber_id = self.caller.c.subscriber_id
        rows = views.subscriber_rows(lambda column: column == subscriber_id)
        s = rows.subquery(self.name("s"))
        return (
            sa.select(self.object(node, "Subscriber", RowRef(s))).select_from(s).scalar_subquery()
        )

    def root(self, operation: Any) -> sa.Select[Any]:
        for definition in operation.variable_definitions or ():
            default = definition.default_value
            value = int(default.value) if isinstance(default, IntValueNode) else None
            if default is not None and not isinstance(default, IntValueNode | NullValueNode):
                raise NotCompiled("a variable default that is not an integer")
            required = isinstance(definition.type, NonNullTypeNode)
            self.variables[definition.variable.name.value] = (value, required)
        query = views.VIEWS["Query"]

        def root_value(field: FieldNode, name: str) -> Any:
            if name == "me":
                return self.me(field)
            declared = query.fields.get(name)
            if not isinstance(declared, Link):
                raise NotCompiled(f"field Query.{name}")
            if declared.key is None:
                return self.link(field, name, declared, None)
            # A root link with a key reads for the caller's session (the row of CALLER).
            self.needs_caller = True
            return self.link(field, name, declared, RowRef(self.caller))

        answer = self._pairs(operation, "Query", root_value)
        self.public = (
            None if self.needs_caller else sa.select(sa.cast(answer, sa.Text).label("data"))
        )
        # The caller's row and the answer; whether the caller may have it is decided from
        # the row by the executor's own rule (`SqlAnswers.answer`).
        data = sa.cast(answer, sa.Text).label("data")
        return sa.select(*self.caller.c, data).select_from(self.caller)


def _everything(_column: Any) -> Any:
    return sa.true()


def _first_of(value: Any, order: list[Any]) -> Any:
    """The first of the rows' values in `order` (null for no rows)."""
    return sa.func.array_agg(aggregate_order_by(value, *order))[_text("1")]


def _parameter_type(value: Any) -> Any:
    """The SQL type of a literal argument's value, or None for a value not taken."""
    if isinstance(value, list):
        return sa.ARRAY(sa.Text()) if all(type(item) is str for item in value) else None
    return _PARAMETER_TYPES.get(type(value))


def _checked_by(link: Link) -> Callable[[dict[str, Any]], Mapping[str, Any]]:
    def checked(values: dict[str, Any]) -> Mapping[str, Any]:
        if link.check is not None:
            link.check(values)
        return values

    return checked


def compile_document(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None
) -> CompiledQuery:
    """One statement finding the caller of an access token (parameters token_hash and now)
    and answering the document's query for them (and, when the answer needs no caller, one
    without); NotCompiled when the document has anything the statement would not answer
    exactly as the executor. The statements take the parameters of resolvers/views.py."""
    operation = get_operation_ast(document, operation_name)
    if operation is None or operation.operation is not OperationType.QUERY:
        raise NotCompiled("not a query")
    if operation.directives:
        raise NotCompiled("a directive")
    builder = _Builder(schema, document)
    statement = builder.root(operation)
    return CompiledQuery(
        with_caller=ReadQuery(statement),
        without_caller=None if builder.public is None else ReadQuery(builder.public),
        needs_caller=builder.needs_caller,
        firsts=tuple(builder.firsts),
        arguments=tuple(builder.arguments),
    )


# What a compiled plan holds (its SQLAlchemy statement and SQL text) per character of the
# document, measured with tracemalloc: 680 (a 1,200-character document) to 2,200 (the
# 290-character overview).
PLAN_BYTES_PER_CHAR = 2048


class SqlAnswers:
    """The documents answered from one statement, compiled once per document."""

    def __init__(
        self,
        schema: GraphQLSchema,
        prepare: Callable[[str, str | None], DocumentNode | None],
        cache_bytes: int = DOCUMENT_CACHE_BYTES,
    ) -> None:
        self._schema = schema
        self._prepare = prepare
        self._plans: SizedCache[tuple[str, str | None], CompiledQuery | None] = SizedCache(
            cache_bytes, DOCUMENT_CACHE_ENTRIES
        )

    def _plan(self, query: str, operation_name: str | None) -> CompiledQuery | None:
        document = self._prepare(query, operation_name)
        if document is None:
            return None
        try:
            return compile_document(self._schema, document, operation_name)
        except NotCompiled:
            return None
        except Exception:  # a defect here must not cost the caller an answer
            log.exception("a document could not be compiled; answering through the executor")
            return None

    def plan(self, query: str, operation_name: str | None) -> CompiledQuery | None:
        def make() -> tuple[CompiledQuery | None, int]:
            plan = self._plan(query, operation_name)
            weight = 2 * len(query) + 512
            if plan is not None:
                weight += PLAN_BYTES_PER_CHAR * len(query)
            return plan, weight

        return self._plans.get_or_make((query, operation_name), make)

    async def answer(
        self,
        query: str,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        *,
        token: str | None,
        reader: RequestReader,
        settings: Settings,
    ) -> Answered | None:
        """The caller of `token` and the JSON text of the answer's `data`, from one
        statement; None when the document is not compiled (or the statement failed): then
        the caller is to be authenticated and the document executed as usual."""
        if not reader.is_postgresql:
            return None
        plan = self.plan(query, operation_name)
        if plan is None:
            return None
        now = utcnow()
        if token is None:
            statement, caller = plan.without_caller, {}
        else:
            statement, found = plan.with_caller, caller_parameters(token, now=now)
            if found is None:
                return None
            caller = found
        if statement is None:
            return None
        try:
            params = plan.parameters(variables or {}, settings.max_page_size)
            if params is None:
                return None
            # The caller's `now` and the views' are the same moment.
            rows = await reader.fetch(
                statement, **{**views.parameters(settings, now), **caller, **params}
            )
        except Exception:
            # The executor answers (and reports) it; this should never happen.
            log.exception("a compiled read failed; answering through the executor")
            return None
        if token is None:
            return Answered(None, str(rows[0].data))
        if not rows:
            return Answered(None, None)
        row = rows[0]
        principal = principal_of(row)
        if plan.needs_caller and not accounts.reads_own_account(principal):
            # Staff, or before the temporary password is changed: the executor and the
            # endpoint's own checks answer.
            return Answered(principal, None)
        return Answered(principal, str(row.data))


@dataclass(frozen=True, slots=True)
class Answered:
    principal: Principal | None  # None: the token is not a live one
    data: str | None  # None: the executor answers, for this principal
