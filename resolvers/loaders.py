"""Batch loaders: every key asked for in one tick of the event loop becomes one query.

Loaders live on the request's context (created per request, never at module level), so a
field that many objects ask for costs one SQL statement per request whatever the list size.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

BatchFn = Callable[[Sequence[K]], Awaitable[dict[K, V]]]


class BatchLoader(Generic[K, V]):
    """A minimal DataLoader: `load(key)` returns the value the batch function found for it
    (or `default`); results are cached for the life of the loader (one request)."""

    __slots__ = ("_batch_fn", "_cache", "_default", "_dispatching", "_pending")

    def __init__(self, batch_fn: BatchFn[K, V], default: V) -> None:
        self._batch_fn = batch_fn
        self._default = default
        self._cache: dict[K, asyncio.Future[V]] = {}
        self._pending: list[K] | None = None
        self._dispatching: asyncio.Future[None] | None = None

    def load(self, key: K) -> asyncio.Future[V]:
        future = self._cache.get(key)
        if future is not None:
            return future
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._cache[key] = future
        if self._pending is None:
            # The batch starts on the loop's next round: it takes every key asked for
            # until then.
            self._pending = []
            self._dispatching = asyncio.ensure_future(self._dispatch())
        self._pending.append(key)
        return future

    async def _dispatch(self) -> None:
        keys, self._pending = self._pending or [], None
        try:
            found = await self._batch_fn(keys)
        except Exception as error:  # every waiter sees the failure, none hangs
            for key in keys:
                future = self._cache.pop(key)
                if not future.done():
                    future.set_exception(error)
            return
        for key in keys:
            future = self._cache[key]
            if not future.done():
                future.set_result(found.get(key, self._default))
