"""Rate limits kept in the database (SPEC §3) and the client address behind proxies."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth import ratelimit
from auth.client_address import UNKNOWN_ADDRESS, TrustedProxies, client_address
from auth.ratelimit import Limit, limits_for
from core.db import begin_write, create_engine, create_session_factory
from core.settings import Settings
from models.access import RateLimitCounter

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
EMAIL = "ivan.petrov@example.ru"

SessionFactory = async_sessionmaker[AsyncSession]
COUNTERS: sa.Table = RateLimitCounter.__table__  # type: ignore[attr-defined]


async def record_failure(factory: SessionFactory, limit: Limit, key: str, now: datetime) -> int:
    """What a failed login does: its own writing transaction, committed although it failed."""
    async with factory() as session:
        await begin_write(session)
        count = await ratelimit.hit(session, limit, key, now=now)
        await session.commit()
        return count


async def check(factory: SessionFactory, limit: Limit, key: str, now: datetime) -> int | None:
    async with factory() as session:
        return await ratelimit.check(session, limit, key, now=now)


async def stored_counters(factory: SessionFactory) -> dict[str, tuple[int, datetime, datetime]]:
    async with factory() as session:
        rows = (await session.execute(sa.select(COUNTERS))).all()
    return {row.bucket: (row.hits, row.window_started_at, row.expires_at) for row in rows}


def bucket(limit: Limit, key: str) -> str:
    return f"{limit.name}:{hashlib.sha256(key.encode()).hexdigest()}"


# -- the limits --------------------------------------------------------------------------


def test_limits_take_their_numbers_from_settings() -> None:
    # given
    settings = Settings.model_validate(  # defaults and these, never the environment
        {
            "login_max_failures_per_identifier": 3,
            "login_max_failures_per_address": 7,
            "login_window_seconds": 60,
            "registration_max_failures": 2,
            "registration_lock_seconds": 120,
            "recovery_code_attempts": 4,
            "recovery_code_seconds": 300,
            "support_requests_per_address_per_hour": 9,
        }
    )

    # when
    limits = limits_for(settings)

    # then
    assert limits.login_identifier == Limit("login-identifier", 3, 60)
    assert limits.login_address == Limit("login-address", 7, 60)
    assert limits.registration_contract == Limit("registration-contract", 2, 120, 120)
    assert limits.code_check == Limit("code-check", 4, 300, 300)
    assert limits.support_request_address == Limit("support-request-address", 9, 3600)
    assert limits.recovery_identifier == Limit("recovery-identifier", 5, 3600)
    assert limits.recovery_address == Limit("recovery-address", 20, 3600)


def test_spec_defaults() -> None:
    limits = limits_for(Settings.model_validate({}))

    assert (limits.login_identifier.max_hits, limits.login_identifier.window_seconds) == (10, 900)
    assert (limits.login_address.max_hits, limits.login_address.window_seconds) == (50, 900)
    assert (limits.registration_contract.max_hits, limits.registration_contract.window_seconds) == (
        5,
        3600,
    )


def test_a_limit_name_must_leave_room_for_the_key() -> None:
    with pytest.raises(ValueError):
        Limit("x" * 150, 1, 1)
    with pytest.raises(ValueError):
        Limit("a:b", 1, 1)


# -- counting ----------------------------------------------------------------------------


async def test_ten_failures_pass_and_the_eleventh_attempt_is_refused(
    settings: Settings, session_factory: SessionFactory
) -> None:
    # given
    limit = limits_for(settings).login_identifier

    # when
    counts = []
    for attempt in range(10):
        now = T0 + timedelta(seconds=attempt * 10)
        assert await check(session_factory, limit, EMAIL, now) is None
        counts.append(await record_failure(session_factory, limit, EMAIL, now))
    retry_after = await check(session_factory, limit, EMAIL, T0 + timedelta(seconds=100))

    # then
    assert counts == list(range(1, 11))
    assert retry_after is not None and 0 < retry_after <= limit.window_seconds
    assert retry_after == 900 - 100  # the window started with the first failure
    stored = await stored_counters(session_factory)
    assert stored == {bucket(limit, EMAIL): (10, T0, T0 + timedelta(seconds=limit.window_seconds))}
    assert not any(EMAIL in name for name in stored)  # identifiers are not kept in clear


async def test_retry_after_is_at_least_one_second(
    settings: Settings, session_factory: SessionFactory
) -> None:
    # given
    limit = Limit("tiny", 1, 60)
    await record_failure(session_factory, limit, EMAIL, T0)

    # when
    retry_after = await check(session_factory, limit, EMAIL, T0 + timedelta(seconds=59.8))

    # then
    assert retry_after == 1


async def test_the_window_expiring_lets_the_key_through_and_starts_a_new_window(
    settings: Settings, session_factory: SessionFactory
) -> None:
    # given
    limit = limits_for(settings).login_identifier
    for _ in range(10):
        await record_failure(session_factory, limit, EMAIL, T0)
    end = T0 + timedelta(seconds=limit.window_seconds)
    assert await check(session_factory, limit, EMAIL, end - timedelta(seconds=1)) == 1

    # when
    allowed = await check(session_factory, limit, EMAIL, end)
    count = await record_failure(session_factory, limit, EMAIL, end)

    # then
    assert allowed is None
    assert count == 1
    assert await stored_counters(session_factory) == {
        bucket(limit, EMAIL): (1, end, end + timedelta(seconds=limit.window_seconds))
    }


async def test_a_success_resets_the_count(
    settings: Settings, session_factory: SessionFactory
) -> None:
    # given
    limit = limits_for(settings).login_identifier
    for _ in range(10):
        await record_failure(session_factory, limit, EMAIL, T0)

    # when
    async with session_factory() as session:
        await begin_write(session)
        await ratelimit.reset(session, limit, EMAIL)
        await session.commit()

    # then
    assert await check(session_factory, limit, EMAIL, T0) is None
    assert await stored_counters(session_factory) == {}


async def test_nothing_is_kept_until_the_caller_commits(
    settings: Settings, session_factory: SessionFactory
) -> None:
    # given
    limit = limits_for(settings).login_identifier

    # when
    async with session_factory() as session:
        assert await ratelimit.hit(session, limit, EMAIL, now=T0) == 1  # begins the writer
        await session.rollback()

    # then
    assert await stored_counters(session_factory) == {}


async def test_keys_and_limits_are_independent(
    settings: Settings, session_factory: SessionFactory
) -> None:
    # given
    limits = limits_for(settings)
    for _ in range(10):
        await record_failure(session_factory, limits.login_identifier, EMAIL, T0)

    # when
    other_key = await check(session_factory, limits.login_identifier, "other@example.ru", T0)
    other_limit = await check(session_factory, limits.recovery_identifier, EMAIL, T0)
    count = await record_failure(session_factory, limits.login_address, "198.51.100.7", T0)

    # then
    assert other_key is None
    assert other_limit is None
    assert count == 1
    assert await check(session_factory, limits.login_identifier, EMAIL, T0) is not None
    stored = await stored_counters(session_factory)
    assert {name: hits for name, (hits, _, _) in stored.items()} == {
        bucket(limits.login_identifier, EMAIL): 10,
        bucket(limits.login_address, "198.51.100.7"): 1,
    }


async def test_the_address_limit_refuses_from_the_51st_attempt(
    settings: Settings, session_factory: SessionFactory
) -> None:
    # given: 50 failures from one address, each for a different identifier
    limits = limits_for(settings)
    address = "203.0.113.9"
    for n in range(50):
        assert await check(session_factory, limits.login_address, address, T0) is None
        await record_failure(session_factory, limits.login_identifier, f"user{n}", T0)
        await record_failure(session_factory, limits.login_address, address, T0)

    # when
    retry_after = await check(session_factory, limits.login_address, address, T0)

    # then
    assert retry_after == 900
    assert (await stored_counters(session_factory))[bucket(limits.login_address, address)][0] == 50


async def test_registration_locks_for_the_full_hour_after_the_fifth_failure(
    settings: Settings, session_factory: SessionFactory
) -> None:
    # given: four failures, then the fifth 50 minutes into the window
    limit = limits_for(settings).registration_contract
    contract = "770012345678"
    for _ in range(4):
        await record_failure(session_factory, limit, contract, T0)
    fifth = T0 + timedelta(minutes=50)
    assert await check(session_factory, limit, contract, fifth) is None

    # when
    await record_failure(session_factory, limit, contract, fifth)

    # then: locked for an hour from the fifth failure, not just to the end of the window
    locked_until = fifth + timedelta(hours=1)
    assert await stored_counters(session_factory) == {
        bucket(limit, contract): (5, T0, locked_until)
    }
    assert await check(session_factory, limit, contract, T0 + timedelta(minutes=61)) == 49 * 60
    assert await check(session_factory, limit, contract, locked_until) is None


async def test_purge_expired_deletes_only_finished_windows(
    settings: Settings, session_factory: SessionFactory
) -> None:
    # given
    limit = limits_for(settings).login_identifier
    await record_failure(session_factory, limit, "old", T0)
    await record_failure(session_factory, limit, "new", T0 + timedelta(minutes=10))

    # when
    async with session_factory() as session:
        await begin_write(session)
        purged = await ratelimit.purge_expired(session, now=T0 + timedelta(minutes=15))
        await session.commit()

    # then
    assert purged == 1
    assert list(await stored_counters(session_factory)) == [bucket(limit, "new")]


# -- several app processes, concurrency -----------------------------------------------------


async def test_two_app_processes_share_the_counts(
    settings: Settings, session_factory: SessionFactory
) -> None:
    # given: a second engine on the same database, as a second app process would have
    limit = limits_for(settings).login_identifier
    other_engine = create_engine(settings)
    other_factory = create_session_factory(other_engine)
    try:
        # when: failures alternate between the two processes
        counts = []
        for attempt in range(10):
            factory = session_factory if attempt % 2 else other_factory
            counts.append(await record_failure(factory, limit, EMAIL, T0))

        # then: both processes refuse the 11th attempt
        assert counts == list(range(1, 11))
        assert await check(session_factory, limit, EMAIL, T0) == 900
        assert await check(other_factory, limit, EMAIL, T0) == 900
        async with other_factory() as session:
            await begin_write(session)
            await ratelimit.reset(session, limit, EMAIL)
            await session.commit()
        assert await check(session_factory, limit, EMAIL, T0) is None
    finally:
        await other_engine.dispose()


async def test_concurrent_hits_are_each_counted_once(
    settings: Settings, session_factory: SessionFactory, backend: str
) -> None:
    # given: a key with no counter yet, so that the first inserts race each other
    limit = Limit("race", 1000, 900)
    other_engine = create_engine(settings)
    other_factory = create_session_factory(other_engine)

    # when: 50 hits at once, each in its own session and transaction, over two engines
    try:
        counts = await asyncio.gather(
            *(
                record_failure(session_factory if n % 2 else other_factory, limit, EMAIL, T0)
                for n in range(50)
            )
        )
    finally:
        await other_engine.dispose()

    # then
    assert sorted(counts) == list(range(1, 51))
    assert await stored_counters(session_factory) == {
        bucket(limit, EMAIL): (50, T0, T0 + timedelta(seconds=900))
    }


# -- the client address ------------------------------------------------------------------

PROXIES = ["10.0.0.1", "172.16.0.0/12", "2001:db8:feed::/48"]


def scope(peer: str | None, *forwarded_for: str) -> dict[str, Any]:
    return {
        "type": "http",
        "client": (peer, 51000) if peer is not None else None,
        "headers": [(b"x-forwarded-for", value.encode("latin-1")) for value in forwarded_for],
    }


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        pytest.param("198.51.100.7", (), "198.51.100.7", id="no-proxy"),
        pytest.param("198.51.100.7", ("203.0.113.1",), "198.51.100.7", id="untrusted-peer"),
        pytest.param("10.0.0.1", ("203.0.113.1",), "203.0.113.1", id="trusted-ip"),
        pytest.param("172.20.3.4", ("203.0.113.1",), "203.0.113.1", id="trusted-cidr"),
        pytest.param("10.0.0.2", ("203.0.113.1",), "10.0.0.2", id="outside-trusted-ip"),
        pytest.param(
            "10.0.0.1", ("1.1.1.1, 8.8.8.8, 203.0.113.1",), "203.0.113.1", id="spoofed-left"
        ),
        pytest.param(
            "10.0.0.1", ("1.1.1.1, 203.0.113.1, 172.16.0.9",), "203.0.113.1", id="proxy-chain"
        ),
        pytest.param("10.0.0.1", ("1.1.1.1", "203.0.113.1"), "203.0.113.1", id="two-headers"),
        pytest.param("10.0.0.1", ("not-an-address",), "10.0.0.1", id="malformed-header"),
        pytest.param("10.0.0.1", ("",), "10.0.0.1", id="empty-header"),
        pytest.param(
            "10.0.0.1", ("203.0.113.1, garbage, 999.1.1.1",), "203.0.113.1", id="malformed-entries"
        ),
        pytest.param("10.0.0.1", ("172.16.0.5, 10.0.0.1",), "172.16.0.5", id="all-trusted"),
        pytest.param("2001:db8:feed::1", ("2001:DB8::0:42",), "2001:db8::42", id="ipv6-normalised"),
        pytest.param("2001:db8:beef::1", ("203.0.113.1",), "2001:db8:beef::1", id="ipv6-untrusted"),
        pytest.param("::ffff:10.0.0.1", ("203.0.113.1",), "203.0.113.1", id="ipv4-mapped-peer"),
        pytest.param("10.0.0.1", ("203.0.113.1:4711",), "203.0.113.1", id="ipv4-with-port"),
        pytest.param("10.0.0.1", ("[2001:db8::7]:443",), "2001:db8::7", id="ipv6-with-port"),
        pytest.param("10.0.0.1", ("[2001:db8::7]x",), "10.0.0.1", id="ipv6-bad-bracket"),
        pytest.param("testclient", ("203.0.113.1",), "testclient", id="non-ip-peer"),
        pytest.param(None, ("203.0.113.1",), UNKNOWN_ADDRESS, id="no-peer"),
    ],
)
def test_client_address(peer: str | None, headers: tuple[str, ...], expected: str) -> None:
    assert client_address(scope(peer, *headers), PROXIES) == expected
    assert client_address(scope(peer, *headers), TrustedProxies(PROXIES)) == expected


def test_no_trusted_proxies_means_the_header_is_never_read() -> None:
    assert client_address(scope("10.0.0.1", "203.0.113.1"), []) == "10.0.0.1"


def test_a_starlette_request_is_accepted() -> None:
    from starlette.requests import Request

    request = Request(scope("10.0.0.1", "198.51.100.2, 203.0.113.1"))

    assert client_address(request, PROXIES) == "203.0.113.1"


def test_a_malformed_trusted_proxy_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="not-a-network"):
        TrustedProxies(["10.0.0.0/8", "not-a-network"])
