"""Nobody reaches what is not theirs: a schema walk proves every root field is public by
decision or guarded, and an IDOR matrix tries every contract path as another subscriber,
as staff and signed out."""

from __future__ import annotations

from typing import Any

import pytest
from strawberry.permission import PermissionExtension

from auth.permissions import PUBLIC_FIELDS
from schema import build_schema
from tests.conftest import fast_settings, gql, gql_raw
from tests.factories import make_staff, make_subscriber, sign_in

CONTRACT_FIELDS = """
  id number address status openedOn
  balance { amount currency }
  region { code name }
  tariff { id name monthlyFee }
"""
CONTRACT = f"query($number: String!) {{ contract(number: $number) {{ {CONTRACT_FIELDS} }} }}"
NODE = f"""query($id: ID!) {{ node(id: $id) {{ id
  ... on Contract {{ {CONTRACT_FIELDS} }}
  ... on Subscriber {{
    login displayName email phone contracts {{ number }} bonusAccount {{ points }}
  }}
}} }}"""
ME = f"{{ me {{ id login email contracts {{ {CONTRACT_FIELDS} }} }} }}"
STAFF_QUERIES = {
    "subscribers": "{ subscribers { edges { node { id login } } } }",
    "supportRequests": "{ supportRequests { edges { node { id } } } }",
    "auditLog": "{ auditLog { edges { node { id } } } }",
}
STAFF_MUTATIONS = {
    "staffResetAccess": """mutation { staffResetAccess(input: {contractNumber: "1",
        documentVerified: true, reason: "checked passport"}) { ok errors { code } } }""",
    "closeSupportRequest": """mutation { closeSupportRequest(input: {id: "x",
        resolution: "done"}) { ok errors { code } } }""",
    "staffCreateContract": """mutation { staffCreateContract(input: {legalStatus: INDIVIDUAL,
        displayName: "X Y", documentNumber: "4000 000000", email: "x@example.org",
        region: "MOW", address: "Somewhere 1", tariffId: "x"}) { securityCode } }""",
}


def _root_fields() -> list[tuple[str, Any]]:
    schema = build_schema(fast_settings("sqlite+aiosqlite:///:memory:"))
    found = []
    for type_name in ("Query", "Mutation"):
        definition = schema.get_type_by_name(type_name)
        assert definition is not None
        for field in definition.fields:  # type: ignore[union-attr]
            found.append(
                (f"{type_name}.{schema.config.name_converter.get_graphql_name(field)}", field)
            )
    return found


def test_every_root_field_is_public_by_decision_or_guarded() -> None:
    unguarded = []
    for name, field in _root_fields():
        guarded = any(isinstance(ext, PermissionExtension) for ext in field.extensions)
        if not guarded and name not in PUBLIC_FIELDS:
            unguarded.append(name)
        if guarded and name in PUBLIC_FIELDS:
            unguarded.append(f"{name} (listed public but guarded: fix the list)")
    assert unguarded == []


def test_the_public_list_names_only_fields_that_exist() -> None:
    names = {name for name, _ in _root_fields()}
    assert PUBLIC_FIELDS <= names


@pytest.fixture
async def two_subscribers(session_factory: Any, settings: Any, client: Any) -> dict[str, Any]:
    owner = await make_subscriber(session_factory, settings, contracts=2)
    other = await make_subscriber(session_factory, settings)
    owner_headers = await sign_in(client, owner.login)
    other_headers = await sign_in(client, other.login)
    me = (await gql(client, ME, headers=owner_headers))["me"]
    return {
        "owner": owner,
        "other": other,
        "owner_headers": owner_headers,
        "other_headers": other_headers,
        "subscriber_id": me["id"],
        "contract_ids": [c["id"] for c in me["contracts"]],
    }


async def test_another_subscriber_sees_nothing_of_mine(client: Any, two_subscribers: Any) -> None:
    world = two_subscribers
    for number in world["owner"].contract_numbers:
        data = await gql(client, CONTRACT, {"number": number}, headers=world["other_headers"])
        assert data["contract"] is None
    for global_id in [*world["contract_ids"], world["subscriber_id"]]:
        data = await gql(client, NODE, {"id": global_id}, headers=world["other_headers"])
        assert data["node"] is None
    # and the owner does see them
    for number in world["owner"].contract_numbers:
        data = await gql(client, CONTRACT, {"number": number}, headers=world["owner_headers"])
        assert data["contract"]["number"] == number
    for global_id in world["contract_ids"]:
        assert (await gql(client, NODE, {"id": global_id}, headers=world["owner_headers"]))["node"]


async def test_signed_out_callers_see_no_contract(client: Any, two_subscribers: Any) -> None:
    world = two_subscribers
    for number in world["owner"].contract_numbers:
        assert (await gql(client, CONTRACT, {"number": number}))["contract"] is None
    for global_id in [*world["contract_ids"], world["subscriber_id"]]:
        assert (await gql(client, NODE, {"id": global_id}))["node"] is None


async def test_staff_see_any_contract_through_staff_paths(
    client: Any, two_subscribers: Any, session_factory: Any, settings: Any
) -> None:
    world = two_subscribers
    _, username, password = await make_staff(session_factory, settings)
    staff = await sign_in(client, username, password)
    number = world["owner"].contract_numbers[0]
    assert (await gql(client, CONTRACT, {"number": number}, headers=staff))["contract"]
    node = (await gql(client, NODE, {"id": world["subscriber_id"]}, headers=staff))["node"]
    assert node["login"] == world["owner"].login
    found = (await gql(client, STAFF_QUERIES["subscribers"], headers=staff))["subscribers"]
    assert {e["node"]["login"] for e in found["edges"]} >= {world["owner"].login}


@pytest.mark.parametrize("field", sorted(STAFF_QUERIES) + sorted(STAFF_MUTATIONS))
async def test_staff_fields_refuse_subscribers_and_anonymous(
    client: Any, two_subscribers: Any, field: str
) -> None:
    query = STAFF_QUERIES.get(field) or STAFF_MUTATIONS[field]
    as_subscriber = (await gql_raw(client, query, headers=two_subscribers["owner_headers"])).json()
    assert as_subscriber["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert as_subscriber.get("data") is None or as_subscriber["data"].get(field) is None
    anonymous = (await gql_raw(client, query)).json()
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_subscriber_who_must_change_the_password_sees_nothing(
    client: Any, session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(session_factory, settings, must_change_password=True)
    headers = await sign_in(client, made.login)
    body = (
        await gql_raw(client, CONTRACT, {"number": made.contract_numbers[0]}, headers=headers)
    ).json()
    assert body["errors"][0]["extensions"]["code"] == "PASSWORD_CHANGE_REQUIRED"
