"""The session's per-minute touch (issue 14 item 3): one UPDATE made from what the caller's
statement read; on PostgreSQL in its own transaction on the request's connection, so a read
whose touch is due costs one round trip more than one whose touch is not (it was four: BEGIN,
a read of the session, the UPDATE, COMMIT)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from core.db import STATEMENT_LISTENERS
from core.settings import Settings
from models.access import AuthSession
from models.base import utcnow
from tests.factories import make_subscriber, make_touch_due, sign_in

CONTRACT = "query($n: String!) { contract(number: $n) { number balance { amount } } }"


@contextmanager
def round_trips(engine: Any) -> Iterator[list[str]]:
    """Every statement the app's engine sends, BEGIN and COMMIT included, through SQLAlchemy
    or straight to the driver."""
    seen: list[str] = []
    sync = engine.sync_engine

    def statement(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        seen.append(sql)

    def begin(_conn: Any) -> None:
        seen.append("BEGIN")

    def commit(_conn: Any) -> None:
        seen.append("COMMIT")

    sa.event.listen(sync, "before_cursor_execute", statement)
    sa.event.listen(sync, "begin", begin)
    sa.event.listen(sync, "commit", commit)
    STATEMENT_LISTENERS.append(seen.append)
    try:
        yield seen
    finally:
        STATEMENT_LISTENERS.remove(seen.append)
        sa.event.remove(sync, "before_cursor_execute", statement)
        sa.event.remove(sync, "begin", begin)
        sa.event.remove(sync, "commit", commit)


async def _session(session_factory: Any) -> AuthSession:
    async with session_factory() as session:
        return (await session.scalars(sa.select(AuthSession))).one()


async def test_a_due_touch_is_one_update_made_from_the_callers_read(
    app: Any,
    client: httpx.AsyncClient,
    session_factory: Any,
    settings: Settings,
    backend: str,
) -> None:
    # given: a subscriber signed in, reading a contract once untouched …
    made = await make_subscriber(session_factory, settings)
    headers = await sign_in(client, made.login or made.contract_numbers[0])
    body = {"query": CONTRACT, "variables": {"n": made.contract_numbers[0]}}
    assert (await client.post("/graphql", json=body, headers=headers)).status_code == 200
    with round_trips(app.state.engine) as plain:
        assert (await client.post("/graphql", json=body, headers=headers)).status_code == 200
    # … then with the per-minute touch due
    await make_touch_due(session_factory)
    before = await _session(session_factory)
    with round_trips(app.state.engine) as touched:
        response = await client.post("/graphql", json=body, headers=headers)
    # then: answered, and the session touched
    assert response.status_code == 200 and "errors" not in response.json(), response.text
    after = await _session(session_factory)
    assert utcnow() - after.last_used_at < timedelta(minutes=1)
    assert after.access_expires_at > before.access_expires_at
    assert after.access_expires_at <= min(
        after.access_issued_at + timedelta(seconds=settings.access_token_absolute_seconds),
        after.expires_at,
    )
    # by one UPDATE, and no read of the session besides the caller's
    verbs = [sql.split()[0] for sql in touched if sql not in plain]
    assert [verb for verb in verbs if verb not in ("BEGIN", "COMMIT")] == ["UPDATE"]
    if backend == "postgresql":  # in its own transaction: one round trip
        assert len(touched) == len(plain) + 1, (plain, touched)
