"""Staff: webhook subscriptions for the operator's systems and their delivery log (SPEC §9).
Thin: each field calls one verb of resolvers/webhook_subscriptions.py."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from auth.permissions import IsSignedIn, IsStaff
from core.errors import DomainError
from core.ids import to_global_id
from resolvers import webhook_subscriptions as webhooks
from resolvers.events import EVENT_TYPES
from schema.context import Info
from schema.errors import UserError, bad_input
from schema.mutation_support import ERRORS, INPUT, STAFF, mutation, pk_of, run, signed_in
from schema.types.enums import values_described
from schema.types.node import Node
from schema.types.pagination import AFTER, FIRST, Connection, page_arguments

EVENTS = (
    "The event types to send, as deliveries carry them: "
    + ", ".join(f'"{name}"' for name in EVENT_TYPES)
    + " (docs/events.md). An unknown one is refused (INVALID, field events)."
)
URL = (
    "Where to POST the events. In production an https:// URL whose host does not resolve to "
    "a loopback, private or link-local address (unless KABINET_WEBHOOK_ALLOWED_HOSTS lists "
    "it); checked again at every delivery."
)


@strawberry.type(description="Staff: an operator's system that receives signed events.")
class WebhookSubscription(Node):
    url: str = strawberry.field(description="Where the events are posted.")
    events: list[str] = strawberry.field(description="The event types it receives.")
    description: str = strawberry.field(description="What it is, as staff wrote it.")
    active: bool = strawberry.field(
        description="false: nothing is sent to it; its pending deliveries wait until it is "
        "active again, and events of the meantime are not sent to it."
    )
    created_at: datetime = strawberry.field(description="When it was created.")

    @classmethod
    def of(cls, subscription: webhooks.Subscription) -> WebhookSubscription:
        return cls(
            id=strawberry.ID(to_global_id("WebhookSubscription", subscription.id)),
            url=subscription.url,
            events=subscription.events,
            description=subscription.description,
            active=subscription.active,
            created_at=subscription.created_at,
        )


@values_described(
    {
        "PENDING": "Not delivered yet: it is (re)tried on the schedule.",
        "DELIVERED": "The receiver answered 2xx.",
        "FAILED": "Every attempt of the schedule failed; `redeliverWebhook` tries again.",
    }
)
@strawberry.enum(description="Where a webhook delivery stands.")
class WebhookDeliveryStatus(Enum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


@strawberry.type(description="Staff: one event sent (or to send) to one subscription.")
class WebhookDelivery(Node):
    event_id: str = strawberry.field(
        description="The event's id, as the body's `id` and `Kabinet-Event-Id` carry it."
    )
    event_type: str = strawberry.field(description='The event\'s type, e.g. "contract.suspended".')
    occurred_at: datetime = strawberry.field(description="When the event happened.")
    contract_number: str | None = strawberry.field(
        description="The contract the event is about; null when none."
    )
    status: WebhookDeliveryStatus = strawberry.field(description="Where it stands.")
    attempts: int = strawberry.field(description="How many times it was sent.")
    next_attempt_at: datetime | None = strawberry.field(
        description="When it is sent next; null unless PENDING."
    )
    last_status_code: int | None = strawberry.field(
        description="The HTTP status of the last answer; null when there was none."
    )
    last_error: str | None = strawberry.field(
        description="Why the last attempt failed (a status, a timeout, a refused address); "
        "null after a success or before any attempt."
    )
    delivered_at: datetime | None = strawberry.field(
        description="When a receiver answered 2xx; null until then."
    )
    created_at: datetime = strawberry.field(description="When the delivery was made.")

    @classmethod
    def of_row(cls, row: Any) -> WebhookDelivery:
        return cls(
            id=strawberry.ID(to_global_id("WebhookDelivery", row.id)),
            event_id=webhooks.public_event_id(row.event_pk),
            event_type=row.event_type,
            occurred_at=row.occurred_at,
            contract_number=row.contract_number,
            status=WebhookDeliveryStatus(row.status),
            attempts=row.attempts,
            next_attempt_at=row.next_attempt_at if row.status == "PENDING" else None,
            last_status_code=row.last_status_code,
            last_error=row.last_error,
            delivered_at=row.delivered_at,
            created_at=row.created_at,
        )


@strawberry.type
class EventsQuery:
    @strawberry.field(
        permission_classes=[IsSignedIn, IsStaff],
        description="Staff: every webhook subscription, oldest first (their secrets are "
        "never shown again).",
    )
    async def webhook_subscriptions(self, info: Info) -> list[WebhookSubscription]:
        found = await webhooks.subscriptions(info.context.reader)
        return [WebhookSubscription.of(subscription) for subscription in found]

    @strawberry.field(
        permission_classes=[IsSignedIn, IsStaff],
        description="Staff: the deliveries of a subscription (or of all), newest first.",
    )
    async def webhook_deliveries(
        self,
        info: Info,
        subscription_id: Annotated[
            strawberry.ID | None,
            strawberry.argument(
                description="The `WebhookSubscription.id` (another ID: a GraphQL error "
                "BAD_USER_INPUT); null: the deliveries of every subscription."
            ),
        ] = None,
        first: Annotated[int | None, FIRST] = None,
        after: Annotated[str | None, AFTER] = None,
    ) -> Connection[WebhookDelivery]:
        limit, after_id = page_arguments(info, first, after)
        try:
            pk = (
                None
                if subscription_id is None
                else pk_of(subscription_id, "WebhookSubscription", "subscriptionId")
            )
            page = await webhooks.list_deliveries(
                info.context.reader, subscription_id=pk, first=limit, after=after_id
            )
        except DomainError as error:
            raise bad_input(error) from None
        return Connection.from_page(page, WebhookDelivery.of_row)


@strawberry.input(description="Staff: a new webhook subscription.")
class CreateWebhookSubscriptionInput:
    url: str = strawberry.field(description=URL)
    events: list[str] = strawberry.field(description=EVENTS)
    description: str | None = strawberry.field(
        default=None, description="What it is (at most 500 characters); may be left out."
    )


@strawberry.type(description="What `createWebhookSubscription` answers.")
class CreateWebhookSubscriptionPayload:
    errors: list[UserError] = strawberry.field(description=ERRORS)
    subscription: WebhookSubscription | None = strawberry.field(
        default=None, description="The new subscription; null on failure."
    )
    signing_secret: str | None = strawberry.field(
        default=None,
        description="Shown once: the secret that signs its deliveries (`Kabinet-Signature`, "
        "docs/events.md). Keep it in the receiver; it cannot be read again.",
    )


@strawberry.input(description="Staff: what to change in a webhook subscription.")
class UpdateWebhookSubscriptionInput:
    id: strawberry.ID = strawberry.field(description="The `WebhookSubscription.id`.")
    url: str | None = strawberry.field(default=None, description=URL + " null: unchanged.")
    events: list[str] | None = strawberry.field(
        default=None, description=EVENTS + " null: unchanged."
    )
    description: str | None = strawberry.field(
        default=None, description="What it is (at most 500 characters); null: unchanged."
    )
    active: bool | None = strawberry.field(
        default=None, description="false pauses sending to it; null: unchanged."
    )


@strawberry.type(description="What `updateWebhookSubscription` answers.")
class UpdateWebhookSubscriptionPayload:
    errors: list[UserError] = strawberry.field(description=ERRORS)
    subscription: WebhookSubscription | None = strawberry.field(
        default=None, description="The subscription after the change; null on failure."
    )


@strawberry.input(description="Staff: the webhook subscription to delete.")
class DeleteWebhookSubscriptionInput:
    id: strawberry.ID = strawberry.field(description="The `WebhookSubscription.id`.")


@strawberry.type(description="What `deleteWebhookSubscription` answers.")
class DeleteWebhookSubscriptionPayload:
    errors: list[UserError] = strawberry.field(description=ERRORS)
    ok: bool = strawberry.field(
        default=False, description="true when it was deleted; false when `errors` says why not."
    )


@strawberry.input(description="Staff: the delivery to send again.")
class RedeliverWebhookInput:
    delivery_id: strawberry.ID = strawberry.field(description="The `WebhookDelivery.id`.")


@strawberry.type(description="What `redeliverWebhook` answers.")
class RedeliverWebhookPayload:
    errors: list[UserError] = strawberry.field(description=ERRORS)
    delivery: WebhookDelivery | None = strawberry.field(
        default=None, description="The delivery, PENDING again; null on failure."
    )


@strawberry.type
class EventsMutation:
    @mutation(
        access=STAFF,
        description="Staff: post signed events of the types listed to a URL; answers the "
        "signing secret once. Audited.",
    )
    async def create_webhook_subscription(
        self, info: Info, input: Annotated[CreateWebhookSubscriptionInput, INPUT]
    ) -> CreateWebhookSubscriptionPayload:
        context = info.context
        return await run(
            info,
            CreateWebhookSubscriptionPayload,
            lambda session: webhooks.create_subscription(
                session,
                settings=context.settings,
                staff_id=signed_in(info).id,
                url=input.url,
                events=input.events,
                description=input.description,
                client_address=context.client_address,
            ),
            lambda created: CreateWebhookSubscriptionPayload(
                errors=[],
                subscription=WebhookSubscription.of(created.subscription),
                signing_secret=created.signing_secret,
            ),
        )

    @mutation(access=STAFF, description="Staff: change a webhook subscription. Audited.")
    async def update_webhook_subscription(
        self, info: Info, input: Annotated[UpdateWebhookSubscriptionInput, INPUT]
    ) -> UpdateWebhookSubscriptionPayload:
        context = info.context

        async def update(session: AsyncSession) -> webhooks.Subscription:
            return await webhooks.update_subscription(
                session,
                settings=context.settings,
                staff_id=signed_in(info).id,
                subscription_id=pk_of(input.id, "WebhookSubscription", "id"),
                url=input.url,
                events=input.events,
                description=input.description,
                active=input.active,
                client_address=context.client_address,
            )

        return await run(
            info,
            UpdateWebhookSubscriptionPayload,
            update,
            lambda subscription: UpdateWebhookSubscriptionPayload(
                errors=[], subscription=WebhookSubscription.of(subscription)
            ),
        )

    @mutation(
        access=STAFF,
        description="Staff: delete a webhook subscription and its delivery log. Audited.",
    )
    async def delete_webhook_subscription(
        self, info: Info, input: Annotated[DeleteWebhookSubscriptionInput, INPUT]
    ) -> DeleteWebhookSubscriptionPayload:
        context = info.context

        async def delete(session: AsyncSession) -> None:
            await webhooks.delete_subscription(
                session,
                staff_id=signed_in(info).id,
                subscription_id=pk_of(input.id, "WebhookSubscription", "id"),
                client_address=context.client_address,
            )

        return await run(
            info,
            DeleteWebhookSubscriptionPayload,
            delete,
            lambda _: DeleteWebhookSubscriptionPayload(errors=[], ok=True),
        )

    @mutation(
        access=STAFF,
        description="Staff: send a delivery again at the next round, on a fresh retry "
        "schedule (the receiver gets the same event id). Audited.",
    )
    async def redeliver_webhook(
        self, info: Info, input: Annotated[RedeliverWebhookInput, INPUT]
    ) -> RedeliverWebhookPayload:
        context = info.context

        async def again(session: AsyncSession) -> Any:
            return await webhooks.redeliver(
                session,
                staff_id=signed_in(info).id,
                delivery_id=pk_of(input.delivery_id, "WebhookDelivery", "deliveryId"),
                client_address=context.client_address,
            )

        return await run(
            info,
            RedeliverWebhookPayload,
            again,
            lambda row: RedeliverWebhookPayload(errors=[], delivery=WebhookDelivery.of_row(row)),
        )
