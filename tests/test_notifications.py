"""Reminder preferences over GraphQL (SPEC §8): `Subscriber.notifications` lists every kind
with the channel in force (EMAIL unless chosen), on both answer paths, and
`updateNotificationSettings` changes the signed-in subscriber's own."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import col

from models import NotificationPreference
from tests.conftest import gql, gql_raw
from tests.factories import make_staff, make_subscriber, sign_in
from tests.test_sql_answers import _both_ways

QUERY = "{ me { id notifications { kind channel } } }"
MUTATION = """
mutation Update($input: UpdateNotificationSettingsInput!) {
  updateNotificationSettings(input: $input) {
    errors { field code message }
    subscriber { notifications { kind channel } }
  }
}
"""
KINDS = ["LOW_BALANCE", "SUSPENSION", "PROMISED_PAYMENT_DUE", "PAUSE"]


def _settings(**channels: str) -> dict[str, Any]:
    return {"input": {"settings": [{"kind": k, "channel": c} for k, c in channels.items()]}}


async def _stored(session_factory: Any, subscriber_id: int) -> dict[str, str]:
    async with session_factory() as session:
        rows = (
            await session.scalars(
                sa.select(NotificationPreference).where(
                    col(NotificationPreference.subscriber_id) == subscriber_id
                )
            )
        ).all()
    return {row.kind: row.channel for row in rows}


async def test_every_kind_is_email_until_chosen(
    client: Any, app: Any, session_factory: Any, settings: Any, monkeypatch: Any
) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    headers = await sign_in(client, made.login or "")
    # when asked as served (one statement on PostgreSQL) and through the executor
    served, executed, _, compiled = await _both_ways(client, app, monkeypatch, QUERY, None, headers)
    # then the same answer: every kind, in order, EMAIL
    assert served == executed
    assert compiled is (app.state.engine.dialect.name == "postgresql")
    assert executed["data"]["me"]["notifications"] == [
        {"kind": kind, "channel": "EMAIL"} for kind in KINDS
    ]


async def test_a_subscriber_changes_their_own_settings(
    client: Any, app: Any, session_factory: Any, settings: Any, monkeypatch: Any
) -> None:
    # given two subscribers
    made = await make_subscriber(session_factory, settings)
    other = await make_subscriber(session_factory, settings)
    headers = await sign_in(client, made.login or "")
    # when
    data = await gql(client, MUTATION, _settings(LOW_BALANCE="SMS", PAUSE="NONE"), headers=headers)
    # then the payload and the database say so; the others stay EMAIL
    payload = data["updateNotificationSettings"]
    assert payload["errors"] == []
    assert payload["subscriber"]["notifications"] == [
        {"kind": "LOW_BALANCE", "channel": "SMS"},
        {"kind": "SUSPENSION", "channel": "EMAIL"},
        {"kind": "PROMISED_PAYMENT_DUE", "channel": "EMAIL"},
        {"kind": "PAUSE", "channel": "NONE"},
    ]
    assert await _stored(session_factory, made.id) == {"LOW_BALANCE": "SMS", "PAUSE": "NONE"}
    assert await _stored(session_factory, other.id) == {}
    # when changed again: BOTH, and back to EMAIL
    data = await gql(
        client, MUTATION, _settings(LOW_BALANCE="BOTH", PAUSE="EMAIL"), headers=headers
    )
    # then
    assert data["updateNotificationSettings"]["errors"] == []
    assert await _stored(session_factory, made.id) == {"LOW_BALANCE": "BOTH", "PAUSE": "EMAIL"}
    # and both answer paths read it
    served, executed, _, _ = await _both_ways(client, app, monkeypatch, QUERY, None, headers)
    assert served == executed
    assert executed["data"]["me"]["notifications"][0] == {"kind": "LOW_BALANCE", "channel": "BOTH"}


async def test_sms_needs_a_phone_on_file(client: Any, session_factory: Any, settings: Any) -> None:
    # given no phone
    made = await make_subscriber(session_factory, settings, phone=None)
    headers = await sign_in(client, made.login or "")
    # when SMS and BOTH are chosen, with an EMAIL
    data = await gql(
        client,
        MUTATION,
        _settings(LOW_BALANCE="SMS", SUSPENSION="BOTH", PAUSE="EMAIL"),
        headers=headers,
    )
    # then both refused, at once, and nothing stored
    payload = data["updateNotificationSettings"]
    assert payload["subscriber"] is None
    assert [(e["field"], e["code"]) for e in payload["errors"]] == [("settings", "INVALID")] * 2
    assert "phone" in payload["errors"][0]["message"]
    assert await _stored(session_factory, made.id) == {}
    # and NONE needs no phone
    data = await gql(client, MUTATION, _settings(SUSPENSION="NONE"), headers=headers)
    assert data["updateNotificationSettings"]["errors"] == []
    assert await _stored(session_factory, made.id) == {"SUSPENSION": "NONE"}


async def test_a_kind_given_twice_is_refused(
    client: Any, session_factory: Any, settings: Any
) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    headers = await sign_in(client, made.login or "")
    variables = {
        "input": {
            "settings": [
                {"kind": "PAUSE", "channel": "SMS"},
                {"kind": "PAUSE", "channel": "NONE"},
            ]
        }
    }
    # when
    data = await gql(client, MUTATION, variables, headers=headers)
    # then
    (error,) = data["updateNotificationSettings"]["errors"]
    assert (error["field"], error["code"]) == ("settings", "INVALID")
    assert await _stored(session_factory, made.id) == {}


async def test_only_a_signed_in_subscriber_may_change_settings(
    client: Any, session_factory: Any, settings: Any
) -> None:
    # given
    _, username, password = await make_staff(session_factory, settings)
    staff = await sign_in(client, username, password)
    # when signed out, and as staff
    anonymous = (await gql_raw(client, MUTATION, _settings(PAUSE="NONE"))).json()
    by_staff = (await gql_raw(client, MUTATION, _settings(PAUSE="NONE"), headers=staff)).json()
    # then GraphQL errors, nothing stored
    assert [e["extensions"]["code"] for e in anonymous["errors"]] == ["UNAUTHENTICATED"]
    assert [e["extensions"]["code"] for e in by_staff["errors"]] == ["FORBIDDEN"]
    async with session_factory() as session:
        assert (await session.scalars(sa.select(NotificationPreference))).all() == []


async def test_an_unknown_channel_is_a_graphql_error(
    client: Any, session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(session_factory, settings)
    headers = await sign_in(client, made.login or "")
    response = await gql_raw(client, MUTATION, _settings(PAUSE="PIGEON"), headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert "data" not in body or body["data"] is None
    assert body["errors"][0]["extensions"]["code"]
