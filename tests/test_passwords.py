"""Password hashing off the event loop: bounded, at a lower priority, and still correct."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time

import pytest

from auth.passwords import Passwords
from core.settings import Settings

FAST = {"argon2_memory_kib": 64, "argon2_time_cost": 1}
PASSWORD = "correct horse battery staple again"


def _own_niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


async def _niceness_in_pool(passwords: Passwords) -> int:
    return await passwords._off_loop(_own_niceness)


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread priorities are Linux's")
async def test_hashing_threads_run_at_the_configured_lower_priority() -> None:
    # given
    base = _own_niceness()
    niced = Passwords(Settings(**FAST, argon2_nice=7))
    plain = Passwords(Settings(**FAST, argon2_nice=0))

    # when
    in_niced_pool = await _niceness_in_pool(niced)
    in_plain_pool = await _niceness_in_pool(plain)

    # then: only the hashing threads moved; the event loop's thread kept its priority
    assert in_niced_pool == min(19, base + 7)
    assert in_plain_pool == base
    assert _own_niceness() == base


async def test_hashes_verify_and_the_pool_bounds_how_many_run_at_once() -> None:
    # given
    passwords = Passwords(Settings(**FAST, argon2_max_concurrent=2))
    stored = await passwords.hash(PASSWORD)
    running = 0
    most = 0
    lock = threading.Lock()

    def slow_work() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1

    # when
    await asyncio.gather(*(passwords._off_loop(slow_work) for _ in range(6)))

    # then
    assert most == 2
    assert await passwords.verify(stored, PASSWORD)
    assert not await passwords.verify(stored, PASSWORD + "!")
    assert not await passwords.verify(None, PASSWORD)  # the dummy hash: same cost, never a match
