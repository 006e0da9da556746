"""Top-ups (SPEC §3 "Money"): createTopUp's rules and idempotency, the providers, the
signature, the points arithmetic and the read side. The webhook is in test_webhook.py.

The helpers at the top are shared with test_webhook.py and test_receipts.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from core.db import RequestReader, begin_write, unit_of_work
from core.errors import DomainError, ErrorCode
from core.ids import to_global_id
from core.payment_providers import (
    ExternalProvider,
    SandboxProvider,
    payment_global_id,
    provider_for,
    sign,
    url_template_problem,
    verify_signature,
)
from core.settings import Settings
from kabinet.web.payments import payment_routes
from models import Contract, LedgerEntry, Payment
from resolvers import ledger
from resolvers.bonus import add_months, points_for
from resolvers.loaders import Loaders
from resolvers.payments import (
    TopUp,
    apply_provider_event,
    create_top_up,
    receipt_for_payment,
    request_fingerprint,
)
from tests.conftest import fast_settings
from tests.factories import make_subscriber
from tests.money.test_ledger import assert_ledger_balanced

_keys = itertools.count(1)
RACES_NEED_POSTGRESQL = "races are run on PostgreSQL; SQLite serialises writers"


# -- helpers shared by the money tests ----------------------------------------------------


def new_key() -> str:
    return f"test-key-{next(_keys):06d}"


async def top_up(
    session_factory: Any,
    settings: Settings,
    *,
    contract_id: int,
    amount: str | Decimal = "500.00",
    method: str = "BANK_CARD",
    key: str | None = None,
    scope: str = "subscriber:1",
) -> TopUp:
    async with unit_of_work(session_factory) as session:
        return await create_top_up(
            session,
            settings=settings,
            principal_scope=scope,
            contract_id=contract_id,
            amount=Decimal(amount),
            method=method,
            idempotency_key=new_key() if key is None else key,
        )


def mount_payment_routes(app: Any, settings: Settings) -> None:
    """Until create_app mounts them: add the payment routes once."""
    if not any(getattr(route, "path", None) == "/webhooks/payments" for route in app.routes):
        app.router.routes.extend(payment_routes(settings))


def event_body(payment_id: int, status: str = "SUCCEEDED", reference: str | None = "ref") -> bytes:
    payload: dict[str, Any] = {"paymentId": payment_global_id(payment_id), "status": status}
    if reference is not None:
        payload["providerReference"] = reference
    return json.dumps(payload).encode()


async def post_event(
    client: httpx.AsyncClient,
    settings: Settings,
    body: bytes,
    *,
    signature: str | None = "sign",
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature == "sign":
        signature = sign(settings, body)
    if signature is not None:
        headers["X-Signature"] = signature
    return await client.post("/webhooks/payments", content=body, headers=headers)


async def deliver(
    client: httpx.AsyncClient,
    settings: Settings,
    payment_id: int,
    status: str = "SUCCEEDED",
    reference: str | None = None,
) -> httpx.Response:
    reference = reference or f"prov-{payment_id}"
    return await post_event(client, settings, event_body(payment_id, status, reference))


async def balance_of(session_factory: Any, contract_id: int) -> Decimal:
    async with session_factory() as session:
        value = await session.scalar(sa.select(Contract.balance).where(Contract.id == contract_id))
    return Decimal(value).quantize(Decimal("0.01"))


async def payment_row(session_factory: Any, payment_id: int) -> Payment:
    async with session_factory() as session:
        row = await session.get(Payment, payment_id)
    assert row is not None
    return row


async def count(session_factory: Any, model: Any, *where: Any) -> int:
    async with session_factory() as session:
        return int(
            await session.scalar(sa.select(sa.func.count()).select_from(model).where(*where)) or 0
        )


async def post_ledger(session_factory: Any, contract_id: int, kind: str, amount: str) -> None:
    async with session_factory() as session:
        await begin_write(session)
        await ledger.post(
            session, contract_id=contract_id, kind=kind, amount=Decimal(amount), actor="test"
        )
        await session.commit()


# -- createTopUp --------------------------------------------------------------------------


async def test_a_top_up_is_a_pending_payment_with_where_to_pay(
    session_factory: Any, settings: Settings
) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    # when
    payment = await top_up(session_factory, settings, contract_id=contract_id, amount="500.50")
    # then
    assert payment.status == "PENDING" and payment.amount == Decimal("500.50")
    assert payment.method == "BANK_CARD" and not payment.replayed
    assert payment.confirmation_url == (
        f"http://testserver/sandbox/pay/{to_global_id('Payment', payment.id)}"
    )
    row = await payment_row(session_factory, payment.id)
    assert (row.status, row.amount, row.contract_id, row.provider) == (
        "PENDING",
        Decimal("500.50"),
        contract_id,
        "sandbox",
    )
    assert row.request_fingerprint == request_fingerprint(
        contract_id=contract_id, amount=Decimal("500.50"), method="BANK_CARD"
    )
    # nothing is credited before the provider confirms
    assert await balance_of(session_factory, contract_id) == Decimal("0.00")
    assert await count(session_factory, LedgerEntry) == 0


@pytest.mark.parametrize(
    ("amount", "accepted"),
    [
        ("9.99", False),
        ("10.00", True),
        ("10", True),
        ("10.0", True),
        ("49999.99", True),
        ("50000.00", True),
        ("50000.01", False),
        ("0", False),
        ("-100.00", False),
        ("10.001", False),
        ("100.50000", True),
        ("1E+30", False),
        ("NaN", False),
        ("Infinity", False),
        ("-Infinity", False),
        ("sNaN", False),
    ],
)
async def test_the_amount_is_10_to_50000_roubles_in_kopecks(
    session_factory: Any, settings: Settings, amount: str, accepted: bool
) -> None:
    made = await make_subscriber(session_factory, settings)
    if accepted:
        payment = await top_up(
            session_factory, settings, contract_id=made.contract_ids[0], amount=amount
        )
        assert payment.amount == Decimal(amount).quantize(Decimal("0.01"))
        assert str(payment.amount) == f"{Decimal(amount):.2f}"
        assert await count(session_factory, Payment) == 1
        return
    with pytest.raises(DomainError) as raised:
        await top_up(session_factory, settings, contract_id=made.contract_ids[0], amount=amount)
    assert (raised.value.code, raised.value.field) == (ErrorCode.INVALID, "amount")
    assert await count(session_factory, Payment) == 0


async def test_the_limits_are_settings(session_factory: Any, migrated_url: str) -> None:
    settings = fast_settings(
        migrated_url, top_up_min=Decimal("1.00"), top_up_max=Decimal("70000.00")
    )
    made = await make_subscriber(session_factory, settings)
    for amount in ("1.00", "70000.00"):
        await top_up(session_factory, settings, contract_id=made.contract_ids[0], amount=amount)
    with pytest.raises(DomainError):
        await top_up(session_factory, settings, contract_id=made.contract_ids[0], amount="0.99")
    assert await count(session_factory, Payment) == 2


@pytest.mark.parametrize("method", ["CRYPTO", "bank_card", "", "BANK_CARD "])
async def test_the_method_must_be_one_of_the_four(
    session_factory: Any, settings: Settings, method: str
) -> None:
    made = await make_subscriber(session_factory, settings)
    with pytest.raises(DomainError) as raised:
        await top_up(session_factory, settings, contract_id=made.contract_ids[0], method=method)
    assert (raised.value.code, raised.value.field) == (ErrorCode.INVALID, "method")
    assert await count(session_factory, Payment) == 0


async def test_every_method_is_accepted(session_factory: Any, settings: Settings) -> None:
    made = await make_subscriber(session_factory, settings)
    for method in ("BANK_CARD", "SBP", "E_WALLET", "CASH_TERMINAL"):
        payment = await top_up(
            session_factory, settings, contract_id=made.contract_ids[0], method=method
        )
        assert payment.method == method
    assert await count(session_factory, Payment) == 4


@pytest.mark.parametrize(
    ("key", "accepted"),
    [
        ("1234567", False),
        ("12345678", True),
        ("k" * 100, True),
        ("k" * 101, False),
        ("3f2b9c1e-8d4a-4e0f-9a77-2c5d1b6e0a11", True),
        ("top up 2024-01-01", True),
        (" leading-space", False),
        ("trailing-space ", False),
        ("line\nbreak-key", False),
        ("tab\tinside-key", False),
        ("ключ-идемпотентности", False),
        ("", False),
    ],
)
async def test_the_idempotency_key_is_8_to_100_printable_characters(
    session_factory: Any, settings: Settings, key: str, accepted: bool
) -> None:
    made = await make_subscriber(session_factory, settings)
    if accepted:
        await top_up(session_factory, settings, contract_id=made.contract_ids[0], key=key)
        assert await count(session_factory, Payment, Payment.idempotency_key == key) == 1
        return
    with pytest.raises(DomainError) as raised:
        await top_up(session_factory, settings, contract_id=made.contract_ids[0], key=key)
    assert (raised.value.code, raised.value.field) == (ErrorCode.INVALID, "idempotencyKey")
    assert await count(session_factory, Payment) == 0


async def test_the_same_key_and_request_return_the_same_payment(
    session_factory: Any, settings: Settings
) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    key = new_key()
    first = await top_up(session_factory, settings, contract_id=made.contract_ids[0], key=key)
    # when: the same request again, with the amount written differently
    again = await top_up(
        session_factory, settings, contract_id=made.contract_ids[0], key=key, amount="500"
    )
    # then
    assert again.id == first.id and again.replayed and not first.replayed
    assert again.confirmation_url == first.confirmation_url
    assert await count(session_factory, Payment) == 1


async def test_the_same_key_returns_the_payment_even_after_it_succeeded(
    session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings)
    key = new_key()
    first = await top_up(session_factory, settings, contract_id=made.contract_ids[0], key=key)
    async with unit_of_work(session_factory) as session:
        await apply_provider_event(
            session,
            settings=settings,
            payment_id=first.id,
            status="SUCCEEDED",
            provider_reference="p-1",
        )
    again = await top_up(session_factory, settings, contract_id=made.contract_ids[0], key=key)
    assert (again.id, again.status, again.provider_reference) == (first.id, "SUCCEEDED", "p-1")
    assert await count(session_factory, Payment) == 1
    assert await balance_of(session_factory, made.contract_ids[0]) == Decimal("500.00")
    await assert_ledger_balanced(session_factory)


async def test_the_same_key_with_another_request_is_a_conflict(
    session_factory: Any, settings: Settings
) -> None:
    # given
    made = await make_subscriber(session_factory, settings, contracts=2)
    key = new_key()
    await top_up(session_factory, settings, contract_id=made.contract_ids[0], key=key)
    # when / then: another amount, another method, another contract
    for change in ({"amount": "500.01"}, {"method": "SBP"}, {"contract_id": made.contract_ids[1]}):
        arguments: dict[str, Any] = {"contract_id": made.contract_ids[0], **change}
        with pytest.raises(DomainError) as raised:
            await top_up(session_factory, settings, key=key, **arguments)
        assert (raised.value.code, raised.value.field) == (ErrorCode.CONFLICT, "idempotencyKey")
    assert await count(session_factory, Payment) == 1


async def test_keys_are_scoped_to_the_principal(session_factory: Any, settings: Settings) -> None:
    made = await make_subscriber(session_factory, settings)
    key = new_key()
    mine = await top_up(
        session_factory, settings, contract_id=made.contract_ids[0], key=key, scope="subscriber:1"
    )
    staffs = await top_up(
        session_factory, settings, contract_id=made.contract_ids[0], key=key, scope="staff:1"
    )
    assert mine.id != staffs.id
    assert await count(session_factory, Payment) == 2


async def test_a_closed_contract_cannot_top_up_a_suspended_one_can(
    session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings, contracts=2)
    closed, suspended = made.contract_ids
    async with session_factory() as session:
        await begin_write(session)
        await session.execute(
            sa.update(Contract).where(Contract.id == closed).values(status="CLOSED")
        )
        await session.execute(
            sa.update(Contract).where(Contract.id == suspended).values(status="SUSPENDED")
        )
        await session.commit()
    with pytest.raises(DomainError) as raised:
        await top_up(session_factory, settings, contract_id=closed)
    assert raised.value.code == ErrorCode.NOT_ELIGIBLE
    payment = await top_up(session_factory, settings, contract_id=suspended)
    assert payment.status == "PENDING"
    assert await count(session_factory, Payment) == 1


async def test_an_unknown_contract_is_not_found(session_factory: Any, settings: Settings) -> None:
    with pytest.raises(DomainError) as raised:
        await top_up(session_factory, settings, contract_id=999_999)
    assert (raised.value.code, raised.value.field) == (ErrorCode.NOT_FOUND, "contractNumber")
    assert await count(session_factory, Payment) == 0


async def test_concurrent_identical_requests_make_one_payment(
    session_factory: Any, settings: Settings, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip(RACES_NEED_POSTGRESQL)
    # given
    made = await make_subscriber(session_factory, settings)
    key = new_key()
    # when
    results = await asyncio.gather(
        *(
            top_up(session_factory, settings, contract_id=made.contract_ids[0], key=key)
            for _ in range(20)
        )
    )
    # then
    assert len({payment.id for payment in results}) == 1
    assert sum(not payment.replayed for payment in results) == 1
    assert await count(session_factory, Payment) == 1


async def test_concurrent_different_requests_with_one_key_make_one_payment(
    session_factory: Any, settings: Settings, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip(RACES_NEED_POSTGRESQL)
    made = await make_subscriber(session_factory, settings)
    key = new_key()

    async def attempt(amount: str) -> TopUp | DomainError:
        try:
            return await top_up(
                session_factory, settings, contract_id=made.contract_ids[0], key=key, amount=amount
            )
        except DomainError as error:
            return error

    results = await asyncio.gather(*(attempt("100.00" if i % 2 else "200.00") for i in range(20)))
    payments = [r for r in results if isinstance(r, TopUp)]
    conflicts = [r for r in results if isinstance(r, DomainError)]
    assert len({p.id for p in payments}) == 1 and len(payments) == 10
    assert len(conflicts) == 10 and all(e.code == ErrorCode.CONFLICT for e in conflicts)
    (row,) = await _payments(session_factory)
    assert row.amount == payments[0].amount


async def _payments(session_factory: Any) -> list[Payment]:
    async with session_factory() as session:
        return list((await session.scalars(sa.select(Payment).order_by(Payment.id))).all())


# -- the provider event, called directly --------------------------------------------------


async def test_an_event_is_applied_once(session_factory: Any, settings: Settings) -> None:
    made = await make_subscriber(session_factory, settings)
    payment = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    outcomes = []
    for _ in range(3):
        async with unit_of_work(session_factory) as session:
            outcomes.append(
                await apply_provider_event(
                    session,
                    settings=settings,
                    payment_id=payment.id,
                    status="SUCCEEDED",
                    provider_reference="p-1",
                )
            )
    assert [o.applied for o in outcomes] == [True, False, False]
    assert outcomes[0].receipt_number is not None
    assert {o.payment_status for o in outcomes} == {"SUCCEEDED"}
    assert await balance_of(session_factory, made.contract_ids[0]) == Decimal("500.00")
    await assert_ledger_balanced(session_factory)


@pytest.mark.parametrize(
    ("status", "reference", "field"),
    [
        ("PAID", "p-1", "status"),
        ("PENDING", "p-1", "status"),
        ("SUCCEEDED", None, "providerReference"),
        ("SUCCEEDED", "", "providerReference"),
        ("SUCCEEDED", "x" * 101, "providerReference"),
        ("FAILED", "with space", "providerReference"),
    ],
)
async def test_a_bad_event_is_refused(
    session_factory: Any, settings: Settings, status: str, reference: str | None, field: str
) -> None:
    made = await make_subscriber(session_factory, settings)
    payment = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    with pytest.raises(DomainError) as raised:
        async with unit_of_work(session_factory) as session:
            await apply_provider_event(
                session,
                settings=settings,
                payment_id=payment.id,
                status=status,
                provider_reference=reference,
            )
    assert (raised.value.code, raised.value.field) == (ErrorCode.INVALID, field)
    assert (await payment_row(session_factory, payment.id)).status == "PENDING"


async def test_a_failure_needs_no_reference(session_factory: Any, settings: Settings) -> None:
    made = await make_subscriber(session_factory, settings)
    payment = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    async with unit_of_work(session_factory) as session:
        outcome = await apply_provider_event(
            session,
            settings=settings,
            payment_id=payment.id,
            status="FAILED",
            provider_reference=None,
        )
    assert outcome.applied and outcome.payment_status == "FAILED"
    row = await payment_row(session_factory, payment.id)
    assert row.status == "FAILED" and row.confirmed_at is not None
    assert await count(session_factory, LedgerEntry) == 0


async def test_a_provider_reference_belongs_to_one_payment(
    session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings)
    first = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    second = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    async with unit_of_work(session_factory) as session:
        await apply_provider_event(
            session,
            settings=settings,
            payment_id=first.id,
            status="SUCCEEDED",
            provider_reference="same",
        )
    with pytest.raises(DomainError) as raised:
        async with unit_of_work(session_factory) as session:
            await apply_provider_event(
                session,
                settings=settings,
                payment_id=second.id,
                status="SUCCEEDED",
                provider_reference="same",
            )
    assert (raised.value.code, raised.value.field) == (ErrorCode.CONFLICT, "providerReference")
    assert (await payment_row(session_factory, second.id)).status == "PENDING"
    assert await balance_of(session_factory, made.contract_ids[0]) == Decimal("500.00")
    await assert_ledger_balanced(session_factory)


async def test_an_unknown_payment_is_not_found(session_factory: Any, settings: Settings) -> None:
    with pytest.raises(DomainError) as raised:
        async with unit_of_work(session_factory) as session:
            await apply_provider_event(
                session,
                settings=settings,
                payment_id=424242,
                status="SUCCEEDED",
                provider_reference="p",
            )
    assert raised.value.code == ErrorCode.NOT_FOUND


# -- reading ------------------------------------------------------------------------------


async def test_payments_of_a_contract_newest_first(
    session_factory: Any, settings: Settings, engine: Any
) -> None:
    # given: five payments on one contract and one on another
    made = await make_subscriber(session_factory, settings, contracts=2)
    ids = [
        (
            await top_up(
                session_factory, settings, contract_id=made.contract_ids[0], amount=f"{10 + i}.00"
            )
        ).id
        for i in range(5)
    ]
    await top_up(session_factory, settings, contract_id=made.contract_ids[1])
    reader = RequestReader(engine)

    async def payments_of_contract(*, contract_id: int, first: int, after: str | None) -> Any:
        """A page of `Contract.payments` as the executor reads it (resolvers/views.py)."""
        loaders = Loaders(reader, settings)
        page = loaders.page("Contract", "payments", first=first, after=after, max_page_size=100)
        return await page.load(contract_id)

    try:
        # when
        first = await payments_of_contract(contract_id=made.contract_ids[0], first=2, after=None)
        second = await payments_of_contract(
            contract_id=made.contract_ids[0], first=2, after=first.cursors[-1]
        )
        third = await payments_of_contract(
            contract_id=made.contract_ids[0], first=2, after=second.cursors[-1]
        )
        with pytest.raises(DomainError):
            await payments_of_contract(contract_id=made.contract_ids[0], first=101, after=None)
        with pytest.raises(DomainError):
            await payments_of_contract(
                contract_id=made.contract_ids[0], first=1, after="not a cursor"
            )
    finally:
        await reader.close()
    # then
    assert [p.id for p in first.items] == ids[::-1][:2] and first.has_next_page
    assert [p.id for p in second.items] == ids[::-1][2:4] and second.has_previous_page
    assert [p.id for p in third.items] == ids[:1] and not third.has_next_page
    assert third.items[0].amount == Decimal("10.00") and third.items[0].status == "PENDING"


async def test_receipts_are_read_in_one_batch(
    session_factory: Any, settings: Settings, engine: Any
) -> None:
    made = await make_subscriber(session_factory, settings)
    paid = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    pending = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    async with unit_of_work(session_factory) as session:
        await apply_provider_event(
            session,
            settings=settings,
            payment_id=paid.id,
            status="SUCCEEDED",
            provider_reference="p-1",
        )
    reader = RequestReader(engine)
    try:
        by_reader = await receipt_for_payment(reader, [paid.id, pending.id, 99_999])
    finally:
        await reader.close()
    async with session_factory() as session:
        by_session = await receipt_for_payment(session, [paid.id, pending.id])
    assert set(by_reader) == set(by_session) == {paid.id}
    assert by_reader[paid.id].total == Decimal("500.00")


# -- providers and signatures (no database) -----------------------------------------------


def test_the_payment_global_id_is_the_graphql_one() -> None:
    for pk in (1, 42, 10**12):
        assert payment_global_id(pk) == to_global_id("Payment", pk)


def test_the_sandbox_is_the_development_default() -> None:
    settings = Settings(_env_file=None, public_url="https://kabinet.example/")  # type: ignore[call-arg]
    provider = provider_for(settings)
    assert isinstance(provider, SandboxProvider) and provider.name == "sandbox"
    gid = payment_global_id(7)
    assert provider.confirmation_url(gid, amount=Decimal("10.00")) == (
        f"https://kabinet.example/sandbox/pay/{gid}"
    )


def test_the_external_provider_fills_its_template() -> None:
    settings = Settings(
        payment_provider="external",
        payment_provider_url="https://pay.example/checkout?payment={payment_id}&amount={amount}",
    )
    provider = provider_for(settings)
    assert isinstance(provider, ExternalProvider) and provider.name == "external"
    gid = payment_global_id(3)  # "UGF5bWVudDoz": no padding
    url = provider.confirmation_url(gid, amount=Decimal("1500.5"))
    assert url == f"https://pay.example/checkout?payment={gid}&amount=1500.50"
    padded = payment_global_id(10)  # ends in "=", which a query value must escape
    assert padded.endswith("=")
    assert "%3D" in provider.confirmation_url(padded, amount=Decimal("10"))


@pytest.mark.parametrize(
    "template",
    [
        None,
        "",
        "ftp://pay.example/{payment_id}",
        "https://pay.example/checkout",
        "https://pay.example/{payment_id}/{secret}",
        "https://pay.example/{payment_id!r}",
        "https://pay.example/{payment_id:>20}",
        "https://pay.example/{payment_id",
        "https://pay.example/{0}",
    ],
)
def test_a_bad_external_template_is_refused(template: str | None) -> None:
    assert url_template_problem(template) is not None
    settings = Settings(payment_provider="external", payment_provider_url=template)
    with pytest.raises(ValueError, match="KABINET_PAYMENT_PROVIDER_URL"):
        provider_for(settings)


async def test_create_top_up_uses_the_external_page(
    session_factory: Any, migrated_url: str
) -> None:
    settings = fast_settings(
        migrated_url,
        payment_provider="external",
        payment_provider_url="https://pay.example/p/{payment_id}",
    )
    made = await make_subscriber(session_factory, settings)
    payment = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    assert payment.confirmation_url == f"https://pay.example/p/{payment_global_id(payment.id)}"
    assert (await payment_row(session_factory, payment.id)).provider == "external"


def test_signatures_are_hmac_sha256_of_the_raw_body() -> None:
    import hashlib
    import hmac

    settings = Settings(webhook_secret="s" * 40)
    body = b'{"paymentId": "x", "status": "SUCCEEDED"}'
    expected = hmac.new(b"s" * 40, body, hashlib.sha256).hexdigest()
    assert sign(settings, body) == expected
    assert verify_signature(settings, body, expected)
    assert verify_signature(settings, body, expected.upper())
    assert not verify_signature(settings, body + b" ", expected)
    assert not verify_signature(settings, body, None)
    assert not verify_signature(settings, body, "")
    assert not verify_signature(settings, body, expected[:-1])
    assert not verify_signature(settings, body, "é" * 64)
    assert not verify_signature(Settings(webhook_secret="t" * 40), body, expected)


# -- points arithmetic (no database) ------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "points"),
    [("10.00", 2), ("14.99", 2), ("15.00", 3), ("503.00", 100), ("50000.00", 10000)],
)
def test_a_point_per_full_5_roubles(amount: str, points: int) -> None:
    assert points_for(Decimal(amount), rub_per_point=Decimal("5")) == points


@pytest.mark.parametrize(
    ("start", "months", "end"),
    [
        (datetime(2024, 1, 31, 12, tzinfo=UTC), 1, datetime(2024, 2, 29, 12, tzinfo=UTC)),
        (datetime(2024, 2, 29, 9, tzinfo=UTC), 12, datetime(2025, 2, 28, 9, tzinfo=UTC)),
        (datetime(2024, 3, 15, tzinfo=UTC), 12, datetime(2025, 3, 15, tzinfo=UTC)),
        (datetime(2024, 11, 30, tzinfo=UTC), 3, datetime(2025, 2, 28, tzinfo=UTC)),
        (datetime(2024, 12, 31, tzinfo=UTC), 12, datetime(2025, 12, 31, tzinfo=UTC)),
    ],
)
def test_points_expire_in_calendar_months(start: datetime, months: int, end: datetime) -> None:
    assert add_months(start, months) == end
