"""Faults: `kabinet serve` SIGKILLed while it delivers events loses none (SPEC §9, issue 17).

The real `kabinet serve` runs as a subprocess on a fresh database (PostgreSQL and SQLite)
with 200 committed events for a subscription whose receiver (on loopback, under uvicorn)
answers slowly; once the receiver has about a third of them the process is killed with
SIGKILL, mid-round. Restarted, it delivers the rest: every event reaches the receiver, each
delivery ends DELIVERED, and an event is received twice only if it was in flight when the
process died (at most a round's claims).
"""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col

from core.db import create_engine, create_session_factory, unit_of_work
from core.webhooks_out import BATCH_SIZE
from models import WebhookDelivery
from resolvers.events import record_event
from tests.conftest import fast_settings, fresh_database
from tests.events.receiver import Receiver, running_receiver
from tests.events.test_triggers import subscribe
from tests.faults.test_sigkill import Server, _free_port, _wait_for_backends_gone

pytestmark = pytest.mark.slow

EVENTS = 200
ROOT = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 2


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        yield url


class EventServer(Server):
    """`kabinet serve` whose deliverer polls often and whose leases are short (so that the
    killed process's claims are sent again within the test)."""

    def env(self) -> dict[str, str]:
        env = super().env()
        env["KABINET_EVENTS_POLL_SECONDS"] = "0.1"
        env["KABINET_EVENTS_LEASE_SECONDS"] = str(LEASE_SECONDS)
        # this checkout's code, whichever checkout the virtualenv's `kabinet` script was
        # installed from
        env["PYTHONPATH"] = str(ROOT)
        return env

    def spawn(self) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kabinet.cli",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                env=self.env(),
                cwd=self.log_path.parent,
                stdout=log,
                stderr=subprocess.STDOUT,
            )


async def _wait_until(condition: Any, seconds: float, what: str, server: Server) -> None:
    """Until `condition()` (a bool, or an awaitable of one) holds."""
    deadline = time.monotonic() + seconds
    while not await _holds(condition):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {seconds} s:\n{server.tail()}")
        await asyncio.sleep(0.05)


async def test_sigkill_while_delivering_events_loses_none(
    database_url: str, tmp_path: Path
) -> None:
    settings = fast_settings(database_url)
    engine = create_engine(settings)
    session_factory = create_session_factory(engine)
    server = EventServer(database_url, _free_port(), tmp_path / "kabinet-serve.log")
    receiver: Receiver
    with running_receiver() as receiver:
        try:
            # given: 200 committed events and a slow receiver
            await subscribe(session_factory, settings, receiver, ["contract.suspended"])
            async with unit_of_work(session_factory) as session:
                for n in range(EVENTS):
                    await record_event(
                        session, "contract.suspended", contract_number=f"77{n:06d}", data={"n": n}
                    )
            receiver.mode = "hang"
            receiver.hang_seconds = 0.05

            # when: serve delivers; SIGKILL once the receiver has a third of them
            await server.start()
            await _wait_until(
                lambda: len(receiver.events()) >= EVENTS // 3, 120, "a third delivered", server
            )
            server.kill()
            before_restart = {r.event_id for r in receiver.events()}
            assert len(before_restart) < EVENTS, "the kill did not land mid-delivery"
            await engine.dispose()
            await _wait_for_backends_gone(database_url)

            # then: restarted, every event reaches the receiver
            await server.start()
            await _wait_until(
                lambda: len({r.event_id for r in receiver.events()}) == EVENTS,
                120,
                "every event delivered after the restart",
                server,
            )
            await _wait_until(lambda: _all_delivered(database_url), 60, "recorded", server)
        finally:
            server.stop()
            await engine.dispose()
    got = receiver.events()
    assert all(r.signed for r in got)
    repeats = [event for event, count in Counter(r.event_id for r in got).items() if count > 1]
    assert len(repeats) <= BATCH_SIZE, repeats  # only what was in flight at the kill
    async with create_session_factory(engine)() as session:
        statuses = Counter((await session.scalars(sa.select(col(WebhookDelivery.status)))).all())
    await engine.dispose()
    assert statuses == {"DELIVERED": EVENTS}


async def _holds(condition: Any) -> bool:
    result = condition()
    if inspect.isawaitable(result):
        result = await result
    return bool(result)


async def _all_delivered(url: str) -> bool:
    engine = create_engine(url)
    try:
        async with create_session_factory(engine)() as session:
            pending = await session.scalar(
                sa.select(sa.func.count())
                .select_from(WebhookDelivery)
                .where(col(WebhookDelivery.status) != "DELIVERED")
            )
            total = await session.scalar(sa.select(sa.func.count(col(WebhookDelivery.id))))
        return pending == 0 and total == EVENTS
    finally:
        await engine.dispose()
