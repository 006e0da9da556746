"""Events out (SPEC §9): the deliverer that posts `events` to the operator's subscriptions,
and the rules a subscription URL must follow.

A round, in short transactions like the mail outbox's (core/outbox.py):

1. **fan out**: events not yet fanned out (claimed with `FOR UPDATE SKIP LOCKED`, so two
   deliverers never take the same one) get a `webhook_deliveries` row per active
   subscription that lists their type, and are marked; one INSERT … SELECT and one UPDATE;
2. **claim** due deliveries: one UPDATE (`attempts + 1`, `locked_until = now + lease`,
   KABINET_EVENTS_LEASE_SECONDS) of
   rows chosen `FOR UPDATE SKIP LOCKED` on PostgreSQL; on SQLite BEGIN IMMEDIATE serialises
   the claimers. A claimed delivery is no other deliverer's until its lease runs out, so no
   event is sent twice in a round, whatever the number of processes;
3. **send** each with no transaction open: `POST url`, the body `{"id", "type",
   "occurredAt", "data"}`, `Kabinet-Event-Id`, `Kabinet-Signature: t=<unix>,v1=<hex
   HMAC-SHA256 of "<t>.<body>">`, a 10 s timeout, redirects not followed;
4. **record** the outcome on the row if the lease is still ours: a 2xx answer DELIVERED;
   otherwise the next attempt after `RETRY_DELAYS[attempts - 1]` (1 min, 5 min, 30 min, 2 h,
   6 h, then every 12 h while within 3 days of the first attempt), then FAILED.

Delivery is at least once: a process killed between a receiver's 2xx and step 4 sends that
event again once the lease runs out (the receiver sees the same `Kabinet-Event-Id`).

**Where a delivery connects** (SSRF, docs/security.md): in production the URL must be
https; its host is resolved at send time and every address it resolves to must be public
(not loopback, private, link-local, shared, reserved, multicast or unspecified) unless the
host is in KABINET_WEBHOOK_ALLOWED_HOSTS. The request then goes to the address that was
checked: the URL's host is replaced by that IP, `Host` keeps the name, and TLS verifies the
certificate for the name (httpcore's `sni_hostname`), so a DNS answer that changes between
the check and the connection (DNS rebinding) cannot move the request elsewhere. Connections
are never kept alive (a pooled TLS connection to one IP must not serve another name).

**Pruning** (`prune`, `kabinet events prune`): the history goes once it is older than
KABINET_EVENTS_KEEP_DAYS, by the event's `occurred_at` (one clock for an event and its
deliveries; a delivery is final at most ~3 days after its event, so a delivery is never
removed before it could have ended). First the final (DELIVERED, FAILED) deliveries of old
events, then old events fanned out with no delivery left; an event not yet fanned out, or
with a PENDING delivery, stays whatever its age. Each batch (`PRUNE_BATCH` rows) is its own
short transaction; on PostgreSQL a batch's rows are chosen `FOR UPDATE SKIP LOCKED`, so two
prunes take different rows, and a delivery being redelivered (locked by `redeliverWebhook`)
is left for the next prune.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db import begin_write, create_engine, create_session_factory, rowcount, unit_of_work
from core.settings import Settings
from models.base import UTCDateTime, table_of, utcnow
from models.events import Event, WebhookDelivery, WebhookSubscription, WebhookSubscriptionEvent

logger = logging.getLogger("core.webhooks_out")

SessionFactory = async_sessionmaker[AsyncSession]

_events = table_of(Event)
_deliveries = table_of(WebhookDelivery)
_subscriptions = table_of(WebhookSubscription)
_wanted = table_of(WebhookSubscriptionEvent)

SEND_TIMEOUT_SECONDS = 10.0  # SPEC §9
# Resolving and sending one event, start to finish (the 10 s are httpx's per step).
SEND_DEADLINE_SECONDS = 20.0
BATCH_SIZE = 50
SENDS_AT_ONCE = 10
FAN_OUT_BATCH = 500
PRUNE_BATCH = 5000
ERROR_MAX_CHARS = 500
URL_MAX_CHARS = 2000
EVENT_ID_PREFIX = "evt_"


def _retry_delays() -> tuple[timedelta, ...]:
    """1 min, 5 min, 30 min, 2 h, 6 h, then every 12 h while the next attempt falls within
    3 days of the first (SPEC §9): attempts at 0, 1 min, 6 min, 36 min, 2 h 36, 8 h 36,
    20 h 36 … 68 h 36, then FAILED."""
    delays = [
        timedelta(minutes=1),
        timedelta(minutes=5),
        timedelta(minutes=30),
        timedelta(hours=2),
        timedelta(hours=6),
    ]
    while sum(delays, timedelta()) + timedelta(hours=12) <= timedelta(days=3):
        delays.append(timedelta(hours=12))
    return tuple(delays)


RETRY_DELAYS = _retry_delays()


# -- URL rules ------------------------------------------------------------------------------


class UrlRefused(ValueError):
    """A subscription URL (or the address it resolves to) that must not be called."""


@dataclass(frozen=True, slots=True)
class Target:
    url: httpx.URL
    host: str
    port: int


def parse_target(url: str, settings: Settings) -> Target:
    """The URL's form: http(s) with a host, no credentials; https only in production."""
    if len(url) > URL_MAX_CHARS or any(ord(ch) <= 32 or ord(ch) == 127 for ch in url):
        raise UrlRefused("The URL must be one line of at most 2000 characters.")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise UrlRefused("This is not a URL.") from None
    schemes = ("https",) if settings.is_production else ("http", "https")
    if parsed.scheme not in schemes:
        raise UrlRefused(
            "The URL must start with https://."
            if settings.is_production
            else "The URL must start with http:// or https://."
        )
    if not parsed.host:
        raise UrlRefused("The URL has no host.")
    if parsed.userinfo:
        raise UrlRefused("The URL must not carry a user name or password.")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return Target(parsed, parsed.host.lower().rstrip("."), port)


def _allowlisted(host: str, settings: Settings) -> bool:
    return host in {name.lower().rstrip(".") for name in settings.webhook_allowed_hosts}


def public_address(address: str) -> bool:
    """Whether an IP address may be called: not loopback, private (RFC 1918, ULA), shared
    (100.64/10), link-local (169.254/16, fe80::/10: cloud metadata lives there), reserved,
    multicast or unspecified; an IPv4 address mapped into IPv6 is judged as itself."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
    )


async def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (an IP literal: itself), in the resolver's order."""
    with contextlib.suppress(ValueError):
        return [str(ipaddress.ip_address(host.strip("[]")))]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise UrlRefused(f"The host {host} does not resolve ({error}).") from None
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UrlRefused(f"The host {host} does not resolve.")
    return addresses


async def checked_addresses(target: Target, settings: Settings) -> list[str]:
    """The addresses a delivery to `target` may connect to. In production every address the
    host resolves to must be public (one private answer refuses them all: a name that
    resolves to both is an attack or a mistake) unless the host is allowlisted."""
    addresses = await resolve(target.host, target.port)
    if settings.is_production and not _allowlisted(target.host, settings):
        refused = [address for address in addresses if not public_address(address)]
        if refused:
            raise UrlRefused(
                f"The host {target.host} resolves to a loopback, private, link-local or "
                f"reserved address ({refused[0]}); list it in KABINET_WEBHOOK_ALLOWED_HOSTS "
                "to allow it."
            )
    return addresses


async def check_subscription_url(url: str, settings: Settings) -> str:
    """The URL a subscription may have (UrlRefused with the reason otherwise): its form, and
    in production where it resolves now (checked again at every send)."""
    target = parse_target(url.strip(), settings)
    if settings.is_production:
        await checked_addresses(target, settings)
    return str(target.url)


# -- the body and its signature ---------------------------------------------------------


def event_id(pk: int) -> str:
    return f"{EVENT_ID_PREFIX}{pk}"


def _instant(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_body(event: Any) -> bytes:
    """The body of a delivery: `{"id", "type", "occurredAt", "data": {"contractNumber",
    …}}`, compact JSON in UTF-8. The same bytes at every attempt."""
    data = event.data if isinstance(event.data, dict) else json.loads(event.data)
    return json.dumps(
        {
            "id": event_id(event.id),
            "type": event.type,
            "occurredAt": _instant(event.occurred_at),
            "data": {"contractNumber": event.contract_number, **data},
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`Kabinet-Signature`'s value: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


# -- sending ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def new_client() -> httpx.AsyncClient:
    """No redirects followed (a 3xx is a failed attempt), no proxy from the environment (it
    would connect elsewhere than the address checked), no connection kept alive."""
    return httpx.AsyncClient(
        timeout=SEND_TIMEOUT_SECONDS,
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_keepalive_connections=0),
    )


async def send(
    client: httpx.AsyncClient,
    *,
    url: str,
    secret: str,
    event: Any,
    settings: Settings,
    now: datetime,
) -> Outcome:
    """One attempt: check where the URL leads (again: DNS may have changed since the
    subscription), connect to the checked address, POST the signed body."""
    body = event_body(event)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Kabinet-Webhooks/1",
        "Kabinet-Event-Id": event_id(event.id),
        "Kabinet-Signature": signature(secret, int(now.timestamp()), body),
    }
    try:
        target = parse_target(url, settings)
        if settings.is_production:
            addresses = await checked_addresses(target, settings)
            response = await _post_to_checked(client, target, addresses, body, headers)
        else:  # development: any http(s) URL, loopback included (tests, `make serve`)
            response = await client.post(target.url, content=body, headers=headers)
    except UrlRefused as error:
        return Outcome(None, f"refused: {error}"[:ERROR_MAX_CHARS])
    except httpx.TimeoutException:
        return Outcome(None, f"no answer within {SEND_TIMEOUT_SECONDS:g} s")
    except httpx.HTTPError as error:
        return Outcome(None, " ".join(f"{type(error).__name__}: {error}".split())[:ERROR_MAX_CHARS])
    if 200 <= response.status_code < 300:
        return Outcome(response.status_code, None)
    return Outcome(response.status_code, f"HTTP {response.status_code}")


async def _post_to_checked(
    client: httpx.AsyncClient,
    target: Target,
    addresses: list[str],
    body: bytes,
    headers: dict[str, str],
) -> httpx.Response:
    """POST to the addresses checked, in the resolver's order until one connects: the URL's
    host replaced by the address, `Host` the name, TLS's SNI and certificate check the name."""
    extensions: dict[str, Any] = {}
    if target.url.scheme == "https":
        extensions["sni_hostname"] = target.host
    named = {**headers, "Host": target.url.netloc.decode("ascii")}
    refused: httpx.ConnectError | None = None
    for address in addresses:
        try:
            return await client.post(
                target.url.copy_with(host=address),
                content=body,
                headers=named,
                extensions=extensions,
            )
        except httpx.ConnectError as error:
            refused = error
    assert refused is not None  # checked_addresses gives at least one
    raise refused


# -- the round ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    delivered: int = 0
    failed: int = 0  # attempts that failed this round (retried later, or now FAILED)
    given_up: int = 0  # of those, deliveries now FAILED
    remaining: int = 0  # PENDING deliveries and events not yet fanned out
    fanned_out: int = 0  # new events given their deliveries this round

    @property
    def full(self) -> bool:
        """The round did as much as it may: another one should follow at once."""
        return self.delivered + self.failed >= BATCH_SIZE or self.fanned_out >= FAN_OUT_BATCH


def _fan_out_statements() -> tuple[sa.Select[Any], sa.Insert, sa.Update]:
    ids: sa.BindParameter[Any] = sa.bindparam("ids", expanding=True)
    now = sa.bindparam("now", type_=UTCDateTime)
    pick = (
        sa.select(_events.c.id)
        .where(_events.c.fanned_out_at.is_(None))
        .order_by(_events.c.id)
        .limit(FAN_OUT_BATCH)
        .with_for_update(skip_locked=True)
    )
    make = sa.insert(_deliveries).from_select(
        ["event_id", "subscription_id", "status", "attempts", "created_at", "next_attempt_at"],
        sa.select(
            _events.c.id,
            _subscriptions.c.id,
            sa.literal("PENDING", sa.String),
            sa.literal(0, sa.Integer),
            now,
            sa.bindparam("due", type_=UTCDateTime),
        )
        .select_from(
            _events.join(_wanted, _wanted.c.event_type == _events.c.type).join(
                _subscriptions, _subscriptions.c.id == _wanted.c.subscription_id
            )
        )
        .where(_events.c.id.in_(ids), _subscriptions.c.active.is_(True))
        .order_by(_events.c.id, _subscriptions.c.id),  # the log lists them in event order
    )
    mark = sa.update(_events).where(_events.c.id.in_(ids)).values(fanned_out_at=now)
    return pick, make, mark


_PICK_EVENTS, _MAKE_DELIVERIES, _MARK_FANNED_OUT = _fan_out_statements()


async def fan_out(
    session_factory: SessionFactory, *, now: datetime, due: datetime | None = None
) -> int:
    """Make the deliveries of events not fanned out yet (a batch), due at `due` (default
    `now`); how many events."""
    async with unit_of_work(session_factory) as session:
        await begin_write(session)
        ids = list((await session.scalars(_PICK_EVENTS)).all())
        if ids:
            await session.execute(_MAKE_DELIVERIES, {"ids": ids, "now": now, "due": due or now})
            await session.execute(_MARK_FANNED_OUT, {"ids": ids, "now": now})
    return len(ids)


# Written into the SQL, not a parameter: the partial index ix_webhook_deliveries_due (status =
# 'PENDING') serves only a query whose plan can see the value.
_PENDING = _deliveries.c.status == sa.literal_column("'PENDING'")


def _claim() -> sa.Update:
    now = sa.bindparam("now", type_=UTCDateTime)
    due = (
        sa.select(_deliveries.c.id)
        .join(_subscriptions, _subscriptions.c.id == _deliveries.c.subscription_id)
        .where(
            _PENDING,
            _deliveries.c.next_attempt_at <= now,
            _deliveries.c.next_attempt_at <= sa.bindparam("cutoff", type_=UTCDateTime),
            sa.or_(_deliveries.c.locked_until.is_(None), _deliveries.c.locked_until < now),
            _subscriptions.c.active.is_(True),
        )
        .order_by(_deliveries.c.next_attempt_at, _deliveries.c.id)
        .limit(sa.bindparam("limit", type_=sa.Integer))
        .with_for_update(of=_deliveries, skip_locked=True)
    )
    return (
        sa.update(_deliveries)
        .where(_deliveries.c.id.in_(due.scalar_subquery()))
        .values(
            attempts=_deliveries.c.attempts + 1,
            locked_until=sa.bindparam("until", type_=UTCDateTime),
        )
        .returning(
            _deliveries.c.id,
            _deliveries.c.event_id,
            _deliveries.c.subscription_id,
            _deliveries.c.attempts,
            _deliveries.c.locked_until,
        )
    )


_CLAIM = _claim()
_CLAIMED = (
    sa.select(
        _deliveries.c.id.label("delivery_id"),
        _events.c.id,
        _events.c.type,
        _events.c.occurred_at,
        _events.c.contract_number,
        _events.c.data,
        _subscriptions.c.url,
        _subscriptions.c.secret,
    )
    .join(_events, _events.c.id == _deliveries.c.event_id)
    .join(_subscriptions, _subscriptions.c.id == _deliveries.c.subscription_id)
    .where(_deliveries.c.id.in_(sa.bindparam("ids", expanding=True)))
)


@dataclass(frozen=True, slots=True)
class Claimed:
    delivery_id: int
    attempts: int
    locked_until: datetime
    event: Any
    url: str
    secret: str


async def claim_due(
    session_factory: SessionFactory,
    *,
    now: datetime,
    lease: timedelta,
    limit: int = BATCH_SIZE,
    due_by: datetime | None = None,
) -> list[Claimed]:
    """Take up to `limit` due deliveries for this deliverer until `now + lease`."""
    async with unit_of_work(session_factory) as session:
        await begin_write(session)
        claimed = (
            await session.execute(
                _CLAIM,
                {
                    "now": now,
                    "cutoff": min(now, due_by) if due_by else now,
                    "limit": limit,
                    "until": now + lease,
                },
            )
        ).all()
        if not claimed:
            return []
        rows = {
            row.delivery_id: row
            for row in (await session.execute(_CLAIMED, {"ids": [row.id for row in claimed]})).all()
        }
    return [
        Claimed(
            delivery_id=row.id,
            attempts=row.attempts,
            locked_until=row.locked_until,
            event=rows[row.id],
            url=rows[row.id].url,
            secret=rows[row.id].secret,
        )
        for row in sorted(claimed, key=lambda row: row.id)
        if row.id in rows
    ]


def _ours(claimed: Claimed) -> sa.ColumnElement[bool]:
    # `locked_until` is the claim's token: a redelivery or a later claim changes it.
    return sa.and_(
        _deliveries.c.id == claimed.delivery_id,
        _deliveries.c.locked_until == claimed.locked_until,
    )


def outcome_values(claimed: Claimed, outcome: Outcome, now: datetime) -> dict[str, Any]:
    """What an attempt leaves on its delivery: DELIVERED, the next attempt, or FAILED."""
    values: dict[str, Any] = {
        "locked_until": None,
        "last_status_code": outcome.status_code,
        "last_error": outcome.error,
    }
    if outcome.delivered:
        values.update(status="DELIVERED", delivered_at=now)
    elif claimed.attempts > len(RETRY_DELAYS):
        values.update(status="FAILED")
    else:
        values.update(next_attempt_at=now + RETRY_DELAYS[claimed.attempts - 1])
    return values


async def _record(
    session_factory: SessionFactory, results: Sequence[tuple[Claimed, Outcome]], now: datetime
) -> None:
    async with unit_of_work(session_factory) as session:
        await begin_write(session)
        for claimed, outcome in results:
            await session.execute(
                sa.update(_deliveries)
                .where(_ours(claimed))
                .values(**outcome_values(claimed, outcome, now))
            )


async def count_remaining(session_factory: SessionFactory) -> int:
    async with session_factory() as session:
        pending = await session.scalar(
            sa.select(sa.func.count()).select_from(_deliveries).where(_PENDING)
        )
        new = await session.scalar(
            sa.select(sa.func.count()).select_from(_events).where(_events.c.fanned_out_at.is_(None))
        )
    return int(pending or 0) + int(new or 0)


async def deliver_due(
    session_factory: SessionFactory,
    *,
    settings: Settings,
    now: datetime | None = None,
    client: httpx.AsyncClient | None = None,
    limit: int = BATCH_SIZE,
    due_by: datetime | None = None,
    count: bool = True,
) -> DeliveryReport:
    """One round: fan out new events, claim what is due, send it (`SENDS_AT_ONCE` at a
    time), record each outcome. `now` is the round's clock (tests move it instead of
    sleeping); `due_by` leaves out deliveries that fall due after it; `count`: report what
    remains (two counts, which the loop in `serve` does without)."""
    moment = now or utcnow()
    fanned = await fan_out(session_factory, now=moment, due=min(moment, due_by) if due_by else None)
    lease = timedelta(seconds=settings.events_lease_seconds)
    claimed = await claim_due(session_factory, now=moment, lease=lease, limit=limit, due_by=due_by)
    if not claimed:
        return DeliveryReport(
            remaining=await count_remaining(session_factory) if count else 0, fanned_out=fanned
        )
    own_client = client is None
    http = client or new_client()
    gate = asyncio.Semaphore(SENDS_AT_ONCE)

    async def attempt(one: Claimed) -> tuple[Claimed, Outcome]:
        async with gate:
            try:
                async with asyncio.timeout(SEND_DEADLINE_SECONDS):
                    outcome = await send(
                        http,
                        url=one.url,
                        secret=one.secret,
                        event=one.event,
                        settings=settings,
                        now=moment if now is not None else utcnow(),
                    )
            except TimeoutError:
                outcome = Outcome(None, f"no answer within {SEND_DEADLINE_SECONDS:g} s")
        if not outcome.delivered:
            logger.warning(
                "event %s, delivery %s: attempt %d failed: %s",
                one.event.id,
                one.delivery_id,
                one.attempts,
                outcome.error,
            )
        return one, outcome

    try:
        results = await asyncio.gather(*(attempt(one) for one in claimed))
    finally:
        if own_client:
            await http.aclose()
    await _record(session_factory, results, now or utcnow())
    delivered = sum(1 for _, outcome in results if outcome.delivered)
    given_up = sum(
        1 for one, outcome in results if not outcome.delivered and one.attempts > len(RETRY_DELAYS)
    )
    return DeliveryReport(
        delivered=delivered,
        failed=len(results) - delivered,
        given_up=given_up,
        remaining=await count_remaining(session_factory) if count else 0,
        fanned_out=fanned,
    )


async def run_deliverer(
    session_factory: SessionFactory, settings: Settings, stop: asyncio.Event
) -> None:
    """Inside `serve`: a round every `events_poll_seconds` (at once again after a full
    batch) until `stop` is set; errors are logged, never fatal."""
    async with new_client() as client:
        while not stop.is_set():
            full = False
            try:
                report = await deliver_due(
                    session_factory, settings=settings, client=client, count=False
                )
                full = report.full
            except Exception as error:
                logger.error("events: delivery round failed: %s", type(error).__name__)
                logger.debug("events: round failure details", exc_info=True)
            if not full:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), settings.events_poll_seconds)


async def deliver_all_now(settings: Settings) -> DeliveryReport:
    """`kabinet events deliver`: one attempt at every delivery due now, then exit."""
    engine = create_engine(settings)
    try:
        session_factory = create_session_factory(engine)
        started = utcnow()
        delivered = failed = given_up = 0
        async with new_client() as client:
            while True:
                report = await deliver_due(
                    session_factory, settings=settings, client=client, due_by=started
                )
                delivered += report.delivered
                failed += report.failed
                given_up += report.given_up
                if not report.full:
                    return DeliveryReport(delivered, failed, given_up, report.remaining)
    finally:
        await engine.dispose()


# -- pruning the history ------------------------------------------------------------------


def _prune_statements() -> tuple[sa.Delete, sa.Delete]:
    cutoff = sa.bindparam("cutoff", type_=UTCDateTime)
    limit = sa.bindparam("limit", type_=sa.Integer)
    final = _deliveries.c.status.in_(
        [sa.literal_column("'DELIVERED'"), sa.literal_column("'FAILED'")]
    )
    old_final = (
        sa.select(_deliveries.c.id)
        .join(_events, _events.c.id == _deliveries.c.event_id)
        .where(final, _events.c.occurred_at < cutoff)
        .order_by(_deliveries.c.id)
        .limit(limit)
        .with_for_update(of=_deliveries, skip_locked=True)
    )
    deliveries = sa.delete(_deliveries).where(
        _deliveries.c.id.in_(old_final.scalar_subquery()), final
    )
    # No delivery left at all (the old final ones went first): a delivery that became final
    # since, or is being redelivered, keeps its event until the next prune. No delivery can
    # appear for an event fanned out already, so the check holds until the DELETE.
    old = _events.alias("old")  # not correlated with the DELETE's own `events`
    has_delivery = sa.exists().where(_deliveries.c.event_id == old.c.id)
    old_events = (
        sa.select(old.c.id)
        .where(old.c.fanned_out_at.is_not(None), old.c.occurred_at < cutoff, ~has_delivery)
        .order_by(old.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    events = sa.delete(_events).where(
        _events.c.id.in_(old_events.scalar_subquery()), _events.c.fanned_out_at.is_not(None)
    )
    return deliveries, events


_PRUNE_DELIVERIES, _PRUNE_EVENTS = _prune_statements()


@dataclass(frozen=True, slots=True)
class PruneReport:
    deliveries: int = 0
    events: int = 0
    cutoff: datetime | None = None

    def line(self) -> str:
        before = f" (occurred before {_instant(self.cutoff)})" if self.cutoff else ""
        return (
            f"events prune: {self.deliveries} deliveries and {self.events} events deleted{before}"
        )


async def _prune_batches(
    session_factory: SessionFactory,
    statement: sa.Delete,
    *,
    cutoff: datetime,
    batch: int,
    what: str,
    progress: Callable[[str], None] | None,
) -> int:
    deleted = 0
    while True:
        async with unit_of_work(session_factory) as session:
            await begin_write(session)
            count = rowcount(await session.execute(statement, {"cutoff": cutoff, "limit": batch}))
        deleted += count
        if count and progress is not None:
            progress(f"events prune: {deleted} {what} deleted so far")
        if count < batch:  # the rest is another prune's (SKIP LOCKED) or not there
            return deleted


async def prune(
    session_factory: SessionFactory,
    *,
    older_than: timedelta,
    now: datetime | None = None,
    batch: int = PRUNE_BATCH,
    progress: Callable[[str], None] | None = None,
) -> PruneReport:
    """Delete the final deliveries of events that occurred more than `older_than` before
    `now`, then those events once fanned out with no delivery left; `batch` rows a
    transaction. Safe beside deliverers and other prunes (see the module's notes)."""
    cutoff = (now or utcnow()) - older_than
    deliveries = await _prune_batches(
        session_factory,
        _PRUNE_DELIVERIES,
        cutoff=cutoff,
        batch=batch,
        what="deliveries",
        progress=progress,
    )
    events = await _prune_batches(
        session_factory, _PRUNE_EVENTS, cutoff=cutoff, batch=batch, what="events", progress=progress
    )
    return PruneReport(deliveries, events, cutoff)


async def prune_now(
    settings: Settings,
    *,
    older_than_days: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> PruneReport:
    """`kabinet events prune`: the history older than `older_than_days` (default
    KABINET_EVENTS_KEEP_DAYS)."""
    days = settings.events_keep_days if older_than_days is None else older_than_days
    if days < 1:
        raise ValueError("older_than_days must be at least 1")
    engine = create_engine(settings)
    try:
        return await prune(
            create_session_factory(engine), older_than=timedelta(days=days), progress=progress
        )
    finally:
        await engine.dispose()
