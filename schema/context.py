"""The typed per-request context: request, settings, database access, loaders, principal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import Request
from strawberry.types import Info as StrawberryInfo

from kabinet.db import RequestReader
from kabinet.settings import Settings
from resolvers import catalog
from resolvers.loaders import BatchLoader


@dataclass(slots=True)
class Principal:
    """Who is calling: a subscriber or a staff member (set by the auth layer)."""

    kind: str  # SUBSCRIBER | STAFF
    id: int
    session_id: int | None = None
    role: str | None = None  # staff role
    must_change_password: bool = False

    @property
    def is_staff(self) -> bool:
        return self.kind == "STAFF"


class Loaders:
    """Per-request batch loaders, made on first use."""

    __slots__ = ("_catalog_item", "_channels_by_package", "_reader")

    def __init__(self, reader: RequestReader) -> None:
        self._reader = reader
        self._channels_by_package: BatchLoader[int, list[Any]] | None = None
        self._catalog_item: BatchLoader[tuple[str, int], Any] | None = None

    @property
    def catalog_item(self) -> BatchLoader[tuple[str, int], Any]:
        """Catalogue rows by ("Type", pk): one statement per type asked for."""
        if self._catalog_item is None:
            reader = self._reader

            async def batch(keys: Any) -> dict[tuple[str, int], Any]:
                by_type: dict[str, list[int]] = {}
                for type_name, pk in keys:
                    by_type.setdefault(type_name, []).append(pk)
                found: dict[tuple[str, int], Any] = {}
                for type_name, pks in by_type.items():
                    rows = await catalog.catalog_items_by_id(reader, type_name, pks)
                    found.update(((type_name, pk), row) for pk, row in rows.items())
                return found

            self._catalog_item = BatchLoader(batch, default=None)
        return self._catalog_item

    @property
    def channels_by_package(self) -> BatchLoader[int, list[Any]]:
        if self._channels_by_package is None:
            reader = self._reader

            async def batch(ids: Any) -> dict[int, list[Any]]:
                return await catalog.channels_by_package(reader, ids)

            self._channels_by_package = BatchLoader(batch, default=[])
        return self._channels_by_package


@dataclass(slots=True)
class Context:
    request: Request | None
    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    reader: RequestReader
    loaders: Loaders
    principal: Principal | None = None
    client_address: str | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_cookies: list[dict[str, Any]] = field(default_factory=list)


Info = StrawberryInfo[Context, None]
