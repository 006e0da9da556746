"""Peer (a) of the benchmark, the HTTP ceiling: a minimal Starlette app that answers every
POST /graphql with one fixed JSON body, as large as Kabinet's overview answer (the bench
writes that answer to BENCH_CEILING_BODY_FILE; without it, a filler of BENCH_CEILING_BYTES).

    BENCH_CEILING_BODY_FILE=answer.json uvicorn bench.peers.ceiling:app --port 8002
"""

from __future__ import annotations

import json
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def _body() -> bytes:
    path = os.environ.get("BENCH_CEILING_BODY_FILE")
    if path:
        with open(path, "rb") as f:
            return f.read()
    size = int(os.environ.get("BENCH_CEILING_BYTES", "1500"))
    filler = "x" * max(0, size - len('{"data":{"filler":""}}'))
    return json.dumps({"data": {"filler": filler}}).encode()


BODY = _body()


async def graphql(request: Request) -> Response:
    await request.body()
    return Response(BODY, media_type="application/json")


app = Starlette(routes=[Route("/graphql", graphql, methods=["POST"])])
