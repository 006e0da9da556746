"""Payment providers: where a subscriber pays a PENDING top-up, and the webhook's signature.

A provider hands out the page where the payer pays (`confirmation_url`) and later tells us
the outcome through `POST /webhooks/payments` (kabinet/web/payments.py), signed with
HMAC-SHA256 of the raw body under `KABINET_WEBHOOK_SECRET`.

* `SandboxProvider` (the development default): our own page `/sandbox/pay/<Payment.id>` with
  a Pay and a Fail button that signs and sends that webhook, so the whole flow runs locally.
  It must never run in production (the page credits money that nobody paid).
* `ExternalProvider`: a hosted page from the `KABINET_PAYMENT_PROVIDER_URL` template.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import string
from decimal import Decimal
from typing import Protocol
from urllib.parse import quote

from core.settings import Settings

SIGNATURE_HEADER = "X-Signature"
URL_TEMPLATE_FIELDS = frozenset({"payment_id", "amount"})


def payment_global_id(payment_id: int) -> str:
    """The Payment's GraphQL global ID: the encoding of `schema.types.node.to_global_id`,
    repeated here so that resolvers/ build links without importing Strawberry (a test
    keeps the two equal)."""
    return base64.urlsafe_b64encode(f"Payment:{payment_id}".encode()).decode()


class PaymentProvider(Protocol):
    name: str

    def confirmation_url(self, payment_id_global: str, *, amount: Decimal) -> str:
        """Where the payer pays this payment."""
        ...


class SandboxProvider:
    """The built-in provider: `<KABINET_PUBLIC_URL>/sandbox/pay/<Payment.id>`."""

    name = "sandbox"

    def __init__(self, settings: Settings) -> None:
        self._base = settings.public_url.rstrip("/")

    def confirmation_url(self, payment_id_global: str, *, amount: Decimal) -> str:
        return f"{self._base}/sandbox/pay/{quote(payment_id_global, safe='=')}"


def url_template_problem(template: str | None) -> str | None:
    """Why a `KABINET_PAYMENT_PROVIDER_URL` template is unusable, or None when it is fine."""
    if not template:
        return "KABINET_PAYMENT_PROVIDER_URL must be set for the external payment provider"
    if not template.startswith(("https://", "http://")):
        return "KABINET_PAYMENT_PROVIDER_URL must be an http(s) URL"
    try:
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in string.Formatter().parse(template)
            if name is not None
        ]
    except ValueError:
        return "KABINET_PAYMENT_PROVIDER_URL has unbalanced braces"
    names = {name for name, _, _ in fields}
    if not names <= URL_TEMPLATE_FIELDS or any(
        spec or conversion for _, spec, conversion in fields
    ):
        return "KABINET_PAYMENT_PROVIDER_URL may use only {payment_id} and {amount}"
    if "payment_id" not in names:
        return "KABINET_PAYMENT_PROVIDER_URL must contain {payment_id}"
    return None


class ExternalProvider:
    """A hosted payment page; the provider calls our webhook with the same global ID."""

    name = "external"

    def __init__(self, settings: Settings) -> None:
        problem = url_template_problem(settings.payment_provider_url)
        if problem is not None:
            raise ValueError(problem)
        assert settings.payment_provider_url is not None
        self._template = settings.payment_provider_url

    def confirmation_url(self, payment_id_global: str, *, amount: Decimal) -> str:
        return self._template.format(
            payment_id=quote(payment_id_global, safe=""),
            amount=quote(f"{amount:.2f}", safe=""),
        )


def provider_for(settings: Settings) -> PaymentProvider:
    if settings.payment_provider == "external":
        return ExternalProvider(settings)
    return SandboxProvider(settings)


def sign(settings: Settings, body: bytes) -> str:
    """The `X-Signature` of a webhook body: hex HMAC-SHA256 under the webhook secret."""
    return hmac.new(settings.webhook_secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(settings: Settings, body: bytes, signature: str | None) -> bool:
    """Constant-time check of `signature` (hex, either case) over the raw `body`."""
    if not signature:
        return False
    candidate = signature.strip().lower()
    if len(candidate) != 64 or not candidate.isascii():
        return False
    return hmac.compare_digest(sign(settings, body), candidate)
