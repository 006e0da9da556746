"""The TypeScript starter's operations (clients/typescript/src/operations/*.graphql) are
what a front end sends: the real API accepts every one of them, as the starter sends it
(the operation with the fragments it uses), within the limits of SPEC §5, and answers
with data, on SQLite and PostgreSQL. `make starter-check` checks the same documents
against schema.graphql with graphql-codegen and tsc; this checks them against the server.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    OperationDefinitionNode,
    Visitor,
    parse,
    print_ast,
    visit,
)

from core.settings import Settings
from tests.factories import make_subscriber

OPERATIONS_DIR = (
    Path(__file__).resolve().parents[1] / "clients" / "typescript" / "src" / "operations"
)


def _definitions() -> tuple[dict[str, OperationDefinitionNode], dict[str, FragmentDefinitionNode]]:
    operations: dict[str, OperationDefinitionNode] = {}
    fragments: dict[str, FragmentDefinitionNode] = {}
    for path in sorted(OPERATIONS_DIR.glob("*.graphql")):
        for definition in parse(path.read_text(encoding="utf-8")).definitions:
            if isinstance(definition, OperationDefinitionNode):
                assert definition.name is not None, f"an anonymous operation in {path.name}"
                operations[definition.name.value] = definition
            elif isinstance(definition, FragmentDefinitionNode):
                fragments[definition.name.value] = definition
    return operations, fragments


OPERATIONS, FRAGMENTS = _definitions()


class _Spreads(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def enter_fragment_spread(self, node: FragmentSpreadNode, *_: Any) -> None:
        self.names.append(node.name.value)


def document(name: str) -> str:
    """The operation and the fragments it uses, transitively: what codegen's typed
    document (and so Apollo) sends. An unused fragment would fail validation."""
    used: dict[str, FragmentDefinitionNode] = {}
    pending: list[Any] = [OPERATIONS[name]]
    while pending:
        spreads = _Spreads()
        visit(pending.pop(), spreads)
        for spread in spreads.names:
            if spread not in used:
                used[spread] = FRAGMENTS[spread]
                pending.append(FRAGMENTS[spread])
    return print_ast(DocumentNode(definitions=(OPERATIONS[name], *used.values())))


async def send(
    client: httpx.AsyncClient, name: str, variables: dict[str, Any], token: str | None = None
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post(
        "/graphql",
        json={"query": document(name), "variables": variables, "operationName": name},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body["errors"]
    data: dict[str, Any] = body["data"]
    return data


def test_the_starter_has_the_operations_a_front_end_sends() -> None:
    assert set(OPERATIONS) == {
        "AccountOverview",
        "Login",
        "RefreshSession",
        "CreateTopUp",
        "ActivatePromisedPayment",
        "ConnectTvPackage",
        "ContractLedger",
    }


async def test_the_api_answers_every_starter_operation(
    client: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(
        session_factory, settings, login="starter", balance=Decimal("10.00")
    )
    number = made.contract_numbers[0]

    login = (await send(client, "Login", {"input": {"identifier": "starter", "password": "x"}}))[
        "login"
    ]
    assert [e["code"] for e in login["errors"]] == ["INVALID_CREDENTIALS"]
    login = (
        await send(client, "Login", {"input": {"identifier": "starter", "password": made.password}})
    )["login"]
    assert login["errors"] == [] and login["accessToken"], login
    token = login["accessToken"]

    me = (await send(client, "AccountOverview", {}, token))["me"]
    assert me["id"] == login["subscriber"]["id"]
    card = me["contracts"][0]
    assert card["number"] == number and card["balance"]["amount"] == "10.00"

    top_up = (
        await send(
            client,
            "CreateTopUp",
            {
                "input": {
                    "contractNumber": number,
                    "amount": "500.00",
                    "method": "BANK_CARD",
                    "idempotencyKey": "starter-top-up-1",
                }
            },
            token,
        )
    )["createTopUp"]
    assert top_up["errors"] == [] and top_up["payment"]["status"] == "PENDING", top_up

    # (connected before the promise: no paid service is connected while one is open)
    packages = (await client.post("/graphql", json={"query": "{ tvPackages { id } }"})).json()
    package_id = packages["data"]["tvPackages"][0]["id"]
    connect = (
        await send(
            client,
            "ConnectTvPackage",
            {"input": {"contractNumber": number, "packageId": package_id}},
            token,
        )
    )["connectTvPackage"]
    assert connect["errors"] == [], connect
    assert connect["contract"]["id"] == card["id"]
    assert package_id in [p["id"] for p in connect["contract"]["tvPackages"]]

    promise = (
        await send(
            client,
            "ActivatePromisedPayment",
            {"input": {"contractNumber": number, "amount": "100.00"}},
            token,
        )
    )["activatePromisedPayment"]
    assert promise["errors"] == [], promise
    # the payload's contract carries the balance by its id, with the promise open
    balance = promise["contract"]["balance"]
    assert balance["id"] == card["balance"]["id"]
    assert balance["openPromisedPayment"]["id"] == promise["promisedPayment"]["id"]
    assert promise["contract"]["promisedPaymentOffer"]["reasonCodes"] == ["PROMISE_OPEN"]

    # ledger pagination as the cache does it: first/after until hasNextPage is false
    seen: list[str] = []
    after = None
    while True:
        ledger = (
            await send(
                client, "ContractLedger", {"number": number, "first": 1, "after": after}, token
            )
        )["contract"]["ledger"]
        seen += [edge["node"]["id"] for edge in ledger["edges"]]
        if not ledger["pageInfo"]["hasNextPage"]:
            break
        after = ledger["pageInfo"]["endCursor"]
    assert len(seen) >= 2 and len(set(seen)) == len(seen)

    refreshed = (
        await send(client, "RefreshSession", {"input": {"refreshToken": login["refreshToken"]}})
    )["refreshSession"]
    assert refreshed["errors"] == [] and refreshed["accessToken"], refreshed
    assert (await send(client, "AccountOverview", {}, refreshed["accessToken"]))["me"]["id"] == me[
        "id"
    ]
