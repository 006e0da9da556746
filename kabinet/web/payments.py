"""Payment routes outside GraphQL: the provider's webhook, the sandbox checkout page and the
printable receipt.

* `POST /webhooks/payments`: the raw body (at most 16 KiB) is checked against `X-Signature`
  (hex HMAC-SHA256 under `KABINET_WEBHOOK_SECRET`) before it is parsed, then applied once by
  `resolvers.payments.apply_provider_event`:

  | status | when                                                                      |
  | ------ | ------------------------------------------------------------------------- |
  | 200    | `{"status": "applied"}` or `{"status": "already-applied"}` (a replay, or  |
  |        | an event for a payment that is final already: acknowledged, no effect)    |
  | 400    | not JSON, not an object, a missing or malformed `paymentId`, an unknown   |
  |        | `status`, a bad `providerReference` or one that belongs to another        |
  |        | payment                                                                   |
  | 401    | `X-Signature` missing or wrong                                            |
  | 404    | a signed, well-formed event for a payment that does not exist here        |
  | 405    | any method but POST                                                       |
  | 413    | a body above 16 KiB                                                       |
  | 500    | anything unexpected: nothing was applied, the provider retries            |

  404 rather than 400 for an unknown payment: the body is not malformed, and the caller has
  proved it holds the secret, so the distinct code leaks nothing and tells a misrouted event
  (another environment's payment, a wrong secret shared between environments) apart from a
  parsing problem, in the provider's dashboard and in our metrics. PostgreSQL serialisation
  failures and deadlocks (SQLSTATE 40001, 40P01) and lost insert races are retried.

* `GET|POST /sandbox/pay/<Payment.id>` (development with the sandbox provider only): a page
  with the amount and Pay / Fail buttons; the POST builds the provider's body, signs it and
  runs it through the webhook's own code path, signature check included. When the top-up
  asked to save the method (`savePaymentMethod`), the page offers "save card *4444"
  (JSON: `"saveMethod": true`): a successful payment then keeps the sandbox's card
  ("Card *4444") among the contract's payment methods.

* `GET /receipts/<Payment.id>`: the printable receipt for the contract's owner (or staff),
  signed in like `/graphql` (Bearer header or session cookie); 401 when signed out, 404 when
  there is no such receipt or it is someone else's (the two look the same).
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import random
import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from core.db import RequestReader, unit_of_work
from core.errors import DomainError, ErrorCode
from core.ids import from_global_id, to_global_id
from core.payment_providers import (
    SANDBOX_METHOD_TITLE,
    SIGNATURE_HEADER,
    SavedMethod,
    sign,
    verify_signature,
)
from core.settings import Settings
from kabinet.web.auth import request_principal
from resolvers.accounts import may_see_contract
from resolvers.payments import (
    EVENT_STATUSES,
    apply_provider_event,
    payments_by_id,
    receipts_with_owner,
    remember_saved_method,
)

log = logging.getLogger("kabinet.webhooks")

WEBHOOK_MAX_BODY_BYTES = 16 * 1024
SANDBOX_MAX_BODY_BYTES = 1024
WEBHOOK_ATTEMPTS = 5
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
MAX_PAYMENT_PK_DIGITS = 18
SANDBOX_CARD_LAST4 = "4444"
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
METHOD_LABELS = {
    "BANK_CARD": "Банковская карта",
    "SBP": "СБП",
    "E_WALLET": "Электронный кошелёк",
    "CASH_TERMINAL": "Терминал наличных",
}
STATUS_LABELS = {
    "PENDING": "ожидает оплаты",
    "SUCCEEDED": "оплачен",
    "FAILED": "не оплачен",
    "CANCELED": "отменён",
}


# -- the webhook --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookAnswer:
    status_code: int
    body: dict[str, str]


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    payment_id: int
    status: str
    provider_reference: str | None


class BadEvent(ValueError):
    pass


def payment_pk(global_id: object) -> int | None:
    """The primary key inside a Payment global ID, or None for anything else."""
    if not isinstance(global_id, str):
        return None
    parsed = from_global_id(global_id)
    if parsed is None or parsed[0] != "Payment":
        return None
    pk = parsed[1]
    if not pk.isascii() or not pk.isdigit() or len(pk) > MAX_PAYMENT_PK_DIGITS:
        return None
    return int(pk)


def parse_event(body: bytes) -> ProviderEvent:
    """The provider's JSON body, or BadEvent saying what is wrong with it."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadEvent("The body is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise BadEvent("The body must be a JSON object.")
    payment_id = payment_pk(payload.get("paymentId"))
    if payment_id is None:
        raise BadEvent("`paymentId` must be a Payment ID.")
    status = payload.get("status")
    if status not in EVENT_STATUSES:
        raise BadEvent(f"`status` must be one of {', '.join(EVENT_STATUSES)}.")
    reference = payload.get("providerReference")
    if reference is not None and not isinstance(reference, str):
        raise BadEvent("`providerReference` must be a string.")
    return ProviderEvent(payment_id, status, reference)


def _retryable(error: DBAPIError) -> bool:
    if isinstance(error, IntegrityError):
        return True  # a lost race on a unique key: the next attempt sees the winner's state
    code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return code in RETRYABLE_SQLSTATES


async def process_webhook(
    session_factory: Any, settings: Settings, *, body: bytes, signature: str | None
) -> WebhookAnswer:
    """The webhook's whole decision over a raw body; shared by the route and the sandbox."""
    if not verify_signature(settings, body, signature):
        log.warning("payment webhook: bad or missing signature")
        return WebhookAnswer(401, {"error": "bad-signature"})
    try:
        event = parse_event(body)
    except BadEvent as error:
        log.warning("payment webhook: bad body: %s", error)
        return WebhookAnswer(400, {"error": "bad-body", "message": str(error)})

    for attempt in range(1, WEBHOOK_ATTEMPTS + 1):
        try:
            async with unit_of_work(session_factory) as session:
                outcome = await apply_provider_event(
                    session,
                    settings=settings,
                    payment_id=event.payment_id,
                    status=event.status,
                    provider_reference=event.provider_reference,
                )
        except DomainError as error:
            if error.code == ErrorCode.NOT_FOUND:
                log.warning("payment webhook: unknown payment %s", event.payment_id)
                return WebhookAnswer(404, {"error": "unknown-payment"})
            return WebhookAnswer(400, {"error": "bad-body", "message": error.message})
        except DBAPIError as error:
            if attempt == WEBHOOK_ATTEMPTS or not _retryable(error):
                raise
            log.info(
                "payment webhook: retrying after a database conflict",
                extra={"payment_id": event.payment_id, "attempt": attempt},
            )
            await asyncio.sleep(random.uniform(0.01, 0.05) * attempt)  # noqa: S311 - jitter
            continue
        return WebhookAnswer(
            200,
            {
                "status": "applied" if outcome.applied else "already-applied",
                "paymentStatus": outcome.payment_status,
            },
        )
    raise AssertionError("unreachable")  # pragma: no cover


async def _read_capped(request: Request, limit: int) -> bytes | None:
    """The raw body, or None when it is larger than `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


# -- pages --------------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _money(amount: Decimal) -> str:
    digits = f"{Decimal(amount).quantize(Decimal('0.01')):,.2f}"
    return digits.replace(",", "\u00a0").replace(".", ",") + "\u00a0руб."


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    document = (
        '<!DOCTYPE html>\n<html lang="ru"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title></head>\n<body>\n{body}\n</body></html>\n"
    )
    return HTMLResponse(document, status_code=status_code, headers=PAGE_HEADERS)


def _message_page(title: str, text: str, status_code: int) -> HTMLResponse:
    return _page(title, f"<h1>{_e(title)}</h1>\n<p>{_e(text)}</p>", status_code)


def _rows_table(rows: list[tuple[str, str]]) -> str:
    cells = "\n".join(f"<tr><th>{_e(label)}</th><td>{_e(value)}</td></tr>" for label, value in rows)
    return f"<table>\n{cells}\n</table>"


def _origin_of(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}".lower()


class PaymentRoutes:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.own_origins = {_origin_of(settings.public_url)}

    # -- webhook

    async def webhook(self, request: Request) -> Response:
        body = await _read_capped(request, WEBHOOK_MAX_BODY_BYTES)
        if body is None:
            return JSONResponse({"error": "too-large"}, status_code=413)
        answer = await process_webhook(
            request.app.state.session_factory,
            self.settings,
            body=body,
            signature=request.headers.get(SIGNATURE_HEADER),
        )
        return JSONResponse(answer.body, status_code=answer.status_code)

    # -- sandbox

    def _cross_site(self, request: Request) -> bool:
        if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
            return True
        origin = request.headers.get("origin")
        if origin is None:
            return False
        origin = origin.lower()
        same_host = origin.partition("://")[2] == request.headers.get("host", "").lower()
        return not same_host and origin not in self.own_origins

    async def _payment(self, request: Request, pk: int) -> Any:
        reader = RequestReader(request.app.state.engine)
        try:
            return (await payments_by_id(reader, [pk])).get(pk)
        finally:
            await reader.close()

    async def sandbox(self, request: Request) -> Response:
        global_id = request.path_params["payment_id"]
        pk = payment_pk(global_id)
        wants_json = request.headers.get("content-type", "").lower().startswith("application/json")
        payment = None if pk is None else await self._payment(request, pk)
        if payment is None:
            if wants_json:
                return JSONResponse({"error": "unknown-payment"}, status_code=404)
            return _message_page("Платёж не найден", "Такого платежа нет.", 404)
        if request.method == "POST":
            return await self._sandbox_outcome(request, payment, wants_json=wants_json)
        return self._checkout_page(payment)

    def _checkout_page(self, payment: Any) -> HTMLResponse:
        details = _rows_table(
            [
                ("Договор", payment.contract_number),
                ("Сумма", _money(payment.amount)),
                ("Способ оплаты", METHOD_LABELS.get(payment.method, payment.method)),
                ("Статус", STATUS_LABELS.get(payment.status, payment.status)),
            ]
        )
        if payment.status == "PENDING":
            save = (
                '<label><input type="checkbox" name="save" value="1" checked> '
                f"Сохранить карту *{SANDBOX_CARD_LAST4} для автоплатежей</label>"
                if payment.save_payment_method
                else ""
            )
            actions = (
                '<form method="post"><input type="hidden" name="outcome" value="pay">'
                f'{save}<button type="submit">Оплатить</button></form>\n'
                '<form method="post"><input type="hidden" name="outcome" value="fail">'
                '<button type="submit">Отказ в оплате</button></form>'
            )
        else:
            actions = "<p>Платёж уже завершён.</p>"
        body = (
            "<h1>Песочница оплаты</h1>\n"
            "<p>Тестовый платёжный провайдер: деньги не списываются.</p>\n"
            f"{details}\n{actions}"
        )
        return _page("Песочница оплаты", body)

    async def _sandbox_outcome(
        self, request: Request, payment: Any, *, wants_json: bool
    ) -> Response:
        if self._cross_site(request):
            return _message_page("Запрещено", "Запрос с чужого сайта отклонён.", 403)
        raw = await _read_capped(request, SANDBOX_MAX_BODY_BYTES)
        outcome = None
        save = False
        if raw is not None:
            if wants_json:
                try:
                    data = json.loads(raw)
                except (ValueError, UnicodeDecodeError):
                    data = None
                outcome = data.get("outcome") if isinstance(data, dict) else None
                save = isinstance(data, dict) and data.get("saveMethod") is True
            else:
                fields = parse_qs(raw.decode("latin-1"), max_num_fields=5)
                values = fields.get("outcome", [])
                outcome = values[0] if len(values) == 1 else None
                save = fields.get("save") == ["1"]
        if outcome not in ("pay", "fail"):
            if wants_json:
                return JSONResponse({"error": "outcome must be pay or fail"}, status_code=400)
            return _message_page("Ошибка", "Выберите «Оплатить» или «Отказ в оплате».", 400)

        global_id = str(to_global_id("Payment", payment.id))
        body = json.dumps(
            {
                "paymentId": global_id,
                "status": "SUCCEEDED" if outcome == "pay" else "FAILED",
                "providerReference": f"sandbox-{secrets.token_hex(8)}",
            }
        ).encode()
        answer = await process_webhook(
            request.app.state.session_factory,
            self.settings,
            body=body,
            signature=sign(self.settings, body),
        )
        status = answer.body.get("paymentStatus")
        if (
            save
            and payment.save_payment_method
            and answer.status_code == 200
            and answer.body.get("status") == "applied"
            and status == "SUCCEEDED"
        ):
            # The sandbox's card, saved as a provider would save it (title only).
            method = SavedMethod(f"sandbox-card-{payment.id}", SANDBOX_METHOD_TITLE)
            async with unit_of_work(request.app.state.session_factory) as session:
                await remember_saved_method(
                    session, contract_id=payment.contract_id, provider="sandbox", method=method
                )
        receipt_url = f"/receipts/{global_id}" if status == "SUCCEEDED" else None
        if wants_json:
            return JSONResponse(
                {**answer.body, "receiptUrl": receipt_url}, status_code=answer.status_code
            )
        if answer.status_code != 200:
            return _message_page("Ошибка", "Провайдер не принял событие.", answer.status_code)
        lines = [
            f"<h1>Платёж {_e(STATUS_LABELS.get(status or '', status))}</h1>",
            f"<p>Договор № {_e(payment.contract_number)}, сумма {_e(_money(payment.amount))}.</p>",
        ]
        if answer.body["status"] == "already-applied":
            lines.append("<p>Платёж был завершён раньше; повторное событие ничего не изменило.</p>")
        if receipt_url is not None:
            lines.append(f'<p><a href="{_e(receipt_url)}">Чек об оплате</a></p>')
        return _page("Песочница оплаты", "\n".join(lines))

    # -- receipts

    async def receipt(self, request: Request) -> Response:
        reader = RequestReader(request.app.state.engine)
        try:
            principal = await request_principal(request, reader)
            if principal is None:
                response = _message_page(
                    "Нужен вход", "Войдите в личный кабинет, чтобы открыть чек.", 401
                )
                response.headers["WWW-Authenticate"] = "Bearer"
                return response
            if principal.must_change_password:
                return _message_page(
                    "Смените пароль", "Сначала замените временный пароль в личном кабинете.", 403
                )
            pk = payment_pk(request.path_params["payment_id"])
            row = None if pk is None else (await receipts_with_owner(reader, [pk])).get(pk)
        finally:
            await reader.close()
        if row is None or not may_see_contract(principal, row):
            return _message_page("Чек не найден", "Такого чека нет.", 404)
        return self._receipt_page(row)

    @staticmethod
    def _receipt_page(row: Any) -> HTMLResponse:
        rate = Decimal(row.vat_rate).normalize()
        details = _rows_table(
            [
                ("Номер чека", row.number),
                ("Дата", row.issued_at.strftime("%d.%m.%Y %H:%M UTC")),
                ("Продавец", row.seller_name),
                ("ИНН продавца", row.seller_inn),
                ("Договор (лицевой счёт)", row.contract_number),
                ("Email покупателя", row.payer_email or "—"),
                ("Предмет расчёта", row.item),
                ("Сумма", _money(row.total)),
                (f"В том числе НДС {rate:f}%", _money(row.vat_amount)),
                ("Итого", _money(row.total)),
                ("Способ оплаты", METHOD_LABELS.get(row.method, row.method)),
                ("Идентификатор платежа у провайдера", row.provider_reference or "—"),
            ]
            + (
                [("Регистрация чека у провайдера", row.receipt_status)]
                if getattr(row, "receipt_status", None)
                else []
            )
        )
        body = f"<h1>Кассовый чек № {_e(row.number)}</h1>\n<p>Приход</p>\n{details}"
        return _page(f"Чек № {row.number}", body)


def payment_routes(settings: Settings) -> list[Route]:
    """The routes to mount in `create_app`. The sandbox is there only in development with the
    sandbox provider."""
    routes = PaymentRoutes(settings)
    mounted = [
        Route("/webhooks/payments", routes.webhook, methods=["POST"]),
        Route("/receipts/{payment_id}", routes.receipt, methods=["GET"]),
    ]
    if settings.payment_provider == "sandbox" and not settings.is_production:
        mounted.append(Route("/sandbox/pay/{payment_id}", routes.sandbox, methods=["GET", "POST"]))
    return mounted
