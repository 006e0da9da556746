"""Staff's webhook subscriptions and their delivery log (SPEC §9). Every write is audited;
the signing secret is made here, answered once by `create_subscription`, and never again
(not in the audit log either).

The deliverer is core/webhooks_out.py; the events themselves are resolvers/events.py."""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import begin_write, read_rows, rowcount
from core.errors import DomainError, ErrorCode, InputProblems
from core.settings import Settings
from core.webhooks_out import UrlRefused, check_subscription_url, event_id
from models.base import table_of, utcnow
from models.events import Event, WebhookDelivery, WebhookSubscription, WebhookSubscriptionEvent
from resolvers.audit import record_audit
from resolvers.events import EVENT_TYPES
from resolvers.pagination import Page, check_first, page_by_id

_subscriptions = table_of(WebhookSubscription)
_wanted = table_of(WebhookSubscriptionEvent)
_deliveries = table_of(WebhookDelivery)
_events = table_of(Event)

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
DESCRIPTION_MAX = 500
MAX_SUBSCRIPTIONS = 100
MAX_PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class Subscription:
    id: int
    url: str
    description: str
    events: list[str]
    active: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Created:
    subscription: Subscription
    signing_secret: str


def _invalid(field: str, message: str) -> DomainError:
    return DomainError(ErrorCode.INVALID, message, field=field)


def check_event_types(events: Sequence[str]) -> list[str]:
    """The types asked for, each one of EVENT_TYPES, in EVENT_TYPES' order, once."""
    unknown = [name for name in events if name not in EVENT_TYPES]
    if unknown:
        raise _invalid(
            "events",
            f"Unknown event type {unknown[0]!r}; the types are: {', '.join(EVENT_TYPES)}.",
        )
    if not events:
        raise _invalid("events", "List at least one event type.")
    return [name for name in EVENT_TYPES if name in set(events)]


def _check_description(description: str | None) -> str:
    text = " ".join(unicodedata.normalize("NFKC", description or "").split())
    if len(text) > DESCRIPTION_MAX:
        raise _invalid("description", f"The description is at most {DESCRIPTION_MAX} characters.")
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text):
        raise _invalid("description", "The description contains control characters.")
    return text


async def _check_url(url: str, settings: Settings) -> str:
    try:
        return await check_subscription_url(url, settings)
    except UrlRefused as error:
        raise _invalid("url", str(error)) from None


async def subscriptions(source: Any, ids: Sequence[int] | None = None) -> list[Subscription]:
    """Every subscription (or those of `ids`), oldest first, with its event types."""
    statement = sa.select(
        _subscriptions.c.id,
        _subscriptions.c.url,
        _subscriptions.c.description,
        _subscriptions.c.active,
        _subscriptions.c.created_at,
    ).order_by(_subscriptions.c.id)
    if ids is not None:
        statement = statement.where(_subscriptions.c.id.in_(list(ids)))
    rows = await read_rows(source, statement)
    wanted = await read_rows(
        source,
        sa.select(_wanted.c.subscription_id, _wanted.c.event_type).where(
            _wanted.c.subscription_id.in_([row.id for row in rows])
        ),
    )
    types: dict[int, set[str]] = {}
    for row in wanted:
        types.setdefault(row.subscription_id, set()).add(row.event_type)
    return [
        Subscription(
            id=row.id,
            url=row.url,
            description=row.description,
            events=[name for name in EVENT_TYPES if name in types.get(row.id, set())],
            active=bool(row.active),
            created_at=row.created_at,
        )
        for row in rows
    ]


async def _one(session: AsyncSession, subscription_id: int) -> Subscription:
    found = await subscriptions(session, [subscription_id])
    if not found:
        raise DomainError(ErrorCode.NOT_FOUND, "No such webhook subscription.", field="id")
    return found[0]


async def _set_types(session: AsyncSession, subscription_id: int, types: list[str]) -> None:
    await session.execute(sa.delete(_wanted).where(_wanted.c.subscription_id == subscription_id))
    await session.execute(
        sa.insert(_wanted),
        [{"subscription_id": subscription_id, "event_type": name} for name in types],
    )


def _audited(subscription: Subscription) -> dict[str, Any]:
    return {
        "url": subscription.url,
        "events": subscription.events,
        "description": subscription.description,
        "active": subscription.active,
    }


async def create_subscription(
    session: AsyncSession,
    *,
    settings: Settings,
    staff_id: int,
    url: str,
    events: Sequence[str],
    description: str | None,
    client_address: str | None,
) -> Created:
    """A new active subscription and its signing secret (answered this once)."""
    problems = InputProblems()
    with problems:
        checked_url = await _check_url(url, settings)
    with problems:
        types = check_event_types(events)
    with problems:
        text = _check_description(description)
    problems.raise_found()
    await begin_write(session)
    count = await session.scalar(sa.select(sa.func.count()).select_from(_subscriptions))
    if int(count or 0) >= MAX_SUBSCRIPTIONS:
        raise DomainError(
            ErrorCode.NOT_ELIGIBLE, f"At most {MAX_SUBSCRIPTIONS} subscriptions; delete one first."
        )
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    subscription_id = (
        await session.execute(
            sa.insert(_subscriptions)
            .values(
                url=checked_url,
                description=text,
                secret=secret,
                active=True,
                created_by_staff_id=staff_id,
                created_at=now,
                updated_at=now,
            )
            .returning(_subscriptions.c.id)
        )
    ).scalar_one()
    await _set_types(session, subscription_id, types)
    created = Subscription(subscription_id, checked_url, text, types, True, now)
    await record_audit(
        session,
        actor_staff_id=staff_id,
        action="createWebhookSubscription",
        target_type="WebhookSubscription",
        target_id=subscription_id,
        before=None,
        after=_audited(created),
        reason=None,
        client_address=client_address,
    )
    return Created(created, secret)


async def update_subscription(
    session: AsyncSession,
    *,
    settings: Settings,
    staff_id: int,
    subscription_id: int,
    url: str | None = None,
    events: Sequence[str] | None = None,
    description: str | None = None,
    active: bool | None = None,
    client_address: str | None,
) -> Subscription:
    """Change what is given (None: unchanged). Deliveries already made keep going to the
    subscription's URL as it is when they are sent; a type dropped stops new ones."""
    problems = InputProblems()
    values: dict[str, Any] = {}
    types: list[str] | None = None
    if url is not None:
        with problems:
            values["url"] = await _check_url(url, settings)
    if events is not None:
        with problems:
            types = check_event_types(events)
    if description is not None:
        with problems:
            values["description"] = _check_description(description)
    problems.raise_found()
    if active is not None:
        values["active"] = active
    await begin_write(session)
    before = await _one(session, subscription_id)
    if values:
        await session.execute(
            sa.update(_subscriptions)
            .where(_subscriptions.c.id == subscription_id)
            .values(**values, updated_at=utcnow())
        )
    if types is not None:
        await _set_types(session, subscription_id, types)
    after = await _one(session, subscription_id)
    await record_audit(
        session,
        actor_staff_id=staff_id,
        action="updateWebhookSubscription",
        target_type="WebhookSubscription",
        target_id=subscription_id,
        before=_audited(before),
        after=_audited(after),
        reason=None,
        client_address=client_address,
    )
    return after


async def delete_subscription(
    session: AsyncSession, *, staff_id: int, subscription_id: int, client_address: str | None
) -> None:
    """Remove it with its delivery log (the audit log keeps what it was)."""
    await begin_write(session)
    before = await _one(session, subscription_id)
    await session.execute(
        sa.delete(_deliveries).where(_deliveries.c.subscription_id == subscription_id)
    )
    await session.execute(sa.delete(_wanted).where(_wanted.c.subscription_id == subscription_id))
    await session.execute(sa.delete(_subscriptions).where(_subscriptions.c.id == subscription_id))
    await record_audit(
        session,
        actor_staff_id=staff_id,
        action="deleteWebhookSubscription",
        target_type="WebhookSubscription",
        target_id=subscription_id,
        before=_audited(before),
        after=None,
        reason=None,
        client_address=client_address,
    )


DELIVERY_COLUMNS = (
    _deliveries.c.id,
    _deliveries.c.subscription_id,
    _deliveries.c.status,
    _deliveries.c.attempts,
    _deliveries.c.created_at,
    _deliveries.c.next_attempt_at,
    _deliveries.c.last_status_code,
    _deliveries.c.last_error,
    _deliveries.c.delivered_at,
    _events.c.id.label("event_pk"),
    _events.c.type.label("event_type"),
    _events.c.occurred_at,
    _events.c.contract_number,
)


def public_event_id(event_pk: int) -> str:
    """What `Kabinet-Event-Id` and the body's `id` carry."""
    return event_id(event_pk)


def _delivery_rows() -> sa.Select[Any]:
    return sa.select(*DELIVERY_COLUMNS).join(_events, _events.c.id == _deliveries.c.event_id)


async def list_deliveries(
    source: Any, *, subscription_id: int | None, first: int | None, after: int | None
) -> Page[Any]:
    """A subscription's deliveries (None: every subscription's), newest first, `first` at a
    time after the delivery id `after`."""
    limit = check_first(first, MAX_PAGE_SIZE)
    statement = _delivery_rows().order_by(_deliveries.c.id.desc()).limit(limit + 1)
    if subscription_id is not None:
        statement = statement.where(_deliveries.c.subscription_id == subscription_id)
    if after is not None:
        statement = statement.where(_deliveries.c.id < after)
    return page_by_id(await read_rows(source, statement), limit, after=after)


async def redeliver(
    session: AsyncSession,
    *,
    staff_id: int,
    delivery_id: int,
    client_address: str | None,
    now: datetime | None = None,
) -> Any:
    """Send a delivery again at the next round, on a fresh retry schedule (a FAILED one, or
    a DELIVERED one a receiver lost: it gets the same event id). Its row as it is now."""
    await begin_write(session)
    moment = now or utcnow()
    # Locked (PostgreSQL): a prune running now either deleted it already (NOT_FOUND) or
    # skips it (SKIP LOCKED) and leaves it, PENDING again, with its event.
    before = (
        await session.execute(
            _delivery_rows().where(_deliveries.c.id == delivery_id).with_for_update(of=_deliveries)
        )
    ).first()
    if before is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such webhook delivery.", field="deliveryId")
    result = await session.execute(
        sa.update(_deliveries)
        .where(_deliveries.c.id == delivery_id)
        .values(
            status="PENDING",
            attempts=0,
            next_attempt_at=moment,
            locked_until=None,
            delivered_at=None,
        )
    )
    assert rowcount(result) == 1
    await record_audit(
        session,
        actor_staff_id=staff_id,
        action="redeliverWebhook",
        target_type="WebhookDelivery",
        target_id=delivery_id,
        before={"status": before.status, "attempts": before.attempts},
        after={"status": "PENDING", "attempts": 0},
        reason=None,
        client_address=client_address,
    )
    return (await session.execute(_delivery_rows().where(_deliveries.c.id == delivery_id))).one()
