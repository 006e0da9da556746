"""The unit of work is the single owner of the transaction (issue 14 item 4).

A mutation's verb runs in `RequestReader.write()`, which commits when the verb returns and
rolls back when it raises; a DomainError with `keep_writes` is committed, then answered as
the payload's error. Outside a request, `core.db.unit_of_work` holds the same rule. No verb
commits or rolls back by itself.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from core.db import unit_of_work
from core.errors import DomainError, ErrorCode
from models import RateLimitCounter, SupportRequest
from resolvers import support
from tests.conftest import gql, gql_raw

SUBMIT = """
mutation($input: SubmitSupportRequestInput!) {
  submitSupportRequest(input: $input) { ok errors { code message field } }
}
"""
REQUEST = {"contact": "ivan@example.org", "message": "The set-top box says E-42 since Monday."}
ROOT = Path(__file__).resolve().parent.parent


async def _rows(session_factory: Any) -> tuple[int, int]:
    """(support requests, attempts counted) as committed."""
    async with session_factory() as session:
        requests = await session.scalar(sa.select(sa.func.count()).select_from(SupportRequest))
        hits = await session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(RateLimitCounter.hits), 0))
        )
    return int(requests or 0), int(hits or 0)


def _refusing_after_its_writes(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    """submitSupportRequest's verb does all its writes (the attempt counted, the request
    stored), then raises `error`."""
    verb = support.submit_support_request

    async def writes_then_raises(session: Any, **kw: Any) -> int:
        await verb(session, **kw)
        raise error

    monkeypatch.setattr(support, "submit_support_request", writes_then_raises)


async def test_the_writes_of_a_verb_that_returns_are_committed(
    client: Any, session_factory: Any
) -> None:
    # when
    data = await gql(client, SUBMIT, {"input": REQUEST})

    # then: the payload says ok, and the request and its counted attempt are committed
    assert data["submitSupportRequest"] == {"ok": True, "errors": []}
    assert await _rows(session_factory) == (1, 1)


async def test_the_writes_of_a_verb_that_raises_a_domain_error_are_rolled_back(
    client: Any, session_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the verb writes everything, then refuses
    refusal = DomainError(ErrorCode.CONFLICT, "Refused after writing.", field="message")
    _refusing_after_its_writes(monkeypatch, refusal)

    # when
    data = await gql(client, SUBMIT, {"input": REQUEST})

    # then: the refusal is the payload, and nothing it wrote is kept
    assert data["submitSupportRequest"] == {
        "ok": False,
        "errors": [{"code": "CONFLICT", "message": "Refused after writing.", "field": "message"}],
    }
    assert await _rows(session_factory) == (0, 0)


async def test_the_writes_of_a_refusal_that_keeps_them_are_committed(
    client: Any, session_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the verb writes everything, then refuses saying its writes are to be kept
    refusal = DomainError(ErrorCode.INVALID, "Refused, counted.", keep_writes=True)
    _refusing_after_its_writes(monkeypatch, refusal)

    # when
    data = await gql(client, SUBMIT, {"input": REQUEST})

    # then: the refusal is the payload, and what it wrote is committed
    assert data["submitSupportRequest"] == {
        "ok": False,
        "errors": [{"code": "INVALID", "message": "Refused, counted.", "field": None}],
    }
    assert await _rows(session_factory) == (1, 1)


async def test_the_writes_of_a_verb_that_fails_unexpectedly_are_rolled_back(
    client: Any, session_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the verb writes everything, then fails
    _refusing_after_its_writes(monkeypatch, RuntimeError("a bug"))

    # when
    response = await gql_raw(client, SUBMIT, {"input": REQUEST})

    # then: a masked error, and nothing kept
    body = response.json()
    assert body["data"] is None and body["errors"]
    assert "a bug" not in response.text
    assert await _rows(session_factory) == (0, 0)


@pytest.mark.parametrize(
    ("ending", "committed"),
    [("returns", (1, 1)), ("refuses", (0, 0)), ("refuses, keeping", (1, 1))],
)
async def test_a_unit_of_work_outside_a_request_holds_the_same_rule(
    session_factory: Any, settings: Any, ending: str, committed: tuple[int, int]
) -> None:
    # when: the verb runs in a unit of work of its own (the CLI's, a worker's, a test's)
    try:
        async with unit_of_work(session_factory) as session:
            await support.submit_support_request(
                session, settings=settings, client_address="192.0.2.7", **REQUEST
            )
            if ending != "returns":
                raise DomainError(
                    ErrorCode.INVALID, "Refused.", keep_writes=ending == "refuses, keeping"
                )
    except DomainError:
        assert ending != "returns"

    # then
    assert await _rows(session_factory) == committed


def test_no_verb_commits_or_rolls_back() -> None:
    """resolvers/ and auth/ end no transaction: their caller's unit of work does."""
    found = []
    for path in sorted([*ROOT.glob("resolvers/*.py"), *ROOT.glob("auth/*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("commit", "rollback"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.attr}")
    assert found == []
