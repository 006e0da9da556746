"""argon2id password hashing, off the event loop and bounded in concurrency."""

from __future__ import annotations

import asyncio
import weakref
from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from auth.password_policy import normalize_password
from kabinet.settings import Settings


class Passwords:
    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )
        self._max_concurrent = settings.argon2_max_concurrent
        self._slots_by_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, asyncio.Semaphore
        ] = weakref.WeakKeyDictionary()
        # An unknown identifier is verified against this, so that timing does not tell.
        self._dummy_hash = self._hasher.hash("kabinet-dummy-password-for-timing")

    @property
    def _slots(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        slots = self._slots_by_loop.get(loop)
        if slots is None:
            slots = self._slots_by_loop[loop] = asyncio.Semaphore(self._max_concurrent)
        return slots

    def hash_sync(self, password: str) -> str:
        return self._hasher.hash(normalize_password(password))

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self.hash_sync, password)

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
        async with self._slots:
            return await asyncio.to_thread(self._verify, password_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)


@lru_cache(maxsize=8)
def _passwords(memory_kib: int, time_cost: int, parallelism: int, concurrent: int) -> Passwords:
    return Passwords(
        Settings(
            argon2_memory_kib=memory_kib,
            argon2_time_cost=time_cost,
            argon2_parallelism=parallelism,
            argon2_max_concurrent=concurrent,
        )
    )


def passwords_for(settings: Settings) -> Passwords:
    """One hasher per parameter set (making one hashes the dummy password once)."""
    return _passwords(
        settings.argon2_memory_kib,
        settings.argon2_time_cost,
        settings.argon2_parallelism,
        settings.argon2_max_concurrent,
    )
