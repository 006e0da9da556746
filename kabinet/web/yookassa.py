"""`POST /webhooks/yookassa`: YooKassa's notifications (SPEC §7), mounted with
`KABINET_PAYMENT_PROVIDER=yookassa`.

The body (`{"type": "notification", "event": "payment.succeeded" | "payment.canceled" |
"refund.succeeded", "object": {...}}`, at most 16 KiB) is trusted for nothing but the
object's id: Kabinet reads the object back (`GET /payments/{id}`, `GET /refunds/{id}`) and
applies what the provider says, through the same single transaction as the signed webhook
(`resolvers.payments.apply_provider_event`: credit, points, promise, suspension, receipt,
letter) or `resolvers.refunds.apply_refund_answer`, exactly once.

| status | when                                                                          |
| ------ | ----------------------------------------------------------------------------- |
| 200    | applied, already applied, or nothing to apply (the provider says it is still  |
|        | pending, or not one of Kabinet's payments: a forged or stray notification)     |
| 400    | not JSON, not a notification, an unknown event, no object id; a provider      |
|        | object that does not match Kabinet's payment (logged as an error)              |
| 413    | a body above 16 KiB                                                           |
| 503    | the provider cannot be read now: the provider retries the notification        |
| 500    | anything unexpected: nothing was applied, the provider retries                |
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.db import unit_of_work
from core.errors import DomainError, ErrorCode
from core.payment_providers import (
    ProviderRefused,
    ProviderUnavailable,
    provider_for,
)
from core.settings import Settings
from kabinet.web.payments import (
    WEBHOOK_ATTEMPTS,
    WEBHOOK_MAX_BODY_BYTES,
    WebhookAnswer,
    _read_capped,
    _retryable,
)
from resolvers import autopay, payments, refunds

log = logging.getLogger("kabinet.webhooks.yookassa")

EVENTS = ("payment.succeeded", "payment.canceled", "refund.succeeded")
MAX_OBJECT_ID = 100
T = TypeVar("T")


class BadNotification(ValueError):
    pass


def parse_notification(body: bytes) -> tuple[str, str]:
    """The event and the object's id, or BadNotification."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadNotification("The body is not valid JSON.") from None
    if not isinstance(payload, dict) or payload.get("type") != "notification":
        raise BadNotification("The body must be a notification object.")
    event = payload.get("event")
    if event not in EVENTS:
        raise BadNotification(f"`event` must be one of {', '.join(EVENTS)}.")
    obj = payload.get("object")
    object_id = obj.get("id") if isinstance(obj, dict) else None
    if (
        not isinstance(object_id, str)
        or not 1 <= len(object_id) <= MAX_OBJECT_ID
        or not object_id.isascii()
        or not object_id.isprintable()
        or "/" in object_id
        or " " in object_id
    ):
        raise BadNotification("`object.id` must be the provider's id.")
    return str(event), object_id


async def _in_unit_of_work(
    session_factory: Any, verb: Callable[[Any], Awaitable[T]], what: str
) -> T:
    """`verb` in a unit of work, retried after a lost race or a serialisation failure."""
    for attempt in range(1, WEBHOOK_ATTEMPTS + 1):
        try:
            async with unit_of_work(session_factory) as session:
                return await verb(session)
        except DBAPIError as error:
            if attempt == WEBHOOK_ATTEMPTS or not _retryable(error):
                raise
            log.info("yookassa notification: retrying %s after a database conflict", what)
            await asyncio.sleep(random.uniform(0.01, 0.05) * attempt)  # noqa: S311 - jitter
    raise AssertionError("unreachable")  # pragma: no cover


async def process_notification(
    session_factory: Any, settings: Settings, *, body: bytes
) -> WebhookAnswer:
    """The whole decision over a raw notification body."""
    try:
        event, object_id = parse_notification(body)
    except BadNotification as error:
        log.warning("yookassa notification: bad body: %s", error)
        return WebhookAnswer(400, {"error": "bad-body", "message": str(error)})
    provider = provider_for(settings)
    try:
        if event.startswith("payment."):
            return await _payment(session_factory, settings, provider.name, object_id)
        return await _refund(session_factory, settings, object_id)
    except ProviderUnavailable as error:
        log.warning("yookassa notification: the provider cannot be read: %s", error)
        return WebhookAnswer(503, {"error": "provider-unavailable"})


async def _payment(
    session_factory: Any, settings: Settings, provider_name: str, object_id: str
) -> WebhookAnswer:
    try:
        answer = await provider_for(settings).read_payment(object_id)
    except ProviderRefused as error:
        log.warning("yookassa notification: no such payment at the provider: %s", error)
        return WebhookAnswer(200, {"status": "ignored", "reason": "unknown-at-provider"})

    async def check(session: Any) -> payments.ProviderPaymentCheck:
        return await payments.check_provider_payment(session, provider=provider_name, answer=answer)

    try:
        checked = await _in_unit_of_work(session_factory, check, "the payment's check")
    except DomainError as error:
        if error.code == ErrorCode.NOT_FOUND:
            log.warning("yookassa notification: not one of our payments: %s", object_id)
            return WebhookAnswer(200, {"status": "ignored", "reason": "unknown-payment"})
        return WebhookAnswer(400, {"error": "mismatch", "message": error.message})

    status = payments.PROVIDER_OUTCOMES.get(answer.status)
    if status is None:  # the provider says it is still pending: whatever the body said
        return WebhookAnswer(200, {"status": "pending", "paymentStatus": checked.status})

    async def apply(session: Any) -> payments.EventOutcome:
        outcome = await payments.apply_provider_event(
            session,
            settings=settings,
            payment_id=checked.payment_id,
            status=status,
            provider_reference=answer.reference,
        )
        if outcome.payment_status != "PENDING":
            # An autopay payment's outcome (a no-op for any other payment, and when it is
            # recorded already), in the same transaction as the credit.
            await autopay.autopay_outcome(
                session,
                settings=settings,
                payment_id=checked.payment_id,
                succeeded=outcome.payment_status == "SUCCEEDED",
            )
        # The saved method and the provider's receipt status, in the same transaction.
        await payments.keep_provider_details(
            session, provider=provider_name, check=checked, answer=answer
        )
        return outcome

    try:
        outcome = await _in_unit_of_work(session_factory, apply, "the payment")
    except DomainError as error:
        return WebhookAnswer(400, {"error": "bad-body", "message": error.message})
    return WebhookAnswer(
        200,
        {
            "status": "applied" if outcome.applied else "already-applied",
            "paymentStatus": outcome.payment_status,
        },
    )


async def _refund(session_factory: Any, settings: Settings, object_id: str) -> WebhookAnswer:
    try:
        answer = await provider_for(settings).read_refund(object_id)
    except ProviderRefused as error:
        log.warning("yookassa notification: no such refund at the provider: %s", error)
        return WebhookAnswer(200, {"status": "ignored", "reason": "unknown-at-provider"})

    async def apply(session: Any) -> refunds.RefundOutcome | None:
        return await refunds.apply_provider_refund(session, settings=settings, answer=answer)

    try:
        outcome = await _in_unit_of_work(session_factory, apply, "the refund")
    except DomainError as error:
        return WebhookAnswer(400, {"error": "mismatch", "message": error.message})
    if outcome is None:
        log.warning("yookassa notification: not one of our refunds: %s", object_id)
        return WebhookAnswer(200, {"status": "ignored", "reason": "unknown-refund"})
    return WebhookAnswer(
        200,
        {
            "status": "applied" if outcome.applied else "already-applied",
            "refundStatus": outcome.status,
        },
    )


async def notification(request: Request) -> Response:
    body = await _read_capped(request, WEBHOOK_MAX_BODY_BYTES)
    if body is None:
        return JSONResponse({"error": "too-large"}, status_code=413)
    answer = await process_notification(
        request.app.state.session_factory, request.app.state.settings, body=body
    )
    return JSONResponse(answer.body, status_code=answer.status_code)


def yookassa_routes(settings: Settings) -> list[Route]:
    """`POST /webhooks/yookassa`, with the yookassa provider only."""
    if settings.payment_provider != "yookassa":
        return []
    return [Route("/webhooks/yookassa", notification, methods=["POST"])]
