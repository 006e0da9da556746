"""`/healthz` (the process answers) and `/readyz` (database reachable, migrations at head)."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import JSONResponse

from core.migrate import current_revision, head_revision

log = logging.getLogger("kabinet.health")


async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    engine = request.app.state.engine
    head = head_revision()
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        current = await current_revision(engine)
    except Exception as error:  # any failure to reach the database means "not ready"
        log.warning("readiness check failed: %s", type(error).__name__)
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    if current != head:
        return JSONResponse(
            {"status": "unavailable", "database": "ok", "migrations": "behind"}, status_code=503
        )
    return JSONResponse({"status": "ok", "database": "ok", "migrations": "current"})
