"""What one document costs the event loop, and what distinct documents cost in memory
(issue 13 item 5, SPEC §5). In-process (ASGI), over a fresh SQLite file; not part of
`make bench`.

    .venv/bin/python -m bench.document_cost [--repeat 480] [--documents 250]

1. The loop: `{ regions{code} regions{code} … }` (`--repeat` times, no aliases, under the
   token limit, a random comment in front so that no cache has seen it), five times. For
   each: the request's own time and the longest stall of the event loop while it ran (a
   ticker that sleeps 1 ms and records the largest gap), and the worst `/healthz` latency
   of a client polling it every 5 ms meanwhile (counted from when each poll was due).
2. The memory: `--documents` distinct 2,000-token documents (14 KB each), each once; the
   process's resident memory (VmRSS) before and after, after a garbage collection.

Prints one line `BENCH_RESULT {json}`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from core import migrate
from core.settings import Settings
from kabinet.app import create_app
from kabinet.seed import seed_catalog_at


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def repeated_document(times: int) -> str:
    return f"# {secrets.token_hex(8)}\n{{ " + " ".join(["regions{code}"] * times) + " }"


def token_document(tokens: int = 2000) -> str:
    """A distinct document of about `tokens` tokens and 11 KB that passes the cost bound (a
    long default value of a variable; it is refused by validation, which keeps the parsed
    document alive through its errors' locations)."""
    values = ",".join(f'"{secrets.token_hex(2)}"' for _ in range(tokens - 20))
    return f"query($v: [String] = [{values}]) {{ regions {{ code }} }}"


async def _loop_cost(client: httpx.AsyncClient, query: str) -> dict[str, Any]:
    stalls: list[float] = []
    health: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            stalls.append(now - last)
            last = now

    async def poll_health() -> None:
        # In-process, a request cannot leave while the loop is held: its latency is counted
        # from when it was due (every 5 ms), as a client outside would see it.
        while not done.is_set():
            due = time.perf_counter() + 0.005
            await asyncio.sleep(0.005)
            await client.get("/healthz")
            health.append(time.perf_counter() - due)

    tasks = [asyncio.create_task(ticker()), asyncio.create_task(poll_health())]
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    response = await client.post("/graphql", json={"query": query})
    elapsed = time.perf_counter() - started
    await asyncio.sleep(0.02)
    done.set()
    await asyncio.gather(*tasks)
    body = response.json()
    errors = body.get("errors") or []
    return {
        "status": response.status_code,
        "refused": [(e.get("extensions") or {}).get("code") for e in errors],
        "request_ms": round(elapsed * 1000, 1),
        "longest_loop_stall_ms": round(max(stalls) * 1000, 1),
        "worst_healthz_ms": round(max(health) * 1000, 1),
    }


async def run(url: str, repeat: int, documents: int) -> dict[str, Any]:
    app = create_app(Settings(database_url=url, env="development"))
    transport = httpx.ASGITransport(app=app)
    result: dict[str, Any] = {"repeat": repeat}
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        await client.post("/graphql", json={"query": "{ regions { code } }"})  # warm up
        runs = [await _loop_cost(client, repeated_document(repeat)) for _ in range(5)]
        result["runs"] = runs
        result["median_longest_loop_stall_ms"] = statistics.median(
            r["longest_loop_stall_ms"] for r in runs
        )
        result["median_worst_healthz_ms"] = statistics.median(r["worst_healthz_ms"] for r in runs)
        gc.collect()
        before = _rss_mib()
        sample = token_document()
        for _ in range(documents):
            await client.post("/graphql", json={"query": token_document()})
        gc.collect()
        result["memory"] = {
            "documents": documents,
            "document_bytes": len(sample.encode()),
            "rss_before_mib": round(before, 1),
            "rss_after_mib": round(_rss_mib(), 1),
        }
    await app.state.engine.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=480)
    parser.add_argument("--documents", type=int, default=250)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'cost.db'}"
        migrate.upgrade(url)
        asyncio.run(seed_catalog_at(url))
        result = asyncio.run(run(url, args.repeat, args.documents))
    print("BENCH_RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
