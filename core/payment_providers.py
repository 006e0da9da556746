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
* `YooKassaProvider`: YooKassa's API v3 over HTTP Basic auth (SPEC §7), a thin async
  `httpx` client using the field names of the official SDK's models (the SDK itself is
  synchronous: it would hold a worker thread per call). It notifies
  `POST /webhooks/yookassa`, whose body Kabinet never trusts: it reads the object back.
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

import httpx

from core.settings import Settings

PROVIDER_STATUSES = ("PENDING", "SUCCEEDED", "CANCELED")
SANDBOX_METHOD_TITLE = "Card *4444"
# A saved sandbox method whose reference starts so always declines (autopay's failure path,
# locally): the demo data saves one titled "Card *0002".
SANDBOX_DECLINING_PREFIX = "sandbox-declines-"
SANDBOX_DECLINING_TITLE = "Card *0002"

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


@dataclass(frozen=True, slots=True)
class PaymentOrder:
    """A payment to create at the provider for Kabinet's payment `payment_id`. With
    `method_reference` it charges that saved method at once (autopay: no confirmation);
    else the answer's `confirmation_url` is where the payer pays. The same
    `idempotence_key` always names the same provider payment."""

    payment_id: int
    amount: Decimal
    description: str
    receipt: dict[str, Any] | None
    idempotence_key: str
    return_url: str | None = None
    save_method: bool = False
    method_reference: str | None = None


@dataclass(frozen=True, slots=True)
class RefundOrder:
    """A refund of `amount` of the provider's payment `payment_reference`, for Kabinet's
    refund `refund_id`."""

    refund_id: int
    payment_reference: str
    amount: Decimal
    receipt: dict[str, Any] | None
    idempotence_key: str


class PaymentProvider(Protocol):
    """What Kabinet asks of a payment provider (SPEC §7)."""

    name: str

    async def create_payment(self, order: PaymentOrder) -> ProviderPayment:
        """Create the provider's payment `order` describes (see PaymentOrder)."""
        ...

    async def read_payment(self, reference: str) -> ProviderPayment:
        """The provider's payment `reference` as it stands now."""
        ...

    async def create_refund(self, order: RefundOrder) -> ProviderRefund:
        """Make the refund `order` describes (see RefundOrder)."""
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


class PagedProvider:
    """A provider whose payer pays on a page at a URL Kabinet builds (`confirmation_url`) and
    which confirms through the signed webhook (`POST /webhooks/payments`): a payment is
    created PENDING with that URL, and there is nothing to read back."""

    name: str

    def confirmation_url(self, payment_id_global: str, *, amount: Decimal) -> str:
        raise NotImplementedError

    def _charge_saved(
        self, payment_id: int, amount: Decimal, method_reference: str
    ) -> ProviderPayment:
        raise ProviderRefused(f"the {self.name} provider cannot charge a saved method")

    async def create_payment(self, order: PaymentOrder) -> ProviderPayment:
        if order.method_reference is not None:
            return self._charge_saved(order.payment_id, order.amount, order.method_reference)
        return ProviderPayment(
            reference=None,
            status="PENDING",
            confirmation_url=self.confirmation_url(
                payment_global_id(order.payment_id), amount=order.amount
            ),
            saved_method=None,
            amount=order.amount,
        )

    async def read_payment(self, reference: str) -> ProviderPayment:
        raise ProviderRefused(f"the {self.name} provider confirms through its signed webhook")


class SandboxProvider(PagedProvider):
    """The built-in provider: `<KABINET_PUBLIC_URL>/sandbox/pay/<Payment.id>`. A saved method
    ("Card *4444") is charged at once, one whose reference starts with
    `SANDBOX_DECLINING_PREFIX` ("Card *0002" in the demo data) declines at once; refunds
    succeed at once."""

    name = "sandbox"

    def __init__(self, settings: Settings) -> None:
        self._base = settings.public_url.rstrip("/")

    def confirmation_url(self, payment_id_global: str, *, amount: Decimal) -> str:
        return f"{self._base}/sandbox/pay/{quote(payment_id_global, safe='=')}"

    def _charge_saved(
        self, payment_id: int, amount: Decimal, method_reference: str
    ) -> ProviderPayment:
        # A saved sandbox method pays at once; a declining one is refused at once.
        declined = method_reference.startswith(SANDBOX_DECLINING_PREFIX)
        return ProviderPayment(
            reference=f"sandbox-{payment_id}",
            status="CANCELED" if declined else "SUCCEEDED",
            confirmation_url=None,
            saved_method=None,
            amount=amount,
        )

    async def create_refund(self, order: RefundOrder) -> ProviderRefund:
        return ProviderRefund(
            reference=f"sandbox-refund-{order.refund_id}",
            status="SUCCEEDED",
            payment_reference=order.payment_reference,
            amount=order.amount,
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


class ExternalProvider(PagedProvider):
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

    async def create_refund(self, order: RefundOrder) -> ProviderRefund:
        raise ProviderRefused("the external provider takes no refunds through Kabinet")

    async def read_refund(self, reference: str) -> ProviderRefund:
        raise ProviderRefused("the external provider takes no refunds through Kabinet")


# YooKassa's statuses in Kabinet's words. `waiting_for_capture` cannot happen with
# `capture: true`; it is still a payment not taken yet.
_YOOKASSA_STATUSES = {
    "pending": "PENDING",
    "waiting_for_capture": "PENDING",
    "succeeded": "SUCCEEDED",
    "canceled": "CANCELED",
}
_REFERENCE_MAX = 100


def _money(amount: Decimal) -> dict[str, str]:
    return {"value": f"{amount:.2f}", "currency": "RUB"}


def _reference(value: Any) -> str:
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= _REFERENCE_MAX
        or not value.isascii()
        or not value.isprintable()
        or " " in value
    ):
        raise ProviderUnavailable("the provider answered an object without a usable id")
    return value


def _status(value: Any) -> str:
    status = _YOOKASSA_STATUSES.get(value) if isinstance(value, str) else None
    if status is None:
        raise ProviderUnavailable(f"the provider answered an unknown status {value!r}")
    return status


def _amount_of(value: Any) -> Decimal | None:
    if not isinstance(value, dict):
        return None
    try:
        amount = Decimal(str(value.get("value")))
    except ArithmeticError:
        return None
    return amount if amount.is_finite() else None


def method_title(method: dict[str, Any]) -> str:
    """A saved method's title for the subscriber ("Card *4444", "SBP"): never card data
    beyond the last four digits the provider shows anyway."""
    card = method.get("card")
    if isinstance(card, dict) and isinstance(card.get("last4"), str):
        last4 = card["last4"]
        if len(last4) == 4 and last4.isdigit():
            return f"Card *{last4}"
    title = method.get("title")
    if method.get("type") == "sbp":
        return "SBP"
    if isinstance(title, str) and title.isprintable() and 0 < len(title) <= 100:
        return title.replace("Bank card", "Card")
    return "Saved method"


def yookassa_payment(body: Any) -> ProviderPayment:
    """A YooKassa payment object in Kabinet's words; ProviderUnavailable when it is not one."""
    if not isinstance(body, dict):
        raise ProviderUnavailable("the provider answered something that is not a payment")
    confirmation = body.get("confirmation")
    confirmation_url = None
    if isinstance(confirmation, dict) and isinstance(confirmation.get("confirmation_url"), str):
        confirmation_url = confirmation["confirmation_url"]
    method = body.get("payment_method")
    saved = None
    if isinstance(method, dict) and method.get("saved") is True and method.get("id"):
        saved = SavedMethod(reference=_reference(method["id"]), title=method_title(method))
    receipt = body.get("receipt_registration")
    metadata = body.get("metadata")
    return ProviderPayment(
        reference=_reference(body.get("id")),
        status=_status(body.get("status")),
        confirmation_url=confirmation_url,
        saved_method=saved,
        receipt_status=receipt if isinstance(receipt, str) and len(receipt) <= 16 else None,
        amount=_amount_of(body.get("amount")),
        metadata=metadata if isinstance(metadata, dict) else None,
    )


def yookassa_refund(body: Any) -> ProviderRefund:
    if not isinstance(body, dict):
        raise ProviderUnavailable("the provider answered something that is not a refund")
    payment = body.get("payment_id")
    return ProviderRefund(
        reference=_reference(body.get("id")),
        status=_status(body.get("status")),
        payment_reference=payment if isinstance(payment, str) else None,
        amount=_amount_of(body.get("amount")),
    )


class YooKassaProvider:
    """YooKassa's API v3: `POST /payments` (redirect confirmation, `capture: true`,
    `metadata.kabinet_payment_id`, the 54-FZ `receipt`, `save_payment_method`, or
    `payment_method_id` for a saved method), `GET /payments/{id}`, `POST /refunds`,
    `GET /refunds/{id}`; HTTP Basic auth with the shop id and secret key; every POST with
    the `Idempotence-Key` Kabinet derives from its own row, so a retry after a timeout
    answers the same payment instead of making another."""

    name = "yookassa"

    def __init__(self, settings: Settings) -> None:
        if not settings.yookassa_shop_id or not settings.yookassa_secret_key:
            raise ValueError(
                "KABINET_YOOKASSA_SHOP_ID and KABINET_YOOKASSA_SECRET_KEY must be set"
                " for the yookassa payment provider"
            )
        self._url = settings.yookassa_api_url.rstrip("/")
        self._auth = httpx.BasicAuth(settings.yookassa_shop_id, settings.yookassa_secret_key)
        self._timeout = httpx.Timeout(settings.yookassa_timeout_seconds)

    async def _call(
        self, method: str, path: str, *, body: Any = None, idempotence_key: str | None = None
    ) -> Any:
        headers = {"Accept": "application/json"}
        if idempotence_key is not None:
            headers["Idempotence-Key"] = idempotence_key
        try:
            async with httpx.AsyncClient(
                auth=self._auth, timeout=self._timeout, follow_redirects=False
            ) as client:
                response = await client.request(
                    method, f"{self._url}{path}", json=body, headers=headers
                )
        except httpx.HTTPError as error:
            raise ProviderUnavailable(f"{method} {path}: {type(error).__name__}") from error
        if response.status_code >= 500 or response.status_code == 429:
            raise ProviderUnavailable(f"{method} {path}: HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError as error:
            raise ProviderUnavailable(f"{method} {path}: not JSON") from error
        if response.status_code != 200:
            code = answer.get("code") if isinstance(answer, dict) else None
            description = answer.get("description") if isinstance(answer, dict) else None
            raise ProviderRefused(
                f"{method} {path}: HTTP {response.status_code} {code}: {description}"
            )
        return answer

    async def create_payment(self, order: PaymentOrder) -> ProviderPayment:
        body: dict[str, Any] = {
            "amount": _money(order.amount),
            "capture": True,
            "description": order.description[:128],
            "metadata": {"kabinet_payment_id": str(order.payment_id)},
        }
        if order.method_reference is not None:
            body["payment_method_id"] = order.method_reference
        else:
            confirmation: dict[str, Any] = {"type": "redirect"}
            if order.return_url:
                confirmation["return_url"] = order.return_url
            body["confirmation"] = confirmation
            if order.save_method:
                body["save_payment_method"] = True
        if order.receipt is not None:
            body["receipt"] = order.receipt
        answer = await self._call(
            "POST", "/payments", body=body, idempotence_key=order.idempotence_key
        )
        return yookassa_payment(answer)

    async def read_payment(self, reference: str) -> ProviderPayment:
        answer = await self._call("GET", f"/payments/{quote(reference, safe='')}")
        return yookassa_payment(answer)

    async def create_refund(self, order: RefundOrder) -> ProviderRefund:
        body: dict[str, Any] = {
            "payment_id": order.payment_reference,
            "amount": _money(order.amount),
        }
        if order.receipt is not None:
            body["receipt"] = order.receipt
        answer = await self._call(
            "POST", "/refunds", body=body, idempotence_key=order.idempotence_key
        )
        return yookassa_refund(answer)

    async def read_refund(self, reference: str) -> ProviderRefund:
        answer = await self._call("GET", f"/refunds/{quote(reference, safe='')}")
        return yookassa_refund(answer)


def provider_for(settings: Settings) -> PaymentProvider:
    if settings.payment_provider == "yookassa":
        return YooKassaProvider(settings)
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
