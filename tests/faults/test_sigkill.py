"""Faults: the server is killed with SIGKILL during 200 concurrent webhook confirmations
(issue 7, item 3). On PostgreSQL (production), and on SQLite too (the embedded default of
`make serve`, WAL with synchronous=NORMAL, whose commits must survive a killed process).

The real `kabinet serve` runs as a subprocess on a fresh, migrated PostgreSQL database with
one subscriber and 200 PENDING top-ups. 200 signed confirmations (distinct payments, one
contract) are fired at once; when about half have been answered the process is killed with
SIGKILL, mid-flight. Then it is restarted and the provider's retries are replayed for all
200 (acknowledged ones too: providers send duplicates) until each has seen a 200.

Asserted, before and after the replay: every acknowledged payment is SUCCEEDED and credited
exactly once (one TOP_UP row per payment reference); no payment is SUCCEEDED without its
ledger row, event, receipt and letter; `balance == Σ ledger` for every contract; and in the
end the balance is the sum of the 200 amounts and the TOP_UP rows' running balances chain.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from core.db import create_engine, create_session_factory
from core.payment_providers import sign
from core.settings import Settings
from models import Contract, LedgerEntry, OutboxMessage, Payment, PaymentEvent, Receipt
from resolvers import ledger
from tests.conftest import (
    PG_ADMIN_URL,
    fast_settings,
    fresh_database,
)
from tests.factories import make_subscriber
from tests.money.test_payments import event_body, top_up

pytestmark = pytest.mark.slow

PAYMENTS = 200
SECRET = "fault-test-webhook-secret-" + "x" * 20
KABINET = Path(sys.executable).with_name("kabinet")
REPLAY_ROUNDS = 20


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database, migrated, with the catalogue."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """`kabinet serve` in a subprocess, as production starts it."""

    def __init__(self, url: str, port: int, log_path: Path) -> None:
        self.url = url
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KABINET_")}
        env.update(
            {
                "KABINET_DATABASE_URL": self.url,
                "KABINET_ENV": "development",
                "KABINET_WEBHOOK_SECRET": SECRET,
                "KABINET_ARGON2_MEMORY_KIB": "64",
                "KABINET_ARGON2_TIME_COST": "1",
                "KABINET_PUBLIC_URL": self.base,
                "KABINET_LOG_LEVEL": "WARNING",
                "KABINET_OUTBOX_POLL_SECONDS": "3600",  # the letters are not under test here
            }
        )
        return env

    def spawn(self) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                [str(KABINET), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env(),
                cwd=self.log_path.parent,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def start(self) -> None:
        self.process = self.spawn()
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(base_url=self.base, timeout=5) as http:
            while True:
                if self.process.poll() is not None:
                    pytest.fail(
                        f"kabinet serve exited with {self.process.returncode}:\n{self.tail()}"
                    )
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"kabinet serve did not get ready:\n{self.tail()}")
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        assert self.process.returncode == -signal.SIGKILL

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)

    def tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


async def _deliver(http: httpx.AsyncClient, settings: Settings, body: bytes) -> str:
    """ "200 applied", "200 already-applied", another status code, or the transport error's
    name when no answer came."""
    headers = {"Content-Type": "application/json", "X-Signature": sign(settings, body)}
    try:
        response = await http.post("/webhooks/payments", content=body, headers=headers)
    except httpx.TransportError as error:
        return type(error).__name__
    if response.status_code == 200:
        return f"200 {response.json()['status']}"
    return str(response.status_code)


def _ok(code: str) -> bool:
    return code.startswith("200 ")


async def _wait_for_backends_gone(url: str, seconds: float = 30) -> None:
    if url.startswith("sqlite"):
        return  # no server: the next connection recovers the WAL
    """Until PostgreSQL has noticed the killed process's connections (and rolled back
    whatever they had open): no client is connected to the database any more (the test's
    own pool is disposed before)."""
    database = url.rsplit("/", 1)[1]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        deadline = time.monotonic() + seconds
        async with admin.connect() as conn:
            while True:
                left = await conn.scalar(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = :db AND backend_type = 'client backend'"
                    ),
                    {"db": database},
                )
                if not left:
                    return
                if time.monotonic() > deadline:
                    pytest.fail(f"{left} backends of the killed server are still there")
                await asyncio.sleep(0.1)
    finally:
        await admin.dispose()


async def _check_state(
    session_factory: Any, acknowledged: set[int], amounts: dict[int, Decimal]
) -> dict[str, int]:
    """The invariants that must hold at any moment, killed or not."""
    async with session_factory() as session:
        payments = {
            row.id: row.status
            for row in (await session.execute(sa.select(Payment.id, Payment.status))).all()
        }
        top_ups = (
            await session.execute(
                sa.select(LedgerEntry.reference, LedgerEntry.amount).where(
                    LedgerEntry.kind == "TOP_UP"
                )
            )
        ).all()
        receipts = set((await session.scalars(sa.select(Receipt.payment_id))).all())
        events = (
            await session.execute(sa.select(PaymentEvent.payment_id, PaymentEvent.status))
        ).all()
        letters = await session.scalar(
            sa.select(sa.func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.kind == "RECEIPT")
        )
        mismatches = await ledger.verify(session)
    assert mismatches == [], mismatches
    references = [reference for reference, _ in top_ups]
    assert len(references) == len(set(references)), "a payment was credited twice"
    credited = {int(reference.removeprefix("payment:")) for reference in references}
    for reference, amount in top_ups:
        assert Decimal(amount) == amounts[int(reference.removeprefix("payment:"))]
    succeeded = {pid for pid, status in payments.items() if status == "SUCCEEDED"}
    assert {status for status in payments.values()} <= {"PENDING", "SUCCEEDED"}
    # acknowledged ⇒ committed; and SUCCEEDED ⇔ credited, with its receipt, event and letter
    assert acknowledged <= succeeded, sorted(acknowledged - succeeded)
    assert succeeded == credited, (sorted(succeeded - credited), sorted(credited - succeeded))
    assert receipts == succeeded
    assert sorted(pid for pid, _ in events) == sorted(succeeded)
    assert letters == len(succeeded)
    return {"succeeded": len(succeeded), "pending": len(payments) - len(succeeded)}


@pytest.mark.parametrize("kill_at", [0.3, 0.5, 0.7])
async def test_sigkill_during_200_confirmations_then_replay_credits_each_once(
    database_url: str, tmp_path: Path, kill_at: float
) -> None:
    settings = fast_settings(database_url, webhook_secret=SECRET)
    engine = create_engine(settings)
    session_factory = create_session_factory(engine)
    server = Server(database_url, _free_port(), tmp_path / "kabinet-serve.log")
    kill_after = int(PAYMENTS * kill_at)
    timings: dict[str, float] = {}
    try:
        # given: one subscriber and 200 pending top-ups of distinct amounts
        made = await make_subscriber(session_factory, settings)
        contract_id = made.contract_ids[0]
        amounts: dict[int, Decimal] = {}
        for n in range(PAYMENTS):
            amount = Decimal("10.01") + Decimal(n) * Decimal("3.37")
            payment = await top_up(
                session_factory, settings, contract_id=contract_id, amount=amount
            )
            amounts[payment.id] = amount
        bodies = {pid: event_body(pid, "SUCCEEDED", f"prov-kill-{pid}") for pid in amounts}
        await server.start()

        # when: 200 concurrent confirmations; SIGKILL once `kill_after` have been answered
        answered = 0
        enough = asyncio.Event()
        first: dict[int, str] = {}
        limits = httpx.Limits(max_connections=PAYMENTS * 2, max_keepalive_connections=0)

        async def confirm(http: httpx.AsyncClient, pid: int) -> None:
            nonlocal answered
            first[pid] = await _deliver(http, settings, bodies[pid])
            if first[pid][0].isdigit():
                answered += 1
                if answered >= kill_after:
                    enough.set()

        started = time.monotonic()
        async with httpx.AsyncClient(base_url=server.base, timeout=60, limits=limits) as http:
            flight = asyncio.gather(*(confirm(http, pid) for pid in amounts))
            try:
                await asyncio.wait_for(enough.wait(), 120)
            except TimeoutError:
                pytest.fail(f"not {kill_after} answers in 120 s:\n{server.tail()}")
            server.kill()
            timings["killed_after"] = time.monotonic() - started
            await asyncio.wait_for(flight, 120)
        acknowledged = {pid for pid, code in first.items() if _ok(code)}
        unanswered = {pid for pid, code in first.items() if not code[0].isdigit()}
        refused = {pid: code for pid, code in first.items() if code[0].isdigit() and not _ok(code)}
        assert refused == {}, f"answers other than 200 before the kill: {refused}"
        assert {first[pid] for pid in acknowledged} == {"200 applied"}
        assert kill_after <= len(acknowledged) < PAYMENTS, "the kill did not land mid-flight"
        assert unanswered, "every request was answered before the kill"

        # then, before any retry: what was acknowledged was committed, nothing half-done
        await engine.dispose()
        await _wait_for_backends_gone(database_url)
        after_kill = await _check_state(session_factory, acknowledged, amounts)

        # when: restarted, the provider retries every event until it sees a 200 (the
        # acknowledged ones too: a provider sends duplicates)
        await server.start()
        replay_started = time.monotonic()
        waiting = set(amounts)
        replies: dict[int, list[str]] = {pid: [] for pid in amounts}
        async with httpx.AsyncClient(base_url=server.base, timeout=60, limits=limits) as http:
            for _ in range(REPLAY_ROUNDS):
                batch = sorted(waiting)
                codes = await asyncio.gather(
                    *(_deliver(http, settings, bodies[pid]) for pid in batch)
                )
                for pid, code in zip(batch, codes, strict=True):
                    replies[pid].append(code)
                waiting = {pid for pid, code in zip(batch, codes, strict=True) if not _ok(code)}
                if not waiting:
                    break
                await asyncio.sleep(0.5)
        timings["replay"] = time.monotonic() - replay_started
        assert not waiting, f"never acknowledged: {sorted(waiting)}; {replies}"

        # then: every payment credited exactly once, and the balance is their sum
        final = await _check_state(session_factory, set(amounts), amounts)
        assert final == {"succeeded": PAYMENTS, "pending": 0}
        applied = [pid for pid, codes in replies.items() if "200 applied" in codes]
        assert len(applied) == after_kill["pending"]  # each event applied once in all
        assert not set(applied) & acknowledged
        async with session_factory() as session:
            balance = await session.scalar(
                sa.select(Contract.balance).where(Contract.id == contract_id)
            )
            chain = (
                await session.execute(
                    sa.select(LedgerEntry.amount, LedgerEntry.balance_after)
                    .where(LedgerEntry.contract_id == contract_id)
                    .order_by(LedgerEntry.id)  # type: ignore[arg-type]
                )
            ).all()
        assert Decimal(balance) == sum(amounts.values())
        running = Decimal("0.00")
        for amount, balance_after in chain:
            running += Decimal(amount)
            assert Decimal(balance_after) == running  # no lost or interleaved update
        timings["total"] = time.monotonic() - started
        tallies = [
            {
                code: sum(1 for c in replies.values() if len(c) > n and c[n] == code)
                for code in {c[n] for c in replies.values() if len(c) > n}
            }
            for n in range(max(len(c) for c in replies.values()))
        ]
        print(
            f"\nsigkill at {kill_at:.0%}: {len(acknowledged)} acknowledged, "
            f"{len(unanswered)} unanswered; committed at the kill {after_kill}; "
            f"replay rounds {tallies}; timings {timings}"
        )
    finally:
        server.stop()
        await engine.dispose()
