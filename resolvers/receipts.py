"""Fiscal receipts (SPEC §2 Payment, §3, §7): the seller on every receipt (the operator's name,
INN and address), the VAT rate in force on a receipt's date (`VAT_RATES`, the one dated table:
every receipt Kabinet issues, shows, mails and prints takes its rate from it, and so does the
provider's VAT code), a receipt's row and the statement that writes it.

A stored receipt keeps the rate it was issued with: its row is never rewritten."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import sqlalchemy as sa

from core.db import insert_row, parameters
from core.settings import Settings
from models import Receipt
from models.base import table_of


@dataclass(frozen=True, slots=True)
class Operator:
    name: str
    inn: str
    address: str


OPERATOR: Operator = Operator(
    name="ООО «Кабинет Телеком»",
    inn="7712345671",
    address="125009, г. Москва, ул. Тверская, д. 7, стр. 1",
)


@dataclass(frozen=True, slots=True)
class VatRate:
    """A VAT rate and the day it came into force. On an advance payment (a top-up) the
    receipt carries the calculated rate percent / (100 + percent)."""

    since: date  # in force from this day, in the seller's time zone (`SELLER_TIME_ZONE`)
    percent: Decimal
    yookassa_vat_code: int  # YooKassa's `vat_code` for the calculated rate (SPEC §7)


# The dated table, newest first: Russia's VAT is 22% from 2026-01-01 (22/122 on an advance,
# YooKassa code 12), 20% before (20/120, code 6).
VAT_RATES: tuple[VatRate, ...] = (
    VatRate(since=date(2026, 1, 1), percent=Decimal("22"), yookassa_vat_code=12),
    VatRate(since=date.min, percent=Decimal("20"), yookassa_vat_code=6),
)
# The seller is in Moscow (UTC+3 all year): a rate changes at midnight there.
SELLER_TIME_ZONE = timezone(timedelta(hours=3), "MSK")


def vat_rate_on(at: datetime) -> VatRate:
    """The VAT rate in force at the moment `at` (timezone-aware): the newest row of
    `VAT_RATES` that began on or before that day in the seller's time zone."""
    day = at.astimezone(SELLER_TIME_ZONE).date()
    return next(rate for rate in VAT_RATES if rate.since <= day)


_receipts = table_of(Receipt)

CENT = Decimal("0.01")
RECEIPT_ITEM = "Предоплата услуг связи"  # "Communication services prepayment"
RECEIPT_COLUMNS = (
    "payment_id",
    "number",
    "issued_at",
    "seller_name",
    "seller_inn",
    "contract_number",
    "payer_email",
    "item",
    "vat_rate",
    "vat_amount",
    "total",
    "method",
    "provider_reference",
)


def vat_included(total: Decimal, rate: Decimal) -> Decimal:
    """The VAT inside a VAT-inclusive total: total × rate / (100 + rate), half-up to kopecks
    (20%: 12.15 → 2.025 → 2.03)."""
    return (total * rate / (100 + rate)).quantize(CENT, rounding=ROUND_HALF_UP)


def receipt_number(payment_id: int, issued_at: datetime) -> str:
    """Unique because the payment id is; the date makes it readable."""
    return f"R-{issued_at:%Y%m%d}-{payment_id:08d}"


def receipt_row(
    *,
    payment_id: int,
    contract_number: str,
    payer_email: str | None,
    total: Decimal,
    method: str,
    provider_reference: str | None,
    at: datetime,
) -> dict[str, Any]:
    """The receipt of a top-up of `total` (`RECEIPT_COLUMNS`), issued at `at`, with the VAT
    rate in force then."""
    vat = vat_rate_on(at).percent
    return {
        "payment_id": payment_id,
        "number": receipt_number(payment_id, at),
        "issued_at": at,
        "seller_name": OPERATOR.name,
        "seller_inn": OPERATOR.inn,
        "contract_number": contract_number,
        "payer_email": payer_email,
        "item": RECEIPT_ITEM,
        "vat_rate": vat,
        "vat_amount": vat_included(total, vat),
        "total": total,
        "method": method,
        "provider_reference": provider_reference,
    }


def receipt_insert(values: dict[str, Any], *, when: Any = None) -> sa.Insert:
    """A receipt (`RECEIPT_COLUMNS`, as `receipt_row` makes them), RETURNING its id. See
    `core.db.insert_row`."""
    return insert_row(sa.insert(_receipts), values, when=when).returning(_receipts.c.id)


# Built once (a statement built per call costs more Python than its round trip).
NEW_RECEIPT = receipt_insert(parameters(RECEIPT_COLUMNS))


def provider_receipt(
    settings: Settings,
    *,
    email: str | None,
    phone: str | None,
    amount: Decimal,
    at: datetime,
) -> dict[str, Any] | None:
    """The 54-FZ `receipt` sent to the provider with a payment or a refund of `amount` made
    at `at` (SPEC §7): the customer's email (else phone), one item with quantity "1.00",
    the VAT code of the rate in force then (`VAT_RATES`: 12 for 22/122, 6 for 20/120) unless
    KABINET_RECEIPT_VAT_CODE overrides it, the payment mode and subject of the settings. None
    when the subscriber has neither email nor phone (the provider would refuse a receipt with
    no customer)."""
    if email:
        customer = {"email": email}
    elif phone:
        customer = {"phone": phone.lstrip("+")}
    else:
        return None
    return {
        "customer": customer,
        "items": [
            {
                "description": RECEIPT_ITEM,
                "quantity": "1.00",
                "amount": {"value": f"{amount.quantize(CENT):.2f}", "currency": "RUB"},
                "vat_code": (
                    settings.receipt_vat_code
                    if settings.receipt_vat_code is not None
                    else vat_rate_on(at).yookassa_vat_code
                ),
                "payment_mode": settings.receipt_payment_mode,
                "payment_subject": settings.receipt_payment_subject,
            }
        ],
    }
