"""The login storm of the benchmark: RATE sign-ins a second for SECONDS seconds, each with the
right password of a random bench subscriber, at a fixed schedule (open loop: a slow answer
does not delay the next sign-in), in a process of its own. With --spread every sign-in comes
from its own client address (X-Forwarded-For through a trusted proxy), so that the
per-address limits see many people, not one machine.

    python -m bench.login_storm --url http://127.0.0.1:8000/graphql --n 100000

Prints one line `BENCH_RESULT {json}`: attempted, ok, failed (with the error codes), the
rate achieved and the sign-in latencies (ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter
from typing import Any

import httpx

from bench.generate import BENCH_PASSWORD

LOGIN = (
    "mutation($input: LoginInput!) { login(input: $input) { accessToken errors { code message } } }"
)


async def one_login(
    client: httpx.AsyncClient,
    url: str,
    login: str,
    latencies: list[float],
    outcomes: Counter,
    forwarded_for: str | None = None,
) -> None:
    started = time.perf_counter()
    try:
        answer = await client.post(
            url,
            json={
                "query": LOGIN,
                "variables": {"input": {"identifier": login, "password": BENCH_PASSWORD}},
            },
            headers={"X-Forwarded-For": forwarded_for} if forwarded_for else None,
        )
        payload = answer.json() if answer.status_code == 200 else {}
        got = (payload.get("data") or {}).get("login") or {}
        if got.get("accessToken"):
            outcomes["ok"] += 1
        elif got.get("errors"):
            outcomes["error:" + str(got["errors"][0].get("code"))] += 1
        elif payload.get("errors"):
            code = (payload["errors"][0].get("extensions") or {}).get("code")
            outcomes[f"graphql-error:{code}"] += 1
        else:
            outcomes[f"http:{answer.status_code}"] += 1
    except httpx.HTTPError as error:
        outcomes[f"transport:{type(error).__name__}"] += 1
    latencies.append((time.perf_counter() - started) * 1000)


def client_address(k: int) -> str:
    """The k-th sign-in's client, from 198.18.0.0/15 (the range set aside for benchmarks):
    only ever written into X-Forwarded-For, never connected to."""
    return f"198.{18 + (k >> 16) % 2}.{(k >> 8) % 256}.{k % 256}"


async def storm(
    url: str, n: int, rate: float, seconds: float, *, spread: bool = False
) -> dict[str, Any]:
    latencies: list[float] = []
    outcomes: Counter = Counter()
    total = round(rate * seconds)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
        started = time.perf_counter()
        tasks = []
        for k in range(total):
            delay = started + k / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            login = f"bench{random.randint(1, n)}"
            address = client_address(k) if spread else None
            tasks.append(
                asyncio.create_task(one_login(client, url, login, latencies, outcomes, address))
            )
        sending = time.perf_counter() - started
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))], 1)

    return {
        "attempted": total,
        "ok": outcomes.get("ok", 0),
        "failed": {k: v for k, v in outcomes.items() if k != "ok"},
        "sending_seconds": round(sending, 2),
        "elapsed_seconds": round(elapsed, 2),
        "rate_sent": round(total / sending, 2) if sending else None,
        "p50_ms": pct(50) if latencies else None,
        "p99_ms": pct(99) if latencies else None,
        "max_ms": round(latencies[-1], 1) if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="Kabinet's /graphql address")
    parser.add_argument("--n", type=int, required=True, help="bench subscribers 1..N")
    parser.add_argument("--rate", type=float, default=20.0, help="sign-ins a second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--spread",
        action="store_true",
        help="each sign-in from its own client address (X-Forwarded-For; the server must "
        "trust 127.0.0.1 as a proxy), as many people behind a reverse proxy",
    )
    args = parser.parse_args()
    result = asyncio.run(storm(args.url, args.n, args.rate, args.seconds, spread=args.spread))
    print("BENCH_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
