"""Fiscal receipts (SPEC §2 Payment, §3): the seller on every receipt (the operator's name,
INN, address and the VAT rate its receipts state), a receipt's row and the statement that
writes it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import sqlalchemy as sa

from core.db import insert_row, parameters
from models import Receipt
from models.base import table_of


@dataclass(frozen=True, slots=True)
class Operator:
    name: str
    inn: str
    address: str
    vat_rate: Decimal  # percent


OPERATOR: Operator = Operator(
    name="ООО «Кабинет Телеком»",
    inn="7712345671",
    address="125009, г. Москва, ул. Тверская, д. 7, стр. 1",
    vat_rate=Decimal("20"),
)

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
    """The receipt of a top-up of `total` (`RECEIPT_COLUMNS`), issued at `at`."""
    return {
        "payment_id": payment_id,
        "number": receipt_number(payment_id, at),
        "issued_at": at,
        "seller_name": OPERATOR.name,
        "seller_inn": OPERATOR.inn,
        "contract_number": contract_number,
        "payer_email": payer_email,
        "item": RECEIPT_ITEM,
        "vat_rate": OPERATOR.vat_rate,
        "vat_amount": vat_included(total, OPERATOR.vat_rate),
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
