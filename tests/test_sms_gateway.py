"""SMS through a gateway in the style of SMS.ru (SPEC §8 "SMS"): the outbox posts each SMS
row to `KABINET_SMS_URL` and keeps the gateway's answer (its message id and status). The
gateway here is a Starlette app under a real uvicorn on loopback that speaks the documented
`sms/send` JSON protocol: it accepts, answers an error status, or does not answer in time."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from core import outbox
from core.db import unit_of_work
from core.settings import ProductionConfigError, Settings
from models import OutboxMessage
from models.base import utcnow
from tests.conftest import fast_settings, production_settings
from tests.live import serve_in_thread

API_KEY = "test-api-key-8c1f2e9b"
PHONE = "+79161234567"


class Gateway:
    """What the gateway answers next ("ok", "error", "slow") and what it received."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.error = (230, "Превышен лимит сообщений на этот номер в день")
        self.received: list[dict[str, str]] = []
        self.sent = 0

    async def send(self, request: Request) -> JSONResponse:
        # application/x-www-form-urlencoded, as the gateway documents it
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        self.received.append(form)
        if form.get("api_id") != API_KEY:
            return JSONResponse(
                {"status": "ERROR", "status_code": 200, "status_text": "Неправильный api_id"}
            )
        to = form["to"]
        if self.mode == "slow":
            await asyncio.sleep(5)
        if self.mode == "error":
            return JSONResponse(
                {
                    "status": "OK",
                    "status_code": 100,
                    "sms": {
                        to: {
                            "status": "ERROR",
                            "status_code": self.error[0],
                            "status_text": self.error[1],
                        }
                    },
                    "balance": 100.5,
                }
            )
        self.sent += 1
        return JSONResponse(
            {
                "status": "OK",
                "status_code": 100,
                "sms": {
                    to: {"status": "OK", "status_code": 100, "sms_id": f"000000-{self.sent:08d}"}
                },
                "balance": 100.5,
            }
        )


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[Gateway, str]]:
    state = Gateway()
    app = Starlette(routes=[Route("/sms/send", state.send, methods=["POST"])])
    with serve_in_thread(app, lifespan="off") as base:
        yield state, f"{base}/sms/send"


@pytest.fixture
def sms_settings(migrated_url: str, gateway: tuple[Gateway, str]) -> Settings:
    state, url = gateway
    state.mode = "ok"
    state.error = (230, "Превышен лимит сообщений на этот номер в день")
    state.received.clear()
    state.sent = 0
    return fast_settings(
        migrated_url,
        sms_provider="http",
        sms_url=url,
        sms_api_key=API_KEY,
        sms_sender="Kabinet",
        sms_timeout_seconds=0.5,
    )


async def _queue_sms(session_factory: Any, text: str = "Код: 123456") -> int:
    async with unit_of_work(session_factory) as session:
        return await outbox.queue_letter(
            session,
            kind="REMINDER_LOW_BALANCE",
            channel=outbox.SMS,
            recipient=PHONE,
            subject="",
            body_text=text,
        )


async def _row(session_factory: Any, message_id: int) -> OutboxMessage:
    async with session_factory() as session:
        row = await session.get(OutboxMessage, message_id)
    assert row is not None
    return row


async def _deliver(session_factory: Any, settings: Settings, **kw: Any) -> outbox.DeliveryReport:
    return await outbox.deliver_due(
        session_factory, outbox.senders_for(settings), settings=settings, **kw
    )


async def test_an_accepted_sms_keeps_the_gateways_id_and_status(
    session_factory: Any, sms_settings: Settings, gateway: tuple[Gateway, str]
) -> None:
    # given
    state, _ = gateway
    message_id = await _queue_sms(session_factory, "Договор 770000010000: услуги возобновлены.")
    # when
    report = await _deliver(session_factory, sms_settings)
    # then the gateway got the documented form
    assert (report.sent, report.failed) == (1, 0)
    (form,) = state.received
    assert form == {
        "api_id": API_KEY,
        "to": "79161234567",
        "msg": "Договор 770000010000: услуги возобновлены.",
        "json": "1",
        "from": "Kabinet",
    }
    # and the row is sent with the gateway's answer
    row = await _row(session_factory, message_id)
    assert row.sent_at is not None and row.last_error is None
    assert (row.provider_message_id, row.provider_status) == ("000000-00000001", "OK 100")
    assert row.body_text == outbox.DELIVERED_BODY


async def test_an_error_status_is_recorded_and_retried(
    session_factory: Any, sms_settings: Settings, gateway: tuple[Gateway, str]
) -> None:
    # given a gateway that refuses the number for now (its daily limit)
    state, _ = gateway
    state.mode = "error"
    message_id = await _queue_sms(session_factory)
    # when
    report = await _deliver(session_factory, sms_settings)
    # then the refusal is kept and the row waits for its next attempt
    assert (report.sent, report.failed) == (0, 1)
    row = await _row(session_factory, message_id)
    assert row.sent_at is None and row.attempts == 1 and row.locked_until is None
    assert row.provider_status == "ERROR 230" and row.provider_message_id is None
    assert row.last_error is not None and "230" in row.last_error
    assert API_KEY not in row.last_error
    assert row.next_attempt_at > row.created_at
    # when the gateway accepts again and the retry falls due (the clock moved, no sleep)
    state.mode = "ok"
    report = await _deliver(session_factory, sms_settings, now=row.next_attempt_at)
    # then
    assert report.sent == 1
    row = await _row(session_factory, message_id)
    assert row.sent_at is not None and row.attempts == 2
    assert row.provider_status == "OK 100" and row.provider_message_id is not None


async def test_a_number_that_can_never_receive_it_is_given_up_at_once(
    session_factory: Any, sms_settings: Settings, gateway: tuple[Gateway, str]
) -> None:
    # given a gateway that says no SMS may ever go to this number
    state, _ = gateway
    state.mode = "error"
    state.error = (207, "На этот номер нельзя отправлять сообщения")
    message_id = await _queue_sms(session_factory)
    # when
    report = await _deliver(session_factory, sms_settings)
    # then the refusal is kept and the row is left as after its last attempt
    assert (report.sent, report.failed, report.remaining) == (0, 1, 0)
    row = await _row(session_factory, message_id)
    assert row.sent_at is None and row.attempts == sms_settings.outbox_max_attempts
    assert row.provider_status == "ERROR 207"
    # and it is not tried again, however late
    state.mode = "ok"
    later = await _deliver(session_factory, sms_settings, now=row.next_attempt_at)
    assert (later.sent, later.failed) == (0, 0) and state.sent == 0


async def test_a_gateway_that_does_not_answer_in_time_is_retried(
    session_factory: Any, sms_settings: Settings, gateway: tuple[Gateway, str]
) -> None:
    # given a gateway slower than KABINET_SMS_TIMEOUT_SECONDS
    state, _ = gateway
    state.mode = "slow"
    message_id = await _queue_sms(session_factory)
    # when
    report = await _deliver(session_factory, sms_settings)
    # then a failed attempt, to be tried again later
    assert (report.sent, report.failed, report.remaining) == (0, 1, 1)
    row = await _row(session_factory, message_id)
    assert row.sent_at is None and row.attempts == 1
    assert row.last_error is not None and "Timeout" in row.last_error
    assert row.provider_status is None
    # and not before its time
    early = await _deliver(session_factory, sms_settings, now=utcnow())
    assert (early.sent, early.failed) == (0, 0)
    # when it answers again at the retry
    state.mode = "ok"
    later = await _deliver(session_factory, sms_settings, now=row.next_attempt_at)
    # then
    assert later.sent == 1
    assert (await _row(session_factory, message_id)).provider_status == "OK 100"


async def test_a_wrong_key_is_an_error_status_without_the_key_in_it(
    session_factory: Any, sms_settings: Settings
) -> None:
    # given
    wrong = sms_settings.model_copy(update={"sms_api_key": "another-key-0000"})
    message_id = await _queue_sms(session_factory)
    # when
    await _deliver(session_factory, wrong)
    # then
    row = await _row(session_factory, message_id)
    assert row.provider_status == "ERROR 200" and row.sent_at is None
    assert row.last_error is not None and "another-key-0000" not in row.last_error


async def test_the_log_provider_prints_sms_in_development(
    session_factory: Any, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # given
    message_id = await _queue_sms(session_factory, "Договор 770000010000: текст")
    # when
    with caplog.at_level("INFO", logger="core.outbox"):
        report = await _deliver(session_factory, settings)
    # then
    assert report.sent == 1
    assert "DEVELOPMENT SMS" in caplog.text and "Договор 770000010000: текст" in caplog.text
    row = await _row(session_factory, message_id)
    assert row.sent_at is not None and row.provider_status is None


def test_production_refuses_the_http_provider_without_url_or_key() -> None:
    for missing, named in (
        ({"sms_url": None, "sms_api_key": API_KEY}, "KABINET_SMS_URL"),
        ({"sms_url": "https://sms.example/sms/send", "sms_api_key": None}, "KABINET_SMS_API_KEY"),
        ({"sms_url": "http://sms.example/sms/send", "sms_api_key": API_KEY}, "KABINET_SMS_URL"),
    ):
        settings = production_settings("sqlite+aiosqlite://", sms_provider="http", **missing)
        with pytest.raises(ProductionConfigError, match=named):
            settings.check_production()
    # and accepts it with both
    production_settings(
        "sqlite+aiosqlite://",
        sms_provider="http",
        sms_url="https://sms.example/sms/send",
        sms_api_key=API_KEY,
    ).check_production()


def test_production_with_the_log_provider_keeps_sms_waiting() -> None:
    senders = outbox.senders_for(production_settings("sqlite+aiosqlite://"))
    assert isinstance(senders[outbox.SMS], outbox.UnconfiguredSender)


async def test_only_sms_rows_go_to_the_gateway(
    session_factory: Any, sms_settings: Settings, gateway: tuple[Gateway, str]
) -> None:
    # given a letter and an SMS
    state, _ = gateway
    sms_id = await _queue_sms(session_factory)
    async with unit_of_work(session_factory) as session:
        await outbox.queue_letter(
            session, kind="RECEIPT", recipient="a@example.org", subject="s", body_text="b"
        )
    # when
    report = await _deliver(session_factory, sms_settings)
    # then one request to the gateway; the letter went to the log (no SMTP host)
    assert report.sent == 2 and len(state.received) == 1
    async with session_factory() as session:
        letters = (await session.execute(sa.select(OutboxMessage.id, OutboxMessage.channel))).all()
    assert {channel for _, channel in letters} == {"EMAIL", "SMS"}
    assert (await _row(session_factory, sms_id)).provider_message_id is not None
