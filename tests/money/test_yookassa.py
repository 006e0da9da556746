"""YooKassa (SPEC §7) against a local YooKassa on loopback (tests/yookassa_server.py): the
journey over a real `kabinet serve`-like server, notifications read back (forged ones do
nothing, 20 at once credit once), the provider down while creating and while reading
back, saved methods, return URLs, and refunds partial, full and over the limit."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from core.ids import from_global_id
from core.settings import ProductionConfigError, Settings
from kabinet.app import create_app
from models import (
    BonusAccount,
    BonusEntry,
    Contract,
    LedgerEntry,
    OutboxMessage,
    Payment,
    PaymentMethod,
    Receipt,
    Refund,
)
from models.base import table_of
from tests.conftest import fast_settings, gql, production_settings
from tests.factories import make_staff, make_subscriber, sign_in
from tests.live import serve_in_thread
from tests.yookassa_server import YooKassaServer

SHOP_ID = "100500"
TOP_UP = """
mutation($input: CreateTopUpInput!) {
  createTopUp(input: $input) {
    payment { id status amount confirmationUrl }
    errors { field code message }
  }
}
"""
CONTRACT = """
query($number: String!) {
  contract(number: $number) {
    balance { amount }
    payments(first: 5) {
      edges { node { id status receipt { vatRate vatAmount total providerStatus } } }
    }
  }
}
"""
PAYMENTS = """
query($number: String!) {
  contract(number: $number) { payments(first: 5) { edges { node { status confirmationUrl } } } }
}
"""
REFUND = """
mutation($input: RefundPaymentInput!) {
  refundPayment(input: $input) {
    refundStatus
    payment { id status }
    contract { balance { amount } }
    errors { field code message }
  }
}
"""


@pytest.fixture
def yookassa() -> Iterator[YooKassaServer]:
    server = YooKassaServer(shop_id=SHOP_ID, secret_key="test_" + secrets.token_urlsafe(16))
    with serve_in_thread(server.app, lifespan="off") as url:
        server.url = url  # type: ignore[attr-defined]
        yield server


@pytest.fixture
def settings(migrated_url: str, yookassa: YooKassaServer) -> Settings:
    return fast_settings(
        migrated_url,
        payment_provider="yookassa",
        yookassa_shop_id=SHOP_ID,
        yookassa_secret_key=yookassa.state.secret_key,
        yookassa_api_url=f"{yookassa.url}/v3",  # type: ignore[attr-defined]
        yookassa_timeout_seconds=2,
    )


def pk(global_id: str) -> int:
    decoded = from_global_id(global_id)
    assert decoded is not None
    return int(decoded[1])


async def control(server: YooKassaServer, path: str, body: Any = None) -> Any:
    async with httpx.AsyncClient(base_url=server.url) as http:  # type: ignore[attr-defined]
        response = await http.post(f"/control/{path}", json=body or {})
    assert response.status_code == 200, response.text
    return response.json()


async def start_top_up(
    client: Any, headers: dict[str, str], number: str, amount: str = "100.00", **extra: Any
) -> dict[str, Any]:
    payload = {
        "contractNumber": number,
        "amount": amount,
        "method": "BANK_CARD",
        "idempotencyKey": extra.pop("key", "yk-top-up-" + secrets.token_hex(6)),
        **extra,
    }
    data = await gql(client, TOP_UP, {"input": payload}, headers=headers)
    return dict(data["createTopUp"])


async def notify(client: Any, notification: dict[str, Any]) -> httpx.Response:
    return await client.post("/webhooks/yookassa", json=notification)


async def rows(session_factory: Any, model: Any, *where: Any) -> list[Any]:
    async with session_factory() as session:
        return list((await session.execute(sa.select(model).where(*where))).scalars())


async def balance_of(session_factory: Any, contract_id: int) -> Decimal:
    contracts = table_of(Contract)
    async with session_factory() as session:
        value = await session.scalar(
            sa.select(contracts.c.balance).where(contracts.c.id == contract_id)
        )
    return Decimal(value)


def provider_payment_id(server: YooKassaServer) -> str:
    (only,) = server.state.payments
    return only


async def test_the_journey_over_a_real_server(
    settings: Settings, session_factory: Any, yookassa: YooKassaServer
) -> None:
    # given: Kabinet served by uvicorn; the provider notifies it there
    made = await make_subscriber(session_factory, settings)
    number, contract_id = made.contract_numbers[0], made.contract_ids[0]
    with serve_in_thread(create_app(settings)) as base:
        yookassa.state.notification_url = f"{base}/webhooks/yookassa"
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            me = await sign_in(http, str(made.login))
            # when: a 100.00 top-up
            created = await start_top_up(
                http, me, number, "100.00", returnUrl="http://testserver/after-payment"
            )
            # then: the provider's payment, its page as the confirmation URL
            assert created["errors"] == []
            payment = created["payment"]
            reference = provider_payment_id(yookassa)
            provider_side = yookassa.state.payments[reference]
            assert payment["status"] == "PENDING"
            assert payment["confirmationUrl"] == provider_side["confirmation"]["confirmation_url"]
            (request,) = yookassa.state.api_requests("POST", "/v3/payments")
            expected_auth = base64.b64encode(
                f"{SHOP_ID}:{settings.yookassa_secret_key}".encode()
            ).decode()
            assert request.headers["authorization"] == f"Basic {expected_auth}"
            assert request.headers["idempotence-key"].startswith(
                f"kabinet-payment-{pk(payment['id'])}-"
            )
            assert request.body == {
                "amount": {"value": "100.00", "currency": "RUB"},
                "capture": True,
                "description": f"Пополнение баланса, платёж {pk(payment['id'])}",
                "metadata": {"kabinet_payment_id": str(pk(payment["id"]))},
                "confirmation": {
                    "type": "redirect",
                    "return_url": "http://testserver/after-payment",
                },
                "receipt": {
                    "customer": {"email": made.email},
                    "items": [
                        {
                            "description": "Предоплата услуг связи",
                            "quantity": "1.00",
                            "amount": {"value": "100.00", "currency": "RUB"},
                            "vat_code": 12,
                            "payment_mode": "advance",
                            "payment_subject": "service",
                        }
                    ],
                },
            }
            # when: the payer pays; YooKassa posts payment.succeeded to Kabinet
            notification = await control(yookassa, f"payments/{reference}/succeed")
            # then: Kabinet read it back and credited it once, with a 22/122 receipt
            reads = yookassa.state.api_requests("GET", f"/v3/payments/{reference}")
            assert len(reads) == 1
            contract = (await gql(http, CONTRACT, {"number": number}, headers=me))["contract"]
            assert contract["balance"] == {"amount": "100.00"}
            (edge,) = contract["payments"]["edges"]
            assert edge["node"]["status"] == "SUCCEEDED"
            assert edge["node"]["receipt"] == {
                "vatRate": "22",
                "vatAmount": "18.03",
                "total": "100.00",
                "providerStatus": "succeeded",
            }
            # when: the same notification again
            again = await http.post("/webhooks/yookassa", json=notification)
            # then: acknowledged, nothing more
            assert again.status_code == 200 and again.json()["status"] == "already-applied"
    assert await balance_of(session_factory, contract_id) == Decimal("100.00")
    (row,) = await rows(session_factory, Payment, Payment.contract_id == contract_id)
    assert row.provider == "yookassa" and row.provider_reference == reference
    assert row.receipt_status == "succeeded"
    assert len(await rows(session_factory, LedgerEntry, LedgerEntry.kind == "TOP_UP")) == 1
    assert len(await rows(session_factory, Receipt)) == 1
    assert len(await rows(session_factory, OutboxMessage, OutboxMessage.kind == "RECEIPT")) == 1


async def test_a_forged_notification_changes_nothing(
    client: Any, settings: Settings, session_factory: Any, yookassa: YooKassaServer
) -> None:
    # given: a PENDING top-up at the provider
    made = await make_subscriber(session_factory, settings)
    me = await sign_in(client, str(made.login))
    created = await start_top_up(client, me, made.contract_numbers[0])
    reference = provider_payment_id(yookassa)
    forged: dict[str, Any] = {
        "type": "notification",
        "event": "payment.succeeded",
        "object": {
            "id": reference,
            "status": "succeeded",
            "paid": True,
            "amount": {"value": "50000.00", "currency": "RUB"},
            "metadata": {"kabinet_payment_id": str(pk(created["payment"]["id"]))},
        },
    }
    # when: the body says succeeded, the provider says pending
    answer = await notify(client, forged)
    unknown = await notify(
        client, {**forged, "object": {**forged["object"], "id": "2d8b-not-a-payment"}}
    )
    garbage = await client.post("/webhooks/yookassa", content=b"{not json")
    # then: nothing is credited
    assert answer.status_code == 200 and answer.json()["status"] == "pending"
    assert unknown.status_code == 200 and unknown.json()["status"] == "ignored"
    assert garbage.status_code == 400
    (row,) = await rows(session_factory, Payment)
    assert row.status == "PENDING"
    assert await balance_of(session_factory, made.contract_ids[0]) == Decimal("0.00")
    assert await rows(session_factory, LedgerEntry) == []
    # and the payment, read again, still sends the payer to the provider's page
    read = await gql(client, PAYMENTS, {"number": made.contract_numbers[0]}, headers=me)
    (edge,) = read["contract"]["payments"]["edges"]
    assert edge["node"]["status"] == "PENDING"
    assert (
        edge["node"]["confirmationUrl"]
        == (yookassa.state.payments[reference]["confirmation"]["confirmation_url"])
    )


async def test_the_same_notification_twenty_times_at_once_credits_once(
    client: Any, settings: Settings, session_factory: Any, yookassa: YooKassaServer
) -> None:
    # given: a paid payment and its notification
    made = await make_subscriber(session_factory, settings)
    me = await sign_in(client, str(made.login))
    await start_top_up(client, me, made.contract_numbers[0], "500.00")
    notification = await control(yookassa, f"payments/{provider_payment_id(yookassa)}/succeed")
    # when: delivered 20 times at once
    answers = await asyncio.gather(*(notify(client, notification) for _ in range(20)))
    # then: every delivery is acknowledged; one credit, one receipt, one letter, one accrual
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    statuses = sorted(a.json()["status"] for a in answers)
    assert statuses.count("applied") == 1
    assert await balance_of(session_factory, made.contract_ids[0]) == Decimal("500.00")
    assert len(await rows(session_factory, LedgerEntry)) == 1
    assert len(await rows(session_factory, Receipt)) == 1
    assert len(await rows(session_factory, OutboxMessage, OutboxMessage.kind == "RECEIPT")) == 1
    assert len(await rows(session_factory, BonusEntry, BonusEntry.kind == "ACCRUAL")) == 1


@pytest.mark.parametrize("fault", ["503", "hang", "lose"])
async def test_the_provider_down_while_creating_never_makes_two_payments(
    client: Any, settings: Settings, session_factory: Any, yookassa: YooKassaServer, fault: str
) -> None:
    # given: the provider fails (no answer, 503, or the payment made but its answer lost)
    made = await make_subscriber(session_factory, settings)
    me = await sign_in(client, str(made.login))
    await control(yookassa, "fault", {"mode": fault})
    # when
    first = await start_top_up(client, me, made.contract_numbers[0], key="retry-me-0001")
    # then: PROVIDER_UNAVAILABLE; the payment is PENDING with nowhere to pay yet
    assert [e["code"] for e in first["errors"]] == ["PROVIDER_UNAVAILABLE"]
    assert first["payment"]["status"] == "PENDING"
    assert first["payment"]["confirmationUrl"] is None
    (row,) = await rows(session_factory, Payment)
    assert row.status == "PENDING" and row.provider_reference is None
    # when: the provider is back; the subscriber retries with the same key
    await control(yookassa, "fault", {"mode": None})
    second = await start_top_up(client, me, made.contract_numbers[0], key="retry-me-0001")
    # then: the same payment, resumed with the same Idempotence-Key: one provider payment
    assert second["errors"] == []
    assert second["payment"]["id"] == first["payment"]["id"]
    reference = provider_payment_id(yookassa)
    posts = yookassa.state.api_requests("POST", "/v3/payments")
    assert len(posts) == 2
    assert posts[0].headers["idempotence-key"] == posts[1].headers["idempotence-key"]
    assert (
        second["payment"]["confirmationUrl"]
        == (yookassa.state.payments[reference]["confirmation"]["confirmation_url"])
    )
    (row,) = await rows(session_factory, Payment)
    assert row.provider_reference == reference
    # when: a third time (the provider answered already): no call at all
    third = await start_top_up(client, me, made.contract_numbers[0], key="retry-me-0001")
    assert third["payment"] == second["payment"]
    assert len(yookassa.state.api_requests("POST", "/v3/payments")) == 2


async def test_the_provider_down_while_reading_back_is_retried_later(
    client: Any, settings: Settings, session_factory: Any, yookassa: YooKassaServer
) -> None:
    # given: a paid payment whose notification arrives while the provider cannot be read
    made = await make_subscriber(session_factory, settings)
    me = await sign_in(client, str(made.login))
    await start_top_up(client, me, made.contract_numbers[0])
    notification = await control(yookassa, f"payments/{provider_payment_id(yookassa)}/succeed")
    await control(yookassa, "fault", {"mode": "503"})
    # when
    down = await notify(client, notification)
    # then: 5xx (YooKassa retries), nothing applied
    assert down.status_code == 503
    assert await balance_of(session_factory, made.contract_ids[0]) == Decimal("0.00")
    # when: the provider's retry, once it can be read
    await control(yookassa, "fault", {"mode": None})
    later = await notify(client, notification)
    # then: applied once
    assert later.status_code == 200 and later.json()["status"] == "applied"
    assert await balance_of(session_factory, made.contract_ids[0]) == Decimal("100.00")


async def test_a_canceled_payment_and_a_success_after_a_local_cancel(
    client: Any, settings: Settings, session_factory: Any, yookassa: YooKassaServer
) -> None:
    # given: two top-ups; one canceled at the provider, one canceled here then paid there
    made = await make_subscriber(session_factory, settings)
    me = await sign_in(client, str(made.login))
    first = await start_top_up(client, me, made.contract_numbers[0])
    first_ref = next(iter(yookassa.state.payments))
    second = await start_top_up(client, me, made.contract_numbers[0], "200.00")
    second_ref = next(r for r in yookassa.state.payments if r != first_ref)
    cancel = """mutation($input: CancelTopUpInput!) { cancelTopUp(input: $input) {
      errors { code } } }"""
    done = await gql(client, cancel, {"input": {"paymentId": second["payment"]["id"]}}, headers=me)
    assert done["cancelTopUp"]["errors"] == []
    # when
    canceled = await notify(client, await control(yookassa, f"payments/{first_ref}/cancel"))
    paid = await notify(client, await control(yookassa, f"payments/{second_ref}/succeed"))
    # then: the first FAILED, the second credited although canceled locally
    assert canceled.json()["paymentStatus"] == "FAILED"
    assert paid.json() == {"status": "applied", "paymentStatus": "SUCCEEDED"}
    statuses = {r.id: r.status for r in await rows(session_factory, Payment)}
    assert statuses == {
        pk(first["payment"]["id"]): "FAILED",
        pk(second["payment"]["id"]): "SUCCEEDED",
    }
    assert await balance_of(session_factory, made.contract_ids[0]) == Decimal("200.00")


async def test_a_saved_method_is_kept_by_title_only(
    client: Any, settings: Settings, session_factory: Any, yookassa: YooKassaServer
) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    me = await sign_in(client, str(made.login))
    # when: the subscriber asks to save the card, and pays
    await start_top_up(client, me, made.contract_numbers[0], savePaymentMethod=True)
    reference = provider_payment_id(yookassa)
    notification = await control(yookassa, f"payments/{reference}/succeed")
    for _ in range(2):
        assert (await notify(client, notification)).status_code == 200
    # then: the provider was asked to save it; Kabinet keeps its reference and title, once
    (request,) = yookassa.state.api_requests("POST", "/v3/payments")
    assert request.body["save_payment_method"] is True
    (method,) = await rows(session_factory, PaymentMethod)
    saved = yookassa.state.payments[reference]["payment_method"]
    assert method.contract_id == made.contract_ids[0] and method.provider == "yookassa"
    assert method.reference == saved["id"] and method.title == "Card *4444"
    assert method.forgotten_at is None


async def test_a_return_url_elsewhere_is_refused(
    client: Any, settings: Settings, session_factory: Any, yookassa: YooKassaServer
) -> None:
    made = await make_subscriber(session_factory, settings)
    me = await sign_in(client, str(made.login))
    # when
    answer = await start_top_up(
        client, me, made.contract_numbers[0], returnUrl="https://evil.example/phish"
    )
    # then
    assert [(e["field"], e["code"]) for e in answer["errors"]] == [("returnUrl", "INVALID")]
    assert "http://testserver" in answer["errors"][0]["message"]
    assert await rows(session_factory, Payment) == []
    assert yookassa.state.requests == []


async def _paid_top_up(
    client: Any, yookassa: YooKassaServer, me: dict[str, str], number: str, amount: str
) -> str:
    created = await start_top_up(client, me, number, amount)
    reference = next(
        ref
        for ref, p in yookassa.state.payments.items()
        if p["metadata"]["kabinet_payment_id"] == str(pk(created["payment"]["id"]))
    )
    answer = await notify(client, await control(yookassa, f"payments/{reference}/succeed"))
    assert answer.json()["status"] == "applied"
    return str(created["payment"]["id"])


async def test_refunds_partial_full_and_over_the_limit(
    client: Any, settings: Settings, session_factory: Any, yookassa: YooKassaServer
) -> None:
    # given: a 500.00 top-up (100 points)
    made = await make_subscriber(session_factory, settings)
    me = await sign_in(client, str(made.login))
    payment_id = await _paid_top_up(client, yookassa, me, made.contract_numbers[0], "500.00")
    staff_id, username, password = await make_staff(session_factory, settings)
    staff = await sign_in(client, username, password)

    async def refund(amount: str) -> dict[str, Any]:
        variables = {
            "input": {"paymentId": payment_id, "amount": amount, "reason": "Двойное списание"}
        }
        return dict((await gql(client, REFUND, variables, headers=staff))["refundPayment"])

    # when: a partial refund
    partial = await refund("200.00")
    # then: sent to the provider with its receipt; pending until its notification
    assert partial["errors"] == [] and partial["refundStatus"] == "PENDING"
    (request,) = yookassa.state.api_requests("POST", "/v3/refunds")
    assert request.headers["idempotence-key"].startswith("kabinet-refund-")
    assert request.body["amount"] == {"value": "200.00", "currency": "RUB"}
    assert request.body["receipt"]["items"][0]["amount"]["value"] == "200.00"
    assert request.body["receipt"]["items"][0]["vat_code"] == 12
    assert await balance_of(session_factory, made.contract_ids[0]) == Decimal("500.00")
    # when: more than is left (300.00) while it is pending
    over = await refund("300.01")
    assert [(e["field"], e["code"]) for e in over["errors"]] == [("amount", "INVALID")]
    # when: the provider reports the refund succeeded (twice)
    (refund_ref,) = yookassa.state.refunds
    notification = await control(yookassa, f"refunds/{refund_ref}/succeed")
    first, second = await notify(client, notification), await notify(client, notification)
    # then: debited once, 40 points taken back, a letter
    assert first.json() == {"status": "applied", "refundStatus": "SUCCEEDED"}
    assert second.json()["status"] == "already-applied"
    assert await balance_of(session_factory, made.contract_ids[0]) == Decimal("300.00")
    (entry,) = await rows(session_factory, LedgerEntry, LedgerEntry.kind == "REFUND")
    assert entry.amount == Decimal("-200.00") and entry.actor == f"staff:{staff_id}"
    (account,) = await rows(session_factory, BonusAccount)
    assert account.points == 60
    (taken,) = await rows(session_factory, BonusEntry, BonusEntry.kind == "ADJUSTMENT")
    assert taken.points == -40
    assert len(await rows(session_factory, OutboxMessage, OutboxMessage.kind == "REFUND")) == 1
    # when: the rest (a full refund of what is left), then anything more
    rest = await refund("300.00")
    await notify(
        client, await control(yookassa, f"refunds/{rest_ref(yookassa, refund_ref)}/succeed")
    )
    more = await refund("0.01")
    # then
    assert rest["errors"] == []
    assert [(e["field"], e["code"]) for e in more["errors"]] == [("amount", "INVALID")]
    assert await balance_of(session_factory, made.contract_ids[0]) == Decimal("0.00")
    (account,) = await rows(session_factory, BonusAccount)
    assert account.points == 0
    refunds = await rows(session_factory, Refund)
    assert sorted((r.amount, r.status) for r in refunds) == [
        (Decimal("200.00"), "SUCCEEDED"),
        (Decimal("300.00"), "SUCCEEDED"),
    ]
    assert len(yookassa.state.api_requests("POST", "/v3/refunds")) == 2


def rest_ref(server: YooKassaServer, first: str) -> str:
    return next(ref for ref in server.state.refunds if ref != first)


async def test_a_refund_resumes_after_the_provider_was_down(
    client: Any, settings: Settings, session_factory: Any, yookassa: YooKassaServer
) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    me = await sign_in(client, str(made.login))
    payment_id = await _paid_top_up(client, yookassa, me, made.contract_numbers[0], "100.00")
    _, username, password = await make_staff(session_factory, settings)
    staff = await sign_in(client, username, password)
    variables = {"input": {"paymentId": payment_id, "amount": "100.00", "reason": "Ошибка"}}
    await control(yookassa, "fault", {"mode": "lose"})
    # when: the refund's answer is lost, then staff repeat it
    lost = (await gql(client, REFUND, variables, headers=staff))["refundPayment"]
    await control(yookassa, "fault", {"mode": None})
    again = (await gql(client, REFUND, variables, headers=staff))["refundPayment"]
    # then: one refund here and at the provider, sent with one key
    assert [e["code"] for e in lost["errors"]] == ["PROVIDER_UNAVAILABLE"]
    assert again["errors"] == [] and again["refundStatus"] == "PENDING"
    assert len(yookassa.state.refunds) == 1
    keys = {
        r.headers["idempotence-key"] for r in yookassa.state.api_requests("POST", "/v3/refunds")
    }
    assert len(keys) == 1
    assert len(await rows(session_factory, Refund)) == 1


async def test_a_refused_refund_is_canceled_and_blocks_nothing(
    client: Any, settings: Settings, session_factory: Any, yookassa: YooKassaServer
) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    me = await sign_in(client, str(made.login))
    payment_id = await _paid_top_up(client, yookassa, me, made.contract_numbers[0], "100.00")
    _, username, password = await make_staff(session_factory, settings)
    staff = await sign_in(client, username, password)

    def refund(amount: str) -> dict[str, Any]:
        return {"input": {"paymentId": payment_id, "amount": amount, "reason": "Ошибка"}}

    # when: the provider refuses the refund
    await control(yookassa, "fault", {"mode": "refuse"})
    refused = (await gql(client, REFUND, refund("100.00"), headers=staff))["refundPayment"]
    await control(yookassa, "fault", {"mode": None})
    # then: CANCELED, nothing debited
    assert refused["refundStatus"] == "CANCELED"
    assert [(e["field"], e["code"]) for e in refused["errors"]] == [("paymentId", "NOT_ELIGIBLE")]
    (row,) = await rows(session_factory, Refund)
    assert row.status == "CANCELED"
    assert await balance_of(session_factory, made.contract_ids[0]) == Decimal("100.00")
    # when: another refund
    done = (await gql(client, REFUND, refund("40.00"), headers=staff))["refundPayment"]
    # then: not blocked by the canceled one
    assert done["errors"] == [] and done["refundStatus"] == "PENDING"


async def test_production_refuses_yookassa_without_credentials(migrated_url: str) -> None:
    settings = production_settings(migrated_url, payment_provider="yookassa")
    with pytest.raises(ProductionConfigError, match="KABINET_YOOKASSA_SHOP_ID"):
        settings.check_production()
    production_settings(
        migrated_url,
        payment_provider="yookassa",
        yookassa_shop_id=SHOP_ID,
        yookassa_secret_key="live_" + secrets.token_urlsafe(24),
    ).check_production()


async def test_a_top_up_waiting_for_the_provider_holds_no_pooled_connection(
    settings: Settings, session_factory: Any, yookassa: YooKassaServer
) -> None:
    # given: a pool of one connection, a subscriber signed in, and a provider that hangs
    one = settings.model_copy(update={"database_pool_size": 1, "yookassa_timeout_seconds": 20})
    application = create_app(one)
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        made = await make_subscriber(session_factory, settings, balance=Decimal("10.00"))
        me = await sign_in(client, str(made.login))
        await control(yookassa, "fault", {"mode": "hang"})
        # when: a top-up waits for the provider
        waiting = asyncio.create_task(start_top_up(client, me, made.contract_numbers[0]))
        for _ in range(1000):  # until the provider has the request (the server's thread)
            if yookassa.state.api_requests("POST", "/v3/payments"):
                break
            await asyncio.sleep(0.01)
        # then: another request gets the one connection and is answered meanwhile
        data = await gql(client, CONTRACT, {"number": made.contract_numbers[0]}, headers=me)
        assert data["contract"]["balance"]["amount"] == "10.00"
        assert not waiting.done()
        # and: the hang ends (the local provider then answers 503): the top-up is PENDING
        await control(yookassa, "fault", {"mode": None})
        answered = await waiting
        assert [e["code"] for e in answered["errors"]] == ["PROVIDER_UNAVAILABLE"]
        assert answered["payment"]["status"] == "PENDING"
    await application.state.engine.dispose()
