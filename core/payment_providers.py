"""Payment providers: where a subscriber pays a PENDING top-up, what the provider says about
a payment or a refund, and the Kabinet webhook's signature.

Every provider speaks one async interface (`PaymentProvider`): create a payment (a page to
pay on, or a charge of a saved method for autopay), read a payment back, create and read a
refund. Answers use Kabinet's words (`ProviderPayment.status`: PENDING | SUCCEEDED |
CANCELED); a provider that cannot be reached raises `ProviderUnavailable` (nothing is known:
try again later with the same Idempotence-Key), one that refuses the request raises
`ProviderRefused`.

* `SandboxProvider` (the development default): our own page `/sandbox/pay/<Payment.id>` with
  a Pay and a Fail button that signs and sends the Kabinet webhook (`POST /webhooks/payments`,
  HMAC-SHA256 of the raw body under `KABINET_WEBHOOK_SECRET`), so the whole flow runs
  locally. It must never run in production (the page credits money that nobody paid).
* `ExternalProvider`: a hosted page from the `KABINET_PAYMENT_PROVIDER_URL` template; the
  provider confirms through that same signed webhook.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import string
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol
from urllib.parse import quote

from core.settings import Settings

PROVIDER_STATUSES = ("PENDING", "SUCCEEDED", "CANCELED")
SANDBOX_METHOD_TITLE = "Card *4444"

SIGNATURE_HEADER = "X-Signature"
URL_TEMPLATE_FIELDS = frozenset({"payment_id", "amount"})


def payment_global_id(payment_id: int) -> str:
    """The Payment's GraphQL global ID: the encoding of `schema.types.node.to_global_id`,
    repeated here so that resolvers/ build links without importing Strawberry (a test
    keeps the two equal)."""
    return base64.urlsafe_b64encode(f"Payment:{payment_id}".encode()).decode()


@dataclass(frozen=True)
class SavedMethod:
    """A card or SBP account the provider saved: its reference and a title ("Card *4444");
    never card data."""

    reference: str
    title: str


@dataclass(frozen=True)
class ProviderPayment:
    """A payment as the provider sees it."""

    reference: str | None  # the provider's payment id; None when it has none (sandbox)
    status: str  # Kabinet's names: PENDING | SUCCEEDED | CANCELED
    confirmation_url: str | None  # where the payer pays; None for a saved-method charge
    saved_method: SavedMethod | None  # the method the provider saved with this payment
    receipt_status: str | None = None  # the provider's fiscal receipt status, if it says
    amount: Decimal | None = None  # what the provider holds, when it says
    metadata: dict[str, Any] | None = None  # what Kabinet attached (`kabinet_payment_id`)


@dataclass(frozen=True)
class ProviderRefund:
    """A refund as the provider sees it."""

    reference: str | None  # the provider's refund id
    status: str  # PENDING | SUCCEEDED | CANCELED
    payment_reference: str | None = None  # the provider's id of the refunded payment
    amount: Decimal | None = None


class ProviderUnavailable(Exception):
    """The provider did not answer (timeout, connection refused, 5xx, an answer that is not
    its protocol): the outcome is unknown; repeat later with the same Idempotence-Key."""


class ProviderRefused(Exception):
    """The provider answered and refused (4xx): repeating the same request will not help."""


class PaymentProvider(Protocol):
    """What Kabinet asks of a payment provider (SPEC §7)."""

    name: str

    async def create_payment(
        self,
        *,
        payment_id: int,
        amount: Decimal,
        description: str,
        return_url: str | None,
        receipt: dict[str, Any] | None,
        save_method: bool,
        method_reference: str | None,
        idempotence_key: str,
    ) -> ProviderPayment:
        """Create the provider's payment for Kabinet's payment `payment_id`. With
        `method_reference` it charges that saved method at once (autopay: no confirmation);
        else the answer's `confirmation_url` is where the payer pays. The same
        `idempotence_key` always names the same provider payment."""
        ...

    async def read_payment(self, reference: str) -> ProviderPayment:
        """The provider's payment `reference` as it stands now."""
        ...

    async def create_refund(
        self,
        *,
        refund_id: int,
        payment_reference: str,
        amount: Decimal,
        receipt: dict[str, Any] | None,
        idempotence_key: str,
    ) -> ProviderRefund:
        """Give back `amount` of the provider's payment `payment_reference`."""
        ...

    async def read_refund(self, reference: str) -> ProviderRefund:
        """The provider's refund `reference` as it stands now."""
        ...


def payment_idempotence_key(payment_id: int, created_at: datetime) -> str:
    """The Idempotence-Key of Kabinet's payment at the provider: derived from the payment
    (its id and creation time, so that a database started afresh never reuses a key), the
    same on every retry, so a retry never makes a second provider payment."""
    digest = hashlib.sha256(f"{payment_id}|{created_at.isoformat()}".encode()).hexdigest()
    return f"kabinet-payment-{payment_id}-{digest[:16]}"


def refund_idempotence_key(refund_id: int, created_at: datetime) -> str:
    """The Idempotence-Key of Kabinet's refund at the provider (as for payments)."""
    digest = hashlib.sha256(f"refund|{refund_id}|{created_at.isoformat()}".encode()).hexdigest()
    return f"kabinet-refund-{refund_id}-{digest[:16]}"


class SandboxProvider:
    """The built-in provider: `<KABINET_PUBLIC_URL>/sandbox/pay/<Payment.id>`. A saved method
    ("Card *4444") is charged at once; refunds succeed at once."""

    name = "sandbox"

    def __init__(self, settings: Settings) -> None:
        self._base = settings.public_url.rstrip("/")

    def confirmation_url(self, payment_id_global: str, *, amount: Decimal) -> str:
        return f"{self._base}/sandbox/pay/{quote(payment_id_global, safe='=')}"

    async def create_payment(
        self,
        *,
        payment_id: int,
        amount: Decimal,
        description: str,
        return_url: str | None,
        receipt: dict[str, Any] | None,
        save_method: bool,
        method_reference: str | None,
        idempotence_key: str,
    ) -> ProviderPayment:
        if method_reference is not None:
            # A saved sandbox method always pays, at once.
            return ProviderPayment(
                reference=f"sandbox-{payment_id}",
                status="SUCCEEDED",
                confirmation_url=None,
                saved_method=None,
                amount=amount,
            )
        return ProviderPayment(
            reference=None,
            status="PENDING",
            confirmation_url=self.confirmation_url(payment_global_id(payment_id), amount=amount),
            saved_method=None,
            amount=amount,
        )

    async def read_payment(self, reference: str) -> ProviderPayment:
        raise ProviderRefused("the sandbox confirms through its signed webhook")

    async def create_refund(
        self,
        *,
        refund_id: int,
        payment_reference: str,
        amount: Decimal,
        receipt: dict[str, Any] | None,
        idempotence_key: str,
    ) -> ProviderRefund:
        return ProviderRefund(
            reference=f"sandbox-refund-{refund_id}",
            status="SUCCEEDED",
            payment_reference=payment_reference,
            amount=amount,
        )

    async def read_refund(self, reference: str) -> ProviderRefund:
        return ProviderRefund(reference=reference, status="SUCCEEDED")


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
    """A hosted payment page; the provider calls our webhook with the same global ID. It
    cannot be read back, charge saved methods nor refund through Kabinet."""

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

    async def create_payment(
        self,
        *,
        payment_id: int,
        amount: Decimal,
        description: str,
        return_url: str | None,
        receipt: dict[str, Any] | None,
        save_method: bool,
        method_reference: str | None,
        idempotence_key: str,
    ) -> ProviderPayment:
        if method_reference is not None:
            raise ProviderRefused("the external provider cannot charge a saved method")
        return ProviderPayment(
            reference=None,
            status="PENDING",
            confirmation_url=self.confirmation_url(payment_global_id(payment_id), amount=amount),
            saved_method=None,
            amount=amount,
        )

    async def read_payment(self, reference: str) -> ProviderPayment:
        raise ProviderRefused("the external provider confirms through the signed webhook")

    async def create_refund(
        self,
        *,
        refund_id: int,
        payment_reference: str,
        amount: Decimal,
        receipt: dict[str, Any] | None,
        idempotence_key: str,
    ) -> ProviderRefund:
        raise ProviderRefused("the external provider takes no refunds through Kabinet")

    async def read_refund(self, reference: str) -> ProviderRefund:
        raise ProviderRefused("the external provider takes no refunds through Kabinet")


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
