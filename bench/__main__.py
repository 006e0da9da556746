"""`make bench` (`python -m bench`): Kabinet side by side with its peers, in one run, on this
machine, over the same PostgreSQL and the same data (issue 6).

1. Data: a fresh database `kabinet_bench` filled by bench.generate (N subscribers).
2. The account overview for a random subscriber per request (each with its own token), wrk
   -t2 -c32 --latency with bench/overview.lua: Kabinet with 1 and 2 workers.
3. Peers, each started here and stopped after: (a) the HTTP ceiling (bench/peers/ceiling.py),
   (b) hand-written SQL with asyncpg (bench/peers/handwritten.py, one statement),
   (c) PostGraphile 5 from the npm registry (bench/peers, on Node 22 from npm's node@22;
   it does not authenticate: it is asked for the subscriber by id).
4. SQL cost: statements per overview request for 1 and 5 contracts (in-process, ASGI).
5. Webhook: confirmations/s through POST /webhooks/payments, each payment once; then
   `kabinet ledger verify` and every payment SUCCEEDED exactly once.
6. Billing day over the N contracts, and at 300k (second database, not with --quick),
   extrapolated linearly to 1,000,000.
7. Login storm: 20 sign-ins/s (bench/login_storm.py) during the overview load: p99 with and
   without.

Prints a table, writes bench/results.json. Server CPU per request is the server processes'
own CPU time (utime+stime from /proc, all workers) over the run divided by wrk's requests;
"PG CPU" is the same for the PostgreSQL backends serving the bench database. Timings never
fail the run; wrong answers, unbalanced money and double credits do (exit 1); something
missing on the machine exits 2 with what to do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import tools
from bench.pages import OVERVIEW_QUERY, PAGES
from bench.tools import BENCH, PEERS, ROOT, BenchFailure, Missing, Server, say

# The same data from PostGraphile 5 (amber preset, default inflection). Its amber preset
# offers conditions only on indexed columns, so the open promise and the connected packages
# are not filtered (the bench data has no promise and no ended package); daysLeft has no
# counterpart (it would need a SQL function).
POSTGRAPHILE_QUERY = (
    "query($id: BigInt!) { subscriberByRowId(rowId: $id) { displayName"
    " contractsBySubscriberId(orderBy: [ROW_ID_ASC]) { nodes { number status balance"
    " promisedPaymentsByContractId { nodes { amount dueAt status } }"
    " tariffByTariffId { name monthlyFee speedMbps }"
    " contractTvPackagesByContractId(orderBy: [ROW_ID_ASC]) { nodes { endedOn"
    " tvPackageByPackageId { name monthlyFee } } }"
    " paymentsByContractId(first: 10, orderBy: [ROW_ID_DESC]) {"
    " edges { node { amount status createdAt } } } } }"
    " bonusAccountBySubscriberId { points } } }"
)
PAGE_TARGET_RATIO = 1.5
TOUCH_TARGET_RATIO = 1.3
CONNECTIONS = 32
THREADS = 2
WARMUP_SECONDS = 3
LOGIN_RATE = 20
WEBHOOK_SECRET = "bench-webhook-secret"
FIVE_EMAIL = "bench-five@example.org"
FIVE_TOKEN = "bench-token-five"
WEBHOOK_HEADROOM_PER_SECOND = 3000  # payments prepared per second of webhook load

TARGETS = {
    "overview_cpu_ms": 1.5,
    "overview_p99_ms": 50.0,
    "webhook_per_second": 1000.0,
    "billing_1m_seconds": 60.0,
    "storm_p99_ratio": 2.0,
}


# -- PostgreSQL --------------------------------------------------------------------------


class Postgres:
    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def url(self, database: str) -> str:
        return f"{self.base}/{database}"

    def sqlalchemy_url(self, database: str) -> str:
        return self.url(database).replace("postgresql://", "postgresql+asyncpg://", 1)

    def run(self, database: str, work: Any) -> Any:
        import asyncpg

        async def go() -> Any:
            conn = await asyncpg.connect(self.url(database), server_settings={"timezone": "UTC"})
            try:
                return await work(conn)
            finally:
                await conn.close()

        return asyncio.run(go())

    def fetch(self, database: str, sql: str, *args: Any) -> list[Any]:
        return self.run(database, lambda conn: conn.fetch(sql, *args))  # type: ignore[no-any-return]

    def value(self, database: str, sql: str, *args: Any) -> Any:
        return self.run(database, lambda conn: conn.fetchval(sql, *args))

    def execute(self, database: str, sql: str, *args: Any) -> str:
        return self.run(database, lambda conn: conn.execute(sql, *args))  # type: ignore[no-any-return]

    def check(self) -> str:
        try:
            return str(self.value("postgres", "SELECT version()"))
        except Exception as error:
            raise Missing(
                f"PostgreSQL is not answering at {self.base} ({type(error).__name__}: {error}).\n"
                "  The benchmark needs PostgreSQL on 127.0.0.1:5432 with trust auth for the user "
                "postgres (as on the developers' machines and CI).\n"
                "  Debian: apt-get install postgresql; add 'host all all 127.0.0.1/32 trust' to "
                "pg_hba.conf; pg_ctlcluster <version> main start (bash .ci/run does this).\n"
                "  Or point --pg (or BENCH_PG_URL) at another server."
            ) from None

    def exists(self, database: str) -> bool:
        found = self.value("postgres", "SELECT 1 FROM pg_database WHERE datname = $1", database)
        return bool(found)

    def recreate(self, database: str) -> None:
        self.execute("postgres", f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        self.execute("postgres", f'CREATE DATABASE "{database}"')

    def subscribers(self, database: str) -> int:
        if not self.exists(database):
            return 0
        try:
            return int(self.value(database, "SELECT count(*) FROM subscribers") or 0)
        except Exception:
            return 0


def prepare_database(
    pg: Postgres, database: str, n: int, reuse: bool, shape: str = "full"
) -> dict[str, Any]:
    """A database of n bench subscribers: reused when asked and filled, else made anew
    (`shape`: see bench.generate; "billing" leaves out the payment and bonus history)."""
    from bench.generate import generate

    if reuse:
        have = pg.subscribers(database)
        if have > 0:
            say(f"reusing {database} ({have:,} subscribers; migrating it to head)")
            from core import migrate

            migrate.upgrade(pg.sqlalchemy_url(database))
            settled = settle_bench_letters(pg, database)
            if settled:
                say(f"  {settled:,} receipt letters of an earlier webhook step marked delivered")
            vacuum_unless_autovacuum(pg, database)
            if have != n:
                say(f"  note: {database} has {have:,} subscribers, not {n:,}: using {have:,}")
            full = pg.value(database, "SELECT EXISTS (SELECT 1 FROM payments)")
            return {
                "database": database,
                "subscribers": have,
                "shape": "full" if full else "billing",
                "reused": True,
                "seconds": 0.0,
            }
        say(f"--reuse: {database} is missing or empty, generating it")
    what = "" if shape == "full" else f", {shape} shape"
    say(f"generating {database}: {n:,} subscribers (drop/create, migrations, set-based{what})")
    pg.recreate(database)
    seconds = asyncio.run(
        generate(pg.sqlalchemy_url(database), n, progress=lambda line: say(line), shape=shape)
    )
    say(f"  generated in {seconds:.0f} s")
    return {
        "database": database,
        "subscribers": n,
        "shape": shape,
        "reused": False,
        "seconds": round(seconds, 1),
    }


def vacuum_unless_autovacuum(pg: Postgres, database: str) -> None:
    """A reused database carries the dead row versions of earlier runs (payments confirmed,
    letters marked sent, balances debited). A server runs autovacuum, which clears them; where
    it is off (as on the CI machines' PostgreSQL), they pile up run after run and every
    later run reads through them: the outbox's poll alone went from under 1 to 155 ms.
    So the bench vacuums the database itself then, before measuring."""
    if pg.value(database, "SELECT current_setting('autovacuum')") == "on":
        return
    started = time.perf_counter()
    pg.execute(database, "VACUUM (ANALYZE)")
    seconds = time.perf_counter() - started
    say(f"  autovacuum is off on this server: {database} vacuumed ({seconds:.0f} s)")


def settle_bench_letters(pg: Postgres, database: str) -> int:
    """Mark the receipt letters of the webhook step as delivered. Every Kabinet server runs
    the outbox worker, and with letters waiting it would deliver them (to its log) during
    the next load steps: work that is not the step's, measured as the step's CPU. They are
    the bench's own letters; nobody is waiting for them."""
    done = pg.execute(
        database, "UPDATE outbox SET sent_at = now() WHERE sent_at IS NULL AND kind = 'RECEIPT'"
    )
    return int(done.split()[-1])


def fresh_sessions(pg: Postgres, database: str, *, idle: bool = False, seconds: float = 0) -> None:
    """Make every bench session live and, unless `idle`, just used: Kabinet pushes a session's
    idle expiry forward (a write) when it was last used more than a minute ago; a load step
    starting right after this sees sessions in use, as a front end's requests would be."""
    if idle:
        used = "now() - interval '5 minutes'"
    else:
        # keep the run inside the touch interval (60 s) even for long --duration
        ahead = max(0, int(seconds) - 40)
        used = f"now() + interval '{ahead} seconds'"
    pg.execute(
        database,
        f"""UPDATE auth_sessions SET last_used_at = {used}, access_issued_at = now(),
                   access_expires_at = now() + interval '30 days',
                   expires_at = now() + interval '30 days', revoked_at = NULL
            WHERE subscriber_id IS NOT NULL
              AND access_token_hash IN (SELECT encode(sha256(convert_to(
                      'bench-token-' || s.id, 'UTF8')), 'hex') FROM subscribers s)""",
    )


# -- the runner --------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.pg = Postgres(args.pg)
        self.db = "kabinet_bench"
        self.work = Path(tempfile.mkdtemp(prefix="kabinet-bench-"))
        self.results: dict[str, Any] = {
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "parameters": {
                "quick": args.quick,
                "subscribers": args.n,
                "seconds_per_step": args.duration,
                "warmup_seconds": WARMUP_SECONDS,
                "connections": CONNECTIONS,
                "wrk_threads": THREADS,
            },
            "overview": [],
            "notes": [],
            "problems": [],
        }
        self.wrk = ""
        self.node: str | None = None
        self.body_file = self.work / "overview.json"
        self.body_file.write_text(json.dumps({"query": OVERVIEW_QUERY}))
        self.pgl_body_file = self.work / "postgraphile.json"
        self.pgl_body_file.write_text(
            json.dumps({"query": POSTGRAPHILE_QUERY, "variables": {"id": "{i}"}})
        )
        self.ceiling_file = self.work / "ceiling.json"
        self.kabinet_sample: bytes | None = None

    # -- helpers

    def note(self, text: str) -> None:
        self.results["notes"].append(text)

    def problem(self, text: str) -> None:
        say(f"  PROBLEM: {text}")
        self.results["problems"].append(text)

    def kabinet_env(self, database: str, port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KABINET_")}
        env.update(
            KABINET_DATABASE_URL=self.pg.sqlalchemy_url(database),
            KABINET_ENV="development",
            KABINET_LOG_LEVEL="WARNING",
            KABINET_PUBLIC_URL=f"http://127.0.0.1:{port}",
            KABINET_WEBHOOK_SECRET=WEBHOOK_SECRET,
            KABINET_BILLING_IN_SERVE="false",
            # as behind a reverse proxy: the login storm's sign-ins come from many clients
            KABINET_TRUSTED_PROXIES='["127.0.0.1"]',
        )
        return env

    def kabinet(self, workers: int, label: str) -> Server:
        port = tools.free_port()
        return Server(
            name=f"Kabinet ({label})",
            argv=tools.python_module(
                "kabinet.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
            ),
            env=self.kabinet_env(self.db, port),
            port=port,
            log_path=self.work / f"kabinet-{label.replace(' ', '-')}.log",
        )

    def uvicorn_peer(self, module: str, label: str, extra_env: dict[str, str]) -> Server:
        port = tools.free_port()
        return Server(
            name=label,
            argv=tools.python_module(
                "uvicorn",
                f"bench.peers.{module}:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--log-level",
                "warning",
                "--no-access-log",
            ),
            env={**os.environ, **extra_env},
            port=port,
            log_path=self.work / f"{module}.log",
        )

    def kabinet_cli(self, database: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            tools.python_module("kabinet.cli", *argv),
            env=self.kabinet_env(database, 8000),
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )

    # -- checks of one answer

    def overview_answer(self, server: Server, token: str = "bench-token-1") -> bytes:
        status, body = tools.post_json(
            server.base + "/graphql",
            self.body_file.read_bytes(),
            {"Authorization": f"Bearer {token}"},
        )
        payload = json.loads(body) if body[:1] == b"{" else {}
        if status != 200 or payload.get("errors") or not (payload.get("data") or {}).get("me"):
            raise BenchFailure(
                f"{server.name} answered the overview with HTTP {status}: {body[:600]!r}\n"
                f"its log:\n{server.log_tail()}"
            )
        return body

    def postgraphile_answer(self, server: Server) -> bytes:
        body = json.dumps({"query": POSTGRAPHILE_QUERY, "variables": {"id": "1"}}).encode()
        status, answer = tools.post_json(server.base + "/graphql", body)
        payload = json.loads(answer) if answer[:1] == b"{" else {}
        data = payload.get("data") or {}
        if status != 200 or payload.get("errors") or not data.get("subscriberByRowId"):
            raise BenchFailure(f"PostGraphile answered HTTP {status}: {answer[:600]!r}")
        return answer

    # -- one overview load step

    @staticmethod
    def summarise(row: dict[str, Any]) -> None:
        say(
            f"  {row['requests_per_second']:,.0f} req/s, p50 {row['p50_ms']} ms,"
            f" p99 {row['p99_ms']} ms, server CPU {row['server_cpu_ms_per_request']} ms/req,"
            f" PG CPU {row['pg_cpu_ms_per_request']} ms/req, bad answers {row['bad_answers']},"
            f" other load {row['other_cpu_cores']} cores"
        )

    def load(
        self,
        server: Server,
        *,
        mode: str = "token",
        seconds: float,
        warmup: bool = True,
        during: Any = None,
        body_file: Path | None = None,
    ) -> dict[str, Any]:
        if body_file is None:
            body_file = self.pgl_body_file if mode == "id" else self.body_file
        env = {
            "BENCH_N": str(self.args.n),
            "BENCH_MODE": mode,
            "BENCH_BODY_FILE": str(body_file),
        }
        url = server.base + "/graphql"
        if warmup:
            tools.run_wrk(self.wrk, url, BENCH / "overview.lua", seconds=WARMUP_SECONDS, env=env)
        cpu_before = server.cpu()
        pg_before = tools.database_backends_cpu(self.db)
        busy_before, wrk_before = tools.machine_busy(), tools.children_cpu()
        companion = during() if during else None
        result = tools.run_wrk(self.wrk, url, BENCH / "overview.lua", seconds=seconds, env=env)
        cpu = server.cpu() - cpu_before
        pg_cpu = tools.backends_cpu_delta(pg_before, tools.database_backends_cpu(self.db))
        busy = tools.machine_busy() - busy_before
        wrk_cpu = tools.children_cpu() - wrk_before
        requests = max(1, result["requests"])
        duration = result["duration_us"] / 1e6
        row = {
            "requests": result["requests"],
            "seconds": round(duration, 2),
            "requests_per_second": round(result["requests"] / duration, 1),
            "p50_ms": round(result["p50_us"] / 1000, 1),
            "p90_ms": round(result["p90_us"] / 1000, 1),
            "p99_ms": round(result["p99_us"] / 1000, 1),
            "max_ms": round(result["max_us"] / 1000, 1),
            "server_cpu_ms_per_request": round(cpu * 1000 / requests, 3),
            "pg_cpu_ms_per_request": round(pg_cpu * 1000 / requests, 3),
            # Little's law: connections with a request in flight, on average, that got their
            # answer within the run; well below CONNECTIONS means requests hung past it
            "answered_concurrency": round(
                result["requests"] / duration * result["mean_us"] / 1e6, 1
            ),
            "wrk_cpu_cores": round(wrk_cpu / duration, 2),
            # what else ran on the machine meanwhile (other processes, PostgreSQL's own
            # background work, the login storm's driver): the noise of this figure
            "other_cpu_cores": round(max(0.0, busy - cpu - pg_cpu - wrk_cpu) / duration, 2),
            "bad_answers": result["bad_answers"],
            "socket_errors": result["errors"],
            "wrk_latency_distribution": [
                line.strip() for line in result["wrk_output"] if re.match(r"\s+\d+%\s", line)
            ],
        }
        if companion is not None:
            row["companion"] = companion
        return row

    def overview_step(
        self,
        key: str,
        label: str,
        make: Any,
        *,
        check: Any,
        mode: str = "token",
        seconds: float | None = None,
        idle: bool = False,
        extra: Any = None,
        peer: bool = False,
    ) -> dict[str, Any] | None:
        seconds = seconds or self.args.duration
        say(f"overview: {label} ({seconds:.0f} s)")
        fresh_sessions(self.pg, self.db, idle=idle, seconds=seconds + WARMUP_SECONDS + 15)
        server = make()
        row: dict[str, Any] = {"key": key, "setup": label}
        try:
            server.start()
            server.wait_ready(lambda: check(server) is not None)
            row.update(self.load(server, mode=mode, seconds=seconds, warmup=not idle))
            self.summarise(row)
            if row["answered_concurrency"] < CONNECTIONS / 2:
                self.problem(
                    f"{label}: requests hung: only {row['answered_concurrency']} of "
                    f"{CONNECTIONS} connections were answered on average during the run"
                    " (waiting 35 s for the server to log what held them)"
                )
                time.sleep(35)
            if extra is not None:
                extra(server, row)
        except BenchFailure as error:
            row["failed"] = str(error).splitlines()[0][:300]
            if not peer:
                raise
            self.problem(f"{label}: {row['failed']}")
        finally:
            server.stop()
            row["server_errors_logged"] = server.logged_errors()
            self.results["overview"].append(row)
        if "failed" not in row and (row["bad_answers"] or any(row["socket_errors"].values())):
            self.problem(
                f"{label}: {row['bad_answers']} bad answers, socket errors "
                f"{row['socket_errors']}, {row['server_errors_logged']} errors logged "
                f"(log: {server.log_path})"
            )
        return row

    # -- the steps

    def step_overview(self) -> None:
        def kabinet_check(server: Server) -> bytes:
            sample = self.overview_answer(server)
            if self.kabinet_sample is None:
                self.kabinet_sample = sample
                self.ceiling_file.write_bytes(sample)
            return sample

        def storm(server: Server, baseline: dict[str, Any]) -> None:
            seconds = 10 if self.args.quick else 20
            say(f"overview + login storm: {LOGIN_RATE} sign-ins/s for {seconds} s")
            storm_out = self.work / "storm.out"

            def start_storm() -> subprocess.Popen[bytes]:
                with open(storm_out, "wb") as out:
                    return subprocess.Popen(
                        tools.python_module(
                            "bench.login_storm",
                            "--url",
                            server.base + "/graphql",
                            "--n",
                            str(self.args.n),
                            "--rate",
                            str(LOGIN_RATE),
                            "--seconds",
                            str(seconds),
                            "--spread",
                        ),
                        cwd=ROOT,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )

            self.note(
                "login storm: every sign-in from its own client address (X-Forwarded-For, "
                "127.0.0.1 trusted as a proxy), so the per-address sign-in limit sees many "
                "people; the per-identifier one applies as usual"
            )
            storm_process: list[subprocess.Popen[bytes]] = []
            fresh_sessions(self.pg, self.db, seconds=seconds + 15)
            row = self.load(
                server,
                seconds=seconds,
                warmup=False,
                during=lambda: storm_process.append(start_storm()) or None,
            )
            self.summarise(row)
            storm_process[0].wait(timeout=seconds + 120)
            text = storm_out.read_text(errors="replace")
            logins = next(
                (json.loads(x[13:]) for x in text.splitlines() if x.startswith("BENCH_RESULT ")),
                {"failed": {"driver": text[-500:]}},
            )
            row.update(key="kabinet_1_storm", setup="Kabinet, 1 worker + login storm")
            row["logins"] = logins
            row["server_errors_logged"] = server.logged_errors()
            self.results["overview"].append(row)
            ratio = row["p99_ms"] / baseline["p99_ms"] if baseline.get("p99_ms") else None
            self.results["login_storm"] = {
                "rate": LOGIN_RATE,
                "seconds": seconds,
                "p99_without_ms": baseline.get("p99_ms"),
                "p99_with_ms": row["p99_ms"],
                "p99_ratio": round(ratio, 2) if ratio else None,
                "overview_rps_without": baseline.get("requests_per_second"),
                "overview_rps_with": row["requests_per_second"],
                "logins": logins,
            }
            say(
                f"  overview p99 {baseline.get('p99_ms')} → {row['p99_ms']} ms"
                f" (×{ratio:.2f}); sign-ins ok {logins.get('ok')}/{logins.get('attempted')},"
                f" sign-in p50 {logins.get('p50_ms')} ms, p99 {logins.get('p99_ms')} ms"
            )
            if logins.get("failed"):
                self.problem(f"login storm: failed sign-ins {logins['failed']}")
            if row["bad_answers"]:
                self.problem(f"overview during the login storm: {row['bad_answers']} bad answers")

        self.overview_step(
            "kabinet_1",
            "Kabinet, 1 worker",
            lambda: self.kabinet(1, "1 worker"),
            check=kabinet_check,
            extra=storm,
        )
        self.overview_step(
            "kabinet_2",
            "Kabinet, 2 workers",
            lambda: self.kabinet(2, "2 workers"),
            check=kabinet_check,
        )
        self.overview_step(
            "kabinet_1_idle",
            "Kabinet, 1 worker, sessions idle > 1 min (touch)",
            lambda: self.kabinet(1, "idle sessions"),
            check=kabinet_check,
            seconds=min(10, self.args.duration),
            idle=True,
            peer=True,
        )

    def step_pages(self) -> None:
        """Every page of PAGES on one Kabinet (1 worker), one after another, in the same run:
        each page's server CPU per request beside the overview's."""
        seconds = self.args.duration
        server = self.kabinet(1, "pages")
        rows: list[dict[str, Any]] = []
        self.results["pages"] = rows
        say(f"pages: {len(PAGES)} documents on one server, {seconds:.0f} s each")
        try:
            server.start()
            server.wait_ready(lambda: self.overview_answer(server))
            for key, (label, document) in PAGES.items():
                body_file = self.work / f"page-{key}.json"
                body_file.write_text(json.dumps({"query": document}))
                status, answer = tools.post_json(
                    server.base + "/graphql",
                    body_file.read_bytes(),
                    {"Authorization": "Bearer bench-token-1"},
                )
                if status != 200 or b'"errors"' in answer:
                    raise BenchFailure(f"page {key} answered HTTP {status}: {answer[:400]!r}")
                fresh_sessions(self.pg, self.db, seconds=seconds + WARMUP_SECONDS + 15)
                row = {"key": key, "page": label}
                row.update(self.load(server, seconds=seconds, body_file=body_file))
                rows.append(row)
                say(f"  {label}:")
                self.summarise(row)
                if row["bad_answers"] or any(row["socket_errors"].values()):
                    self.problem(f"page {key}: {row['bad_answers']} bad answers")
        finally:
            server.stop()

    def step_peers(self) -> None:
        if self.args.skip_peers:
            self.note("peers skipped (--skip-peers)")
            return
        self.overview_step(
            "ceiling",
            "(a) ceiling: Starlette, fixed JSON",
            lambda: self.uvicorn_peer(
                "ceiling",
                "ceiling",
                {"BENCH_CEILING_BODY_FILE": str(self.ceiling_file)},
            ),
            check=lambda server: tools.post_json(server.base + "/graphql", b"{}")[0] == 200 or None,
            peer=True,
        )

        def handwritten_check(server: Server) -> bytes:
            sample = self.overview_answer(server)
            if self.kabinet_sample is not None:
                same = json.loads(sample) == json.loads(self.kabinet_sample)
                self.results["handwritten_same_answer_as_kabinet"] = same
                if not same:
                    self.problem("the hand-written overview differs from Kabinet's (subscriber 1)")
            return sample

        self.overview_step(
            "handwritten",
            "(b) hand-written: Starlette + asyncpg, 1 statement",
            lambda: self.uvicorn_peer(
                "handwritten",
                "hand-written SQL",
                {"BENCH_DATABASE_URL": self.pg.url(self.db)},
            ),
            check=handwritten_check,
            peer=True,
        )
        self.step_postgraphile()

    def step_postgraphile(self) -> None:
        label = "(c) PostGraphile 5 (NOT authenticating: by id)"
        try:
            node, version = tools.ensure_peers_node()
        except Missing as error:
            self.results["overview"].append(
                {"key": "postgraphile", "setup": label, "failed": str(error)}
            )
            self.problem(f"PostGraphile not run: {error}")
            return
        self.results["versions"]["postgraphile"] = version
        self.results["versions"]["node (PostGraphile)"] = subprocess.run(
            [node, "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        self.note(
            "PostGraphile does not authenticate: it is asked for subscriberByRowId(rowId: i) "
            "with no token check; it has no daysLeft and does not filter the open promise and "
            "the connected packages (the amber preset allows conditions on indexed columns only)"
        )

        def make() -> Server:
            port = tools.free_port()
            return Server(
                name="PostGraphile",
                argv=[node, "postgraphile.mjs"],
                env={
                    **os.environ,
                    "DATABASE_URL": self.pg.url(self.db),
                    "PORT": str(port),
                    "NODE_ENV": "production",
                },
                port=port,
                log_path=self.work / "postgraphile.log",
                cwd=PEERS,
            )

        self.overview_step(
            "postgraphile",
            label,
            make,
            check=self.postgraphile_answer,
            mode="id",
            peer=True,
        )

    def step_sql_cost(self) -> None:
        say("SQL cost: statements per overview request, in-process (ASGI)")
        subscriber, contracts = self.pg.run(self.db, _make_five_contract_subscriber)
        try:
            counts = asyncio.run(_count_overview_statements(self.pg.sqlalchemy_url(self.db)))
        finally:
            self.pg.run(self.db, lambda conn: _drop_subscriber(conn, subscriber, contracts))
        self.results["sql_cost"] = counts
        say(
            f"  1 contract: {counts['1 contract']['statements']} statements,"
            f" 5 contracts: {counts['5 contracts']['statements']} statements"
        )
        if counts["1 contract"]["statements"] != counts["5 contracts"]["statements"]:
            self.problem("the overview's statement count grows with the number of contracts")

    def step_webhook(self) -> None:
        seconds = self.args.duration
        main_count = int(WEBHOOK_HEADROOM_PER_SECOND * seconds)
        warm_count = int(WEBHOOK_HEADROOM_PER_SECOND * WARMUP_SECONDS)
        say(f"webhook: preparing {main_count + warm_count:,} PENDING payments")
        ids = self.pg.run(
            self.db, lambda conn: _make_pending_payments(conn, main_count + warm_count)
        )
        warm_ids, main_ids = ids[:warm_count], ids[warm_count:]
        ledger_from = int(
            self.pg.value(self.db, "SELECT coalesce(max(id), 0) FROM ledger_entries") or 0
        )
        from core.payment_providers import payment_global_id, sign
        from core.settings import Settings

        settings = Settings(webhook_secret=WEBHOOK_SECRET, database_url="sqlite://")

        def write_events(path: Path, payment_ids: list[int]) -> None:
            with open(path, "w") as out:
                for pk in payment_ids:
                    body = json.dumps(
                        {
                            "paymentId": payment_global_id(pk),
                            "status": "SUCCEEDED",
                            "providerReference": f"bench-webhook-{pk}",
                        },
                        separators=(",", ":"),
                    ).encode()
                    out.write(f"{body.decode()}\t{sign(settings, body)}\n")

        warm_file, main_file = self.work / "webhook-warm.tsv", self.work / "webhook.tsv"
        write_events(warm_file, warm_ids)
        write_events(main_file, main_ids)
        say(f"webhook: {seconds:.0f} s at {CONNECTIONS} connections, each payment once")
        server = self.kabinet(1, "webhook")
        row: dict[str, Any] = {}
        try:
            server.start()
            server.wait_ready(
                lambda: (
                    tools.post_json(
                        server.base + "/webhooks/payments", b"{}", {"X-Signature": "00"}
                    )[0]
                    == 401
                )
            )
            url = server.base + "/webhooks/payments"
            env = {"BENCH_THREADS": str(THREADS)}
            tools.run_wrk(
                self.wrk,
                url,
                BENCH / "webhook.lua",
                seconds=WARMUP_SECONDS,
                env={**env, "BENCH_WEBHOOK_FILE": str(warm_file)},
            )
            cpu_before = server.cpu()
            pg_before = tools.database_backends_cpu(self.db)
            busy_before, wrk_before = tools.machine_busy(), tools.children_cpu()
            result = tools.run_wrk(
                self.wrk,
                url,
                BENCH / "webhook.lua",
                seconds=seconds,
                env={**env, "BENCH_WEBHOOK_FILE": str(main_file)},
            )
            cpu = server.cpu() - cpu_before
            pg_cpu = tools.backends_cpu_delta(pg_before, tools.database_backends_cpu(self.db))
            other = tools.machine_busy() - busy_before - cpu - pg_cpu
            other -= tools.children_cpu() - wrk_before
        finally:
            server.stop()
        settle_bench_letters(self.pg, self.db)
        duration = result["duration_us"] / 1e6
        state = self.pg.run(self.db, lambda conn: _payments_state(conn, main_ids, ledger_from))
        warm_state = self.pg.run(self.db, lambda conn: _payments_state(conn, warm_ids, ledger_from))
        self.pg.run(
            self.db,
            lambda conn: _delete_unreferenced_payments(
                conn, "id = ANY($1::bigint[]) AND status = 'PENDING'", ids
            ),
        )
        row = {
            "payments_prepared": len(main_ids),
            "seconds": round(duration, 2),
            "confirmed": state["succeeded"],
            "confirmations_per_second": round(state["succeeded"] / duration, 1),
            "answers_applied": result["applied"],
            "answers_replayed": result["replayed"],
            "bad_answers": result["bad_answers"],
            "socket_errors": result["errors"],
            "exhausted": result["sent"] >= len(main_ids),
            "p50_ms": round(result["p50_us"] / 1000, 1),
            "p99_ms": round(result["p99_us"] / 1000, 1),
            "server_cpu_ms_per_confirmation": round(cpu * 1000 / max(1, state["succeeded"]), 3),
            "pg_cpu_ms_per_confirmation": round(pg_cpu * 1000 / max(1, state["succeeded"]), 3),
            "other_cpu_cores": round(max(0.0, other) / duration, 2),
            "ledger_entries_per_confirmed_payment_max": state["max_entries"],
            "payments_with_one_entry": state["one_entry"],
            "server_errors_logged": server.logged_errors(),
        }
        exactly_once = (
            state["succeeded"] == state["one_entry"]
            and state["max_entries"] <= 1
            and state["other"] == 0
            and warm_state["max_entries"] <= 1
            and state["events_max"] <= 1
        )
        row["exactly_once"] = exactly_once
        say(
            f"  {row['confirmations_per_second']:,.0f} confirmations/s"
            f" ({state['succeeded']:,} in {duration:.1f} s), p99 {row['p99_ms']} ms,"
            f" server CPU {row['server_cpu_ms_per_confirmation']} ms each,"
            f" exactly once: {'yes' if exactly_once else 'NO'}"
        )
        if row["exhausted"]:
            self.note("webhook: every prepared payment was sent: the rate is a lower bound")
        if result["bad_answers"] or any(result["errors"].values()):
            self.problem(
                f"webhook: {result['bad_answers']} bad answers, socket errors {result['errors']}"
                f" (log: {server.log_path})"
            )
        say("ledger: kabinet ledger verify")
        verify = self.kabinet_cli(self.db, "ledger", "verify")
        last = (verify.stdout.strip().splitlines() or [verify.stderr.strip()[-300:]])[-1]
        row["ledger_verify"] = last
        row["ledger_ok"] = verify.returncode == 0
        say(f"  {last}")
        self.results["webhook"] = row
        if not exactly_once:
            raise BenchFailure(f"webhook: payments not SUCCEEDED exactly once: {state}")
        if verify.returncode != 0:
            raise BenchFailure(f"ledger verify failed:\n{verify.stdout[-2000:]}{verify.stderr}")

    def billing(self, database: str) -> dict[str, Any]:
        day = self.pg.value(
            database,
            "SELECT coalesce(max(day) + 1, (now() AT TIME ZONE 'UTC')::date) FROM billing_charges",
        )
        contracts = int(self.pg.value(database, "SELECT count(*) FROM contracts") or 0)
        say(f"billing day {day} over {contracts:,} contracts ({database})")
        # As on a server, where a day has passed since the last billing day: the pages it
        # writes have been checkpointed since (each first write after a checkpoint logs the
        # whole page), and nothing an earlier step dirtied is still being flushed meanwhile.
        import asyncpg

        try:
            self.pg.execute(database, "CHECKPOINT")
        except asyncpg.InsufficientPrivilegeError as error:  # not a superuser (or pg_checkpoint)
            self.note(f"billing day measured without a CHECKPOINT first: {error}")
        started = time.perf_counter()
        done = self.kabinet_cli(database, "billing", "run", "--date", day.isoformat())
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise BenchFailure(f"kabinet billing run failed:\n{done.stdout[-2000:]}{done.stderr}")
        own = re.search(r"seconds\s*:\s*([\d.]+)", done.stdout)
        charged = re.search(r"contracts charged\s*:\s*(\d+)", done.stdout)
        seconds = float(own.group(1)) if own else wall
        say(f"  {seconds:.1f} s ({wall:.1f} s with the command's start)")
        return {
            "database": database,
            "day": day.isoformat(),
            "contracts": contracts,
            "contracts_charged": int(charged.group(1)) if charged else None,
            "seconds": round(seconds, 2),
            "wall_seconds": round(wall, 2),
        }

    def step_billing(self) -> None:
        first = self.billing(self.db)
        first["shape"] = self.results.get("data", {}).get("shape", "full")
        self.results["billing"] = {"runs": [first]}
        points = [(first["contracts"], first["seconds"])]
        if not self.args.quick and not self.args.skip_300k:
            big = "kabinet_bench_300k"
            shape = "billing" if self.args.light_300k else "full"
            made = prepare_database(self.pg, big, 300_000, self.args.reuse, shape)
            if made["shape"] != "full":
                self.note(
                    "the 300k database has the billing day's shape only (no payment and bonus "
                    "history; --light-300k): its billing is ~20% faster than on full data, so "
                    "the 1M estimate is optimistic"
                )
            self.results["data_300k"] = made
            second = self.billing(big)
            second["shape"] = made["shape"]
            self.results["billing"]["runs"].append(second)
            points.append((second["contracts"], second["seconds"]))
        if len(points) == 2 and points[1][0] != points[0][0]:
            (n1, t1), (n2, t2) = points
            slope = (t2 - t1) / (n2 - n1)
            estimate = t2 + slope * (1_000_000 - n2)
            how = f"linear through {n1:,} and {n2:,} contracts"
        else:
            n1, t1 = points[0]
            estimate = t1 * 1_000_000 / max(1, n1)
            how = f"proportional from {n1:,} contracts (one point)"
        self.results["billing"]["estimate_1m_seconds"] = round(estimate, 1)
        self.results["billing"]["estimate_method"] = how
        say(f"  billing day for 1,000,000 contracts ≈ {estimate:.0f} s ({how})")

    # -- the whole run

    def run(self) -> int:
        started = time.perf_counter()
        say(f"Kabinet benchmark: work files in {self.work}")
        version = self.pg.check()
        self.wrk = tools.ensure_wrk()
        self.results["versions"] = _versions(version, self.wrk)
        self.results["machine"] = _machine()
        if not self.args.skip_peers:
            try:
                tools.ensure_peers_node()  # early, so that a missing npm is said at once
            except Missing as error:
                say(f"note: {error}")
        exit_code = 0
        try:
            data = prepare_database(self.pg, self.db, self.args.n, self.args.reuse)
            self.args.n = data["subscribers"]
            self.results["parameters"]["subscribers"] = self.args.n
            self.results["data"] = data
            self.pg.run(self.db, _drop_leftovers)
            steps = {
                "sql": self.step_sql_cost,
                "overview": self.step_overview,
                "pages": self.step_pages,
                "peers": self.step_peers,
                "webhook": self.step_webhook,
                "billing": self.step_billing,
            }
            for name, step in steps.items():
                if self.args.only and name not in self.args.only:
                    continue
                step()
        except BenchFailure as error:
            exit_code = 1
            self.results["failure"] = str(error)
            say(f"\nFAILED: {error}")
        finally:
            self.results["total_seconds"] = round(time.perf_counter() - started, 1)
            self.results["targets"] = _targets(self.results)
            (BENCH / "results.json").write_text(
                json.dumps(self.results, indent=2, ensure_ascii=False, default=str) + "\n"
            )
        print("\n" + report(self.results), flush=True)
        say(f"\nwritten: bench/results.json  (total {self.results['total_seconds'] / 60:.1f} min)")
        return exit_code


# -- SQL helpers (asyncpg) ---------------------------------------------------------------


async def _drop_leftovers(conn: Any) -> None:
    """What an interrupted run may have left: the 5-contract subscriber, unsent payments."""
    found = await conn.fetchval("SELECT id FROM subscribers WHERE email = $1", FIVE_EMAIL)
    if found is not None:
        contracts = [
            r["id"]
            for r in await conn.fetch("SELECT id FROM contracts WHERE subscriber_id = $1", found)
        ]
        await _drop_subscriber(conn, found, contracts)
    await _delete_unreferenced_payments(
        conn, "status = 'PENDING' AND idempotency_scope LIKE 'bench-webhook:%'"
    )


async def _delete_unreferenced_payments(conn: Any, where: str, *args: Any) -> None:
    """Delete payments that nothing refers to (PENDING ones the bench made and never sent,
    the 5-contract subscriber's): with the foreign-key triggers off for the statement, as
    bonus_entries.payment_id has no index and each row's check would scan that table."""
    async with conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(
            f"""DELETE FROM payments p WHERE {where}
                  AND NOT EXISTS (SELECT 1 FROM payment_events e WHERE e.payment_id = p.id)
                  AND NOT EXISTS (SELECT 1 FROM receipts r WHERE r.payment_id = p.id)""",
            *args,
        )


async def _make_five_contract_subscriber(conn: Any) -> tuple[int, list[int]]:
    """A subscriber with 5 contracts shaped like the generator's (20 payments, 3 TV packages
    each) and the live token FIVE_TOKEN."""
    async with conn.transaction():
        subscriber = await conn.fetchval(
            """INSERT INTO subscribers (legal_status, display_name, document_hash,
                                        document_last4, email, phone, created_at)
               VALUES ('INDIVIDUAL', 'Абонент с пятью договорами', md5('bench-five'), '0005',
                       $1, '+79990000005', now()) RETURNING id""",
            FIVE_EMAIL,
        )
        contracts = [
            r["id"]
            for r in await conn.fetch(
                """INSERT INTO contracts (number, subscriber_id, region_code, address, status,
                                          balance, tariff_id, opened_on, created_at)
                   SELECT '59' || lpad(($1 * 10 + k)::text, 10, '0'), $1, c.region_code,
                          c.address, 'ACTIVE', c.balance, c.tariff_id, c.opened_on, now()
                   FROM (SELECT * FROM contracts ORDER BY id LIMIT 1) AS c,
                        generate_series(1, 5) AS k
                   RETURNING id""",
                subscriber,
            )
        ]
        await conn.execute(
            """INSERT INTO payments (contract_id, amount, method, status, idempotency_scope,
                                     idempotency_key, request_fingerprint, provider,
                                     provider_reference, created_at, confirmed_at)
               SELECT c, 500, 'BANK_CARD', 'SUCCEEDED', 'bench-five:' || c, 'key-' || i, 'bench',
                      'sandbox', 'bench-five-' || c || '-' || i, now() - i * interval '15 days',
                      now() - i * interval '15 days'
               FROM unnest($1::bigint[]) AS c, generate_series(20, 1, -1) AS i""",
            contracts,
        )
        await conn.execute(
            """INSERT INTO contract_tv_packages (contract_id, package_id, started_on, connected_at)
               SELECT c, p.id, current_date - 30, now()
               FROM unnest($1::bigint[]) AS c,
                    (SELECT id FROM tv_packages WHERE NOT archived ORDER BY id LIMIT 3) AS p""",
            contracts,
        )
        await conn.execute(
            "INSERT INTO bonus_accounts (subscriber_id, points) VALUES ($1, 100)", subscriber
        )
        await conn.execute(
            """INSERT INTO auth_sessions (principal_kind, subscriber_id, access_token_hash,
                                          created_at, last_used_at, access_issued_at,
                                          access_expires_at, expires_at)
               VALUES ('SUBSCRIBER', $1, encode(sha256(convert_to($2, 'UTF8')), 'hex'), now(),
                       now(), now(), now() + interval '1 hour', now() + interval '1 day')""",
            subscriber,
            FIVE_TOKEN,
        )
    return subscriber, contracts


async def _drop_subscriber(conn: Any, subscriber: int, contracts: list[int]) -> None:
    await _delete_unreferenced_payments(conn, "contract_id = ANY($1::bigint[])", contracts)
    async with conn.transaction():
        await conn.execute("DELETE FROM contracts WHERE id = ANY($1::bigint[])", contracts)
        await conn.execute("DELETE FROM subscribers WHERE id = $1", subscriber)


async def _count_overview_statements(url: str) -> dict[str, Any]:
    import httpx
    from sqlalchemy import event

    from core.db import STATEMENT_LISTENERS
    from core.settings import Settings
    from kabinet.app import create_app

    settings = Settings(database_url=url, env="development", log_level="WARNING")
    app = create_app(settings)
    engine = app.state.engine
    counted: dict[str, Any] = {}
    statements: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    def fast(statement: str) -> None:
        statements.append(statement)

    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for label, token, contracts in (
                ("1 contract", "bench-token-1", 1),
                ("5 contracts", FIVE_TOKEN, 5),
            ):
                headers = {"Authorization": f"Bearer {token}"}
                body = {"query": OVERVIEW_QUERY}
                await client.post("/graphql", json=body, headers=headers)  # warm the caches
                statements.clear()
                event.listen(engine.sync_engine, "before_cursor_execute", before)
                STATEMENT_LISTENERS.append(fast)
                try:
                    answer = await client.post("/graphql", json=body, headers=headers)
                finally:
                    event.remove(engine.sync_engine, "before_cursor_execute", before)
                    STATEMENT_LISTENERS.remove(fast)
                payload = answer.json()
                got = ((payload.get("data") or {}).get("me") or {}).get("contracts") or []
                if payload.get("errors") or len(got) != contracts:
                    raise BenchFailure(
                        f"in-process overview for {label} answered {str(payload)[:600]}"
                    )
                counted[label] = {
                    "statements": len(statements),
                    "sql": [" ".join(s.split())[:160] for s in statements],
                }
    finally:
        await engine.dispose()
    return counted


async def _make_pending_payments(conn: Any, count: int) -> list[int]:
    """`count` PENDING top-ups over the contracts in turn (distinct contracts while count ≤
    the contracts), set-based. Ids follow the turn, so that payments sent one after another
    (and so at the same time) are of distinct contracts; with more payments than contracts
    those of one contract are the number of contracts apart."""
    contracts = int(await conn.fetchval("SELECT count(*) FROM contracts"))
    # (the modulus is a parameter, so that the join is a hash join, not a nested loop; the
    # ORDER BY g numbers the rows in turn: the join alone returns them grouped by contract)
    rows = await conn.fetch(
        """WITH cs AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS r FROM contracts)
           INSERT INTO payments (contract_id, amount, method, status, idempotency_scope,
                                 idempotency_key, request_fingerprint, provider, created_at)
           SELECT cs.id, 100, 'BANK_CARD', 'PENDING', 'bench-webhook:' || cs.id,
                  'wh-' || $2 || '-' || g, 'bench', 'sandbox', now()
           FROM generate_series(0, $1 - 1) AS g JOIN cs ON cs.r = g % $3
           ORDER BY g
           RETURNING id""",
        count,
        str(time.time_ns()),
        max(1, contracts),
    )
    return sorted(r["id"] for r in rows)


async def _payments_state(conn: Any, ids: list[int], ledger_from: int) -> dict[str, int]:
    """Status counts of the payments `ids`, and how many ledger entries (with id above
    `ledger_from`) and provider events each got."""
    row = await conn.fetchrow(
        """WITH p AS (SELECT id, status FROM payments WHERE id = ANY($1::bigint[])),
                e AS (SELECT reference, count(*) AS n FROM ledger_entries
                      WHERE id > $2 AND reference = ANY(SELECT 'payment:' || id FROM p)
                      GROUP BY reference),
                ev AS (SELECT payment_id, count(*) AS n FROM payment_events
                       WHERE payment_id = ANY($1::bigint[]) GROUP BY payment_id)
           SELECT (SELECT count(*) FROM p WHERE status = 'SUCCEEDED') AS succeeded,
                  (SELECT count(*) FROM p WHERE status = 'PENDING') AS pending,
                  (SELECT count(*) FROM p WHERE status NOT IN ('SUCCEEDED', 'PENDING')) AS other,
                  (SELECT count(*) FROM e WHERE n = 1) AS one_entry,
                  (SELECT coalesce(max(n), 0) FROM e) AS max_entries,
                  (SELECT coalesce(max(n), 0) FROM ev) AS events_max""",
        ids,
        ledger_from,
    )
    return {key: int(value) for key, value in dict(row).items()}


# -- report ------------------------------------------------------------------------------


def _versions(postgres: str, wrk: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {
        "kabinet": _revision(),
        "python": platform.python_version(),
        "postgresql": postgres.split(" on ")[0],
        "wrk": tools.wrk_version(wrk),
    }
    for package in ("strawberry-graphql", "starlette", "sqlalchemy", "asyncpg", "uvicorn"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def _revision() -> str:
    """The commit of the Kabinet under test (+dirty when tracked files differ from it)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("BENCH_KABINET_REVISION", "unknown (no git)")
    return head + ("+dirty" if dirty else "")


def _machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "load_average_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def _row(results: dict[str, Any], key: str) -> dict[str, Any] | None:
    for row in results.get("overview", []):
        if row.get("key") == key and "failed" not in row and "requests_per_second" in row:
            return row
    return None


def _targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    k1, k2 = _row(results, "kabinet_1"), _row(results, "kabinet_2")
    pgl = _row(results, "postgraphile")
    out: list[dict[str, Any]] = []

    def add(name: str, target: str, value: Any, met: bool | None) -> None:
        out.append({"target": name, "wanted": target, "measured": value, "met": met})

    if k1:
        cpu = k1["server_cpu_ms_per_request"]
        add("overview server CPU/request (1 worker)", "≤ 1.5 ms", f"{cpu} ms", cpu <= 1.5)
        if pgl:
            add(
                "overview server CPU/request vs PostGraphile",
                f"≤ {pgl['server_cpu_ms_per_request']} ms",
                f"{cpu} ms",
                cpu <= pgl["server_cpu_ms_per_request"],
            )
            add(
                "overview req/s vs PostGraphile",
                f"≥ {pgl['requests_per_second']:,.0f}",
                f"{k1['requests_per_second']:,.0f}",
                k1["requests_per_second"] >= pgl["requests_per_second"],
            )
        add("overview p99 at 32 connections", "< 50 ms", f"{k1['p99_ms']} ms", k1["p99_ms"] < 50)
    if k1 and k2:
        ratio = k2["requests_per_second"] / max(0.1, k1["requests_per_second"])
        add("2 workers vs 1 (req/s)", "report (< 2× on 2 shared cores)", f"×{ratio:.2f}", None)
    pages = {row["key"]: row for row in results.get("pages", []) if "requests" in row}
    overview = pages.get("overview")
    if overview:
        base = max(0.001, overview["server_cpu_ms_per_request"])
        for key, row in pages.items():
            if key == "overview":
                continue
            ratio = row["server_cpu_ms_per_request"] / base
            add(
                f"page {key}: server CPU vs the overview's",
                f"≤ {PAGE_TARGET_RATIO}×",
                f"×{ratio:.2f}",
                ratio <= PAGE_TARGET_RATIO,
            )
    idle = _row(results, "kabinet_1_idle")
    if k1 and idle:
        ratio = idle["server_cpu_ms_per_request"] / max(0.001, k1["server_cpu_ms_per_request"])
        add(
            "touch path (idle sessions) vs read path: server CPU",
            f"≤ {TOUCH_TARGET_RATIO}×",
            f"×{ratio:.2f}",
            ratio <= TOUCH_TARGET_RATIO,
        )
    cost = results.get("sql_cost")
    if cost:
        one, five = cost["1 contract"]["statements"], cost["5 contracts"]["statements"]
        add("SQL statements, 1 vs 5 contracts", "equal", f"{one} vs {five}", one == five)
    hook = results.get("webhook")
    if hook:
        rate = hook["confirmations_per_second"]
        add("webhook confirmations/s", "≥ 1,000", f"{rate:,.0f}", rate >= 1000)
    billing = results.get("billing")
    if billing and "estimate_1m_seconds" in billing:
        est = billing["estimate_1m_seconds"]
        add("billing day, 1M contracts", "< 60 s", f"≈ {est:.0f} s", est < 60)
    storm = results.get("login_storm")
    if storm and storm.get("p99_ratio"):
        add(
            "login storm: overview p99 increase",
            "< 2×",
            f"×{storm['p99_ratio']}",
            storm["p99_ratio"] < 2,
        )
    return out


def _table(headers: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def report(results: dict[str, Any]) -> str:
    p = results["parameters"]
    machine = results.get("machine", {})
    parts = [
        f"Kabinet benchmark — {p['subscribers']:,} subscribers, wrk -t{p['wrk_threads']} "
        f"-c{p['connections']}, {p['seconds_per_step']:.0f} s per step after "
        f"{p['warmup_seconds']} s warm-up, {machine.get('cpus')} CPUs "
        f"({machine.get('cpu_model', '')}), load generator, servers and PostgreSQL on one machine;"
        f" Kabinet {results.get('versions', {}).get('kabinet', '?')}",
        "",
        "Account overview (a random subscriber per request, each with its own token)",
    ]
    base = _row(results, "handwritten")
    rows = []
    order = [
        "ceiling",
        "handwritten",
        "postgraphile",
        "kabinet_1",
        "kabinet_2",
        "kabinet_1_storm",
        "kabinet_1_idle",
    ]
    by_key = {row["key"]: row for row in results.get("overview", [])}
    for key in order:
        row = by_key.get(key)
        if row is None:
            continue
        if "failed" in row or "requests_per_second" not in row:
            rows.append(
                [row["setup"], "FAILED", "", "", "", "", "", "", row.get("failed", "?")[:70]]
            )
            continue
        ratio = (
            f"{row['requests_per_second'] / base['requests_per_second']:.2f}"
            if base and base["requests_per_second"]
            else "-"
        )
        bad = row["bad_answers"] + sum(row["socket_errors"].values())
        rows.append(
            [
                row["setup"],
                f"{row['requests_per_second']:,.0f}",
                ratio,
                f"{row['p50_ms']:.1f}",
                f"{row['p99_ms']:.1f}",
                f"{row['server_cpu_ms_per_request']:.3f}",
                f"{row['pg_cpu_ms_per_request']:.3f}",
                f"{row['other_cpu_cores']:.2f}",
                str(bad)
                + (
                    f" ({row['server_errors_logged']} errors logged)"
                    if row.get("server_errors_logged")
                    else ""
                ),
            ]
        )
    parts.append(
        _table(
            [
                "setup",
                "req/s",
                "×(b)",
                "p50 ms",
                "p99 ms",
                "server CPU ms/req",
                "PG CPU ms/req",
                "other load",
                "bad",
            ],
            rows,
            {1, 2, 3, 4, 5, 6, 7},
        )
    )
    parts.append(
        "server CPU: the server processes' own CPU time over the run / requests (all workers);"
        " PG CPU: the same for the PostgreSQL backends of the bench database; other load: cores"
        " busy with anything else meanwhile (other processes, PostgreSQL's background work, the"
        " storm's driver), i.e. the noise under req/s and latencies"
    )
    if results.get("handwritten_same_answer_as_kabinet") is not None:
        same = results["handwritten_same_answer_as_kabinet"]
        parts.append(
            f"(b) answers the same JSON as Kabinet (subscriber 1): {'yes' if same else 'NO'}"
        )
    if _row(results, "postgraphile") or "postgraphile" in by_key:
        parts.append(
            "(c) PostGraphile is NOT authenticating (asked by subscriber id, no token check),"
            " and has no daysLeft."
        )
    pages = [row for row in results.get("pages", []) if "requests" in row]
    if pages:
        base = next((r for r in pages if r["key"] == "overview"), None)
        parts += ["", "Pages (Kabinet 1 worker, each page in turn on one server)"]
        page_rows = []
        for row in pages:
            ratio = (
                f"×{row['server_cpu_ms_per_request'] / base['server_cpu_ms_per_request']:.2f}"
                if base and base["server_cpu_ms_per_request"]
                else "-"
            )
            page_rows.append(
                [
                    row["page"],
                    f"{row['requests_per_second']:,.0f}",
                    f"{row['p99_ms']:.1f}",
                    f"{row['server_cpu_ms_per_request']:.3f}",
                    ratio,
                    f"≤ ×{PAGE_TARGET_RATIO}" if row["key"] != "overview" else "",
                    f"{row['pg_cpu_ms_per_request']:.3f}",
                ]
            )
        parts.append(
            _table(
                ["page", "req/s", "p99 ms", "server CPU ms/req", "× overview", "target", "PG CPU"],
                page_rows,
                {1, 2, 3, 4, 6},
            )
        )
    cost = results.get("sql_cost")
    if cost:
        parts += [
            "",
            "SQL statements per overview request (in-process, after a warm-up request): "
            f"1 contract: {cost['1 contract']['statements']}, "
            f"5 contracts: {cost['5 contracts']['statements']}",
        ]
    storm = results.get("login_storm")
    if storm:
        logins = storm.get("logins", {})
        parts += [
            "",
            f"Login storm ({storm['rate']}/s for {storm['seconds']} s, Kabinet 1 worker): "
            f"overview p99 {storm['p99_without_ms']} → {storm['p99_with_ms']} ms "
            f"(×{storm['p99_ratio']}), req/s {storm['overview_rps_without']:,.0f} → "
            f"{storm['overview_rps_with']:,.0f}; sign-ins ok {logins.get('ok')}/"
            f"{logins.get('attempted')}, sign-in p50 {logins.get('p50_ms')} ms, "
            f"p99 {logins.get('p99_ms')} ms",
        ]
    hook = results.get("webhook")
    if hook:
        parts += [
            "",
            f"Webhook (Kabinet 1 worker, {p['connections']} connections, distinct payments): "
            f"{hook['confirmations_per_second']:,.0f} confirmations/s "
            f"({hook['confirmed']:,} in {hook['seconds']} s), p50 {hook['p50_ms']} ms, "
            f"p99 {hook['p99_ms']} ms, server CPU {hook['server_cpu_ms_per_confirmation']} ms, "
            f"PG CPU {hook['pg_cpu_ms_per_confirmation']} ms per confirmation; "
            f"other load {hook['other_cpu_cores']} cores; "
            f"exactly once: {'yes' if hook['exactly_once'] else 'NO'}; "
            f"{hook.get('ledger_verify', '')}",
        ]
    billing = results.get("billing")
    if billing:
        runs = ", ".join(
            f"{r['contracts']:,} contracts ({r.get('shape', 'full')} data): {r['seconds']:.1f} s"
            for r in billing["runs"]
        )
        parts += ["", f"Billing day: {runs}"]
        if "estimate_1m_seconds" in billing:
            parts.append(
                f"  1,000,000 contracts ≈ {billing['estimate_1m_seconds']:.0f} s "
                f"({billing['estimate_method']})"
            )
    targets = results.get("targets") or []
    if targets:
        parts += ["", "Targets (informative: timings never fail the run)"]
        parts.append(
            _table(
                ["target", "wanted", "measured", "met"],
                [
                    [
                        t["target"],
                        t["wanted"],
                        str(t["measured"]),
                        "-" if t["met"] is None else ("yes" if t["met"] else "NO"),
                    ]
                    for t in targets
                ],
                set(),
            )
        )
    for note in results.get("notes", []):
        parts.append(f"note: {note}")
    for problem in results.get("problems", []):
        parts.append(f"PROBLEM: {problem}")
    if results.get("failure"):
        parts.append(f"FAILED: {results['failure'].splitlines()[0]}")
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--quick", action="store_true", help="10,000 subscribers, 10 s steps")
    parser.add_argument("--n", type=int, help="subscribers (default 100,000; 10,000 quick)")
    parser.add_argument("--duration", type=float, help="seconds per load step (20; 10 quick)")
    parser.add_argument("--skip-peers", action="store_true", help="no ceiling/SQL/PostGraphile")
    parser.add_argument(
        "--skip-300k", action="store_true", help="no 300k database (billing extrapolated from N)"
    )
    parser.add_argument(
        "--light-300k",
        action="store_true",
        help="300k database without payment/bonus history (~25 s instead of ~7 min)",
    )
    parser.add_argument(
        "--reuse", action="store_true", help="reuse the bench databases when already filled"
    )
    parser.add_argument(
        "--only",
        type=lambda text: set(text.split(",")),
        default=None,
        help="run only these steps (comma-separated: sql,overview,pages,peers,webhook,billing)",
    )
    parser.add_argument(
        "--pg",
        default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432"),
        help="PostgreSQL server (no database name); default postgres@127.0.0.1:5432",
    )
    args = parser.parse_args()
    if args.n is None:
        args.n = 10_000 if args.quick else 100_000
    if args.duration is None:
        args.duration = 10.0 if args.quick else 20.0
    try:
        return Bench(args).run()
    except Missing as error:
        say(f"\nmake bench cannot run here: {error}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
