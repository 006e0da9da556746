"""Where a subscription may send (SSRF, SPEC §9, docs/security.md): in production https only,
and no loopback, private, link-local or reserved address unless the host is allowlisted;
checked when subscribing and again at every send, which connects to the address checked."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from core.db import unit_of_work
from core.errors import DomainError
from core.webhooks_out import (
    UrlRefused,
    check_subscription_url,
    deliver_due,
    new_client,
    public_address,
)
from models import WebhookDelivery
from resolvers.events import record_event
from resolvers.webhook_subscriptions import create_subscription
from tests.conftest import production_settings
from tests.events.receiver import Receiver, docs_verify, receiver_app, running_receiver
from tests.events.test_triggers import subscribe
from tests.factories import make_staff

REFUSED_IN_PRODUCTION = [
    ("http://example.org/hook", "https://"),  # plain http
    ("https://127.0.0.1/hook", "127.0.0.1"),  # loopback
    ("https://127.8.9.10:8443/hook", "127.8.9.10"),
    ("https://[::1]/hook", "::1"),
    ("https://10.0.0.7/hook", "10.0.0.7"),  # private
    ("https://192.168.1.1/hook", "192.168.1.1"),
    ("https://172.16.5.4/hook", "172.16.5.4"),
    ("https://169.254.169.254/latest/meta-data", "169.254.169.254"),  # link-local (metadata)
    ("https://[fe80::1]/hook", "fe80::1"),
    ("https://100.64.0.1/hook", "100.64.0.1"),  # shared address space
    ("https://0.0.0.0/hook", "0.0.0.0"),  # noqa: S104 - an address refused, not bound
    ("https://[::ffff:127.0.0.1]/hook", "127.0.0.1"),  # loopback mapped into IPv6
    ("https://localhost/hook", "127.0.0.1"),  # a name that resolves to loopback
    ("https://user:secret@example.org/hook", "user name"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED_IN_PRODUCTION)
async def test_production_refuses_non_https_and_internal_addresses(
    settings: Any, url: str, reason: str
) -> None:
    production = production_settings(settings.database_url)
    # when / then
    with pytest.raises(UrlRefused) as refused:
        await check_subscription_url(url, production)
    assert reason in str(refused.value)


async def test_production_allows_public_addresses_and_allowlisted_hosts(settings: Any) -> None:
    production = production_settings(
        settings.database_url, webhook_allowed_hosts=["localhost", "10.0.0.7"]
    )
    # then: a public address literal (no DNS needed), and the allowlisted names
    assert await check_subscription_url("https://93.184.216.34/hook", production)
    assert await check_subscription_url("https://localhost:8443/hook", production)
    assert await check_subscription_url("https://10.0.0.7/hook", production)
    # but not plain http, even for an allowlisted host
    with pytest.raises(UrlRefused):
        await check_subscription_url("http://localhost/hook", production)
    # and development allows loopback over http (tests, `make serve`)
    assert await check_subscription_url("http://127.0.0.1:8000/hook", settings)


def test_public_address_rules() -> None:
    assert public_address("93.184.216.34") and public_address("2606:2800:220:1::1")
    for address in ("127.0.0.1", "10.1.1.1", "169.254.1.1", "::1", "fc00::1", "224.0.0.1"):
        assert not public_address(address), address


async def test_subscribing_in_production_to_an_internal_url_is_a_payload_error(
    session_factory: Any, settings: Any
) -> None:
    production = production_settings(settings.database_url)
    staff_id, _, _ = await make_staff(session_factory, settings)
    # when
    with pytest.raises(DomainError) as refused:
        async with unit_of_work(session_factory) as session:
            await create_subscription(
                session,
                settings=production,
                staff_id=staff_id,
                url="https://169.254.169.254/latest/meta-data",
                events=["contract.suspended"],
                description=None,
                client_address=None,
            )
    # then
    (problem,) = refused.value.problems
    assert problem.field == "url" and "169.254.169.254" in problem.message


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


async def test_the_address_is_checked_again_at_send_time(
    session_factory: Any, settings: Any, receiver: Receiver
) -> None:
    # given: a loopback subscription made in development, delivered by a production process
    await subscribe(session_factory, settings, receiver)
    async with unit_of_work(session_factory) as session:
        await record_event(session, "contract.suspended", contract_number="77", data={})
    production = production_settings(settings.database_url, webhook_allowed_hosts=["127.0.0.1"])
    # when: https is required even for the allowlisted host
    report = await deliver_due(session_factory, settings=production)
    # then: refused before any connection
    assert report.failed == 1 and receiver.events() == []
    async with session_factory() as session:
        (delivery,) = (await session.scalars(sa.select(WebhookDelivery))).all()
    assert delivery.last_error is not None and delivery.last_error.startswith("refused:")
    assert delivery.last_status_code is None and delivery.status == "PENDING"


# -- production over TLS: the connection goes to the address checked, under the name ------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return key, cert


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # pragma: no cover - not on the main thread
        pass


@pytest.fixture
def tls_receiver(certificate: tuple[Path, Path]) -> Iterator[Receiver]:
    key, cert = certificate
    receiver = Receiver()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        receiver_app(receiver, docs_verify()),
        lifespan="off",
        log_level="warning",
        ssl_keyfile=str(key),
        ssl_certfile=str(cert),
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    receiver.url = f"https://localhost:{port}/hook"
    try:
        yield receiver
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


async def test_production_delivers_over_https_to_the_checked_address_under_the_name(
    session_factory: Any, settings: Any, tls_receiver: Receiver, certificate: tuple[Path, Path]
) -> None:
    # given: an allowlisted name on loopback, over https with a certificate for the name
    production = production_settings(settings.database_url, webhook_allowed_hosts=["localhost"])
    staff_id, _, _ = await make_staff(session_factory, settings)
    async with unit_of_work(session_factory) as session:
        created = await create_subscription(
            session,
            settings=production,
            staff_id=staff_id,
            url=tls_receiver.url,
            events=["contract.suspended"],
            description=None,
            client_address=None,
        )
        await record_event(session, "contract.suspended", contract_number="77", data={})
    tls_receiver.secrets.append(created.signing_secret)
    trusted = ssl.create_default_context(cafile=str(certificate[1]))
    # when
    async with httpx.AsyncClient(
        verify=trusted, trust_env=False, timeout=10, follow_redirects=False
    ) as client:
        report = await deliver_due(session_factory, settings=production, client=client)
    # then: delivered, signed, with the name as Host (TLS verified the name's certificate
    # while the connection went to the address checked)
    assert report.delivered == 1, report
    (got,) = tls_receiver.events()
    assert got.signed and got.headers["host"] == tls_receiver.url.split("/")[2]

    # when: without the name allowlisted, the same delivery is refused at send time
    async with unit_of_work(session_factory) as session:
        await record_event(session, "contract.suspended", contract_number="78", data={})
    strict = production_settings(settings.database_url)
    async with httpx.AsyncClient(verify=trusted, trust_env=False) as client:
        report = await deliver_due(session_factory, settings=strict, client=client)
    assert report.failed == 1 and len(tls_receiver.events()) == 1


def test_the_default_client_follows_no_redirect_and_keeps_no_connection() -> None:
    client = new_client()
    try:
        assert client.follow_redirects is False
        assert client.timeout.read == 10.0
    finally:
        import asyncio

        asyncio.run(client.aclose())
