"""Saved payment methods and a contract's autopay rule (SPEC §7 "Autopay"), read through
their declarations (resolvers/views.py: "SavedPaymentMethod", "Autopay")."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from schema.scalars import Money
from schema.types.enums import values_described
from schema.types.viewed import Viewed, link, value, viewed


@values_described(
    {
        "BELOW_THRESHOLD": "Pay `amount` after a billing day that leaves the balance below "
        "`threshold`.",
        "MONTHLY": "Pay `amount` on `dayOfMonth` every month.",
    }
)
@strawberry.enum(description="When autopay pays.")
class AutopayMode(Enum):
    BELOW_THRESHOLD = "BELOW_THRESHOLD"
    MONTHLY = "MONTHLY"


@viewed
@strawberry.type(
    description="A card or SBP account the payment provider saved for the contract (asked "
    "for with `createTopUp(savePaymentMethod: true)`): its title only, never card data."
)
class SavedPaymentMethod(Viewed):
    VIEW = "SavedPaymentMethod"
    id: strawberry.ID = value(
        description="The method's global ID: the `paymentMethodId` of `setAutopay` and "
        "`forgetPaymentMethod`."
    )
    title: str = value(description='What it is, e.g. "Card *4444" or "SBP".')
    created_at: datetime = value(description="When the provider saved it.")


@viewed
@strawberry.type(
    description="The contract's autopay rule: the billing day pays from a saved method, at "
    "most once a day and `KABINET_AUTOPAY_MAX_PER_MONTH` times a month."
)
class Autopay(Viewed):
    VIEW = "Autopay"
    id: strawberry.ID = value(
        description="The contract's rule, for a client's cache: stable, one per contract "
        "(not fetchable by `node`)."
    )
    mode: AutopayMode = value(description="When it pays.")
    amount: Money = value(description="How much each autopay payment is.")
    threshold: Money | None = value(
        description="BELOW_THRESHOLD: it pays when the balance is below this after a billing "
        "day; null for MONTHLY."
    )
    day_of_month: int | None = value(
        description="MONTHLY: the day of the month it pays on (1 to 28); null for BELOW_THRESHOLD."
    )
    enabled: bool = value(
        description="false once switched off: by `disableAutopay`, by forgetting its method, "
        "or after three failed autopay payments in a row."
    )
    failures_in_row: int = value(
        description="Autopay payments failed one after another (a success resets it; the "
        "third switches autopay off)."
    )
    updated_at: datetime = value(description="When the rule was last set or switched off.")
    payment_method: SavedPaymentMethod | None = link(
        description="The saved method it pays from; null once that method is forgotten."
    )
