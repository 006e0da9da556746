"""argon2id password hashing, off the event loop, bounded in concurrency, at a lower CPU
priority.

Hashes run on a small pool of threads of their own (`argon2_max_concurrent` per process;
argon2 releases the GIL). On Linux each of those threads lowers its own scheduling priority
by `argon2_nice`, so that under a burst of sign-ins the CPU goes to the requests that read
first and the hashes take what is left: one sign-in costs ~30 ms of CPU here, and 20 a
second would otherwise take a third of a two-core machine away from every other request
(bench: the login storm). A sign-in still completes; it only waits longer on a saturated
machine. `argon2_nice = 0` keeps the threads at the process's priority.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from auth.password_policy import normalize_password
from core.settings import Settings

T = TypeVar("T")


def lower_thread_priority(nice: int) -> None:
    """Raise this thread's niceness by `nice` (Linux schedules threads one by one; where
    per-thread priorities do not exist, nothing changes)."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    thread = threading.get_native_id()
    with contextlib.suppress(OSError):
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, current + nice))


class Passwords:
    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )
        # The bound on concurrent hashes is the pool's size: requests beyond it queue.
        self._executor = ThreadPoolExecutor(
            max_workers=settings.argon2_max_concurrent,
            thread_name_prefix="kabinet-argon2",
            initializer=lower_thread_priority,
            initargs=(settings.argon2_nice,),
        )
        # An unknown identifier is verified against this, so that timing does not tell.
        self._dummy_hash = self._hasher.hash("kabinet-dummy-password-for-timing")

    async def _off_loop(self, work: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)

    def hash_sync(self, password: str) -> str:
        return self._hasher.hash(normalize_password(password))

    async def hash(self, password: str) -> str:
        return await self._off_loop(self.hash_sync, password)

    def _verify(self, password_hash: str | None, password: str) -> bool:
        try:
            matched = self._hasher.verify(
                password_hash or self._dummy_hash, normalize_password(password)
            )
            return matched and (password_hash is not None)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether `password` matches; with `password_hash=None` the dummy hash is checked
        (same cost) and the answer is False."""
        return await self._off_loop(self._verify, password_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)


@lru_cache(maxsize=8)
def _passwords(
    memory_kib: int, time_cost: int, parallelism: int, concurrent: int, nice: int
) -> Passwords:
    return Passwords(
        Settings(
            argon2_memory_kib=memory_kib,
            argon2_time_cost=time_cost,
            argon2_parallelism=parallelism,
            argon2_max_concurrent=concurrent,
            argon2_nice=nice,
        )
    )


def passwords_for(settings: Settings) -> Passwords:
    """One hasher (and its threads) per parameter set; making one hashes the dummy password
    once."""
    return _passwords(
        settings.argon2_memory_kib,
        settings.argon2_time_cost,
        settings.argon2_parallelism,
        settings.argon2_max_concurrent,
        settings.argon2_nice,
    )
