"""A receiver of Kabinet's events on loopback (an ASGI app under a real uvicorn): it checks
each delivery's signature with the docs' own snippet (docs/events.md), answers as the test
tells it (200, 500, or no answer for a while), and records what it got."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.live import serve_in_thread

DOCS = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def docs_snippet() -> str:
    """The Python block after `<!-- verify-snippet -->` in docs/events.md, as published."""
    text = DOCS.read_text(encoding="utf-8")
    found = re.search(r"<!-- verify-snippet -->\s*```python\n(.*?)```", text, re.S)
    assert found is not None, "docs/events.md lost its verification snippet"
    return found.group(1)


def docs_verify() -> Callable[..., bool]:
    """`verify(secret, header, body, now=None)` of the docs' snippet."""
    namespace: dict[str, Any] = {}
    exec(compile(docs_snippet(), str(DOCS), "exec"), namespace)  # noqa: S102 - our own docs
    verify = namespace["verify"]
    assert callable(verify)
    return verify  # type: ignore[no-any-return]


@dataclass
class Received:
    event_id: str
    body: dict[str, Any]
    raw: bytes
    headers: dict[str, str]
    signed: bool  # the docs' snippet accepted it


@dataclass
class Receiver:
    url: str = ""
    secrets: list[str] = field(default_factory=list)  # of the subscriptions posting here
    mode: str = "ok"  # ok | fail | hang
    hang_seconds: float = 5.0
    clock: float | None = None  # what `now` the snippet checks against (the tests' moved clock)
    got: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self, kind: str | None = None) -> list[Received]:
        with self.lock:
            return [r for r in self.got if kind is None or r.body["type"] == kind]

    def types(self) -> list[str]:
        return [r.body["type"] for r in self.events()]


def receiver_app(receiver: Receiver, verify: Callable[..., bool]) -> Starlette:
    async def hook(request: Request) -> Response:
        raw = await request.body()
        headers = {name.lower(): value for name, value in request.headers.items()}
        header = headers.get("kabinet-signature", "")
        signed = any(verify(secret, header, raw, receiver.clock) for secret in receiver.secrets)
        if receiver.mode == "hang":
            await asyncio.sleep(receiver.hang_seconds)
        with receiver.lock:
            receiver.got.append(
                Received(headers.get("kabinet-event-id", ""), json.loads(raw), raw, headers, signed)
            )
        if receiver.mode == "fail":
            return Response("down for maintenance", status_code=500)
        return Response(status_code=204 if signed else 401)

    return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    with serve_in_thread(receiver_app(receiver, docs_verify()), lifespan="off") as base:
        receiver.url = f"{base}/hook"
        yield receiver
