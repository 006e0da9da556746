"""A local YooKassa: the documented subset of API v3 that Kabinet uses, on loopback.

An ASGI app (Starlette) served by a real uvicorn (`tests.live.serve_in_thread`):

* `POST /v3/payments`, `GET /v3/payments/{id}`, `POST /v3/refunds`, `GET /v3/refunds/{id}`
  with HTTP Basic auth (shop id : secret key) and the `Idempotence-Key` header: the same key
  with the same body answers the same object (no second payment), the same key with another
  body is a 400 `invalid_request`. Objects use the API's field names (those of the `yookassa`
  SDK's models): `id`, `status` (pending | succeeded | canceled), `paid`, `amount {value,
  currency}`, `confirmation {type, confirmation_url, return_url}`, `metadata`,
  `payment_method {type, id, saved, title}`, `receipt_registration`, `refundable`, `test`.
* saved methods: `save_payment_method: true` saves the method when the payment succeeds
  (`payment_method.saved`, its `id` and `title` "Bank card *4444"); a payment with
  `payment_method_id` charges a saved method at once (no confirmation): succeeded, or as
  `POST /control/charges` `{"mode": "succeed" | "pending" | "cancel"}` says (pending: the
  bank has not answered yet, settled by the control below; canceled: the issuer declined,
  `cancellation_details.reason` "insufficient_funds").
* test control (not YooKassa's): `POST /control/payments/{id}/succeed|cancel` moves a
  payment and answers the notification YooKassa would post (`{"type": "notification",
  "event": ..., "object": {...}}`), also posting it to `notification_url` when one is set;
  `POST /control/refunds/{id}/succeed` likewise; `POST /control/fault` with
  `{"mode": "503" | "hang" | "lose" | "refuse" | null}` makes every API call fail so (503;
  no answer for 30 s; "lose": a POST is carried out but its answer is lost, a 504;
  "refuse": a POST is refused, 400) or work again.
* `requests`: every API request received (method, path, headers, JSON body), for tests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

CARD_LAST4 = "4444"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class YooKassaState:
    shop_id: str
    secret_key: str
    notification_url: str | None = None
    fault: str | None = None  # None | "503" | "hang" | "lose" | "refuse"
    charges: str = "succeed"  # a saved method's charge: "succeed" | "pending" | "cancel"
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    saved_methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (path, Idempotence-Key) -> (the request's body, the answered object's id)
    idempotence: dict[tuple[str, str], tuple[Any, str]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)

    def api_requests(self, method: str, path_prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _error(status: int, code: str, description: str, parameter: str | None = None) -> Response:
    body: dict[str, Any] = {
        "type": "error",
        "id": str(uuid.uuid4()),
        "code": code,
        "description": description,
    }
    if parameter:
        body["parameter"] = parameter
    return JSONResponse(body, status_code=status)


def _amount(value: Any) -> Decimal | None:
    if not isinstance(value, dict) or value.get("currency") != "RUB":
        return None
    try:
        amount = Decimal(str(value.get("value")))
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount <= 0 or amount != amount.quantize(Decimal("0.01")):
        return None
    return amount


class YooKassaServer:
    """The app and its state (`state`), one per test."""

    def __init__(self, *, shop_id: str, secret_key: str) -> None:
        self.state = YooKassaState(shop_id=shop_id, secret_key=secret_key)
        self.app = Starlette(
            routes=[
                Route("/v3/payments", self._create_payment, methods=["POST"]),
                Route("/v3/payments/{id}", self._read_payment, methods=["GET"]),
                Route("/v3/refunds", self._create_refund, methods=["POST"]),
                Route("/v3/refunds/{id}", self._read_refund, methods=["GET"]),
                Route("/control/payments/{id}/{outcome}", self._control_payment, methods=["POST"]),
                Route("/control/refunds/{id}/succeed", self._control_refund, methods=["POST"]),
                Route("/control/fault", self._control_fault, methods=["POST"]),
                Route("/control/charges", self._control_charges, methods=["POST"]),
            ]
        )

    # -- the API

    async def _guard(self, request: Request) -> tuple[Response | None, Any]:
        """Record the request; answer the fault, the auth failure or a bad body, if any."""
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.state.requests.append(
            Recorded(request.method, request.url.path, dict(request.headers), body)
        )
        if self.state.fault == "503":
            return _error(503, "internal_server_error", "Temporarily unavailable"), None
        if self.state.fault == "hang":  # until the fault is cleared (at most 30 s)
            for _ in range(600):
                if self.state.fault != "hang":
                    break
                await asyncio.sleep(0.05)
            return _error(503, "internal_server_error", "Temporarily unavailable"), None
        expected = base64.b64encode(
            f"{self.state.shop_id}:{self.state.secret_key}".encode()
        ).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return _error(401, "invalid_credentials", "Authentication failed"), None
        if request.method == "POST":
            if self.state.fault == "refuse":
                return _error(400, "invalid_request", "Refused by the test"), None
            if not request.headers.get("idempotence-key"):
                return _error(400, "invalid_request", "Idempotence-Key is required"), None
            if not isinstance(body, dict):
                return _error(400, "invalid_request", "The body must be a JSON object"), None
        return None, body

    def _replayed(self, request: Request, body: Any) -> tuple[Response | None, tuple[str, str]]:
        key = (request.url.path, request.headers["idempotence-key"])
        seen = self.state.idempotence.get(key)
        if seen is None:
            return None, key
        earlier_body, object_id = seen
        if earlier_body != body:
            return _error(
                400, "invalid_request", "Idempotence key duplicated", "Idempotence-Key"
            ), key
        store = self.state.payments if key[0].endswith("payments") else self.state.refunds
        return JSONResponse(store[object_id]), key

    async def _create_payment(self, request: Request) -> Response:
        refused, body = await self._guard(request)
        if refused is not None:
            return refused
        replay, key = self._replayed(request, body)
        if replay is not None:
            return replay
        amount = _amount(body.get("amount"))
        if amount is None:
            return _error(400, "invalid_request", "Bad amount", "amount")
        method_id = body.get("payment_method_id")
        payment_id = str(uuid.uuid4())
        payment: dict[str, Any] = {
            "id": payment_id,
            "status": "pending",
            "paid": False,
            "amount": {"value": f"{amount:.2f}", "currency": "RUB"},
            "created_at": _now(),
            "description": body.get("description"),
            "metadata": body.get("metadata") or {},
            "recipient": {"account_id": self.state.shop_id, "gateway_id": "1"},
            "refundable": False,
            "test": True,
        }
        if body.get("receipt") is not None:
            payment["receipt_registration"] = "pending"
        if method_id is not None:
            saved = self.state.saved_methods.get(str(method_id))
            if saved is None:
                return _error(400, "invalid_request", "Unknown payment method", "payment_method_id")
            payment["payment_method"] = dict(saved)
            if self.state.charges == "succeed":
                self._succeed(payment)
            elif self.state.charges == "cancel":
                self._cancel(payment, party="payment_network", reason="insufficient_funds")
        else:
            confirmation = body.get("confirmation")
            if not isinstance(confirmation, dict) or confirmation.get("type") != "redirect":
                return _error(400, "invalid_request", "Bad confirmation", "confirmation")
            payment["confirmation"] = {
                "type": "redirect",
                "confirmation_url": (
                    "https://yoomoney.ru/checkout/payments/v2/contract?orderId=" + payment_id
                ),
            }
            if confirmation.get("return_url"):
                payment["confirmation"]["return_url"] = confirmation["return_url"]
            payment["payment_method"] = {
                "type": "bank_card",
                "id": payment_id,
                "saved": False,
            }
            payment["_save"] = bool(body.get("save_payment_method"))
        self.state.payments[payment_id] = payment
        self.state.idempotence[key] = (body, payment_id)
        if self.state.fault == "lose":
            return _error(504, "internal_server_error", "Gateway timeout")
        return JSONResponse(self._public(payment))

    @staticmethod
    def _public(obj: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    def _succeed(self, payment: dict[str, Any]) -> None:
        payment["status"] = "succeeded"
        payment["paid"] = True
        payment["captured_at"] = _now()
        payment["refundable"] = True
        payment["income_amount"] = payment["amount"]
        if "receipt_registration" in payment:
            payment["receipt_registration"] = "succeeded"
        method = payment.setdefault("payment_method", {"type": "bank_card"})
        if payment.pop("_save", False):
            method.update(
                {
                    "id": method.get("id") or str(uuid.uuid4()),
                    "saved": True,
                    "title": f"Bank card *{CARD_LAST4}",
                    "card": {"last4": CARD_LAST4, "card_type": "MasterCard"},
                }
            )
            self.state.saved_methods[method["id"]] = dict(method)

    @staticmethod
    def _cancel(payment: dict[str, Any], *, party: str, reason: str) -> None:
        payment["status"] = "canceled"
        payment["cancellation_details"] = {"party": party, "reason": reason}
        if "receipt_registration" in payment:
            payment["receipt_registration"] = "canceled"
        payment.pop("_save", None)

    async def _read_payment(self, request: Request) -> Response:
        refused, _ = await self._guard(request)
        if refused is not None:
            return refused
        payment = self.state.payments.get(request.path_params["id"])
        if payment is None:
            return _error(404, "not_found", "Payment not found")
        return JSONResponse(self._public(payment))

    async def _create_refund(self, request: Request) -> Response:
        refused, body = await self._guard(request)
        if refused is not None:
            return refused
        replay, key = self._replayed(request, body)
        if replay is not None:
            return replay
        payment = self.state.payments.get(str(body.get("payment_id")))
        if payment is None or payment["status"] != "succeeded":
            return _error(400, "invalid_request", "The payment cannot be refunded", "payment_id")
        amount = _amount(body.get("amount"))
        refunded = sum(
            (
                Decimal(r["amount"]["value"])
                for r in self.state.refunds.values()
                if r["payment_id"] == payment["id"] and r["status"] != "canceled"
            ),
            Decimal(0),
        )
        if amount is None or refunded + amount > Decimal(payment["amount"]["value"]):
            return _error(400, "invalid_request", "Bad refund amount", "amount")
        refund_id = str(uuid.uuid4())
        refund: dict[str, Any] = {
            "id": refund_id,
            "payment_id": payment["id"],
            "status": "pending",
            "created_at": _now(),
            "amount": {"value": f"{amount:.2f}", "currency": "RUB"},
            "description": body.get("description"),
        }
        if body.get("receipt") is not None:
            refund["receipt_registration"] = "pending"
        self.state.refunds[refund_id] = refund
        self.state.idempotence[key] = (body, refund_id)
        if self.state.fault == "lose":
            return _error(504, "internal_server_error", "Gateway timeout")
        return JSONResponse(refund)

    async def _read_refund(self, request: Request) -> Response:
        refused, _ = await self._guard(request)
        if refused is not None:
            return refused
        refund = self.state.refunds.get(request.path_params["id"])
        if refund is None:
            return _error(404, "not_found", "Refund not found")
        return JSONResponse(refund)

    # -- test control

    async def _notify(self, event: str, obj: dict[str, Any]) -> dict[str, Any]:
        notification = {"type": "notification", "event": event, "object": self._public(obj)}
        if self.state.notification_url:
            async with httpx.AsyncClient(timeout=30) as client:
                await client.post(self.state.notification_url, json=notification)
        return notification

    async def _control_payment(self, request: Request) -> Response:
        payment = self.state.payments.get(request.path_params["id"])
        if payment is None:
            return _error(404, "not_found", "Payment not found")
        outcome = request.path_params["outcome"]
        if outcome == "succeed":
            if payment["status"] == "pending":
                self._succeed(payment)
            return JSONResponse(await self._notify("payment.succeeded", payment))
        if outcome == "cancel":
            if payment["status"] == "pending":
                self._cancel(payment, party="yoo_money", reason="expired_on_confirmation")
            return JSONResponse(await self._notify("payment.canceled", payment))
        return _error(404, "not_found", "No such outcome")

    async def _control_refund(self, request: Request) -> Response:
        refund = self.state.refunds.get(request.path_params["id"])
        if refund is None:
            return _error(404, "not_found", "Refund not found")
        if refund["status"] == "pending":
            refund["status"] = "succeeded"
            if "receipt_registration" in refund:
                refund["receipt_registration"] = "succeeded"
        return JSONResponse(await self._notify("refund.succeeded", refund))

    async def _control_fault(self, request: Request) -> Response:
        body = await request.json()
        self.state.fault = body.get("mode")
        return JSONResponse({"mode": self.state.fault})

    async def _control_charges(self, request: Request) -> Response:
        body = await request.json()
        mode = body.get("mode")
        if mode not in ("succeed", "pending", "cancel"):
            return _error(400, "invalid_request", "No such mode", "mode")
        self.state.charges = mode
        return JSONResponse({"mode": mode})


def random_credentials() -> tuple[str, str]:
    return str(secrets.randbelow(900000) + 100000), "test_" + secrets.token_urlsafe(24)
