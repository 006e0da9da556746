"""Top-ups (SPEC §3 "Money"): a PENDING payment made under an idempotency key, the
provider's confirmation applied exactly once, the receipt, and the read side for GraphQL.

Exactly once, whatever the retries and races:

* creating: `(idempotency_scope, idempotency_key)` is unique, so two identical requests
  racing with one key make one row; the loser of the insert re-reads the winner.
* confirming: the payment row is locked (`FOR UPDATE` on PostgreSQL; SQLite's BEGIN
  IMMEDIATE has serialised the writers already), it moves only from PENDING, by a
  conditional UPDATE, and its `payment_events` row is unique per (payment, status). A
  SUCCEEDED event credits the balance, accrues the points, repays an open promise, lifts a
  suspension, issues the receipt and queues its letter, all in that one transaction.
  On PostgreSQL a SUCCEEDED event for a contract with no promise to repay or clear and no
  suspension to lift (the common case) is two statements without a transaction around
  them (`_confirm_at_once`): a read, `_EVENT_PAYMENTS_AT_ONCE`, then
  `_CONFIRMATIONS_AT_ONCE`, which locks the payment and the contract, checks that the
  payment is still PENDING and the contract's row the version the read saw, and writes
  everything, or nothing (the step-by-step way, in its transaction, then decides). Two
  round trips instead of fifteen, each shared by the confirmations of the process that
  arrive together (`core.db.BatchedStatement`): one statement and one commit for many.

Writes one way: each table's rows are written by the statements of the module that owns it
(`ledger.balance_change`/`entry_insert`, `bonus.account_credit`/`accrual_insert`,
`receipts.receipt_insert`, `outbox.enqueue_insert`; the event and the settlement here). The
step-by-step way runs those builders one after another in its transaction; the one
statement is the same builders composed as CTEs (`ledger.posting`, `bonus.accrual`), with
values made by the same functions. A test holds the two ways to the same rows.

Idempotency keys are remembered for as long as the payment rows exist, and payment rows are
never deleted: a key is kept far longer than `idempotency_key_hours` (SPEC: at least 24 h).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from auth.sessions import Principal
from core import outbox
from core.db import (
    BatchedStatement,
    RequestReader,
    RunAlone,
    as_column_value,
    begin_write,
    driver_connection,
    insert_row,
    parameters,
    prefixed,
    read_rows,
    rowcount,
    rows_parameter,
    unit_of_work,
)
from core.errors import DomainError, ErrorCode, InputProblems
from core.payment_providers import (
    ExternalProvider,
    PaymentOrder,
    ProviderPayment,
    ProviderRefused,
    ProviderUnavailable,
    SandboxProvider,
    SavedMethod,
    payment_global_id,
    payment_idempotence_key,
    provider_for,
)
from core.settings import Settings
from models import (
    BonusEntry,
    Contract,
    OutboxMessage,
    Payment,
    PaymentEvent,
    PaymentMethod,
    PromisedPayment,
    Receipt,
    Subscriber,
)
from models.base import UTCDateTime, table_of, utcnow
from models.money import PAYMENT_METHODS
from resolvers import bonus, events, ledger, receipts
from resolvers.accounts import may_see_contract
from resolvers.letters import receipt_letter
from resolvers.promised import clear_overdue_if_paid, repay_open_promise
from resolvers.suspension import lift_if_paid

log = logging.getLogger("kabinet.payments")

_payments = table_of(Payment)
_events = table_of(PaymentEvent)
_receipts = table_of(Receipt)
_contracts = table_of(Contract)
_subscribers = table_of(Subscriber)
_promises = table_of(PromisedPayment)
_methods = table_of(PaymentMethod)
# Providers Kabinet calls over the network when a top-up is created (the sandbox's and the
# external provider's pages need no call).
REMOTE_PROVIDERS = frozenset({"yookassa"})
RETURN_URL_MAX = 2000

CENT = Decimal("0.01")
TOP_UP_DESCRIPTION = "Пополнение баланса"  # the TOP_UP ledger entry
EVENT_STATUSES = ("SUCCEEDED", "FAILED")
IDEMPOTENCY_KEY_MIN, IDEMPOTENCY_KEY_MAX = 8, 100
# The rule in words: the refusal says it, and so does the input field's description.
IDEMPOTENCY_KEY_RULE = (
    f"{IDEMPOTENCY_KEY_MIN} to {IDEMPOTENCY_KEY_MAX} printable ASCII characters, not starting "
    "or ending with a space"
)
# Printable ASCII (space included, but not at either end): UUIDs, ULIDs, "topup-2024-…".
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
_PROVIDER_REFERENCE = re.compile(r"[\x21-\x7e]{1,100}")
MAX_SCOPE_LENGTH = 64
# Far beyond any amount a top-up may have; keeps Decimal arithmetic away from huge exponents.
_AMOUNT_SANITY_LIMIT = Decimal("1e12")

PAYMENT_COLUMNS = (
    _payments.c.id,
    _payments.c.contract_id,
    _payments.c.amount,
    _payments.c.method,
    _payments.c.status,
    _payments.c.provider,
    _payments.c.provider_reference,
    _payments.c.created_at,
    _payments.c.confirmed_at,
    _payments.c.confirmation_url,
    _payments.c.receipt_status,
)
RECEIPT_COLUMNS = (
    _receipts.c.id,
    _receipts.c.payment_id,
    _receipts.c.number,
    _receipts.c.issued_at,
    _receipts.c.seller_name,
    _receipts.c.seller_inn,
    _receipts.c.contract_number,
    _receipts.c.payer_email,
    _receipts.c.item,
    _receipts.c.vat_rate,
    _receipts.c.vat_amount,
    _receipts.c.total,
    _receipts.c.method,
    _receipts.c.provider_reference,
)


# -- creating a top-up --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TopUp:
    """A payment as `createTopUp` returns it."""

    id: int
    contract_id: int
    status: str
    amount: Decimal
    method: str
    provider: str
    provider_reference: str | None
    created_at: datetime
    confirmed_at: datetime | None
    confirmation_url: str  # "" only for a charge of a saved method (nothing to confirm)
    replayed: bool  # an earlier request with this idempotency key made it
    # What to ask the provider, when it has not answered for this payment yet (a remote
    # provider: see `send_to_provider`); None otherwise.
    provider_request: PaymentOrder | None = None


def _invalid(field: str, message: str) -> DomainError:
    return DomainError(ErrorCode.INVALID, message, field=field)


def checked_amount(settings: Settings, amount: Decimal) -> Decimal:
    """The amount with 2 places, or INVALID: a finite number of whole kopecks in the limits."""
    limits = f"from {settings.top_up_min:.2f} to {settings.top_up_max:.2f} {settings.currency}"
    if (
        not isinstance(amount, Decimal)
        or not amount.is_finite()
        or abs(amount) > _AMOUNT_SANITY_LIMIT
    ):
        raise _invalid("amount", f"The amount must be a number {limits}.")
    if not settings.top_up_min <= amount <= settings.top_up_max:
        raise _invalid("amount", f"The amount must be {limits}.")
    try:
        rounded = amount.quantize(CENT)
    except InvalidOperation:
        rounded = None
    if rounded != amount:
        raise _invalid("amount", "The amount may have at most 2 decimal places.")
    return rounded


def check_method(method: str) -> None:
    if method not in PAYMENT_METHODS:
        raise _invalid("method", f"The method must be one of {', '.join(PAYMENT_METHODS)}.")


def check_idempotency_key(key: str) -> None:
    if (
        not isinstance(key, str)
        or not IDEMPOTENCY_KEY_MIN <= len(key) <= IDEMPOTENCY_KEY_MAX
        or not _IDEMPOTENCY_KEY.fullmatch(key)
    ):
        raise _invalid("idempotencyKey", f"The idempotency key must be {IDEMPOTENCY_KEY_RULE}.")


def request_fingerprint(
    *,
    contract_id: int,
    amount: Decimal,
    method: str,
    return_url: str | None = None,
    save_payment_method: bool = False,
) -> str:
    """What makes two requests "the same" for one idempotency key (the return URL and the
    wish to save the method count only when given, so earlier keys keep their meaning)."""
    text = f"{contract_id}\n{amount:.2f}\n{method}"
    if return_url is not None or save_payment_method:
        text += f"\n{return_url or ''}\n{int(save_payment_method)}"
    return hashlib.sha256(text.encode()).hexdigest()


def _origin(url: str) -> str | None:
    """scheme://host[:port] of an http(s) URL, lower-case; None for anything else."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return None
    host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if not host or "@" in host or "\\" in host:
        return None
    return f"{scheme}://{host}".lower()


def return_url_origins(settings: Settings) -> frozenset[str]:
    """Where a payer may be sent back: `KABINET_RETURN_URL_ORIGINS`, else the public URL's."""
    listed = settings.return_url_origins or [settings.public_url]
    return frozenset(origin for origin in map(_origin, listed) if origin is not None)


def check_return_url(settings: Settings, url: str | None) -> str | None:
    """The return URL when its origin is allowed (INVALID, field returnUrl, otherwise)."""
    if url is None:
        return None
    if (
        not isinstance(url, str)
        or len(url) > RETURN_URL_MAX
        or not url.isascii()
        or not url.isprintable()
        or " " in url
    ):
        raise _invalid(
            "returnUrl",
            f"The return URL must be an http(s) URL of at most {RETURN_URL_MAX} characters.",
        )
    origin = _origin(url)
    allowed = return_url_origins(settings)
    if origin is None or origin not in allowed:
        raise _invalid(
            "returnUrl",
            "The return URL must start with one of: " + ", ".join(sorted(allowed)) + ".",
        )
    return url


def confirmation_url_for(
    settings: Settings,
    *,
    payment_id: int,
    amount: Decimal,
    provider: str | None = None,
    stored: str | None = None,
) -> str | None:
    """Where to pay a payment (also for `Payment.confirmationUrl` on read): the page the
    provider answered with (`stored`), else the page of the sandbox or the external
    provider's template; None while a remote provider has not answered."""
    if stored:
        return stored
    name = provider or settings.payment_provider
    gid = payment_global_id(payment_id)
    if name == "sandbox":
        return SandboxProvider(settings).confirmation_url(gid, amount=amount)
    if name == "external" and settings.payment_provider == "external":
        return ExternalProvider(settings).confirmation_url(gid, amount=amount)
    return None


def _top_up(row: Any, settings: Settings, *, replayed: bool) -> TopUp:
    amount = Decimal(row.amount).quantize(CENT)
    return TopUp(
        id=row.id,
        contract_id=row.contract_id,
        status=row.status,
        amount=amount,
        method=row.method,
        provider=row.provider,
        provider_reference=row.provider_reference,
        created_at=row.created_at,
        confirmed_at=row.confirmed_at,
        confirmation_url=confirmation_url_for(
            settings,
            payment_id=row.id,
            amount=amount,
            provider=row.provider,
            stored=row.confirmation_url,
        )
        or "",
        replayed=replayed,
    )


async def _by_idempotency_key(session: AsyncSession, scope: str, key: str) -> Any:
    return (
        await session.execute(
            sa.select(*PAYMENT_COLUMNS, _payments.c.request_fingerprint).where(
                _payments.c.idempotency_scope == scope, _payments.c.idempotency_key == key
            )
        )
    ).first()


def _replay(row: Any, fingerprint: str, settings: Settings) -> TopUp:
    if row.request_fingerprint != fingerprint:
        raise DomainError(
            ErrorCode.CONFLICT,
            "This idempotency key was already used for a different top-up.",
            field="idempotencyKey",
        )
    return _top_up(row, settings, replayed=True)


async def create_top_up(
    session: AsyncSession,
    *,
    settings: Settings,
    principal_scope: str,
    contract_id: int,
    amount: Decimal,
    method: str,
    idempotency_key: str,
    return_url: str | None = None,
    save_payment_method: bool = False,
) -> TopUp:
    """A PENDING payment and where to pay it. The caller has checked that the principal may
    see the contract; `principal_scope` (e.g. `Principal.actor`) scopes the key.

    Raises DomainError: INVALID (fields amount, method and idempotencyKey, every one at
    fault); CONFLICT (field
    idempotencyKey) for a key already used by this principal for another request; NOT_FOUND
    (field contractNumber) for no such contract; NOT_ELIGIBLE for a CLOSED contract.
    A SUSPENDED contract may top up.
    """
    if not principal_scope or len(principal_scope) > MAX_SCOPE_LENGTH:
        raise ValueError("principal_scope must be 1 to 64 characters")
    problems = InputProblems()  # each field's problem, all at once
    with problems:
        amount = checked_amount(settings, amount)
    with problems:
        check_method(method)
    with problems:
        check_idempotency_key(idempotency_key)
    with problems:
        return_url = check_return_url(settings, return_url)
    problems.raise_found()
    fingerprint = request_fingerprint(
        contract_id=contract_id,
        amount=amount,
        method=method,
        return_url=return_url,
        save_payment_method=save_payment_method,
    )
    provider = provider_for(settings)

    await begin_write(session)
    existing = await _by_idempotency_key(session, principal_scope, idempotency_key)
    if existing is not None:
        return await _with_request(session, settings, _replay(existing, fingerprint, settings))
    contract_status = (
        await session.execute(sa.select(_contracts.c.status).where(_contracts.c.id == contract_id))
    ).scalar_one_or_none()
    if contract_status is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such contract.", field="contractNumber")
    if contract_status == "CLOSED":
        raise DomainError(
            ErrorCode.NOT_ELIGIBLE, "A closed contract cannot be topped up.", field="contractNumber"
        )
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    row = (
        await session.execute(
            insert(_payments)
            .values(
                contract_id=contract_id,
                amount=amount,
                method=method,
                status="PENDING",
                idempotency_scope=principal_scope,
                idempotency_key=idempotency_key,
                request_fingerprint=fingerprint,
                provider=provider.name,
                created_at=utcnow(),
                return_url=return_url,
                save_payment_method=save_payment_method,
            )
            .on_conflict_do_nothing(
                index_elements=[_payments.c.idempotency_scope, _payments.c.idempotency_key]
            )
            .returning(*PAYMENT_COLUMNS)
        )
    ).first()
    if row is None:
        # PostgreSQL: an identical request with this key committed first (our insert waited
        # for it on the unique index, then inserted nothing; this statement sees it).
        # SQLite cannot get here: BEGIN IMMEDIATE serialises.
        winner = await _by_idempotency_key(session, principal_scope, idempotency_key)
        if winner is None:
            raise RuntimeError("the payment holding this idempotency key is gone")
        return await _with_request(session, settings, _replay(winner, fingerprint, settings))
    log.info("top-up created", extra={"payment_id": row.id, "contract_id": contract_id})
    return await _with_request(session, settings, _top_up(row, settings, replayed=False))


_PROVIDER_REQUEST_READ = (
    sa.select(
        _payments.c.return_url,
        _payments.c.save_payment_method,
        _subscribers.c.email,
        _subscribers.c.phone,
    )
    .select_from(_payments)
    .join(_contracts, _contracts.c.id == _payments.c.contract_id)
    .join(_subscribers, _subscribers.c.id == _contracts.c.subscriber_id)
    .where(_payments.c.id == sa.bindparam("payment_id", type_=sa.BigInteger))
)


async def _with_request(session: AsyncSession, settings: Settings, top_up: TopUp) -> TopUp:
    """The top-up with what to ask its remote provider, when the provider has not answered
    yet for this PENDING payment (a first request, or a retry after no answer: the same
    Idempotence-Key resumes the same provider payment)."""
    if (
        top_up.provider not in REMOTE_PROVIDERS
        or top_up.status != "PENDING"
        or top_up.provider_reference is not None
    ):
        return top_up
    row = (await session.execute(_PROVIDER_REQUEST_READ, {"payment_id": top_up.id})).one()
    request = PaymentOrder(
        payment_id=top_up.id,
        amount=top_up.amount,
        description=f"{TOP_UP_DESCRIPTION}, платёж {top_up.id}",
        return_url=row.return_url,
        receipt=receipts.provider_receipt(
            settings,
            email=row.email,
            phone=row.phone,
            amount=top_up.amount,
            at=top_up.created_at,
        ),
        save_method=bool(row.save_payment_method),
        idempotence_key=payment_idempotence_key(top_up.id, top_up.created_at),
    )
    return dataclasses.replace(top_up, provider_request=request)


async def send_to_provider(settings: Settings, request: PaymentOrder) -> ProviderPayment:
    """Create the payment at the provider (no transaction open: the caller's unit of work
    has ended). Raises DomainError PROVIDER_UNAVAILABLE when it did not answer or refused:
    the payment stays PENDING, and the same request later (the same idempotency key)
    resumes it with the same Idempotence-Key, so the provider never makes two payments."""
    try:
        return await provider_for(settings).create_payment(request)
    except ProviderUnavailable as error:
        log.warning(
            "payment provider did not answer: %s", error, extra={"payment_id": request.payment_id}
        )
        raise DomainError(
            ErrorCode.PROVIDER_UNAVAILABLE,
            "The payment provider did not answer. Nothing was charged; repeat the request "
            "with the same idempotency key to continue.",
        ) from None
    except ProviderRefused as error:
        log.error(
            "payment provider refused the payment: %s",
            error,
            extra={"payment_id": request.payment_id},
        )
        raise DomainError(
            ErrorCode.PROVIDER_UNAVAILABLE,
            "The payment provider refused the payment for now. Nothing was charged; try "
            "again later.",
        ) from None


async def top_up_at_provider(reader: RequestReader, *, settings: Settings, top_up: TopUp) -> TopUp:
    """The second half of `createTopUp` with a remote provider, after the first unit of work
    has committed the PENDING payment: the provider is called with no transaction open, then
    what it answered is kept in a second unit of work. Raises DomainError
    PROVIDER_UNAVAILABLE (`send_to_provider`): the payment stays PENDING and the same
    request later resumes it."""
    request = top_up.provider_request
    if request is None:
        return top_up
    # No pooled connection waits idle on the provider (up to its timeout): the request
    # gives its own back and takes one again for the second unit of work.
    await reader.release()
    answer = await send_to_provider(settings, request)
    async with reader.write() as session:
        return await record_provider_payment(
            session, settings=settings, payment_id=top_up.id, answer=answer
        )


async def record_provider_payment(
    session: AsyncSession, *, settings: Settings, payment_id: int, answer: ProviderPayment
) -> TopUp:
    """Keep what the provider answered for a new payment: its reference, where to pay and
    its receipt status (a reference never replaces another). The outcome itself comes
    through the notification, read back."""
    await begin_write(session)
    values: dict[str, Any] = {"confirmation_url": answer.confirmation_url}
    if answer.receipt_status is not None:
        values["receipt_status"] = answer.receipt_status
    if answer.reference is not None:
        values["provider_reference"] = answer.reference
    await session.execute(
        sa.update(_payments)
        .where(
            _payments.c.id == payment_id,
            sa.or_(
                _payments.c.provider_reference.is_(None),
                _payments.c.provider_reference == answer.reference,
            ),
        )
        .values(**values)
    )
    row = (
        await session.execute(sa.select(*PAYMENT_COLUMNS).where(_payments.c.id == payment_id))
    ).one()
    return _top_up(row, settings, replayed=False)


# -- the provider's confirmation ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventOutcome:
    applied: bool  # False: the payment was final already; nothing changed
    payment_status: str
    receipt_number: str | None = None


def _checked_reference(status: str, reference: str | None) -> str | None:
    if reference is None:
        if status == "SUCCEEDED":
            raise _invalid("providerReference", "A successful payment needs its reference.")
        return None
    if not isinstance(reference, str) or not _PROVIDER_REFERENCE.fullmatch(reference):
        raise _invalid("providerReference", "The reference must be 1 to 100 printable characters.")
    return reference


async def apply_provider_event(
    session: AsyncSession,
    *,
    settings: Settings,
    payment_id: int,
    status: str,
    provider_reference: str | None,
) -> EventOutcome:
    """Apply the provider's word on a payment, exactly once.

    PENDING → SUCCEEDED credits (see the module docstring); PENDING → FAILED only records
    it. CANCELED → SUCCEEDED credits too (a payment canceled here, abandoned or by the
    subscriber, that the provider took after all: SPEC §7), once, like any success. An
    event for a payment that is final already changes nothing (a replay, or a
    contradiction such as SUCCEEDED after FAILED, which is logged): `applied` is False.

    Raises DomainError: INVALID (field status or providerReference); NOT_FOUND (field
    paymentId); CONFLICT (field providerReference) when the reference belongs to another
    payment of this provider.
    """
    if status not in EVENT_STATUSES:
        raise _invalid("status", f"The status must be one of {', '.join(EVENT_STATUSES)}.")
    provider_reference = _checked_reference(status, provider_reference)

    engine = session.bind
    if status == "SUCCEEDED" and engine is not None and engine.dialect.name == "postgresql":
        outcome = await _confirm_at_once(
            engine, settings=settings, payment_id=payment_id, provider_reference=provider_reference
        )
        if outcome is not None:
            return outcome

    await begin_write(session)
    # One statement: the payment (locked), who pays, and whether the reference is taken.
    payment = (
        await session.execute(
            _LOCKED_EVENT_PAYMENT, {"payment_id": payment_id, "reference": provider_reference}
        )
    ).first()
    known = _known_outcome(payment, status, provider_reference)
    if known is not None:
        return known
    assert payment is not None  # _known_outcome said NOT_FOUND otherwise

    now = utcnow()
    moved = await session.execute(
        _SETTLE,
        {
            "p_payment": payment_id,
            "p_status": status,
            "p_at": now,
            "p_reference": provider_reference,
        },
    )
    if rowcount(moved) != 1:  # cannot happen under the row lock; nothing written, no credit
        return EventOutcome(False, await _status_of(session, payment_id))
    # The unique (payment, status) row: a second transaction that got this far for the same
    # event would fail here and roll back whole, credit included.
    await session.execute(
        _NEW_EVENT,
        {
            "payment_id": payment_id,
            "status": status,
            "provider_reference": provider_reference,
            "received_at": now,
        },
    )

    number = None
    if status == "SUCCEEDED":
        number = await _credit(
            session,
            settings=settings,
            payment=payment,
            provider_reference=provider_reference or payment.provider_reference,
            now=now,
        )
    log.info("payment %s", status.lower(), extra={"payment_id": payment_id})
    return EventOutcome(True, status, number)


# A payment Kabinet canceled locally (abandoned, or by the subscriber) is credited all the
# same when the provider reports it succeeded (SPEC §7): the money has been taken.
SUCCEEDS_FROM = ("PENDING", "CANCELED")


def _may_succeed(status: Any) -> Any:
    """SQL: the payment's `status` is one of `SUCCEEDS_FROM` (equalities, not IN: the
    one-statement confirmation takes no expanding parameter)."""
    return sa.or_(*(status == value for value in SUCCEEDS_FROM))


def _known_outcome(
    payment: Any, status: str, provider_reference: str | None
) -> EventOutcome | None:
    """What an event comes to before anything is written, from _EVENT_PAYMENT's row: the
    outcome of an event for a final payment (nothing to apply), or None for a PENDING one
    (or a CANCELED one the event says SUCCEEDED: a success always credits).
    Raises DomainError NOT_FOUND (no such payment) or CONFLICT (the reference is another
    payment's)."""
    if payment is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such payment.", field="paymentId")
    if payment.status != "PENDING" and not (
        status == "SUCCEEDED" and payment.status in SUCCEEDS_FROM
    ):
        if payment.status != status:
            log.warning(
                "payment event contradicts the final status; ignored",
                extra={"payment_id": payment.id, "status": payment.status, "event": status},
            )
        return EventOutcome(False, payment.status)
    if provider_reference is not None and payment.reference_taken_by is not None:
        log.error(
            "provider reference already belongs to another payment; event refused",
            extra={"payment_id": payment.id, "other_payment_id": payment.reference_taken_by},
        )
        raise DomainError(
            ErrorCode.CONFLICT,
            "This provider reference belongs to another payment.",
            field="providerReference",
        )
    return None


async def _confirm_at_once(
    engine: Any, *, settings: Settings, payment_id: int, provider_reference: str | None
) -> EventOutcome | None:
    """PostgreSQL, a SUCCEEDED event: two statements in autocommit, no transaction around
    them (two round trips instead of four). The first reads the payment, what the
    confirmation's rows are made of, and whether its contract is plain (no promise to
    repay or clear, no suspension to lift). An event that changes nothing (a replay, an
    unknown payment, a taken reference) is answered from it. For a plain contract the
    second, `_credit_at_once`, writes everything at once. None when the step-by-step way
    must decide: the contract is not plain, or it changed between the two statements.

    Each statement serves the events of the process's requests that arrive together
    (`core.db.BatchedStatement`): an event that joins a read or a write waiting for its
    turn holds no connection while it waits; one that leads (or runs alone) does so on a
    connection of its own."""
    now = utcnow()
    asked = {"payment_id": payment_id, "reference": provider_reference}
    keys = (("payment", payment_id),)
    read = _EVENT_PAYMENTS_AT_ONCE.join(engine, asked, keys=keys)
    payments_read = None
    if read is not None:
        with contextlib.suppress(RunAlone):  # the batch failed: read alone
            payments_read = await read
    if payments_read is None:
        async with driver_connection(engine) as driver:
            payments_read = await _EVENT_PAYMENTS_AT_ONCE.run(engine, driver, asked, keys=keys)
            step = _read_step(engine, settings, payments_read, payment_id, provider_reference, now)
            if isinstance(step, _Credit) and step.joined is None:
                return _succeeded(payment_id, await step.credit(driver))
    else:
        step = _read_step(engine, settings, payments_read, payment_id, provider_reference, now)
        if isinstance(step, _Credit) and step.joined is None:
            async with driver_connection(engine) as driver:
                return _succeeded(payment_id, await step.credit(driver))
    if not isinstance(step, _Credit):
        return step
    assert step.joined is not None
    try:
        number = _receipt_number(await step.joined, step.payment, step.confirmation)
    except RunAlone:  # the batch failed: this one alone, on a connection of its own
        async with driver_connection(engine) as driver:
            number = await step.credit(driver)
    return _succeeded(payment_id, number)


@dataclass(slots=True)
class _Credit:
    """A plain contract's confirmation after its read: its row of the one statement, and
    the answer of the write it joined (None: this one runs it, `credit`)."""

    engine: Any
    settings: Settings
    payment: Any
    event_reference: str | None
    now: datetime
    confirmation: dict[str, Any]
    joined: Any

    async def credit(self, driver: Any) -> str | None:
        return await _credit_at_once(
            driver,
            engine=self.engine,
            settings=self.settings,
            payment=self.payment,
            event_reference=self.event_reference,
            now=self.now,
        )


def _read_step(
    engine: Any,
    settings: Settings,
    payments_read: list[Any],
    payment_id: int,
    provider_reference: str | None,
    now: datetime,
) -> EventOutcome | _Credit | None:
    """What the read says: the outcome of an event that changes nothing, None for the
    step-by-step way (the contract is not plain), or the credit to write (joining the
    write waiting for its turn, if it may)."""
    payment = next((row for row in payments_read if row.id == payment_id), None)
    known = _known_outcome(payment, "SUCCEEDED", provider_reference)
    if known is not None:
        return known
    assert payment is not None  # _known_outcome said NOT_FOUND otherwise
    if not payment.plain:
        return None
    confirmation = _confirmation(settings, payment, provider_reference, now)
    joined = _CONFIRMATIONS_AT_ONCE.join(engine, confirmation, keys=_batch_keys(payment))
    return _Credit(engine, settings, payment, provider_reference, now, confirmation, joined)


def _succeeded(payment_id: int, number: str | None) -> EventOutcome | None:
    if number is None:
        return None
    log.info("payment succeeded", extra={"payment_id": payment_id})
    return EventOutcome(True, "SUCCEEDED", number)


async def _status_of(session: AsyncSession, payment_id: int) -> str:
    status = await session.scalar(sa.select(_payments.c.status).where(_payments.c.id == payment_id))
    return str(status)


async def _credit(
    session: AsyncSession,
    *,
    settings: Settings,
    payment: Any,
    provider_reference: str | None,
    now: datetime,
) -> str:
    """Everything a successful top-up does, in the caller's transaction; the receipt number.
    `payment` is the locked row of _LOCKED_EVENT_PAYMENT (with its contract number, subscriber
    and email)."""
    amount = Decimal(payment.amount).quantize(CENT)
    actor = f"provider:{payment.provider}"
    # A closed contract is credited too: the money has been taken; a refund is staff's call.
    posted = await ledger.post(
        session,
        contract_id=payment.contract_id,
        kind="TOP_UP",
        amount=amount,
        actor=actor,
        description=TOP_UP_DESCRIPTION,
        reference=f"payment:{payment.id}",
        at=now,
    )
    # The promise first, then the suspension: the balance after repayment decides. Both
    # need a balance ≥ 0, and lifting a SUSPENDED contract (this transaction holds its row
    # since the credit, so the status it saw is still the status): skip what cannot apply.
    repaid = await repay_open_promise(session, contract_id=payment.contract_id, actor=actor)
    if posted.balance_after - (repaid or 0) >= 0:
        await clear_overdue_if_paid(session, contract_id=payment.contract_id)
        if posted.contract_status == "SUSPENDED":
            await lift_if_paid(session, settings=settings, contract_id=payment.contract_id)
    await bonus.accrue_for_top_up(
        session,
        settings=settings,
        subscriber_id=payment.subscriber_id,
        payment_id=payment.id,
        amount=amount,
        at=now,
    )
    receipt = _receipt_row(payment, amount=amount, provider_reference=provider_reference, now=now)
    await session.execute(receipts.NEW_RECEIPT, receipt)
    letter = _receipt_letter_row(settings, payment, receipt)
    if letter is not None:
        await session.execute(outbox.ENQUEUE, letter)
    await events.record_event(
        session,
        "payment.succeeded",
        contract_number=payment.number,
        data=_succeeded_event(settings, payment, receipt),
        at=now,
    )
    return str(receipt["number"])


def _succeeded_event(settings: Settings, payment: Any, receipt: dict[str, Any]) -> dict[str, Any]:
    """The `data` of `payment.succeeded` (docs/events.md), for both ways of crediting."""
    return {
        "paymentId": payment_global_id(payment.id),
        "amount": receipt["total"],
        "currency": settings.currency,
        "method": payment.method,
        "provider": payment.provider,
        "receiptNumber": receipt["number"],
    }


def _receipt_row(
    payment: Any, *, amount: Decimal, provider_reference: str | None, now: datetime
) -> dict[str, Any]:
    return receipts.receipt_row(
        payment_id=payment.id,
        contract_number=payment.number,
        payer_email=payment.email,
        total=amount,
        method=payment.method,
        provider_reference=provider_reference,
        at=now,
    )


def _receipt_letter_row(
    settings: Settings, payment: Any, receipt: dict[str, Any]
) -> dict[str, Any] | None:
    """The receipt's letter as an outbox row; None without a usable address on file (an
    unusable address must not stop the money: the receipt stays readable)."""
    if not payment.email:
        return None
    letter = receipt_letter(
        settings,
        receipt_number=receipt["number"],
        contract_number=payment.number,
        amount=receipt["total"],
        vat_rate=receipt["vat_rate"],
        vat_amount=receipt["vat_amount"],
        issued_at=receipt["issued_at"],
        receipt_url=f"/receipts/{payment_global_id(payment.id)}",
    )
    try:
        return outbox.letter_row(
            kind="RECEIPT",
            recipient=payment.email,
            subject=letter.subject,
            body_text=letter.body_text,
            body_html=letter.body_html,
            at=receipt["issued_at"],
        )
    except ValueError:
        log.error("receipt letter not queued: bad address", extra={"payment_id": payment.id})
        return None


async def _credit_at_once(
    driver: Any,
    *,
    engine: Any,
    settings: Settings,
    payment: Any,
    event_reference: str | None,
    now: datetime,
) -> str | None:
    """One statement on `driver`, `_CONFIRMATIONS_AT_ONCE` (autocommit), for this
    confirmation and those of the process's other requests that joined it meanwhile
    (`core.db.BatchedStatement`): it locks the payment and its contract and, if the payment
    is still PENDING and the contract still what `_EVENT_PAYMENTS_AT_ONCE` read (the same
    row version, so no promise or suspension came since: making either writes that row),
    writes the same rows as the step-by-step way (event, settlement, credit and its ledger
    entry, points, receipt, letter), with the same values, made by the same functions and
    written by the same builders (their modules': ledger, bonus, receipts, outbox). Returns
    the receipt number, or None when nothing was written for this payment (the
    step-by-step way then decides).

    The row version is checked on the locked row: PostgreSQL re-reads a row that changed
    while the statement waited for its lock, so a change committed at any moment before
    the lock was taken fails the check."""
    confirmation = _confirmation(settings, payment, event_reference, now)
    answer = await _CONFIRMATIONS_AT_ONCE.run(
        engine, driver, confirmation, keys=_batch_keys(payment)
    )
    return _receipt_number(answer, payment, confirmation)


def _confirmation(
    settings: Settings, payment: Any, event_reference: str | None, now: datetime
) -> dict[str, Any]:
    """A confirmation's row of `_CONFIRMATIONS_AT_ONCE` (`CONFIRMATION_COLUMNS`): the rows
    the step-by-step way writes, made by its functions."""
    amount = Decimal(payment.amount).quantize(CENT)
    reference = event_reference or payment.provider_reference
    receipt = _receipt_row(payment, amount=amount, provider_reference=reference, now=now)
    accrual = bonus.accrual_row(
        settings,
        subscriber_id=payment.subscriber_id,
        payment_id=payment.id,
        amount=amount,
        at=now,
    )
    letter = _receipt_letter_row(settings, payment, receipt)
    return {
        "payment_id": payment.id,
        "contract_id": payment.contract_id,
        "contract_version": payment.contract_version,
        "now": now,
        "event_reference": event_reference,
        "amount": amount,
        "entry_description": TOP_UP_DESCRIPTION,
        "entry_reference": f"payment:{payment.id}",
        "actor": f"provider:{payment.provider}",
        **prefixed(accrual or _NO_ACCRUAL, "accrual_"),
        **prefixed(receipt, "receipt_"),
        **prefixed(letter or _NO_LETTER, "letter_"),
        "event_data": events.event_data(_succeeded_event(settings, payment, receipt)),
    }


def _batch_keys(payment: Any) -> tuple[tuple[str, int], ...]:
    """One statement writes a row once: a batch has one confirmation per payment, contract
    (its balance) and subscriber (the bonus account)."""
    return (
        ("payment", payment.id),
        ("contract", payment.contract_id),
        ("subscriber", payment.subscriber_id),
    )


def _receipt_number(answer: Any, payment: Any, confirmation: dict[str, Any]) -> str | None:
    """The receipt number of a payment the statement answered (a row for each payment kept
    in `plain`), if it settled it."""
    kept = next((row for row in answer if row.payment_id == payment.id), None)
    if kept is None:
        return None
    if not kept.settled:  # cannot happen under the row lock; never credit twice
        raise AssertionError("a locked PENDING payment was not settled")
    return str(confirmation["receipt_number"])


EVENT_COLUMNS = ("payment_id", "status", "provider_reference", "received_at")


def _event_insert(values: dict[str, Any], *, when: Any = None) -> sa.Insert:
    """A payment's event (`EVENT_COLUMNS`), unique per (payment, status)."""
    return insert_row(sa.insert(_events), values, when=when)


def _settle(
    payment_id: Any, *, status: Any, at: Any, reference: Any, when: Any = None
) -> sa.Update:
    """A PENDING payment made final (or a CANCELED one SUCCEEDED: `SUCCEEDS_FROM`); the
    provider's reference kept when none is given."""
    new_status = as_column_value(status, _payments.c.status)
    statement = sa.update(_payments).where(
        _payments.c.id == payment_id,
        sa.or_(
            _payments.c.status == "PENDING",
            sa.and_(_may_succeed(_payments.c.status), new_status == "SUCCEEDED"),
        ),
    )
    if when is not None:
        statement = statement.where(when)
    return statement.values(
        status=new_status,
        confirmed_at=as_column_value(at, _payments.c.confirmed_at),
        provider_reference=sa.func.coalesce(
            as_column_value(reference, _payments.c.provider_reference),
            _payments.c.provider_reference,
        ),
    )


# The confirmation's writes, built once (building them per call cost more Python than their
# round trips).
_NEW_EVENT = _event_insert(parameters(EVENT_COLUMNS))
_SETTLE = _settle(
    sa.bindparam("p_payment"),
    status=sa.bindparam("p_status"),
    at=sa.bindparam("p_at"),
    reference=sa.bindparam("p_reference"),
)

# A contract a confirmation may credit at once: no promise to repay or clear, no suspension
# to lift (what the step-by-step way would do besides).
_PLAIN_CONTRACT = sa.and_(
    _contracts.c.status != "SUSPENDED",
    ~sa.exists().where(
        _promises.c.contract_id == _contracts.c.id,
        sa.or_(_promises.c.status == "OPEN", _promises.c.status == "OVERDUE"),
    ),
)
# The version of the contract's row (`xmin`: the transaction that wrote it).
_CONTRACT_VERSION = sa.cast(sa.literal_column("contracts.xmin"), sa.Text)
_NO_ACCRUAL = dict.fromkeys(bonus.ACCRUAL_COLUMNS)  # no points: `bonus.accrual` writes nothing
_NO_LETTER = dict.fromkeys(outbox.LETTER_COLUMNS)  # no address: nothing queued


_entries = table_of(BonusEntry)
_outbox = table_of(OutboxMessage)


# One confirmation's values in the one statement: its payment and contract as the read saw
# them, and the rows the step-by-step way's functions make (the ledger entry's, the bonus
# accrual's, the receipt's, the letter's), as the columns of a row of `confirmations`.
CONFIRMATION_COLUMNS: dict[str, Any] = {
    "payment_id": sa.BigInteger(),
    "contract_id": sa.BigInteger(),
    "contract_version": sa.Text(),
    "now": UTCDateTime(),
    "event_reference": sa.String(),
    "amount": _contracts.c.balance.type,
    "entry_description": sa.String(),
    "entry_reference": sa.String(),
    "actor": sa.String(),
    **{f"accrual_{name}": _entries.c[name].type for name in bonus.ACCRUAL_COLUMNS},
    **{f"receipt_{name}": _receipts.c[name].type for name in receipts.RECEIPT_COLUMNS},
    **{f"letter_{name}": _outbox.c[name].type for name in outbox.LETTER_COLUMNS},
    "event_data": sa.Text(),
}


def _confirmations_at_once() -> sa.Select[Any]:
    """PostgreSQL: the whole common-case credit of many payments (of distinct contracts and
    subscribers) as one statement, its own transaction (see `_credit_at_once`), composed of
    the builders the step-by-step way runs one by one, each writing once per confirmation.
    `plain` locks the payments and their contracts, in the payments' order, and keeps the
    confirmations whose payment is PENDING and whose contract is plain and the version
    read; the event and the settlement are written for those, the rest for those settled.
    Values are columns of `confirmations` (one array parameter per column), made in Python
    by the step-by-step way's functions. Answers a row for each payment kept: whether it
    was settled."""
    versions = rows_parameter(
        {name: CONFIRMATION_COLUMNS[name] for name in ("payment_id", "contract_version")},
        "versions",
    )
    # (first and short: what it waits for shows in pg_stat_activity, which keeps 1 KiB)
    plain = (
        sa.select(_payments.c.id.label("payment_id"), _payments.c.contract_id)
        .select_from(
            versions.join(_payments, _payments.c.id == versions.c.payment_id).join(
                _contracts, _contracts.c.id == _payments.c.contract_id
            )
        )
        .where(
            _may_succeed(_payments.c.status),
            _CONTRACT_VERSION == versions.c.contract_version,
            _PLAIN_CONTRACT,
        )
        .order_by(_payments.c.id)
        .with_for_update(of=[_payments, _contracts])
        .cte("plain")
    )
    given = rows_parameter(CONFIRMATION_COLUMNS, "confirmations")
    kept = (
        sa.select(
            *(column for column in given.c if column.key != "contract_id"),
            plain.c.contract_id,  # (the read's, from the payment's own row)
        )
        .select_from(given.join(plain, plain.c.payment_id == given.c.payment_id))
        .cte("kept")
    )
    row = kept.c
    event = _event_insert(
        {
            "payment_id": row.payment_id,
            "status": "SUCCEEDED",
            "provider_reference": row.event_reference,
            "received_at": row.now,
        }
    ).cte("event")
    settled = (
        _settle(row.payment_id, status="SUCCEEDED", at=row.now, reference=row.event_reference)
        .returning(_payments.c.id)
        .cte("settled")
    )
    if_settled = row.payment_id.in_(sa.select(settled.c.id))
    credited, entry = ledger.posting(
        contract_id=row.contract_id,
        amount=row.amount,
        values={
            "kind": "TOP_UP",
            "description": row.entry_description,
            "reference": row.entry_reference,
            "actor": row.actor,
            "created_at": row.now,
        },
        when=if_settled,
        per_row=True,
    )
    account, accrual = bonus.accrual(
        {name: row[f"accrual_{name}"] for name in bonus.ACCRUAL_COLUMNS},
        when=if_settled,
        per_row=True,
    )
    receipt = receipts.receipt_insert(
        {name: row[f"receipt_{name}"] for name in receipts.RECEIPT_COLUMNS}, when=if_settled
    ).cte("receipt")
    letter = outbox.enqueue_insert(
        {name: row[f"letter_{name}"] for name in outbox.LETTER_COLUMNS},
        when=sa.and_(if_settled, row.letter_recipient.is_not(None)),
    ).cte("letter")
    succeeded = events.event_insert(
        "payment.succeeded",
        {
            "occurred_at": row.now,
            "contract_number": row.receipt_contract_number,
            "data": row.event_data,
        },
        when=if_settled,
    ).cte("succeeded")
    return sa.select(
        plain.c.payment_id, plain.c.payment_id.in_(sa.select(settled.c.id)).label("settled")
    ).add_cte(
        plain, kept, event, settled, credited, entry, account, accrual, receipt, letter, succeeded
    )


_CONFIRMATIONS_AT_ONCE = BatchedStatement(_confirmations_at_once(), CONFIRMATION_COLUMNS, rows=True)

_other = _payments.alias("other_payment")


def _event_payment(payment_id: Any, reference: Any) -> sa.Select[Any]:
    """The payment of an event, who pays, and whether the event's reference is another
    payment's. `payment_id` and `reference`: parameters, or columns of the events asked
    (one row for each)."""
    return (
        sa.select(
            *PAYMENT_COLUMNS,
            _contracts.c.number,
            _contracts.c.subscriber_id,
            _subscribers.c.email,
            sa.select(_other.c.id)
            .where(
                _other.c.provider == _payments.c.provider,
                _other.c.provider_reference == reference,
                _other.c.id != _payments.c.id,
            )
            .limit(1)
            .scalar_subquery()
            .label("reference_taken_by"),
        )
        .join(_contracts, _contracts.c.id == _payments.c.contract_id)
        .join(_subscribers, _subscribers.c.id == _contracts.c.subscriber_id)
        .where(_payments.c.id == payment_id)
    )


# The step-by-step way's: locked, the contract too (payment first, then contract, as the
# credit always took them): what the confirmation reads of it next (its promises, its
# status) cannot change meanwhile.
_LOCKED_EVENT_PAYMENT = _event_payment(
    sa.bindparam("payment_id", type_=sa.BigInteger), sa.bindparam("reference", type_=sa.String)
).with_for_update(of=[_payments, _contracts])
# The one-statement way's (PostgreSQL, no lock), for the events of the process's requests
# that arrive together (`core.db.BatchedStatement`: one read, one round trip): also the
# version of the contract's row (`xmin`: the transaction that wrote it) and whether the
# contract is plain.
_ASKED_COLUMNS = {"payment_id": sa.BigInteger(), "reference": sa.String()}
_asked = rows_parameter(_ASKED_COLUMNS, "asked")
_EVENT_PAYMENTS_AT_ONCE = BatchedStatement(
    _event_payment(_asked.c.payment_id, _asked.c.reference).add_columns(
        _CONTRACT_VERSION.label("contract_version"), _PLAIN_CONTRACT.label("plain")
    ),
    _ASKED_COLUMNS,
    rows=True,
)


# -- abandoned and canceled top-ups (SPEC §7) ---------------------------------------------


def _cancel(*where: Any) -> sa.Update:
    """PENDING payments (those `where` keeps) made CANCELED: nothing was credited, nothing is.
    One conditional UPDATE, so a payment is canceled once whoever runs it, and never once
    the provider's answer has settled it (the confirmation moves it from PENDING under its
    row lock; a success still credits a CANCELED payment: `SUCCEEDS_FROM`). `confirmed_at`
    stays null: no provider reported anything."""
    return (
        sa.update(_payments)
        .where(_payments.c.status == "PENDING", *where)
        .values(status="CANCELED")
    )


_EXPIRE = _cancel(_payments.c.created_at < sa.bindparam("cutoff", type_=UTCDateTime))
_STILL_PENDING = sa.select(sa.func.count()).where(_payments.c.status == "PENDING")
_CANCEL_ONE = _cancel(_payments.c.id == sa.bindparam("payment_id", type_=sa.BigInteger)).returning(
    _payments.c.id, _payments.c.contract_id
)
_PAYMENT_AND_OWNER = (
    sa.select(
        _payments.c.id, _payments.c.contract_id, _payments.c.status, _contracts.c.subscriber_id
    )
    .join(_contracts, _contracts.c.id == _payments.c.contract_id)
    .where(_payments.c.id == sa.bindparam("payment_id", type_=sa.BigInteger))
)


@dataclass(frozen=True, slots=True)
class ExpiryReport:
    canceled: int  # PENDING top-ups older than the expiry, now CANCELED
    pending: int  # PENDING top-ups left (younger than the expiry)

    def line(self) -> str:
        return f"top-ups: {self.canceled} abandoned canceled, {self.pending} still pending"


async def expire_abandoned_top_ups(
    session: AsyncSession, *, settings: Settings, now: datetime
) -> ExpiryReport:
    """Cancel every top-up still PENDING `top_up_expiry_hours` after it was created: one
    UPDATE, safe on any number of hosts at once (each payment is canceled by one of them;
    the others' UPDATE finds it no longer PENDING)."""
    await begin_write(session)
    cutoff = now - timedelta(hours=settings.top_up_expiry_hours)
    canceled = rowcount(await session.execute(_EXPIRE, {"cutoff": cutoff}))
    pending = int(await session.scalar(_STILL_PENDING) or 0)
    if canceled:
        log.info("abandoned top-ups canceled", extra={"canceled": canceled})
    return ExpiryReport(canceled=canceled, pending=pending)


EXPIRY_INTERVAL_SECONDS = 300.0


async def run_top_up_expiry(session_factory: Any, settings: Settings, stop: asyncio.Event) -> None:
    """`serve`'s background step: `expire_abandoned_top_ups` every `EXPIRY_INTERVAL_SECONDS`
    until `stop` is set (in every process: the UPDATE cancels each payment once). Failures
    are logged and tried again next round."""
    while not stop.is_set():
        try:
            async with unit_of_work(session_factory) as session:
                await expire_abandoned_top_ups(session, settings=settings, now=utcnow())
        except Exception as error:
            log.error("top-up expiry failed: %s", type(error).__name__)
            log.debug("top-up expiry: failure details", exc_info=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), EXPIRY_INTERVAL_SECONDS)


async def cancel_top_up(session: AsyncSession, *, principal: Principal, payment_id: int) -> int:
    """The subscriber cancels their own PENDING top-up; the id of its contract.

    Raises DomainError: NOT_FOUND (field paymentId) for no such payment or another's;
    CONFLICT (field paymentId) for a payment no longer PENDING."""
    await begin_write(session)
    payment = (await session.execute(_PAYMENT_AND_OWNER, {"payment_id": payment_id})).first()
    if payment is None or not may_see_contract(principal, payment):
        raise DomainError(ErrorCode.NOT_FOUND, "No such payment.", field="paymentId")
    canceled = (await session.execute(_CANCEL_ONE, {"payment_id": payment_id})).first()
    if canceled is None:  # final already (or settled since the read)
        status = await _status_of(session, payment_id)
        raise DomainError(
            ErrorCode.CONFLICT,
            f"Only a pending top-up can be canceled; this one is {status}.",
            field="paymentId",
        )
    log.info("top-up canceled by the subscriber", extra={"payment_id": payment_id})
    return int(canceled.contract_id)


# -- reading ------------------------------------------------------------------------------


_RECEIPTS_BY_PAYMENT = sa.select(*RECEIPT_COLUMNS).where(
    _receipts.c.payment_id.in_(sa.bindparam("ids", expanding=True))
)
_PAYMENTS_BY_ID = (
    sa.select(
        *PAYMENT_COLUMNS,
        _payments.c.save_payment_method,
        _contracts.c.number.label("contract_number"),
        _contracts.c.subscriber_id,
    )
    .join(_contracts, _contracts.c.id == _payments.c.contract_id)
    .where(_payments.c.id.in_(sa.bindparam("ids", expanding=True)))
)
_RECEIPTS_WITH_OWNER = (
    sa.select(*RECEIPT_COLUMNS, _payments.c.receipt_status, _contracts.c.subscriber_id)
    .join(_payments, _payments.c.id == _receipts.c.payment_id)
    .join(_contracts, _contracts.c.id == _payments.c.contract_id)
    .where(_receipts.c.payment_id.in_(sa.bindparam("ids", expanding=True)))
)


async def receipt_for_payment(reader_or_session: Any, payment_ids: Sequence[int]) -> dict[int, Any]:
    """Receipts by payment id (a loader's batch): only payments that have one."""
    if not payment_ids:
        return {}
    statement = _RECEIPTS_BY_PAYMENT.params(ids=list(payment_ids))
    return {row.payment_id: row for row in await read_rows(reader_or_session, statement)}


async def receipts_with_owner(reader_or_session: Any, payment_ids: Sequence[int]) -> dict[int, Any]:
    """Receipts by payment id with the contract owner's `subscriber_id` (for a permission
    check with `may_see_contract`)."""
    if not payment_ids:
        return {}
    statement = _RECEIPTS_WITH_OWNER.params(ids=list(payment_ids))
    return {row.payment_id: row for row in await read_rows(reader_or_session, statement)}


async def payments_by_id(reader_or_session: Any, ids: Sequence[int]) -> dict[int, Any]:
    """Payments with their `contract_number` and owner's `subscriber_id` (for `node(id)`:
    check `may_see_contract` on the row)."""
    if not ids:
        return {}
    statement = _PAYMENTS_BY_ID.params(ids=list(ids))
    return {row.id: row for row in await read_rows(reader_or_session, statement)}


# -- a remote provider's payment read back (SPEC §7 notifications) ------------------------

PROVIDER_OUTCOMES = {"SUCCEEDED": "SUCCEEDED", "CANCELED": "FAILED"}


@dataclass(frozen=True, slots=True)
class ProviderPaymentCheck:
    """What Kabinet's row says about a payment the provider reported."""

    payment_id: int
    contract_id: int
    status: str
    save_payment_method: bool
    autopay: bool = False  # a charge of a method saved already (it reports it saved)


def kabinet_payment_id(answer: ProviderPayment) -> int | None:
    """Kabinet's payment id in the provider's `metadata.kabinet_payment_id` (as read back
    from the provider, never from a notification's body)."""
    value = (answer.metadata or {}).get("kabinet_payment_id")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        return None
    if len(value) > 18:
        return None
    return int(value)


async def check_provider_payment(
    session: AsyncSession, *, provider: str, answer: ProviderPayment
) -> ProviderPaymentCheck:
    """Kabinet's payment that the provider's payment (read back) is, checked against it:
    the same provider, the same amount, and its reference (when it has one) the same.

    Raises DomainError NOT_FOUND (not one of Kabinet's payments) or CONFLICT (it does not
    match Kabinet's row: logged, never applied)."""
    payment_id = kabinet_payment_id(answer)
    row = None
    if payment_id is not None:
        row = (
            await session.execute(
                sa.select(
                    _payments.c.id,
                    _payments.c.contract_id,
                    _payments.c.amount,
                    _payments.c.status,
                    _payments.c.provider,
                    _payments.c.provider_reference,
                    _payments.c.save_payment_method,
                    _payments.c.autopay,
                ).where(_payments.c.id == payment_id)
            )
        ).first()
    if row is None or row.provider != provider:
        raise DomainError(ErrorCode.NOT_FOUND, "No such payment.", field="paymentId")
    amount = Decimal(row.amount).quantize(CENT)
    if (
        answer.amount is None
        or answer.amount != amount
        or row.provider_reference not in (None, answer.reference)
    ):
        log.error(
            "the provider's payment does not match Kabinet's; not applied",
            extra={"payment_id": row.id, "provider_reference": answer.reference},
        )
        raise DomainError(
            ErrorCode.CONFLICT, "The provider's payment does not match.", field="paymentId"
        )
    return ProviderPaymentCheck(
        row.id, row.contract_id, row.status, bool(row.save_payment_method), bool(row.autopay)
    )


async def keep_provider_details(
    session: AsyncSession,
    *,
    provider: str,
    check: ProviderPaymentCheck,
    answer: ProviderPayment,
) -> None:
    """What the provider says besides the outcome: its receipt status, and the method it
    saved when the payer asked (`payment_methods`, once per provider reference)."""
    await begin_write(session)
    if answer.receipt_status is not None:
        await session.execute(
            sa.update(_payments)
            .where(_payments.c.id == check.payment_id)
            .values(receipt_status=answer.receipt_status[:16])
        )
    if answer.status == "SUCCEEDED" and answer.saved_method is not None:
        if check.save_payment_method:
            await remember_saved_method(
                session,
                contract_id=check.contract_id,
                provider=provider,
                method=answer.saved_method,
            )
        elif not check.autopay:  # an autopay charge reports the method it charged
            log.warning(
                "provider saved a method nobody asked to save; not kept",
                extra={"payment_id": check.payment_id},
            )


async def remember_saved_method(
    session: AsyncSession, *, contract_id: int, provider: str, method: SavedMethod
) -> None:
    """A saved card or SBP account of the contract (title and reference only); once per
    provider reference, whatever the repeats."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    await session.execute(
        insert(_methods)
        .values(
            contract_id=contract_id,
            provider=provider,
            reference=method.reference[:100],
            title=method.title[:100],
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=[_methods.c.provider, _methods.c.reference])
    )
