"""What a front end's cache and code generator rely on (issue 15, SPEC §4 "GraphQL over
HTTP"), through POST /graphql on both databases.

The Apollo case is checked the way Apollo's InMemoryCache works: every object of an answer
that has `__typename` and `id` is stored under "<__typename>:<id>" and its fields are merged
into what is stored; other objects stay inside their parent. An object without an `id` is
replaced by each answer (the cached balance lost its fields); a mutation payload that does
not carry the changed objects leaves the cache stale (the cached balance kept its old
amount).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from core.ids import from_global_id, to_global_id
from models import Tariff
from resolvers import promised
from schema.types.money import PromisedPaymentRefusal
from tests.conftest import gql
from tests.factories import make_staff, make_subscriber, sign_in
from tests.services.test_services import catalog_id

OVERVIEW = """
query AccountOverview { me { __typename id displayName
  bonusAccount { __typename id points }
  contracts { __typename id number
    balance { __typename id amount availableAmount
      openPromisedPayment { __typename id amount status } }
    promisedPaymentOffer { __typename id available maxAmount reasonCodes }
  } } }
"""
SMALL = """
query($number: String!) { contract(number: $number) {
  __typename id balance { __typename id amount } } }
"""
ACTIVATE = """
mutation($input: ActivatePromisedPaymentInput!) {
  activatePromisedPayment(input: $input) {
    errors { field code message }
    promisedPayment { __typename id amount status }
    balance { __typename id amount }
    contract { __typename id
      balance { __typename id amount availableAmount
        openPromisedPayment { __typename id amount status } }
      promisedPaymentOffer { __typename id available maxAmount reasonCodes }
    }
  }
}
"""
TOP_UP = """
mutation($input: CreateTopUpInput!) {
  createTopUp(input: $input) {
    errors { field code message }
    payment { __typename id status }
    contract { __typename id balance { __typename id amount } }
  }
}
"""
REASONS = """
query($number: String!) { contract(number: $number) {
  promisedPaymentOffer { reasons reasonCodes messages } } }
"""


class Cache:
    """Apollo's InMemoryCache in miniature: objects by "<__typename>:<id>", fields merged."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}

    def write(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.write(item) for item in value]
        if not isinstance(value, dict):
            return value
        fields = {name: self.write(item) for name, item in value.items()}
        if "__typename" in fields and "id" in fields:
            key = f"{fields['__typename']}:{fields['id']}"
            self.objects.setdefault(key, {}).update(fields)
            return {"__ref": key}
        return fields

    def read(self, key: str) -> dict[str, Any]:
        return self.objects[key]

    def follow(self, ref: dict[str, str] | None) -> dict[str, Any] | None:
        return None if ref is None else self.objects[ref["__ref"]]


async def test_a_promise_reaches_the_cached_balance_and_offer(
    client: Any, session_factory: Any, settings: Any
) -> None:
    # given: the overview in the cache, then a smaller query on the same contract
    made = await make_subscriber(session_factory, settings, opened_days_ago=120)
    me = await sign_in(client, made.login)
    number, contract_pk = made.contract_numbers[0], made.contract_ids[0]
    cache = Cache()
    cache.write(await gql(client, OVERVIEW, headers=me))
    cache.write(await gql(client, SMALL, {"number": number}, headers=me))
    subscriber = cache.read(_subscriber_key(cache))
    (contract_ref,) = subscriber["contracts"]
    contract = cache.follow(contract_ref)
    assert contract is not None
    balance = cache.follow(contract["balance"])
    offer = cache.follow(contract["promisedPaymentOffer"])
    assert balance is not None and offer is not None
    # then: each has a stable id of its contract (the subscriber's for the bonus account),
    # and the smaller query merged into the balance instead of replacing it
    assert from_global_id(balance["id"]) == ("Balance", str(contract_pk))
    assert from_global_id(offer["id"]) == ("PromisedPaymentOffer", str(contract_pk))
    bonus = cache.follow(subscriber["bonusAccount"])
    assert bonus is not None and from_global_id(bonus["id"]) == ("BonusAccount", str(made.id))
    assert set(balance) >= {"amount", "availableAmount", "openPromisedPayment"}
    assert balance["amount"] == "0.00" and balance["openPromisedPayment"] is None
    node = "query($id: ID!) { node(id: $id) { id } }"
    assert (await gql(client, node, {"id": balance["id"]}, headers=me))["node"] is None
    assert offer["available"] is True and offer["reasonCodes"] == []

    # when: the subscriber takes a promise, and the cache takes the payload
    payload = (
        await gql(
            client, ACTIVATE, {"input": {"contractNumber": number, "amount": "100.00"}}, headers=me
        )
    )["activatePromisedPayment"]
    assert payload["errors"] == []
    cache.write(payload)

    # then: the cached objects the overview reads show the new state
    contract = cache.follow(contract_ref)
    assert contract is not None and payload["contract"]["id"] == contract["id"]
    balance = cache.follow(contract["balance"])
    assert balance is not None and balance["amount"] == "100.00"
    assert payload["balance"]["id"] == payload["contract"]["balance"]["id"] == balance["id"]
    promise = cache.follow(balance["openPromisedPayment"])
    assert promise is not None and promise["status"] == "OPEN" and promise["amount"] == "100.00"
    assert promise["id"] == payload["promisedPayment"]["id"]
    offer = cache.follow(contract["promisedPaymentOffer"])
    assert offer is not None and offer["available"] is False
    assert "PROMISE_OPEN" in offer["reasonCodes"]
    # and: what the server says now is what the cache holds
    fresh = Cache()
    fresh.write(await gql(client, OVERVIEW, headers=me))
    assert fresh.read(f"Balance:{balance['id']}") == balance
    assert fresh.read(f"PromisedPaymentOffer:{offer['id']}") == offer


def _subscriber_key(cache: Cache) -> str:
    (key,) = (key for key in cache.objects if key.startswith("Subscriber:"))
    return key


async def test_a_top_up_answers_with_its_contract(
    client: Any, session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(session_factory, settings, balance=Decimal("250.00"))
    me = await sign_in(client, made.login)
    top_up = {
        "contractNumber": made.contract_numbers[0],
        "amount": "100.00",
        "method": "SBP",
        "idempotencyKey": "front-end-0001",
    }
    payload = (await gql(client, TOP_UP, {"input": top_up}, headers=me))["createTopUp"]
    assert payload["errors"] == [] and payload["payment"]["status"] == "PENDING"
    contract = payload["contract"]
    assert from_global_id(contract["id"]) == ("Contract", str(made.contract_ids[0]))
    assert from_global_id(contract["balance"]["id"]) == ("Balance", str(made.contract_ids[0]))
    assert contract["balance"]["amount"] == "250.00"  # credited when the provider confirms


async def test_reason_codes_are_the_reasons_as_an_enum(
    client: Any, session_factory: Any, settings: Any
) -> None:
    # the enum's values are the codes the offer's rule gives, in its order
    assert [member.value for member in PromisedPaymentRefusal] == list(promised.REASON_TEXT)
    made = await make_subscriber(session_factory, settings, opened_days_ago=10)
    me = await sign_in(client, made.login)
    offer = (await gql(client, REASONS, {"number": made.contract_numbers[0]}, headers=me))[
        "contract"
    ]["promisedPaymentOffer"]
    assert offer["reasonCodes"] == offer["reasons"] == ["CONTRACT_TOO_NEW"]
    assert len(offer["messages"]) == 1


# -- every problem of an input at once (SPEC §4) -----------------------------------------------

STAFF_CREATE_CONTRACT = """
mutation($input: StaffCreateContractInput!) {
  staffCreateContract(input: $input) { contract { id } errors { field code message } }
}
"""
ADJUST = """
mutation($input: AdjustBalanceInput!) {
  adjustBalance(input: $input) { contract { id } errors { field code message } }
}
"""
RESET_ACCESS = """
mutation($input: StaffResetAccessInput!) {
  staffResetAccess(input: $input) { ok errors { field code message } }
}
"""
SUPPORT = """
mutation($input: SubmitSupportRequestInput!) {
  submitSupportRequest(input: $input) { ok errors { field code message } }
}
"""
REGISTER = """
mutation($input: RegisterInput!) {
  register(input: $input) { login errors { field code message } }
}
"""
CREATE_TARIFF = """
mutation($input: CreateTariffInput!) {
  createTariff(input: $input) { tariff { id } errors { field code message } }
}
"""
KEY_DESCRIPTION = '{ __type(name: "CreateTopUpInput") { inputFields { name description } } }'


def _fields(errors: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(error["field"], error["code"]) for error in errors]


async def test_a_top_up_reports_every_problem_of_its_input(
    client: Any, session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(session_factory, settings)
    me = await sign_in(client, made.login)
    # when: an amount below the minimum and a 7-character key
    top_up = {
        "contractNumber": made.contract_numbers[0],
        "amount": "5",
        "method": "SBP",
        "idempotencyKey": "7-chars",
    }
    payload = (await gql(client, TOP_UP, {"input": top_up}, headers=me))["createTopUp"]
    # then: both, each on its field, and nothing made
    assert _fields(payload["errors"]) == [("amount", "INVALID"), ("idempotencyKey", "INVALID")]
    assert "8 to 100 printable ASCII characters" in payload["errors"][1]["message"]
    assert payload["payment"] is None and payload["contract"] is None
    # and one problem alone is reported alone
    fixed = {**top_up, "amount": "100.00"}
    payload = (await gql(client, TOP_UP, {"input": fixed}, headers=me))["createTopUp"]
    assert _fields(payload["errors"]) == [("idempotencyKey", "INVALID")]
    # and the key's rule is in its description
    described = (await gql(client, KEY_DESCRIPTION))["__type"]["inputFields"]
    (key,) = (field for field in described if field["name"] == "idempotencyKey")
    assert "8 to 100 printable ASCII characters" in key["description"]


async def test_staff_and_public_mutations_report_every_problem_of_their_input(
    client: Any, session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(session_factory, settings)
    _, username, password = await make_staff(session_factory, settings)
    staff = await sign_in(client, username, password)
    tariff = to_global_id("Tariff", await catalog_id(session_factory, Tariff, "home-100"))
    cases = [
        (
            STAFF_CREATE_CONTRACT,
            "staffCreateContract",
            staff,
            {
                "legalStatus": "INDIVIDUAL",
                "displayName": "X",
                "documentNumber": "12",
                "email": "not-an-email",
                "phone": "123",
                "region": "MOW",
                "address": "",
                "tariffId": tariff,
            },
            ["displayName", "documentNumber", "email", "phone", "address"],
        ),
        (
            ADJUST,
            "adjustBalance",
            staff,
            {"contractNumber": made.contract_numbers[0], "amount": "0", "reason": ""},
            ["amount", "reason"],
        ),
        (
            RESET_ACCESS,
            "staffResetAccess",
            staff,
            {"contractNumber": made.contract_numbers[0], "documentVerified": False, "reason": ""},
            ["documentVerified", "reason"],
        ),
        (
            CREATE_TARIFF,
            "createTariff",
            staff,
            {"region": "", "code": "Not A Code", "name": "", "monthlyFee": "1.00", "speedMbps": 0},
            ["region", "code", "name", "speedMbps"],
        ),
        (SUPPORT, "submitSupportRequest", None, {"contact": "x", "message": "short"}, None),
        (
            REGISTER,
            "register",
            None,
            {
                "contractNumber": made.contract_numbers[0],
                "securityCode": "000000",
                "legalStatus": "INDIVIDUAL",
                "documentNumber": made.document,
                "email": "not-an-email",
                "phone": "123",
            },
            ["email", "phone"],
        ),
    ]
    for document, name, headers, values, fields in cases:
        payload = (await gql(client, document, {"input": values}, headers=headers))[name]
        expected = ["contact", "message"] if fields is None else fields
        assert _fields(payload["errors"]) == [(field, "INVALID") for field in expected], name
        assert all(error["message"] for error in payload["errors"]), name
