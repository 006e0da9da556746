"""Receipts (SPEC §3 "Receipt"): issued with a successful top-up, printable at
`/receipts/<Payment.id>` for the signed-in owner only, VAT 20% included, rounded half-up."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from auth.sessions import COOKIE_NAME
from core.payment_providers import payment_global_id
from core.settings import Settings
from models import Receipt
from resolvers.receipts import OPERATOR, RECEIPT_ITEM, receipt_number, vat_included
from tests.factories import make_staff, make_subscriber, sign_in
from tests.money.test_ledger import assert_ledger_balanced
from tests.money.test_payments import (
    deliver,
    mount_payment_routes,
    top_up,
)


@pytest.fixture
def http(app: Any, settings: Settings, client: httpx.AsyncClient) -> httpx.AsyncClient:
    mount_payment_routes(app, settings)
    return client


async def _paid(
    http: httpx.AsyncClient,
    session_factory: Any,
    settings: Settings,
    contract_id: int,
    *,
    amount: str = "500.00",
    method: str = "SBP",
    reference: str = "prov-777",
) -> int:
    payment = await top_up(
        session_factory, settings, contract_id=contract_id, amount=amount, method=method
    )
    response = await deliver(http, settings, payment.id, reference=reference)
    assert response.status_code == 200, response.text
    return payment.id


async def _receipt(session_factory: Any, payment_id: int) -> Receipt:
    async with session_factory() as session:
        row = await session.scalar(sa.select(Receipt).where(Receipt.payment_id == payment_id))
    assert row is not None
    return row


# -- the receipt row ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "vat"),
    [
        ("12.15", "2.03"),  # 2.025: half-up, where half-even (and floats) give 2.02
        ("10.00", "1.67"),  # 1.6666…
        ("120.00", "20.00"),
        ("500.00", "83.33"),
        ("50000.00", "8333.33"),
        ("10.03", "1.67"),  # 1.67166…
        ("10.09", "1.68"),  # 1.68166…
    ],
)
def test_vat_is_20_percent_included_rounded_half_up(total: str, vat: str) -> None:
    assert vat_included(Decimal(total), Decimal("20")) == Decimal(vat)


async def test_the_receipt_has_what_the_spec_lists(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings)
    payment_id = await _paid(http, session_factory, settings, made.contract_ids[0], amount="12.15")
    receipt = await _receipt(session_factory, payment_id)
    assert receipt.number == receipt_number(payment_id, receipt.issued_at)
    assert re.fullmatch(r"R-\d{8}-\d{8}", receipt.number)
    assert (receipt.seller_name, receipt.seller_inn) == (OPERATOR.name, OPERATOR.inn)
    assert receipt.contract_number == made.contract_numbers[0]
    assert receipt.payer_email == made.email
    assert receipt.item == RECEIPT_ITEM == "Предоплата услуг связи"
    assert (receipt.vat_rate, receipt.vat_amount, receipt.total) == (
        Decimal("20.00"),
        Decimal("2.03"),
        Decimal("12.15"),
    )
    assert (receipt.method, receipt.provider_reference) == ("SBP", "prov-777")
    await assert_ledger_balanced(session_factory)


async def test_receipt_numbers_are_unique(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings, contracts=2)
    ids = [
        await _paid(
            http, session_factory, settings, made.contract_ids[i % 2], reference=f"prov-{i}"
        )
        for i in range(6)
    ]
    async with session_factory() as session:
        numbers = (await session.scalars(sa.select(Receipt.number))).all()
    assert len(numbers) == len(set(numbers)) == 6
    assert {n.rsplit("-", 1)[1] for n in numbers} == {f"{i:08d}" for i in ids}
    await assert_ledger_balanced(session_factory)


async def test_no_receipt_for_a_pending_or_failed_payment(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings)
    await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    failed = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    await deliver(http, settings, failed.id, "FAILED")
    async with session_factory() as session:
        assert (await session.scalars(sa.select(Receipt))).all() == []


# -- the printable page -------------------------------------------------------------------


async def test_the_owner_gets_the_printable_receipt(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    payment_id = await _paid(
        http, session_factory, settings, made.contract_ids[0], amount="1234.50", method="BANK_CARD"
    )
    receipt = await _receipt(session_factory, payment_id)
    headers = await sign_in(http, made.login or "")
    # when
    response = await http.get(f"/receipts/{payment_global_id(payment_id)}", headers=headers)
    # then
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert "default-src 'self'" in response.headers["content-security-policy"]
    page = response.text
    for expected in (
        receipt.number,
        receipt.issued_at.strftime("%d.%m.%Y"),
        "ООО «Кабинет Телеком»",
        OPERATOR.inn,
        made.contract_numbers[0],
        made.email or "",
        "Предоплата услуг связи",
        "НДС 20%",
        "205,75",  # 1234.50 × 20 / 120
        "1\u00a0234,50",
        "Банковская карта",
        "prov-777",
    ):
        assert expected in page, expected
    assert "<script" not in page


async def test_the_session_cookie_works_too(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings)
    payment_id = await _paid(http, session_factory, settings, made.contract_ids[0])
    token = (await sign_in(http, made.login or ""))["Authorization"].split(" ", 1)[1]
    response = await http.get(
        f"/receipts/{payment_global_id(payment_id)}", headers={"Cookie": f"{COOKIE_NAME}={token}"}
    )
    assert response.status_code == 200


async def test_staff_may_see_a_receipt(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings)
    payment_id = await _paid(http, session_factory, settings, made.contract_ids[0])
    _, username, _ = await make_staff(session_factory, settings)
    headers = await sign_in(http, username)
    response = await http.get(f"/receipts/{payment_global_id(payment_id)}", headers=headers)
    assert response.status_code == 200


async def test_someone_elses_receipt_is_not_found(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    # given
    owner = await make_subscriber(session_factory, settings)
    stranger = await make_subscriber(session_factory, settings)
    payment_id = await _paid(http, session_factory, settings, owner.contract_ids[0])
    pending = await top_up(session_factory, settings, contract_id=stranger.contract_ids[0])
    headers = await sign_in(http, stranger.login or "")
    # when
    foreign = await http.get(f"/receipts/{payment_global_id(payment_id)}", headers=headers)
    missing = await http.get(f"/receipts/{payment_global_id(payment_id + 1000)}", headers=headers)
    no_receipt = await http.get(f"/receipts/{payment_global_id(pending.id)}", headers=headers)
    garbage = await http.get("/receipts/not-an-id", headers=headers)
    # then: "not yours" looks exactly like "does not exist"
    assert [r.status_code for r in (foreign, missing, no_receipt, garbage)] == [404] * 4
    assert foreign.text == missing.text == no_receipt.text
    assert owner.contract_numbers[0] not in foreign.text


async def test_a_signed_out_caller_gets_401(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings)
    payment_id = await _paid(http, session_factory, settings, made.contract_ids[0])
    url = f"/receipts/{payment_global_id(payment_id)}"
    for headers in (
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Cookie": f"{COOKIE_NAME}=not-a-token"},
    ):
        response = await http.get(url, headers=headers)
        assert response.status_code == 401, headers
        assert made.contract_numbers[0] not in response.text


async def test_a_temporary_password_must_be_changed_first(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings, must_change_password=True)
    payment_id = await _paid(http, session_factory, settings, made.contract_ids[0])
    response = await http.post(
        "/graphql",
        json={
            "query": "mutation($i: LoginInput!) { login(input: $i) { accessToken } }",
            "variables": {"i": {"identifier": made.login, "password": made.password}},
        },
    )
    token = response.json()["data"]["login"]["accessToken"]
    page = await http.get(
        f"/receipts/{payment_global_id(payment_id)}", headers={"Authorization": f"Bearer {token}"}
    )
    assert page.status_code == 403


async def test_everything_on_the_page_is_escaped(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings)
    payment_id = await _paid(
        http, session_factory, settings, made.contract_ids[0], reference="<b>x</b>&\"'"
    )
    headers = await sign_in(http, made.login or "")
    page = (await http.get(f"/receipts/{payment_global_id(payment_id)}", headers=headers)).text
    assert "<b>x</b>" not in page
    assert "&lt;b&gt;x&lt;/b&gt;&amp;&quot;&#x27;" in page
