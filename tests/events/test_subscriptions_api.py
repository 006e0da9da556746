"""Staff manage webhook subscriptions through GraphQL (SPEC §9): the secret once, the
event types checked, every write audited; deliveries listed and redelivered."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import col

from core.db import unit_of_work
from core.webhooks_out import deliver_due
from models import AuditEntry, WebhookDelivery, WebhookSubscription, WebhookSubscriptionEvent
from resolvers.events import record_event
from tests.conftest import gql, gql_raw
from tests.events.receiver import running_receiver
from tests.events.test_triggers import login_of
from tests.factories import make_staff, make_subscriber, sign_in

CREATE = """
mutation($input: CreateWebhookSubscriptionInput!) {
  createWebhookSubscription(input: $input) {
    subscription { id url events description active }
    signingSecret
    errors { field code message }
  }
}
"""
LIST = "{ webhookSubscriptions { id url events description active createdAt } }"
UPDATE = """
mutation($input: UpdateWebhookSubscriptionInput!) {
  updateWebhookSubscription(input: $input) {
    subscription { id url events description active }
    errors { field code message }
  }
}
"""
DELETE = """
mutation($input: DeleteWebhookSubscriptionInput!) {
  deleteWebhookSubscription(input: $input) { ok errors { field code message } }
}
"""
DELIVERIES = """
query($id: ID, $first: Int, $after: String) {
  webhookDeliveries(subscriptionId: $id, first: $first, after: $after) {
    edges { cursor node { id eventId eventType contractNumber status attempts lastStatusCode
      lastError deliveredAt nextAttemptAt } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
REDELIVER = """
mutation($input: RedeliverWebhookInput!) {
  redeliverWebhook(input: $input) {
    delivery { id status attempts eventId }
    errors { field code message }
  }
}
"""


async def _staff(client: Any, session_factory: Any, settings: Any) -> dict[str, str]:
    _, username, password = await make_staff(session_factory, settings)
    return await sign_in(client, username, password)


async def test_staff_create_list_update_and_delete_a_subscription(
    client: Any, session_factory: Any, settings: Any
) -> None:
    staff = await _staff(client, session_factory, settings)
    # when
    created = (
        await gql(
            client,
            CREATE,
            {
                "input": {
                    "url": "http://127.0.0.1:9/hook",
                    "events": ["contract.suspended", "contract.resumed"],
                    "description": "RADIUS adapter",
                }
            },
            headers=staff,
        )
    )["createWebhookSubscription"]
    # then: the secret once, in a field that says so; stored to sign with
    assert created["errors"] == []
    secret = created["signingSecret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    subscription = created["subscription"]
    assert subscription["events"] == ["contract.suspended", "contract.resumed"]
    async with session_factory() as session:
        row = (await session.execute(sa.select(WebhookSubscription))).scalar_one()
        assert row.secret == secret and row.active
        types = set(
            (await session.scalars(sa.select(col(WebhookSubscriptionEvent.event_type)))).all()
        )
        assert types == {"contract.suspended", "contract.resumed"}
        audit = (await session.scalars(sa.select(AuditEntry))).all()
        assert [entry.action for entry in audit] == ["createWebhookSubscription"]
        assert secret not in (audit[0].after or "")

    # when: listed, the secret is not there to ask for
    listed = (await gql(client, LIST, headers=staff))["webhookSubscriptions"]
    assert [s["id"] for s in listed] == [subscription["id"]]
    asked = await gql_raw(client, "{ webhookSubscriptions { signingSecret } }", headers=staff)
    assert "errors" in asked.json()

    # when: updated
    updated = (
        await gql(
            client,
            UPDATE,
            {"input": {"id": subscription["id"], "events": ["payment.succeeded"], "active": False}},
            headers=staff,
        )
    )["updateWebhookSubscription"]
    assert updated["errors"] == []
    assert updated["subscription"]["events"] == ["payment.succeeded"]
    assert updated["subscription"]["active"] is False
    assert updated["subscription"]["url"] == "http://127.0.0.1:9/hook"

    # when: deleted
    deleted = (await gql(client, DELETE, {"input": {"id": subscription["id"]}}, headers=staff))[
        "deleteWebhookSubscription"
    ]
    assert deleted == {"ok": True, "errors": []}
    async with session_factory() as session:
        assert (await session.scalar(sa.select(sa.func.count(col(WebhookSubscription.id))))) == 0
        actions = (
            await session.scalars(sa.select(col(AuditEntry.action)).order_by(col(AuditEntry.id)))
        ).all()
        assert actions == [
            "createWebhookSubscription",
            "updateWebhookSubscription",
            "deleteWebhookSubscription",
        ]


async def test_an_unknown_event_type_or_a_bad_url_is_refused_clearly(
    client: Any, session_factory: Any, settings: Any
) -> None:
    staff = await _staff(client, session_factory, settings)
    # when
    refused = (
        await gql(
            client,
            CREATE,
            {"input": {"url": "ftp://example.org/x", "events": ["contract.exploded"]}},
            headers=staff,
        )
    )["createWebhookSubscription"]
    # then: both problems at once, nothing stored, no secret
    assert refused["signingSecret"] is None and refused["subscription"] is None
    assert [(e["field"], e["code"]) for e in refused["errors"]] == [
        ("url", "INVALID"),
        ("events", "INVALID"),
    ]
    assert "contract.exploded" in refused["errors"][1]["message"]
    assert "contract.suspended" in refused["errors"][1]["message"]  # the known types listed
    async with session_factory() as session:
        assert (await session.scalar(sa.select(sa.func.count(col(WebhookSubscription.id))))) == 0


async def test_a_subscriber_cannot_manage_subscriptions(
    client: Any, session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(session_factory, settings)
    me = await sign_in(client, login_of(made))
    variables = {"input": {"url": "http://127.0.0.1:9/", "events": ["payment.succeeded"]}}
    # when
    response = await gql_raw(client, CREATE, variables, headers=me)
    listed = await gql_raw(client, LIST, headers=me)
    # then
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert listed.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_the_delivery_log_pages_and_a_failed_delivery_is_redelivered(
    client: Any, session_factory: Any, settings: Any
) -> None:
    staff = await _staff(client, session_factory, settings)
    with running_receiver() as receiver:
        created = (
            await gql(
                client,
                CREATE,
                {"input": {"url": receiver.url, "events": ["contract.resumed"]}},
                headers=staff,
            )
        )["createWebhookSubscription"]
        receiver.secrets.append(created["signingSecret"])
        subscription_id = created["subscription"]["id"]
        async with unit_of_work(session_factory) as session:
            for n in range(3):
                await record_event(
                    session, "contract.resumed", contract_number=f"77{n}", data={"n": n}
                )
        receiver.mode = "fail"
        await deliver_due(session_factory, settings=settings)
        # when: the log, two at a time
        first = (await gql(client, DELIVERIES, {"id": subscription_id, "first": 2}, headers=staff))[
            "webhookDeliveries"
        ]
        rest = (
            await gql(
                client,
                DELIVERIES,
                {"id": subscription_id, "first": 2, "after": first["pageInfo"]["endCursor"]},
                headers=staff,
            )
        )["webhookDeliveries"]
        # then: newest first, each tried once and answered 500
        nodes = [edge["node"] for edge in first["edges"] + rest["edges"]]
        assert [node["contractNumber"] for node in nodes] == ["772", "771", "770"]
        assert first["pageInfo"]["hasNextPage"] and not rest["pageInfo"]["hasNextPage"]
        assert {(n["status"], n["attempts"], n["lastStatusCode"]) for n in nodes} == {
            ("PENDING", 1, 500)
        }
        assert all(node["nextAttemptAt"] and node["lastError"] == "HTTP 500" for node in nodes)

        # when: made FAILED, then redelivered by staff
        async with unit_of_work(session_factory) as session:
            await session.execute(sa.update(WebhookDelivery).values(status="FAILED", attempts=11))
        receiver.mode = "ok"
        again = (
            await gql(client, REDELIVER, {"input": {"deliveryId": nodes[0]["id"]}}, headers=staff)
        )["redeliverWebhook"]
        assert again["errors"] == []
        assert again["delivery"]["status"] == "PENDING" and again["delivery"]["attempts"] == 0
        report = await deliver_due(session_factory, settings=settings)
        # then: that one is delivered, with the same event id as before
        assert report.delivered == 1
        assert receiver.events()[-1].event_id == nodes[0]["eventId"]
        async with session_factory() as session:
            found = await session.execute(sa.select(col(WebhookDelivery.status)))
            statuses = [row.status for row in found]
        assert sorted(statuses) == ["DELIVERED", "FAILED", "FAILED"]
        missing = await gql(client, REDELIVER, {"input": {"deliveryId": "bm9wZToy"}}, headers=staff)
        assert missing["redeliverWebhook"]["errors"][0]["code"] == "NOT_FOUND"
