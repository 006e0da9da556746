"""Attacks from the threat table of docs/security.md that had no test elsewhere.

Each test here is named in the table next to the threat it proves defended. The IDOR matrix
walks the real schema (every Contract field, every mutation with a `contractNumber` input,
every staff root field), so a field added later is attacked without anyone editing this file.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLSchema,
    Undefined,
    get_named_type,
    is_composite_type,
    is_non_null_type,
)
from strawberry.permission import PermissionExtension

from auth.permissions import IsStaff, IsSubscriber
from core.outbox import deliver_due, senders_for
from core.payment_providers import sign
from kabinet.app import create_app
from models import Contract, OutboxMessage, metadata
from models.base import utcnow
from schema import build_schema
from tests.conftest import fast_settings, gql, gql_raw, production_settings
from tests.factories import LOGIN, make_staff, make_subscriber, sign_in

# Tables whose rows a refused attempt may still add (a session, a counted failure).
BOOKKEEPING_TABLES = frozenset({"auth_sessions", "refresh_tokens", "rate_limit_counters"})

# Timing bound of docs/security.md ("Timing bound"): the median of the paired differences
# between a known and an unknown identifier's latency is at most 25 % of the slower median,
# or 5 ms when that is more (below a few milliseconds the event loop's jitter dominates).
TIMING_RELATIVE_BOUND = 0.25
TIMING_ABSOLUTE_SLACK_SECONDS = 0.005

# SPEC §3's argon2id floor: what a production deployment runs (and what the timing of
# sign-in must be measured with: the dummy-hash defence only matters at the real cost).
REAL_ARGON2 = {"argon2_memory_kib": 19456, "argon2_time_cost": 2, "argon2_parallelism": 1}
NO_LIMITS = {
    "login_max_failures_per_identifier": 100_000,
    "login_max_failures_per_address": 100_000,
    "recovery_requests_per_identifier_per_hour": 100_000,
    "recovery_requests_per_address_per_hour": 100_000,
    "registration_max_failures": 100_000,
    "registration_max_failures_per_address": 100_000,
}

REGISTER = """
mutation($input: RegisterInput!) {
  register(input: $input) { login errors { field code message retryAfterSeconds } }
}
"""
REQUEST_RECOVERY = """
mutation($input: RequestPasswordRecoveryInput!) {
  requestPasswordRecovery(input: $input) { ok errors { field code message retryAfterSeconds } }
}
"""
REFRESH = """
mutation($input: RefreshSessionInput!) {
  refreshSession(input: $input) { accessToken refreshToken errors { code } }
}
"""
TOP_UP = """
mutation($input: CreateTopUpInput!) {
  createTopUp(input: $input) { payment { id confirmationUrl } errors { field code } }
}
"""
CATALOG = """{
  tariffs(region: "MOW") { id code }
  tvPackages { id }
  channels { id mustCarry }
  serviceOptions { id }
  bonusRewards { id }
}"""


# -- walking the real schema ----------------------------------------------------------------


def real_schema() -> Any:
    return build_schema(fast_settings("sqlite+aiosqlite:///:memory:"))


def graphql_schema() -> GraphQLSchema:
    return real_schema()._schema


def permission_names(type_name: str) -> dict[str, set[type]]:
    """Root field (GraphQL name) → the permission classes guarding it."""
    schema = real_schema()
    definition = schema.get_type_by_name(type_name)
    assert definition is not None
    found: dict[str, set[type]] = {}
    for field in definition.fields:  # type: ignore[union-attr]
        name = schema.config.name_converter.get_graphql_name(field)
        found[name] = {
            type(permission)
            for extension in field.extensions
            if isinstance(extension, PermissionExtension)
            for permission in extension.permissions
        }
    return found


def selection(field_type: Any) -> str:
    """The smallest valid selection under a field: `{ __typename }` for objects."""
    return " { __typename }" if is_composite_type(get_named_type(field_type)) else ""


ARGUMENT_LITERALS = {
    "Date": '"2024-01-01"',
    "DateTime": '"2024-01-01T00:00:00Z"',
    "String": '"x"',
    "ID": '"x"',
    "Int": "1",
    "Boolean": "true",
    "Money": '"10.00"',
}


def required_arguments(field: Any) -> str:
    """Literals for the arguments a field cannot go without (e.g. expenseSummary's period)."""
    parts = []
    for name, argument in field.args.items():
        if not is_non_null_type(argument.type) or argument.default_value is not Undefined:
            continue
        named = get_named_type(argument.type)
        if isinstance(named, GraphQLEnumType):
            literal = next(iter(named.values))
        elif named.name in ARGUMENT_LITERALS:
            literal = ARGUMENT_LITERALS[named.name]
        else:  # a new kind of required argument: teach the walk about it
            raise AssertionError(f"no literal for required argument {name}: {argument.type}")
        parts.append(f"{name}: {literal}")
    return f"({', '.join(parts)})" if parts else ""


def contract_field_queries() -> dict[str, tuple[str, str]]:
    """Every field of Contract → (a query by number, a query by node ID) selecting it."""
    contract = graphql_schema().type_map["Contract"]
    queries = {}
    for name, field in contract.fields.items():  # type: ignore[union-attr]
        picked = f"{name}{required_arguments(field)}{selection(field.type)}"
        queries[name] = (
            f"query($n: String!) {{ contract(number: $n) {{ number {picked} }} }}",
            f"query($id: ID!) {{ node(id: $id) {{ id ... on Contract {{ {picked} }} }} }}",
        )
    return queries


def input_value(field_name: str, field_type: Any, known: dict[str, Any]) -> Any:
    """A value for one input field: the test's own (real ids) when it has one, else a
    well-formed default of the field's type."""
    if field_name in known:
        return known[field_name]
    if isinstance(field_type, GraphQLNonNull):
        field_type = field_type.of_type
    if isinstance(field_type, GraphQLList):
        return [input_value(field_name, field_type.of_type, {})]
    if isinstance(field_type, GraphQLEnumType):
        return next(iter(field_type.values))
    defaults = {
        "String": "probe-value-1234",
        "ID": "0",
        "Int": 1,
        "Boolean": True,
        "Money": "100.00",
    }
    if field_type.name not in defaults:
        raise AssertionError(f"no value for input field {field_name}: {field_type}")
    return defaults[field_type.name]


def mutation_document(name: str, field: Any) -> str:
    """`mutation($input: XInput!) { name(input: $input) { errors { field code } …rest } }`."""
    input_type = get_named_type(field.args["input"].type)
    payload = get_named_type(field.type)
    rest = " ".join(
        f"{fname}{selection(pfield.type)}"
        for fname, pfield in payload.fields.items()  # type: ignore[union-attr]
        if fname != "errors"
    )
    return (
        f"mutation($input: {input_type.name}!) {{ {name}(input: $input) "
        f"{{ errors {{ field code }} {rest} }} }}"
    )


def mutation_input(field: Any, known: dict[str, Any]) -> dict[str, Any]:
    input_type = get_named_type(field.args["input"].type)
    assert isinstance(input_type, GraphQLInputObjectType)
    return {
        fname: input_value(fname, ifield.type, known)
        for fname, ifield in input_type.fields.items()
        if is_non_null_type(ifield.type) or fname in known
    }


def contract_number_mutations() -> dict[str, Any]:
    """Mutations whose input names a contract by `contractNumber`."""
    found = {}
    for name, field in graphql_schema().mutation_type.fields.items():  # type: ignore[union-attr]
        argument = field.args.get("input")
        if argument is None:
            continue
        input_type = get_named_type(argument.type)
        if "contractNumber" in input_type.fields:  # type: ignore[union-attr]
            found[name] = field
    return found


async def snapshot(session_factory: Any, contract_number: str) -> dict[str, Any]:
    """Row counts of every table a refused attempt must leave alone, and the contract row."""
    counts: dict[str, Any] = {}
    async with session_factory() as session:
        for table in metadata.sorted_tables:
            if table.name in BOOKKEEPING_TABLES:
                continue
            counts[table.name] = await session.scalar(sa.select(sa.func.count()).select_from(table))
        row = (
            await session.execute(
                sa.select(Contract.__table__).where(Contract.number == contract_number)  # type: ignore[attr-defined]
            )
        ).one()
    counts["contract row"] = tuple(row)
    return counts


# -- IDOR -----------------------------------------------------------------------------------


async def _ok(client: Any, query: str, variables: dict[str, Any], headers: Any, name: str) -> Any:
    result = (await gql(client, query, variables, headers=headers))[name]
    assert result["errors"] == [], (name, result["errors"])
    return result


async def owner_world(client: Any, session_factory: Any, settings: Any) -> dict[str, Any]:
    """An owner with something of everything (a package, an option, a receiver, a Personal
    TV line-up, a scheduled tariff change, a pending top-up), a stranger, and staff of both
    roles, all signed in."""
    owner = await make_subscriber(session_factory, settings, balance=Decimal("3000.00"))
    stranger = await make_subscriber(session_factory, settings, balance=Decimal("3000.00"))
    _, operator_name, operator_password = await make_staff(
        session_factory, settings, role="OPERATOR"
    )
    _, admin_name, admin_password = await make_staff(session_factory, settings, role="ADMIN")
    headers = {
        "owner": await sign_in(client, owner.login),
        "stranger": await sign_in(client, stranger.login),
        "OPERATOR": await sign_in(client, operator_name, operator_password),
        "ADMIN": await sign_in(client, admin_name, admin_password),
        "anonymous": {},
    }
    catalog = await gql(client, CATALOG)
    number = owner.contract_numbers[0]
    mine = headers["owner"]
    package_id = catalog["tvPackages"][0]["id"]
    option_id = catalog["serviceOptions"][0]["id"]
    paid_channels = [c["id"] for c in catalog["channels"] if not c["mustCarry"]][:5]
    other_tariff = next(t["id"] for t in catalog["tariffs"] if t["code"] != "home-100")
    for name, extra in (
        ("connectTvPackage", {"packageId": package_id}),
        ("activateOption", {"optionId": option_id}),
        ("addMultiroomDevice", {}),
        ("setPersonalTvChannels", {"channelIds": paid_channels}),
        ("changeTariff", {"tariffId": other_tariff}),
    ):
        field = graphql_schema().mutation_type.fields[name]  # type: ignore[union-attr]
        await _ok(
            client,
            mutation_document(name, field),
            {"input": {"contractNumber": number, **extra}},
            mine,
            name,
        )
    top_up = await _ok(
        client,
        TOP_UP,
        {
            "input": {
                "contractNumber": number,
                "amount": "150.00",
                "method": "SBP",
                "idempotencyKey": "owner-top-up-0001",
            }
        },
        mine,
        "createTopUp",
    )
    devices = await gql(
        client,
        "query($n: String!) { contract(number: $n) { id multiroomDevices { id } } }",
        {"n": number},
        headers=mine,
    )
    me = await gql(client, "{ me { id } }", headers=mine)
    return {
        "owner": owner,
        "stranger": stranger,
        "headers": headers,
        "number": number,
        "contract_id": devices["contract"]["id"],
        "subscriber_id": me["me"]["id"],
        "payment_id": top_up["payment"]["id"],
        # Real ids of the owner's things: were the ownership check missing, these would work.
        "values": {
            "contractNumber": number,
            "tariffId": catalog["tariffs"][0]["id"],
            "packageId": package_id,
            "optionId": option_id,
            "channelIds": paid_channels,
            "deviceId": devices["contract"]["multiroomDevices"][0]["id"],
            "rewardId": catalog["bonusRewards"][0]["id"],
            "amount": "100.00",
            "method": "BANK_CARD",
            "idempotencyKey": "idor-matrix-key-0001",
            "reason": "probing the IDOR matrix",
            "documentVerified": True,
            "securityCode": "00000000",
            "legalStatus": "INDIVIDUAL",
            "documentNumber": "4599 999999",  # the stranger does not hold the passport
            "email": "probe@example.org",
            # pauseService: days the owner could pause
            "from": (utcnow() + timedelta(days=1)).date().isoformat(),
            "to": (utcnow() + timedelta(days=3)).date().isoformat(),
        },
    }


async def test_idor_matrix(client: Any, session_factory: Any, settings: Any) -> None:
    """Every Contract field (by number and by node ID) and every mutation taking a
    `contractNumber`, tried by the owner, another subscriber, a signed-out caller and staff
    of both roles: only the owner and staff reach the contract; the others get null (reads)
    and NOT_FOUND on `contractNumber` (writes), and nothing changes."""
    world = await owner_world(client, session_factory, settings)
    headers, number = world["headers"], world["number"]
    problems: list[str] = []

    # reads: every Contract field
    fields = contract_field_queries()
    assert {"balance", "payments", "ledger", "tariff", "expenseSummary"} <= set(fields)
    for name, (by_number, by_node) in fields.items():
        for caller in ("owner", "OPERATOR", "ADMIN", "stranger", "anonymous"):
            allowed = caller in ("owner", "OPERATOR", "ADMIN")
            data = await gql(client, by_number, {"n": number}, headers=headers[caller])
            seen = data["contract"]
            if allowed and (seen is None or name not in seen):
                problems.append(f"{caller} cannot read Contract.{name} of their own/any contract")
            if not allowed and seen is not None:
                problems.append(f"{caller} reads Contract.{name} by number")
            node = (
                await gql(client, by_node, {"id": world["contract_id"]}, headers=headers[caller])
            )["node"]
            if allowed and (node is None or name not in node):
                problems.append(f"{caller} cannot read Contract.{name} by node")
            if not allowed and node is not None:
                problems.append(f"{caller} reads Contract.{name} by node ID")

    # reads: the other objects of the owner reached by node(id)
    for global_id in (world["payment_id"], world["subscriber_id"]):
        for caller in ("owner", "OPERATOR", "ADMIN", "stranger", "anonymous"):
            node = (
                await gql(
                    client,
                    "query($id: ID!) { node(id: $id) { id } }",
                    {"id": global_id},
                    headers=headers[caller],
                )
            )["node"]
            if caller in ("stranger", "anonymous") and node is not None:
                problems.append(f"{caller} reads node {global_id}")
            if caller in ("owner", "OPERATOR", "ADMIN") and node is None:
                problems.append(f"{caller} cannot read node {global_id}")
    # and the stranger's own overview lists none of the owner's contracts
    theirs = await gql(client, "{ me { contracts { number } } }", headers=headers["stranger"])
    if number in {c["number"] for c in theirs["me"]["contracts"]}:
        problems.append("the stranger's me.contracts lists the owner's contract")

    # writes: every mutation naming a contract, by the stranger and signed out
    mutations = contract_number_mutations()
    assert {"createTopUp", "activatePromisedPayment", "changeTariff", "redeemBonus"} <= set(
        mutations
    )
    guards = permission_names("Mutation")
    before = await snapshot(session_factory, number)
    for name, field in mutations.items():
        document = mutation_document(name, field)
        variables = {"input": mutation_input(field, world["values"])}
        for caller in ("stranger", "anonymous"):
            body = (await gql_raw(client, document, variables, headers=headers[caller])).json()
            result = (body.get("data") or {}).get(name)
            codes = [e.get("extensions", {}).get("code") for e in body.get("errors", [])]
            if caller == "anonymous" and guards[name]:
                expected_ok = codes == ["UNAUTHENTICATED"] and result is None
            elif IsStaff in guards[name]:
                expected_ok = codes == ["FORBIDDEN"] and result is None
            elif IsSubscriber in guards[name]:
                expected_ok = (
                    not codes
                    and result["errors"] == [{"field": "contractNumber", "code": "NOT_FOUND"}]
                    and all(v is None for k, v in result.items() if k != "errors")
                )
            else:  # public and secret-guarded (register): the generic mismatch, nothing more
                expected_ok = (
                    not codes
                    and [e["code"] for e in result["errors"]] == ["INVALID"]
                    and all(v is None for k, v in result.items() if k != "errors")
                )
            if not expected_ok:
                problems.append(f"{caller} on {name}: {body}")
    after = await snapshot(session_factory, number)
    if before != after:
        changed = {k: (before[k], after[k]) for k in before if before[k] != after.get(k)}
        problems.append(f"refused attempts changed data: {changed}")

    # writes by staff: subscriber-only mutations are refused to both roles (staff act through
    # staff fields), staff mutations work on any contract
    for name, field in mutations.items():
        document = mutation_document(name, field)
        variables = {"input": mutation_input(field, world["values"])}
        for caller in ("OPERATOR", "ADMIN"):
            body = (await gql_raw(client, document, variables, headers=headers[caller])).json()
            result = (body.get("data") or {}).get(name)
            codes = [e.get("extensions", {}).get("code") for e in body.get("errors", [])]
            if IsSubscriber in guards[name]:
                expected_ok = codes == ["FORBIDDEN"] and result is None
            elif IsStaff in guards[name]:
                expected_ok = not codes and result["errors"] == []
            else:
                expected_ok = not codes and [e["code"] for e in result["errors"]] == ["INVALID"]
            if not expected_ok:
                problems.append(f"{caller} on {name}: {body}")

    assert problems == []


async def test_staff_fields_by_role(client: Any, session_factory: Any, settings: Any) -> None:
    """Every root field guarded as staff-only: OPERATOR and ADMIN pass the guard, a
    subscriber hears FORBIDDEN, a signed-out caller UNAUTHENTICATED. The two roles have the
    same powers today (SPEC §1 names both and gives them no difference)."""
    subscriber = await make_subscriber(session_factory, settings)
    headers = {"subscriber": await sign_in(client, subscriber.login), "anonymous": {}}
    for role in ("OPERATOR", "ADMIN"):
        _, username, password = await make_staff(session_factory, settings, role=role)
        headers[role] = await sign_in(client, username, password)
    schema = graphql_schema()
    documents: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, guard in permission_names("Query").items():
        if IsStaff in guard:
            field = schema.query_type.fields[name]  # type: ignore[union-attr]
            documents[name] = (
                f"{{ {name}{required_arguments(field)}{selection(field.type)} }}",
                {},
            )
    # Staff writes with blank input: past the guard, refused by the domain, nothing written
    # (so that the shared catalogue stays as it is).
    blank = {"String": "", "ID": "", "Int": -1, "Boolean": False, "Money": "-1.00"}
    for name, guard in permission_names("Mutation").items():
        if IsStaff in guard:
            field = schema.mutation_type.fields[name]  # type: ignore[union-attr]
            input_type = get_named_type(field.args["input"].type)
            values: dict[str, Any] = {}
            for fname, ifield in input_type.fields.items():  # type: ignore[union-attr]
                named = get_named_type(ifield.type)
                if isinstance(ifield.type, GraphQLNonNull) and isinstance(
                    ifield.type.of_type, GraphQLList
                ):
                    values[fname] = []
                elif isinstance(named, GraphQLEnumType):
                    values[fname] = next(iter(named.values))
                elif is_non_null_type(ifield.type):
                    values[fname] = blank[named.name]
            documents[name] = (mutation_document(name, field), {"input": values})
    assert {"subscribers", "auditLog", "adjustBalance", "staffResetAccess"} <= set(documents)

    problems = []
    for name, (document, variables) in documents.items():
        for caller, expected in (
            ("OPERATOR", None),
            ("ADMIN", None),
            ("subscriber", "FORBIDDEN"),
            ("anonymous", "UNAUTHENTICATED"),
        ):
            body = (await gql_raw(client, document, variables, headers=headers[caller])).json()
            codes = [e.get("extensions", {}).get("code") for e in body.get("errors", [])]
            result = (body.get("data") or {}).get(name)
            if expected is None:
                refused_blank = variables == {} or (result is not None and result["errors"])
                if codes or result is None or not refused_blank:
                    problems.append(f"{caller} on {name}: {body}")
            elif codes != [expected] or result is not None:
                problems.append(f"{caller} on {name}: {body}")
    assert problems == []


async def test_every_connection_refuses_more_than_100(
    client: Any, session_factory: Any, settings: Any
) -> None:
    """`first` ≤ 100 on every connection of the schema (SPEC §5)."""
    made = await make_subscriber(session_factory, settings)
    owner = await sign_in(client, made.login)
    _, username, password = await make_staff(session_factory, settings)
    staff = await sign_in(client, username, password)
    # Where each type holding a connection is reached, and by whom.
    entry = {
        "Query": (lambda inner: f"{{ {inner} }}", staff),
        "Contract": (
            lambda inner: f'{{ contract(number: "{made.contract_numbers[0]}") {{ {inner} }} }}',
            owner,
        ),
        "BonusAccount": (lambda inner: f"{{ me {{ bonusAccount {{ {inner} }} }} }}", owner),
    }
    schema = graphql_schema()
    checked = []
    for type_name, graphql_type in schema.type_map.items():
        if type_name.startswith("__") or not hasattr(graphql_type, "fields"):
            continue
        for name, field in graphql_type.fields.items():  # type: ignore[union-attr]
            if not get_named_type(field.type).name.endswith("Connection"):
                continue
            assert type_name in entry, f"{type_name}.{name}: add where this type is reached"
            wrap, headers = entry[type_name]
            inner = f"{name}(first: 101) {{ pageInfo {{ hasNextPage }} }}"
            body = (await gql_raw(client, wrap(inner), headers=headers)).json()
            codes = [e.get("extensions", {}).get("code") for e in body.get("errors", [])]
            assert codes == ["BAD_USER_INPUT"], (type_name, name, body)
            ok = (await gql_raw(client, wrap(inner.replace("101", "100")), headers=headers)).json()
            assert "errors" not in ok, (type_name, name, ok)
            checked.append(f"{type_name}.{name}")
    assert len(checked) >= 6, checked


# -- enumeration: byte-equal answers and timing ------------------------------------------------


def within_timing_bound(known: list[float], unknown: list[float]) -> tuple[bool, str]:
    """The median of the paired differences (each known request against the unknown one
    sent next to it, so that a slow moment of the machine weighs on both) within 25 % of
    the slower median, or 5 ms."""
    a, b = statistics.median(known), statistics.median(unknown)
    difference = statistics.median(k - u for k, u in zip(known, unknown, strict=True))
    allowed = max(TIMING_RELATIVE_BOUND * max(a, b), TIMING_ABSOLUTE_SLACK_SECONDS)
    report = (
        f"median known {a * 1000:.1f} ms, unknown {b * 1000:.1f} ms, paired difference"
        f" {difference * 1000:+.1f} ms, allowed {allowed * 1000:.1f} ms"
    )
    return abs(difference) <= allowed, report


async def timed_pairs(
    client: httpx.AsyncClient,
    query: str,
    known: Callable[[int], dict[str, Any]],
    unknown: Callable[[int], dict[str, Any]],
    samples: int,
) -> tuple[list[float], list[float], set[bytes]]:
    """Alternating requests (order swapped every round), after a warm-up of each."""
    times: dict[str, list[float]] = {"known": [], "unknown": []}
    bodies: set[bytes] = set()
    makers = {"known": known, "unknown": unknown}
    for kind in ("known", "unknown"):
        await gql_raw(client, query, makers[kind](-1))
    for i in range(samples):
        order = ("known", "unknown") if i % 2 == 0 else ("unknown", "known")
        for kind in order:
            started = time.perf_counter()
            response = await gql_raw(client, query, makers[kind](i))
            times[kind].append(time.perf_counter() - started)
            assert response.status_code == 200
            bodies.add(response.content)
    return times["known"], times["unknown"], bodies


async def assert_same_answer_and_timing(
    client: httpx.AsyncClient,
    query: str,
    known: Callable[[int], dict[str, Any]],
    unknown: Callable[[int], dict[str, Any]],
    samples: int,
) -> float:
    """Byte-equal answers, and medians within the bound. A measurement over the bound is
    taken again once (a busy test machine); two in a row fail. Returns the known median."""
    reports = []
    for _ in range(2):
        known_times, unknown_times, bodies = await timed_pairs(
            client, query, known, unknown, samples
        )
        assert len(bodies) == 1, bodies
        ok, report = within_timing_bound(known_times, unknown_times)
        if ok:
            return statistics.median(known_times)
        reports.append(report)
    pytest.fail("timing tells known from unknown: " + "; ".join(reports))


async def test_login_timing_does_not_tell_known_from_unknown(
    settings: Any, session_factory: Any, engine: Any
) -> None:
    """With the real argon2id cost (m=19456 KiB, t=2): a wrong password for a real login
    and any password for an unknown identifier cost the same (the dummy hash) and answer
    the same bytes."""
    real = settings.model_copy(update={**REAL_ARGON2, **NO_LIMITS})
    made = await make_subscriber(session_factory, real)
    app = create_app(real)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        known_median = await assert_same_answer_and_timing(
            http,
            LOGIN,
            lambda i: {"input": {"identifier": made.login, "password": f"wrong password {i:04d}"}},
            lambda i: {
                "input": {"identifier": f"7799{i + 10:08d}", "password": f"wrong password {i:04d}"}
            },
            samples=12,
        )
    await app.state.engine.dispose()
    # the cost really is argon2 at the SPEC's parameters, not a shortcut
    assert known_median > 0.005, known_median


async def test_recovery_timing_does_not_tell_known_from_unknown(
    settings: Any, session_factory: Any, engine: Any
) -> None:
    limited_off = settings.model_copy(update=NO_LIMITS)
    made = await make_subscriber(session_factory, limited_off)
    app = create_app(limited_off)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        await assert_same_answer_and_timing(
            http,
            REQUEST_RECOVERY,
            lambda i: {"input": {"identifier": made.login}},
            lambda i: {"input": {"identifier": f"7798{i + 10:08d}"}},
            samples=25,
        )
    await app.state.engine.dispose()


async def test_registration_timing_does_not_tell_known_from_unknown(
    settings: Any, session_factory: Any, engine: Any
) -> None:
    limited_off = settings.model_copy(update=NO_LIMITS)
    made = await make_subscriber(
        session_factory, limited_off, registered=False, security_code="24681357"
    )

    def attempt(number: str) -> dict[str, Any]:
        return {
            "input": {
                "contractNumber": number,
                "securityCode": "13572468",  # wrong
                "legalStatus": "INDIVIDUAL",
                "documentNumber": made.document,
                "email": made.email,
            }
        }

    app = create_app(limited_off)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        await assert_same_answer_and_timing(
            http,
            REGISTER,
            lambda i: attempt(made.contract_numbers[0]),
            lambda i: attempt(f"7797{i + 10:08d}"),
            samples=25,
        )
    await app.state.engine.dispose()


async def test_registration_answers_are_byte_equal_over_http(
    client: Any, session_factory: Any, settings: Any
) -> None:
    """Unknown number, wrong code, wrong document, wrong email: one and the same answer."""
    made = await make_subscriber(
        session_factory, settings, registered=False, security_code="24681357"
    )
    right = {
        "contractNumber": made.contract_numbers[0],
        "securityCode": "24681357",
        "legalStatus": "INDIVIDUAL",
        "documentNumber": made.document,
        "email": made.email,
    }
    answers = set()
    for wrong in (
        {"contractNumber": "779900000001"},
        {"securityCode": "11111111"},
        {"documentNumber": "4599 999999"},
        {"email": "someone.else@example.org"},
        {"legalStatus": "LEGAL_ENTITY"},
    ):
        response = await gql_raw(client, REGISTER, {"input": {**right, **wrong}})
        answers.add(response.content)
    assert len(answers) == 1, answers
    (only,) = answers
    assert b'"code":"INVALID"' in only and b'"field":null' in only


# -- host header poisoning ----------------------------------------------------------------


URL = re.compile(r"https?://[^\s\"'<>]+")


async def test_letters_and_links_ignore_the_host_header(
    settings: Any, session_factory: Any, engine: Any
) -> None:
    """Requests that make letters and links, sent with `Host: evil.example` (and forwarded
    host headers): every link in every letter and payload is under KABINET_PUBLIC_URL."""
    public = "https://lk.kabinet.example"
    configured = settings.model_copy(update={"public_url": public})
    poisoned = {
        "host": "evil.example",
        "x-forwarded-host": "evil.example",
        "x-forwarded-proto": "http",
        "forwarded": "host=evil.example;proto=http",
    }
    registered = await make_subscriber(session_factory, configured)
    newcomer = await make_subscriber(
        session_factory, configured, registered=False, security_code="24681357"
    )
    app = create_app(configured)
    transport = httpx.ASGITransport(app=app)
    links: list[str] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://evil.example") as http:
        # a recovery code letter
        body = await gql(
            http, REQUEST_RECOVERY, {"input": {"identifier": registered.login}}, headers=poisoned
        )
        assert body["requestPasswordRecovery"]["ok"] is True
        # a registration letter
        body = await gql(
            http,
            REGISTER,
            {
                "input": {
                    "contractNumber": newcomer.contract_numbers[0],
                    "securityCode": "24681357",
                    "legalStatus": "INDIVIDUAL",
                    "documentNumber": newcomer.document,
                    "email": newcomer.email,
                }
            },
            headers=poisoned,
        )
        assert body["register"]["errors"] == []
        # a top-up's payment page, then its receipt letter and receipt link
        signed_in = await sign_in(http, registered.login)
        created = (
            await gql(
                http,
                TOP_UP,
                {
                    "input": {
                        "contractNumber": registered.contract_numbers[0],
                        "amount": "100.00",
                        "method": "BANK_CARD",
                        "idempotencyKey": "host-header-0001",
                    }
                },
                headers={**signed_in, **poisoned},
            )
        )["createTopUp"]
        assert created["errors"] == []
        links.append(created["payment"]["confirmationUrl"])
        event = json.dumps(
            {
                "paymentId": created["payment"]["id"],
                "status": "SUCCEEDED",
                "providerReference": "host-1",
            }
        ).encode()
        confirmed = await http.post(
            "/webhooks/payments",
            content=event,
            headers={
                "content-type": "application/json",
                "x-signature": sign(configured, event),
                **poisoned,
            },
        )
        assert confirmed.status_code == 200, confirmed.text
        receipt = await gql(
            http,
            "query($id: ID!) { node(id: $id) { ... on Payment { receipt { url } } } }",
            {"id": created["payment"]["id"]},
            headers={**signed_in, **poisoned},
        )
        links.append(receipt["node"]["receipt"]["url"])
    await app.state.engine.dispose()
    async with session_factory() as session:
        letters = (await session.scalars(sa.select(OutboxMessage))).all()
    assert {letter.kind for letter in letters} >= {"RECOVERY_CODE", "REGISTRATION", "RECEIPT"}
    for letter in letters:
        text = f"{letter.subject}\n{letter.body_text}\n{letter.body_html or ''}"
        assert "evil.example" not in text, letter.kind
        links.extend(URL.findall(text))
    assert links
    for link in links:
        assert link == public or link.startswith(public + "/"), link


# -- introspection and CORS ------------------------------------------------------------------


async def test_introspection_in_production_is_for_staff_only(
    migrated_url: str, session_factory: Any, engine: Any
) -> None:
    configured = production_settings(migrated_url)
    made = await make_subscriber(session_factory, configured)
    _, username, password = await make_staff(session_factory, configured, role="OPERATOR")
    app = create_app(configured)
    transport = httpx.ASGITransport(app=app)
    query = "{ __schema { queryType { name } } }"
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        subscriber = await sign_in(http, made.login)
        refused = (await gql_raw(http, query, headers=subscriber)).json()
        assert "data" not in refused  # a request error (SPEC §4)
        assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        staff = await sign_in(http, username, password)
        allowed = (await gql_raw(http, query, headers=staff)).json()
        assert allowed["data"]["__schema"]["queryType"]["name"] == "Query"
    await app.state.engine.dispose()


async def test_cors_answers_only_the_allowlist(settings: Any, engine: Any) -> None:
    allowed_origin = "https://app.kabinet.example"
    app = create_app(settings.model_copy(update={"cors_origins": [allowed_origin]}))
    transport = httpx.ASGITransport(app=app)
    preflight = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
    }
    query = {"query": "{ regions { code } }"}
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        ok = await http.options("/graphql", headers={"origin": allowed_origin, **preflight})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == allowed_origin
        evil = await http.options(
            "/graphql", headers={"origin": "https://evil.example", **preflight}
        )
        assert "access-control-allow-origin" not in evil.headers
        post = await http.post("/graphql", json=query, headers={"origin": allowed_origin})
        assert post.status_code == 200
        assert post.headers["access-control-allow-origin"] == allowed_origin
        foreign = await http.post(
            "/graphql", json=query, headers={"origin": "https://evil.example"}
        )
        assert foreign.status_code == 403
        assert "access-control-allow-origin" not in foreign.headers
    await app.state.engine.dispose()


# -- offline cracking: what a stolen database holds ------------------------------------------


async def test_passwords_are_argon2id_at_the_configured_cost_and_upgraded_at_sign_in(
    settings: Any, session_factory: Any, engine: Any
) -> None:
    # given: a password hashed with weaker parameters (the tests' fast ones)
    made = await make_subscriber(session_factory, settings)
    from models import Credential

    async with session_factory() as session:
        old = await session.scalar(sa.select(Credential.password_hash))
    assert old.startswith("$argon2id$") and "m=64,t=1" in old
    # when: the owner signs in to a service configured with the SPEC's cost
    real = settings.model_copy(update=REAL_ARGON2)
    app = create_app(real)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        await sign_in(http, made.login)
    await app.state.engine.dispose()
    # then: the stored hash is argon2id at m=19456 KiB, t=2, p=1
    async with session_factory() as session:
        new = await session.scalar(sa.select(Credential.password_hash))
    assert new.startswith("$argon2id$v=19$m=19456,t=2,p=1$"), new
    assert made.password not in new


async def all_stored_text(session_factory: Any, *, leave_out: frozenset[str]) -> str:
    chunks = []
    async with session_factory() as session:
        for table in metadata.sorted_tables:
            if table.name in leave_out:
                continue
            for row in (await session.execute(sa.select(table))).all():
                chunks.extend(str(value) for value in row)
    return "\n".join(chunks)


async def test_tokens_codes_and_documents_are_stored_only_as_hashes(
    client: Any, session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(
        session_factory, settings, registered=False, security_code="24681357"
    )
    registered = await gql(
        client,
        REGISTER,
        {
            "input": {
                "contractNumber": made.contract_numbers[0],
                "securityCode": "24681357",
                "legalStatus": "INDIVIDUAL",
                "documentNumber": made.document,
                "email": made.email,
            }
        },
    )
    assert registered["register"]["errors"] == []
    other = await make_subscriber(session_factory, settings)
    signed = (
        await gql(client, LOGIN, {"input": {"identifier": other.login, "password": other.password}})
    )["login"]
    refreshed = (await gql(client, REFRESH, {"input": {"refreshToken": signed["refreshToken"]}}))[
        "refreshSession"
    ]
    stored = await all_stored_text(session_factory, leave_out=frozenset({"outbox_messages"}))
    for secret in (
        signed["accessToken"],
        signed["refreshToken"],
        refreshed["accessToken"],
        refreshed["refreshToken"],
        "24681357",
        made.document,
        made.document.replace(" ", ""),
        other.password,
    ):
        assert secret not in stored


async def test_delivered_letters_do_not_keep_temporary_passwords(
    client: Any, session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(
        session_factory, settings, registered=False, security_code="24681357"
    )
    registered = await gql(
        client,
        REGISTER,
        {
            "input": {
                "contractNumber": made.contract_numbers[0],
                "securityCode": "24681357",
                "legalStatus": "INDIVIDUAL",
                "documentNumber": made.document,
                "email": made.email,
            }
        },
    )
    assert registered["register"]["errors"] == []
    async with session_factory() as session:
        (letter,) = (await session.scalars(sa.select(OutboxMessage))).all()
    match = re.search(r"Временный пароль: (\S+)", letter.body_text)
    assert match is not None
    temporary = match.group(1)
    report = await deliver_due(session_factory, senders_for(settings), settings=settings)
    assert report.sent == 1
    stored = await all_stored_text(session_factory, leave_out=frozenset())
    assert temporary not in stored


# -- session theft ----------------------------------------------------------------------------


async def test_a_signed_out_session_cannot_be_refreshed(
    client: Any, session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(session_factory, settings)
    signed = (
        await gql(client, LOGIN, {"input": {"identifier": made.login, "password": made.password}})
    )["login"]
    bearer = {"Authorization": f"Bearer {signed['accessToken']}"}
    out = await gql(client, "mutation { logout { ok } }", headers=bearer)
    assert out["logout"]["ok"] is True
    stolen = (await gql(client, REFRESH, {"input": {"refreshToken": signed["refreshToken"]}}))[
        "refreshSession"
    ]
    assert stolen["accessToken"] is None
    assert stolen["errors"][0]["code"] == "INVALID_CREDENTIALS"


# -- limits under concurrency ------------------------------------------------------------------

BURST = 30


async def test_a_concurrent_burst_gets_no_more_login_guesses_than_the_limit(
    client: Any, session_factory: Any, settings: Any, request: pytest.FixtureRequest
) -> None:
    """30 guesses sent at once for one identifier: no more than 10 may be checked."""
    made = await make_subscriber(session_factory, settings)

    async def guess(password: str) -> str:
        body = (
            await gql_raw(
                client, LOGIN, {"input": {"identifier": made.login, "password": password}}
            )
        ).json()
        payload = body["data"]["login"]
        return payload["errors"][0]["code"] if payload["errors"] else "SIGNED_IN"

    outcomes = await asyncio.gather(*(guess(f"wrong guess number {i:03d}") for i in range(BURST)))
    checked = [o for o in outcomes if o != "RATE_LIMITED"]
    assert len(checked) <= settings.login_max_failures_per_identifier, sorted(outcomes)
    # and the right password after the burst is refused too (SPEC: from the 11th attempt on)
    assert await guess(made.password) == "RATE_LIMITED"


async def test_a_concurrent_burst_gets_no_more_registration_guesses_than_the_limit(
    client: Any, session_factory: Any, settings: Any, backend: str, request: pytest.FixtureRequest
) -> None:
    """30 security-code guesses for one contract at once: no more than 5 may be checked."""
    made = await make_subscriber(
        session_factory, settings, registered=False, security_code="24681357"
    )

    async def guess(code: str) -> str:
        variables = {
            "input": {
                "contractNumber": made.contract_numbers[0],
                "securityCode": code,
                "legalStatus": "INDIVIDUAL",
                "documentNumber": made.document,
                "email": made.email,
            }
        }
        body = (await gql_raw(client, REGISTER, variables)).json()
        errors = body["data"]["register"]["errors"]
        return errors[0]["code"] if errors else "REGISTERED"

    outcomes = await asyncio.gather(*(guess(f"{i:08d}") for i in range(BURST)))
    checked = [o for o in outcomes if o != "RATE_LIMITED"]
    assert len(checked) <= settings.registration_max_failures, sorted(outcomes)


async def burst(count: int, attempt: Callable[[int], Any]) -> list[str]:
    """`count` attempts sent at once; each one's outcome (an error code, or "OK")."""
    return list(await asyncio.gather(*(attempt(i) for i in range(count))))


async def payload_outcome(
    client: Any, query: str, variables: dict[str, Any], headers: dict[str, str] | None = None
) -> str:
    body = (await gql_raw(client, query, variables, headers=headers)).json()
    (payload,) = body["data"].values()
    return payload["errors"][0]["code"] if payload["errors"] else "OK"


async def test_a_concurrent_burst_over_every_alias_gets_exactly_the_login_limit(
    client: Any, session_factory: Any, settings: Any
) -> None:
    """30 guesses at once through the account's login, contract number, email and phone in
    several spellings: exactly 10 are checked (one count per account, counted first)."""
    made = await make_subscriber(session_factory, settings)
    aliases = [made.login, made.contract_numbers[0], made.email.upper(), made.phone]
    aliases += [f"8 {made.phone[2:]}", f"+7 ({made.phone[2:5]}) {made.phone[5:]}"]

    outcomes = await burst(
        BURST,
        lambda i: payload_outcome(
            client,
            LOGIN,
            {"input": {"identifier": aliases[i % len(aliases)], "password": f"wrong {i:012d}"}},
        ),
    )
    checked = [o for o in outcomes if o != "RATE_LIMITED"]
    assert len(checked) == settings.login_max_failures_per_identifier, sorted(outcomes)


async def test_a_concurrent_burst_gets_exactly_the_change_password_limit(
    client: Any, session_factory: Any, settings: Any
) -> None:
    """30 wrong current passwords at once from a stolen session: exactly 10 are checked."""
    made = await make_subscriber(session_factory, settings)
    headers = await sign_in(client, made.login)
    change = """mutation($input: ChangePasswordInput!) {
      changePassword(input: $input) { ok errors { code } } }"""

    outcomes = await burst(
        BURST,
        lambda i: payload_outcome(
            client,
            change,
            {"input": {"currentPassword": f"wrong {i:012d}", "newPassword": "v" * 20}},
            headers,
        ),
    )
    checked = [o for o in outcomes if o != "RATE_LIMITED"]
    assert len(checked) == settings.login_max_failures_per_identifier, sorted(outcomes)


async def test_a_concurrent_burst_gets_exactly_the_recovery_request_limit(
    client: Any, session_factory: Any, settings: Any
) -> None:
    """Issue 13: 15 concurrent recovery requests (limit 5) were 9 accepted on PostgreSQL."""
    made = await make_subscriber(session_factory, settings)
    spellings = [made.login, made.email, made.phone, f"8 {made.phone[2:]}"]

    outcomes = await burst(
        15,
        lambda i: payload_outcome(
            client, REQUEST_RECOVERY, {"input": {"identifier": spellings[i % len(spellings)]}}
        ),
    )
    assert outcomes.count("OK") == settings.recovery_requests_per_identifier_per_hour, outcomes
    async with session_factory() as session:
        letters = await session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage))
    assert letters == settings.recovery_requests_per_identifier_per_hour


async def test_a_concurrent_burst_gets_exactly_the_recovery_code_limit(
    client: Any, session_factory: Any, settings: Any
) -> None:
    """30 wrong codes at once for one account: exactly 5 are checked."""
    made = await make_subscriber(session_factory, settings)
    requested = await payload_outcome(
        client, REQUEST_RECOVERY, {"input": {"identifier": made.login}}
    )
    assert requested == "OK"
    reset = """mutation($input: ResetPasswordInput!) {
      resetPassword(input: $input) { ok errors { code } } }"""

    outcomes = await burst(
        BURST,
        lambda i: payload_outcome(
            client,
            reset,
            {"input": {"identifier": made.email, "code": "1234567", "newPassword": "v" * 20}},
        ),
    )
    checked = [o for o in outcomes if o != "RATE_LIMITED"]
    assert len(checked) == settings.recovery_code_attempts, sorted(outcomes)


async def test_a_concurrent_burst_gets_exactly_the_support_request_limit(
    client: Any, settings: Any
) -> None:
    """Issue 13: 15 concurrent support requests from one address (limit 5) were 9 accepted."""
    submit = """mutation($input: SubmitSupportRequestInput!) {
      submitSupportRequest(input: $input) { ok errors { code } } }"""

    outcomes = await burst(
        15,
        lambda i: payload_outcome(
            client,
            submit,
            {"input": {"contact": f"caller{i}@example.org", "message": "I cannot sign in."}},
        ),
    )
    assert outcomes.count("OK") == settings.support_requests_per_address_per_hour, outcomes


# -- the table itself ----------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
TABLE_LINK = re.compile(r"\[(?P<path>tests/[^\]:]+\.py)::(?P<test>\w+)\]\((?P<href>[^)]+)\)")
REQUIRED_ROWS = (
    "Deep queries",
    "Alias flooding",
    "Token flooding",
    "Large bodies",
    "Batching",
    "Introspection",
    "Error masking",
    "CSRF",
    "Credential stuffing",
    "Enumeration: sign-in",
    "Enumeration: registration",
    "Enumeration: recovery",
    "Code guessing: recovery codes",
    "Code guessing: registration security codes",
    "Weak passwords",
    "Offline cracking",
    "Session theft",
    "IDOR",
    "Double top-up",
    "Double credit",
    "Forged payment confirmation",
    "Lost updates",
    "Promise abuse",
    "Host header poisoning",
)


def test_every_row_of_the_threat_table_names_a_test_that_exists() -> None:
    doc = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    rows = [line for line in doc.splitlines() if line.startswith("| **")]
    titles = [row.split("**")[1] for row in rows]
    for required in REQUIRED_ROWS:
        assert any(title.startswith(required) for title in titles), required
    for row in rows:
        test_cell = row.rstrip(" |").rsplit(" | ", 1)[1]
        links = list(TABLE_LINK.finditer(test_cell))
        assert links, f"row without a linked test: {row[:80]}"
    for link in TABLE_LINK.finditer(doc):
        path, test = link.group("path"), link.group("test")
        assert link.group("href") == f"../{path}", link.group(0)
        source = (ROOT / path).read_text(encoding="utf-8")
        assert re.search(rf"^(async )?def {test}\(", source, re.MULTILINE), f"{path}::{test}"
    # and every path the table names as code exists
    for href in re.findall(r"\]\(\.\./([^)#]+)\)", doc):
        assert (ROOT / href).exists(), href
