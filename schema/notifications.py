"""Reminder preferences (SPEC §8): `updateNotificationSettings`."""

from __future__ import annotations

from typing import Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from resolvers import notifications
from schema.context import Info
from schema.errors import UserError
from schema.mutation_support import ERRORS, INPUT, SUBSCRIBER, mutation, run, signed_in
from schema.types.account import NotificationChannel, NotificationKind, Subscriber


@strawberry.input(description="One kind of reminder and the channel it is to come by.")
class NotificationSettingInput:
    kind: NotificationKind = strawberry.field(description="The kind of reminder.")
    channel: NotificationChannel = strawberry.field(
        description="How it is to come: SMS and BOTH need a phone on file (else INVALID)."
    )


@strawberry.input(description="The kinds of reminder to change; the others keep theirs.")
class UpdateNotificationSettingsInput:
    settings: list[NotificationSettingInput] = strawberry.field(
        description="Each kind at most once (INVALID otherwise)."
    )


@strawberry.type(description="What `updateNotificationSettings` answers.")
class UpdateNotificationSettingsPayload:
    errors: list[UserError] = strawberry.field(description=ERRORS)
    subscriber: Subscriber | None = strawberry.field(
        default=None,
        description="The subscriber after the change (its `notifications`); null on failure.",
    )


@strawberry.type
class NotificationsMutation:
    @mutation(
        access=SUBSCRIBER,
        description="Choose how reminders (low balance, suspension, promised payment due, "
        "pause) reach you: EMAIL, SMS, BOTH or NONE per kind. Letters with credentials, "
        "codes and receipts are always sent.",
    )
    async def update_notification_settings(
        self, info: Info, input: Annotated[UpdateNotificationSettingsInput, INPUT]
    ) -> UpdateNotificationSettingsPayload:
        subscriber_id = signed_in(info).id

        async def update(session: AsyncSession) -> None:
            await notifications.update_notification_settings(
                session,
                subscriber_id=subscriber_id,
                settings=[(item.kind.value, item.channel.value) for item in input.settings],
            )

        return await run(
            info,
            UpdateNotificationSettingsPayload,
            update,
            lambda _: UpdateNotificationSettingsPayload(
                errors=[], subscriber=Subscriber.of_key(subscriber_id)
            ),
        )
