"""Test set-up: every database test runs on a real SQLite file and a real PostgreSQL server.

PostgreSQL: a database of our own is created on 127.0.0.1:5432 (user postgres, trust auth)
and dropped at the end. With no server there, PostgreSQL tests are skipped locally with a
clear message and fail in CI (the CI variable is set).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from core import migrate
from core.db import create_engine, create_session_factory
from core.settings import Settings
from kabinet.app import create_app
from kabinet.seed import seed_catalog_at

PG_ADMIN_URL = os.environ.get(
    "KABINET_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
# Tables the catalogue seed fills once per session; every other table is emptied per test.
CATALOG_TABLES = {
    "regions",
    "tariffs",
    "channels",
    "tv_packages",
    "tv_package_channels",
    "service_options",
    "bonus_rewards",
    "alembic_version",
}


def fast_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings for tests: fast argon2 parameters (never used outside tests)."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "argon2_memory_kib": 64,
        "argon2_time_cost": 1,
        "env": "development",
        "public_url": "http://testserver",
    }
    values.update(overrides)
    return Settings(**values)


# Fixed, random-looking values (secrets.token_urlsafe(32)) that pass the production check.
PRODUCTION_SECRET_KEY = "u6Xq2fN0bV8rLk3TzP9wYc1HdJ7sMe4GaQ5oRi-_ZnE"
PRODUCTION_WEBHOOK_SECRET = "Kp4Vt9Bx2Lm7Qw1Zr8Ns3Hc6Fy0Jd5Gu-_TaEoWiYlX"


def production_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings that pass the production check (random-looking secrets, SPEC argon2, an
    external payment provider, an https:// public URL)."""
    values: dict[str, Any] = {
        "env": "production",
        "secret_key": PRODUCTION_SECRET_KEY,
        "webhook_secret": PRODUCTION_WEBHOOK_SECRET,
        "public_url": "https://testserver",
        "argon2_memory_kib": 19456,
        "argon2_time_cost": 2,
        "payment_provider": "external",
        "payment_provider_url": "https://pay.example/checkout?payment={payment_id}",
    }
    values.update(overrides)
    return fast_settings(database_url, **values)


async def _pg_admin(statement: str) -> None:
    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text(statement))
    finally:
        await engine.dispose()


def _pg_available() -> str | None:
    try:
        asyncio.run(_pg_admin("SELECT 1"))
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


def create_pg_database() -> str:
    problem = _pg_available()
    if problem is not None:
        message = f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({problem})"
        if os.environ.get("CI"):
            pytest.fail(message + " - CI must test PostgreSQL", pytrace=False)
        pytest.skip(message + " - PostgreSQL tests skipped; start it to run them")
    name = f"kabinet_test_{secrets.token_hex(4)}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def create_sqlite_database(tmp_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_dir / 'kabinet-test.db'}"


@contextlib.contextmanager
def fresh_database(backend: str, tmp_dir: Path | None = None) -> Iterator[str]:
    """A new database of `backend` ("sqlite" in `tmp_dir`, or "postgresql"), migrated to
    head with the catalogue loaded; a PostgreSQL one is dropped afterwards."""
    if backend == "sqlite":
        assert tmp_dir is not None
        url = create_sqlite_database(tmp_dir)
    else:
        url = create_pg_database()
    try:
        migrate.upgrade(url)
        asyncio.run(seed_catalog_at(url))
        yield url
    finally:
        if backend == "postgresql":
            drop_pg_database(url)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def migrated_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database migrated to head with the catalogue loaded, one per backend per session."""
    with fresh_database(request.param, tmp_path_factory.mktemp("sqlite")) as url:
        yield url


async def _empty_non_catalog_tables(engine: AsyncEngine) -> None:
    from models import metadata

    tables = [t for t in metadata.sorted_tables if t.name not in CATALOG_TABLES]
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in tables)
            await conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(tables):
                await conn.execute(table.delete())


@pytest.fixture
def backend(migrated_url: str) -> str:
    return "sqlite" if migrated_url.startswith("sqlite") else "postgresql"


@pytest.fixture
def settings(migrated_url: str) -> Settings:
    return fast_settings(migrated_url)


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings)
    await _empty_non_catalog_tables(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def session_factory(engine: AsyncEngine) -> Any:
    return create_session_factory(engine)


@pytest.fixture
async def app(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Any]:
    application = create_app(settings)
    yield application
    await application.state.engine.dispose()


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def gql(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """POST a GraphQL document and assert there are no top-level errors; returns `data`."""
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


async def gql_raw(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None, **kw: Any
) -> httpx.Response:
    return await client.post("/graphql", json={"query": query, "variables": variables or {}}, **kw)
