"""The seller on every fiscal receipt (SPEC §2 Payment, §3): the operator's name, INN,
address and the VAT rate its receipts state."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


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
