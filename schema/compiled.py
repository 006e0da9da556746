"""Whole answers from one SQL statement for the documents front ends send most (PostgreSQL).

The executor answers a document field by field: an object per row, a resolver call per
field, a loader per list, then graphql-core completes every value. For the account overview
(`me { contracts { balance tariff tvPackages payments(first) } bonusAccount }` and the
like) that is most of a request's CPU. Here a validated document whose every field is one
this module knows is turned, once, into one SELECT that builds the JSON of the answer inside
PostgreSQL (json_build_object and json_agg over the same reads the loaders make, taken from
resolvers/), the way PostGraphile answers. The same statement finds the caller of the access
token (auth/sessions.CALLER) and answers only for a subscriber who may read: the request
costs one statement and no Python per field.

Everything else is answered by the executor as before: an unknown field, an argument other
than `payments(first)`, a directive, a fragment on another type, a response key given twice,
a `first` the executor would refuse (so that it reports the error), a caller who is not a
signed-in subscriber, SQLite. tests/test_compiled.py holds both ways to the same answers.

Values are written as the executor writes them: Money with two places, DateTime as Python's
isoformat() of a UTC time (microseconds only when not zero), Date as YYYY-MM-DD, global IDs
and cursors as url-safe base64 of "Type:pk" and of the pk.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
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
    VariableNode,
    get_named_type,
    get_operation_ast,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.sql.elements import ColumnElement

from auth.sessions import CALLER, Principal, caller_parameters, principal_of
from core.db import ReadQuery, RequestReader
from core.settings import Settings
from models.base import utcnow
from resolvers import accounts, catalog, charges, lineup, payments, promised
from resolvers.pagination import DEFAULT_PAGE_SIZE
from schema.documents import DOCUMENT_CACHE_BYTES, DOCUMENT_CACHE_ENTRIES, SizedCache

log = logging.getLogger("kabinet.graphql")

# json_build_object takes at most 100 arguments: 50 keys.
MAX_KEYS = 50
_EMPTY_LIST: Any = sa.literal_column("'[]'::json")


class NotCompiled(Exception):
    """The document has something this module does not build: the executor answers it."""


# --------------------------------------------------------------------------- #
# values as the executor writes them
# --------------------------------------------------------------------------- #


def _text(sql: str) -> Any:
    return sa.literal_column(sql)


def money(value: Any) -> ColumnElement[Any]:
    return sa.cast(sa.func.round(value, _text("2")), sa.Text)


def date_text(value: Any) -> ColumnElement[Any]:
    return sa.func.to_char(value, _text("'YYYY-MM-DD'"))


def datetime_text(value: Any) -> ColumnElement[Any]:
    """Python's isoformat() of the UTC time: "2026-11-25T04:35:00+00:00", with ".123456"
    before the zone only when there are microseconds."""
    utc = sa.func.timezone(_text("'UTC'"), value)
    whole = sa.func.to_char(utc, _text("""'YYYY-MM-DD"T"HH24:MI:SS"+00:00"'"""))
    precise = sa.func.to_char(utc, _text("""'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'"""))
    return sa.case(
        (sa.func.to_char(value, _text("'US'")) == _text("'000000'"), whole), else_=precise
    )


def _base64url(value: Any) -> ColumnElement[Any]:
    encoded = sa.func.encode(sa.func.convert_to(value, _text("'UTF8'")), _text("'base64'"))
    # PostgreSQL breaks base64 lines at 76 characters; url-safe alphabet as Python's.
    return sa.func.translate(encoded, _text("'+/' || chr(10)"), _text("'-_'"))


def global_id(type_name: str, pk: Any) -> ColumnElement[Any]:
    return _base64url(_text(f"'{type_name}:'") + sa.cast(pk, sa.Text))


def id_cursor(pk: Any) -> ColumnElement[Any]:
    """resolvers/pagination.encode_cursor(pk)."""
    return _base64url(sa.cast(pk, sa.Text))


def _object(pairs: list[Any]) -> ColumnElement[Any]:
    return sa.func.json_build_object(*pairs)


def _one(select: sa.Select[Any]) -> ColumnElement[Any]:
    return select.scalar_subquery()


def _list_of(value: Any, *order: Any) -> ColumnElement[Any]:
    return sa.func.coalesce(sa.func.json_agg(aggregate_order_by(value, *order)), _EMPTY_LIST)


# --------------------------------------------------------------------------- #
# the fields known, by type: (builder, field, row) -> the field's JSON value
# --------------------------------------------------------------------------- #

Handler = Callable[["_Builder", FieldNode, Any], ColumnElement[Any]]


def _column(name: str, encode: Callable[[Any], Any] | None = None) -> Handler:
    def read(_b: _Builder, _node: FieldNode, row: Any) -> ColumnElement[Any]:
        column = row.c[name]
        return column if encode is None else encode(column)

    return read


def _id(type_name: str) -> Handler:
    return lambda _b, _node, row: global_id(type_name, row.c.id)


def _me(b: _Builder, node: FieldNode, _row: Any) -> ColumnElement[Any]:
    subscriber = accounts.subscriber_of(b.caller.c.subscriber_id).correlate(b.caller)
    s = subscriber.subquery("s")
    return _one(sa.select(b.object(node, "Subscriber", s)).select_from(s))


def _contracts(b: _Builder, node: FieldNode, s: Any) -> ColumnElement[Any]:
    c = accounts.contracts_of(s.c.id).correlate(s).subquery(b.name("c"))
    return _one(sa.select(_list_of(b.object(node, "Contract", c), c.c.id)).select_from(c))


def _bonus_account(b: _Builder, node: FieldNode, s: Any) -> ColumnElement[Any]:
    return b.object(node, "BonusAccount", s)


def _points(_b: _Builder, _node: FieldNode, s: Any) -> ColumnElement[Any]:
    return sa.func.coalesce(_one(accounts.points_of(s.c.id).correlate(s)), _text("0"))


def _balance(b: _Builder, node: FieldNode, c: Any) -> ColumnElement[Any]:
    return b.object(node, "Balance", c)


def _available(_b: _Builder, _node: FieldNode, c: Any) -> ColumnElement[Any]:
    return money(sa.func.greatest(c.c.balance, _text("0.00")))


def _currency(_b: _Builder, _node: FieldNode, _c: Any) -> ColumnElement[Any]:
    return sa.bindparam("currency", type_=sa.Text)


def _days_left(b: _Builder, _node: FieldNode, c: Any) -> ColumnElement[Any]:
    """Balance.daysLeft: max(0, balance // today's charge), null when nothing is charged."""
    daily = b.daily_charges()
    kopecks = _one(sa.select(daily.c.kopecks).where(daily.c.contract_id == c.c.id).correlate(c))
    days = sa.func.greatest(_text("0"), sa.func.div(c.c.balance * _text("100"), kopecks))
    return sa.case((kopecks > _text("0"), sa.cast(days, sa.Integer)), else_=sa.null())


def _open_promise(b: _Builder, node: FieldNode, c: Any) -> ColumnElement[Any]:
    p = promised.open_promise_of(c.c.id).correlate(c).subquery(b.name("op"))
    return _one(sa.select(b.object(node, "PromisedPayment", p)).select_from(p))


def _region(b: _Builder, node: FieldNode, c: Any) -> ColumnElement[Any]:
    r = accounts.region_of(c.c.region_code).correlate(c).subquery(b.name("r"))
    return _one(sa.select(b.object(node, "Region", r)).select_from(r))


def _tariff(b: _Builder, node: FieldNode, c: Any) -> ColumnElement[Any]:
    in_force = charges.tariff_in_force(c, b.today_param)
    t = catalog.tariff_by_id(in_force).correlate(c).subquery(b.name("t"))
    return _one(sa.select(b.object(node, "Tariff", t)).select_from(t))


def _tv_packages(b: _Builder, node: FieldNode, c: Any) -> ColumnElement[Any]:
    p = lineup.packages_now_of(c.c.id).correlate(c).subquery(b.name("pk"))
    listed = _list_of(b.object(node, "TvPackage", p), p.c.monthly_fee, p.c.id)
    return _one(sa.select(listed).select_from(p))


@dataclass(frozen=True, slots=True)
class _Page:
    """The rows of one connection's page, and what `pageInfo` needs besides."""

    rows: Any
    has_next: ColumnElement[Any]


def _payments(b: _Builder, node: FieldNode, c: Any) -> ColumnElement[Any]:
    first = b.first_argument(node)
    newest = payments.newest_payments_of(c.c.id).correlate(c)
    rows = newest.limit(first).subquery(b.name("pay"))
    page = _Page(rows=rows, has_next=newest.offset(first).exists())
    # One row even for no payments: the aggregates answer an empty page.
    connection = b.object(node, "PaymentConnection", page)
    return _one(sa.select(connection).select_from(rows).group_by(_text("()")))


def _edges(b: _Builder, node: FieldNode, page: _Page) -> ColumnElement[Any]:
    edge_type = b.type_of(node)
    return _list_of(b.object(node, edge_type, page.rows), page.rows.c.id.desc())


def _page_info(b: _Builder, node: FieldNode, page: _Page) -> ColumnElement[Any]:
    return b.object(node, "PageInfo", page)


def _edge_node(b: _Builder, node: FieldNode, row: Any) -> ColumnElement[Any]:
    return b.object(node, b.type_of(node), row)


FIELDS: dict[str, dict[str, Handler]] = {
    "Query": {"me": _me},
    "Subscriber": {
        "id": _id("Subscriber"),
        "login": _column("login"),
        "legalStatus": _column("legal_status"),
        "displayName": _column("display_name"),
        "email": _column("email"),
        "phone": _column("phone"),
        "contracts": _contracts,
        "bonusAccount": _bonus_account,
    },
    "BonusAccount": {"points": _points},
    "Contract": {
        "id": _id("Contract"),
        "number": _column("number"),
        "address": _column("address"),
        "status": _column("status"),
        "openedOn": _column("opened_on", date_text),
        "balance": _balance,
        "region": _region,
        "tariff": _tariff,
        "tvPackages": _tv_packages,
        "payments": _payments,
    },
    "Balance": {
        "amount": _column("balance", money),
        "currency": _currency,
        "availableAmount": _available,
        "daysLeft": _days_left,
        "openPromisedPayment": _open_promise,
    },
    "PromisedPayment": {
        "id": _id("PromisedPayment"),
        "amount": _column("amount", money),
        "fee": _column("fee", money),
        "status": _column("status"),
        "issuedAt": _column("issued_at", datetime_text),
        "dueAt": _column("due_at", datetime_text),
        "settledAt": _column("settled_at", datetime_text),
    },
    "Region": {"code": _column("code"), "name": _column("name")},
    "Tariff": {
        "id": _id("Tariff"),
        "code": _column("code"),
        "name": _column("name"),
        "regionCode": _column("region_code"),
        "monthlyFee": _column("monthly_fee", money),
        "speedMbps": _column("speed_mbps"),
        "trafficGb": _column("traffic_gb"),
        "unlimited": lambda _b, _n, t: t.c.traffic_gb.is_(None),
        "description": _column("description"),
        "archived": _column("archived"),
    },
    "TvPackage": {
        "id": _id("TvPackage"),
        "code": _column("code"),
        "name": _column("name"),
        "monthlyFee": _column("monthly_fee", money),
        "description": _column("description"),
        "archived": _column("archived"),
    },
    "PaymentConnection": {"edges": _edges, "pageInfo": _page_info},
    "PaymentEdge": {
        "cursor": lambda _b, _n, row: id_cursor(row.c.id),
        "node": _edge_node,
    },
    "PageInfo": {
        "hasNextPage": lambda _b, _n, page: page.has_next,
        "hasPreviousPage": lambda _b, _n, _page: sa.false(),
        "startCursor": lambda _b, _n, page: id_cursor(sa.func.max(page.rows.c.id)),
        "endCursor": lambda _b, _n, page: id_cursor(sa.func.min(page.rows.c.id)),
    },
    "Payment": {
        "id": _id("Payment"),
        "amount": _column("amount", money),
        "method": _column("method"),
        "status": _column("status"),
        "createdAt": _column("created_at", datetime_text),
        "confirmedAt": _column("confirmed_at", datetime_text),
    },
}
# Fields that take arguments, and which: only `first` of the first page.
_FIRST_ONLY = frozenset({("Contract", "payments")})


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


@dataclass(frozen=True, slots=True)
class CompiledQuery:
    query: ReadQuery
    day: date
    firsts: tuple[_First, ...]

    def parameters(self, variables: dict[str, Any], max_page_size: int) -> dict[str, Any] | None:
        """The values of the `first` arguments, or None when one is not an integer the
        executor would take (it then answers, errors included)."""
        found: dict[str, Any] = {}
        for first in self.firsts:
            value = first.value
            if first.variable is not None and first.variable in variables:
                value = variables[first.variable]
            if value is None:
                if first.required:
                    return None
                value = min(DEFAULT_PAGE_SIZE, max_page_size)
            if type(value) is not int or not 0 <= value <= max_page_size:
                return None
            found[first.param] = value
        return found


class _Builder:
    def __init__(self, schema: GraphQLSchema, document: DocumentNode, day: date) -> None:
        self.schema = schema
        self.day = day
        self.today_param = sa.bindparam("today", type_=sa.Date)
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.firsts: list[_First] = []
        self.variables: dict[str, Any] = {}
        self._names = 0
        self._daily: Any = None
        self._parents: list[str] = []
        # Who asks (auth/sessions.CALLER): the answer is built for this row only.
        self.caller = CALLER.cte("caller")

    def name(self, prefix: str) -> str:
        self._names += 1
        return f"{prefix}{self._names}"

    def daily_charges(self) -> Any:
        """Today's charge in kopecks of each of the subscriber's contracts: one part of the
        statement, however many contracts and fields ask."""
        if self._daily is None:
            caller_id = sa.select(self.caller.c.subscriber_id).scalar_subquery()
            owned = accounts.contract_ids_of(caller_id)
            query = charges.daily_kopecks_by_contract(
                self.day, lambda column: column.in_(owned.scalar_subquery())
            )
            self._daily = query.cte("daily")
        return self._daily

    def type_of(self, node: FieldNode) -> str:
        parent = self.schema.type_map[self._parents[-1]]
        assert isinstance(parent, GraphQLObjectType)
        return get_named_type(parent.fields[node.name.value].type).name

    def first_argument(self, node: FieldNode) -> Any:
        param = self.name("first")
        arguments = {argument.name.value: argument.value for argument in node.arguments or ()}
        if set(arguments) - {"first"}:
            raise NotCompiled("an argument other than first")
        given = arguments.get("first")
        if given is None or isinstance(given, NullValueNode):
            self.firsts.append(_First(param, None, None, required=False))
        elif isinstance(given, IntValueNode):
            self.firsts.append(_First(param, None, int(given.value), required=False))
        elif isinstance(given, VariableNode):
            name = given.name.value
            default, required = self.variables[name]
            self.firsts.append(_First(param, name, default, required=required))
        else:
            raise NotCompiled("first given as something else")
        return sa.bindparam(param, type_=sa.Integer)

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

    def object(self, node: FieldNode | None, type_name: str, row: Any) -> ColumnElement[Any]:
        """The JSON object `node` selects on a `type_name` read from `row`."""
        known = FIELDS.get(type_name)
        if known is None:
            raise NotCompiled(f"type {type_name}")
        selection_set = node.selection_set if node is not None else None
        pairs: list[Any] = []
        keys: set[str] = set()
        self._parents.append(type_name)
        try:
            for field in self.fields(selection_set, type_name):
                key = (field.alias or field.name).value
                if key in keys:
                    raise NotCompiled("a response key given twice")
                keys.add(key)
                name = field.name.value
                if name == "__typename":
                    value: Any = _text(f"'{type_name}'")
                else:
                    handler = known.get(name)
                    if handler is None:
                        raise NotCompiled(f"field {type_name}.{name}")
                    if field.arguments and (type_name, name) not in _FIRST_ONLY:
                        raise NotCompiled("an argument")
                    value = handler(self, field, row)
                # Keys are GraphQL names ([_A-Za-z][_0-9A-Za-z]*): safe as literals.
                pairs += [_text(f"'{key}'"), value]
        finally:
            self._parents.pop()
        if len(keys) > MAX_KEYS:
            raise NotCompiled("too many fields for one object")
        return _object(pairs)

    def root(self, operation: Any) -> sa.Select[Any]:
        for definition in operation.variable_definitions or ():
            default = definition.default_value
            value = int(default.value) if isinstance(default, IntValueNode) else None
            if default is not None and not isinstance(default, IntValueNode | NullValueNode):
                raise NotCompiled("a variable default that is not an integer")
            required = isinstance(definition.type, NonNullTypeNode)
            self.variables[definition.variable.name.value] = (value, required)
        answer = self.object(operation, "Query", None)
        # The caller's row, and the answer only for a subscriber who may read (no answer
        # for staff, or before the temporary password is changed: the executor and the
        # endpoint's own checks deal with those).
        may_read = sa.and_(
            self.caller.c.principal_kind == _text("'SUBSCRIBER'"),
            self.caller.c.must_change_password.is_not(sa.true()),
        )
        data = sa.case((may_read, sa.cast(answer, sa.Text)), else_=sa.null())
        return sa.select(*self.caller.c, data.label("data")).select_from(self.caller)


def compile_document(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None, day: date
) -> CompiledQuery:
    """One statement finding the caller of an access token (parameters token_hash and now)
    and answering the document's query for them on day `day`; NotCompiled when the document
    has anything the statement would not answer exactly as the executor."""
    operation = get_operation_ast(document, operation_name)
    if operation is None or operation.operation is not OperationType.QUERY:
        raise NotCompiled("not a query")
    if operation.directives:
        raise NotCompiled("a directive")
    builder = _Builder(schema, document, day)
    statement = builder.root(operation)
    return CompiledQuery(query=ReadQuery(statement), day=day, firsts=tuple(builder.firsts))


# What a compiled plan holds (its SQLAlchemy statement and SQL text) per character of the
# document, measured with tracemalloc: 680 (a 1,200-character document) to 2,200 (the
# 290-character overview).
PLAN_BYTES_PER_CHAR = 2048


class SqlAnswers:
    """The documents answered from one statement, compiled once per document and day."""

    def __init__(
        self,
        schema: GraphQLSchema,
        prepare: Callable[[str, str | None], DocumentNode | None],
        cache_bytes: int = DOCUMENT_CACHE_BYTES,
    ) -> None:
        self._schema = schema
        self._prepare = prepare
        self._plans: SizedCache[tuple[str, str | None, date], CompiledQuery | None] = SizedCache(
            cache_bytes, DOCUMENT_CACHE_ENTRIES
        )

    def _plan(self, query: str, operation_name: str | None, day: date) -> CompiledQuery | None:
        document = self._prepare(query, operation_name)
        if document is None:
            return None
        try:
            return compile_document(self._schema, document, operation_name, day)
        except NotCompiled:
            return None
        except Exception:  # a defect here must not cost the caller an answer
            log.exception("a document could not be compiled; answering through the executor")
            return None

    def plan(self, query: str, operation_name: str | None, day: date) -> CompiledQuery | None:
        def make() -> tuple[CompiledQuery | None, int]:
            plan = self._plan(query, operation_name, day)
            weight = 2 * len(query) + 512
            if plan is not None:
                weight += PLAN_BYTES_PER_CHAR * len(query)
            return plan, weight

        return self._plans.get_or_make((query, operation_name, day), make)

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
        if token is None or not reader.is_postgresql:
            return None
        caller = caller_parameters(token)
        if caller is None:
            return None
        plan = self.plan(query, operation_name, utcnow().date())
        if plan is None:
            return None
        params = plan.parameters(variables or {}, settings.max_page_size)
        if params is None:
            return None
        try:
            rows = await reader.fetch(
                plan.query, today=plan.day, currency=settings.currency, **caller, **params
            )
        except Exception:
            # The executor answers (and reports) it; this should never happen.
            log.exception("a compiled read failed; answering through the executor")
            return None
        if not rows:
            return Answered(None, None)
        row = rows[0]
        return Answered(principal_of(row), None if row.data is None else str(row.data))


@dataclass(frozen=True, slots=True)
class Answered:
    principal: Principal | None  # None: the token is not a live one
    data: str | None  # None: the executor answers, for this principal
