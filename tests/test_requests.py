"""SPEC §4 "GraphQL over HTTP" and the document limits of SPEC §5 (issue 13, items 5, 6, 9):
every answer of /graphql is JSON with X-Request-ID, a request error has a code and no
`data`, nothing a client sends yields a 500, a document is parsed and validated once at a
bounded cost, and Money input has one form."""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
import pytest
import strawberry
from graphql import ValidationRule
from strawberry.extensions import AddValidationRules

from schema import KabinetSchema
from schema.documents import BYTES_PER_TOKEN
from tests.conftest import gql_raw

LIMIT = "LIMIT_EXCEEDED"
TOP_UP = """
mutation($amount: Money!) {
  createTopUp(input: {contractNumber: "1", amount: $amount, method: BANK_CARD,
                      idempotencyKey: "k"}) { errors { code } }
}
"""


def _request_error(response: httpx.Response) -> dict[str, Any]:
    """The one request error of an answer, checked for what every answer promises."""
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers.get("x-request-id")
    body = response.json()
    assert "data" not in body, body
    assert body["errors"], body
    for error in body["errors"]:
        assert error["extensions"]["code"], error
    assert "Traceback" not in response.text and "Unexpected error" not in response.text
    return body["errors"][0]


# --- item 6: client mistakes ----------------------------------------------------------------


async def test_an_operation_name_not_in_the_document_is_a_request_error(client: Any) -> None:
    response = await client.post(
        "/graphql", json={"query": "query A { regions { code } }", "operationName": "B"}
    )
    assert response.status_code == 200
    error = _request_error(response)
    assert error["extensions"]["code"] == "OPERATION_RESOLUTION_FAILURE"
    assert "'B'" in error["message"]


async def test_several_operations_without_an_operation_name_are_a_request_error(
    client: Any,
) -> None:
    query = "query A { regions { code } } query B { regions { name } }"
    response = await client.post("/graphql", json={"query": query})
    error = _request_error(response)
    assert error["extensions"]["code"] == "OPERATION_RESOLUTION_FAILURE"
    named = await client.post("/graphql", json={"query": query, "operationName": "B"})
    assert named.json()["data"]["regions"][0]["name"]


@pytest.mark.parametrize("levels", [40, 400, 5000])
@pytest.mark.parametrize("shape", ["list", "object"])
async def test_deeply_nested_variables_are_400(client: Any, levels: int, shape: str) -> None:
    if shape == "list":
        nested = "[" * levels + "]" * levels
    else:
        nested = '{"a":' * levels + "1" + "}" * levels
    query = '"query($x: String) { regions { code } }"'
    body = '{"query": ' + query + ', "variables": {"x": ' + nested + "}}"
    response = await client.post(
        "/graphql", content=body.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert _request_error(response)["extensions"]["code"] == "BAD_REQUEST"


async def test_a_lone_surrogate_in_a_password_is_bad_user_input(client: Any) -> None:
    body = (
        '{"query": "mutation($p: String!) { login(input: {identifier: \\"demo\\", password: $p})'
        ' { errors { code } } }", "variables": {"p": "ab\\ud800cd"}}'
    )
    response = await client.post(
        "/graphql", content=body.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert _request_error(response)["extensions"]["code"] == "BAD_USER_INPUT"
    # a surrogate pair (an emoji) is text, and is taken
    emoji = await gql_raw(client, "query($r: String) { tariffs(region: $r) { id } }", {"r": "😀"})
    assert emoji.status_code == 200 and emoji.json()["data"] == {"tariffs": []}


@pytest.mark.parametrize(
    ("query", "variables", "code"),
    [
        ("{ regions { code ", None, "GRAPHQL_PARSE_FAILED"),
        ("{ tariff { id } }", None, "GRAPHQL_VALIDATION_FAILED"),
        (
            "{ " + " ".join(f"a{i}: regions {{ code }}" for i in range(11)) + " }",
            None,
            "LIMIT_EXCEEDED",
        ),
        ("{" + " tvPackages {" * 11 + " id" + " }" * 11 + " }", None, "LIMIT_EXCEEDED"),
        ("{ regions { " + " ".join(["code"] * 2100) + " } }", None, "LIMIT_EXCEEDED"),
        ("query($r: String) { tariffs(region: $r) { id } }", {"r": 5}, "BAD_USER_INPUT"),
        ("query($r: String!) { tariffs(region: $r) { id } }", {}, "BAD_USER_INPUT"),
        (TOP_UP, {"amount": "9e99"}, "BAD_USER_INPUT"),
    ],
)
async def test_every_request_error_has_a_code_and_no_data(
    client: Any, query: str, variables: dict[str, Any] | None, code: str
) -> None:
    response = await gql_raw(client, query, variables)
    assert response.status_code == 200
    error = _request_error(response)
    assert error["extensions"]["code"] == code, error
    assert "Did you mean" not in error["message"]
    assert "InvalidOperation" not in error["message"] and "decimal" not in error["message"]


# --- item 5: a document's cost --------------------------------------------------------------


async def test_repeated_selections_are_refused_before_validation(client: Any) -> None:
    # given: 480 times the same selection, no aliases, under the token limit, a comment in
    # front so that no cache has seen it (it held the event loop for 1-3 s)
    query = f"# {secrets.token_hex(8)}\n{{ " + " ".join(["regions{code}"] * 480) + " }"
    # when
    started = time.perf_counter()
    response = await gql_raw(client, query)
    elapsed = time.perf_counter() - started
    # then
    error = _request_error(response)
    assert error["extensions"]["code"] == "LIMIT_EXCEEDED"
    assert elapsed < 0.5, elapsed  # ~25 ms here; the validation alone took over a second
    # while a few repetitions, as fragments of a front end make them, are fine
    few = "{ " + " ".join(["regions{code}"] * 5) + " }"
    assert (await gql_raw(client, few)).json()["data"]["regions"]


async def test_fragments_cannot_multiply_the_selections(client: Any) -> None:
    # each fragment spreads the previous one twice: 2^12 selections from 40 lines
    lines = ["fragment F0 on Region { code }"]
    lines += [f"fragment F{i} on Region {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, 13)]
    query = "{ regions { ...F12 } } " + " ".join(lines)
    error = _request_error(await gql_raw(client, query))
    assert error["extensions"]["code"] == "LIMIT_EXCEEDED"


class _Counting(ValidationRule):
    made = 0

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        type(self).made += 1


@strawberry.type
class _Query:
    ok: bool = True


async def test_a_failing_document_is_validated_once() -> None:
    # given: a schema built as build_schema builds it: the rule on both ways
    schema = KabinetSchema(
        query=_Query,
        validation_rules=[_Counting],
        extensions=[lambda: AddValidationRules([_Counting])],
        max_tokens=2000,
    )
    _Counting.made = 0
    # when
    first = await schema.execute("{ ok nope }")
    again = await schema.execute("{ ok nope }")
    # then
    assert first.errors and again.errors
    assert _Counting.made == 1  # was 2: by Kabinet, then again by Strawberry
    assert first.errors[0].extensions["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_the_document_cache_is_bounded_in_bytes() -> None:
    # given: a cache of 2 MiB, and documents of 2,000 tokens (~1.2 MiB parsed each)
    schema = KabinetSchema(query=_Query, max_tokens=2000, cache_bytes=2 * 1024 * 1024)
    values = ",".join('"x"' for _ in range(1980))
    # when: 20 distinct documents
    for _ in range(20):
        query = f"# {secrets.token_hex(8)}\nquery($v: [String] = [{values}]) {{ ok }}"
        result = await schema.execute(query)
        assert result.errors  # $v is never used: refused, and its document kept
    # then
    cache = schema.documents.cache
    assert 0 < cache.bytes <= 2 * 1024 * 1024
    assert len(cache) == 1  # each weighs ~2,000 x BYTES_PER_TOKEN
    assert BYTES_PER_TOKEN * 2000 > 1024 * 1024


# --- item 9: Money ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "says"),
    [
        ("1e3", "exponent"),
        ("9e99", "exponent"),
        ("1_000", "underscores"),
        ("１００", "ASCII"),
        ("١٠٠", "ASCII"),
        (" 15 ", "spaces"),
        (100, "JSON number"),
        (12.5, "JSON number"),
        ("1.234", "two decimal places"),
        ("NaN", '"1234.50"'),
        ("15.", '"1234.50"'),
    ],
)
async def test_money_input_has_one_form(client: Any, amount: Any, says: str) -> None:
    response = await gql_raw(client, TOP_UP, {"amount": amount})
    error = _request_error(response)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert says in error["message"], error["message"]


@pytest.mark.parametrize("amount", ["15", "1234.50", "-3.5", "0.01"])
async def test_money_in_its_one_form_is_taken(client: Any, amount: str) -> None:
    body = (await gql_raw(client, TOP_UP, {"amount": amount})).json()
    # past the variables: the signed-out caller is told so by the mutation itself
    assert all(e["extensions"]["code"] != "BAD_USER_INPUT" for e in body.get("errors", []))
    assert "data" in body


async def test_a_defect_of_ours_is_still_json_with_a_request_id(
    client: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # given: finding the caller fails outside any resolver (a defect, not a client mistake)
    async def broken(_request: Any, _reader: Any) -> Any:
        raise RuntimeError("SELECT secret FROM sessions")

    monkeypatch.setattr("kabinet.web.graphql.request_principal", broken)
    # when
    response = await gql_raw(client, "{ bonusRewards { code } }")
    # then: JSON, the request id, no internals (it was a text/plain 500 without the id)
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers.get("x-request-id")
    assert "SELECT" not in response.text and "RuntimeError" not in response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert any("unexpected error answering /graphql" in r.getMessage() for r in caplog.records)
