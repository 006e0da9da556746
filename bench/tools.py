"""Helpers of the benchmark: the tools it needs (wrk, Node 22 + PostGraphile), servers it
starts and stops, CPU time read from /proc, and wrk runs."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PEERS = BENCH / "peers"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
NODE_MAJOR = 22


class Missing(RuntimeError):
    """Something the benchmark needs is not on this machine (the message says what)."""


class BenchFailure(RuntimeError):
    """A system under test misbehaved (errors in answers, money not balanced): loud."""


_STARTED = time.monotonic()


def say(text: str = "") -> None:
    """A progress line, with the minutes:seconds since the start."""
    if text and not text[0].isspace():
        elapsed = int(time.monotonic() - _STARTED)
        text = f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {text}"
    print(text, flush=True)


# -- tools -------------------------------------------------------------------------------


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


_apt_updated = False


def apt_install(*packages: str) -> bool:
    """`apt-get install -y` when running as root on Debian; False when that is not possible
    or fails."""
    global _apt_updated
    if not is_root() or shutil.which("apt-get") is None:
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        _apt_updated = True
    done = subprocess.run(
        ["apt-get", "install", "-y", "-qq", *packages],
        env=env,
        check=False,
        stdout=subprocess.DEVNULL,
    )
    return done.returncode == 0


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    say("wrk is not installed: installing Debian's wrk (apt-get install -y wrk)")
    if apt_install("wrk") and shutil.which("wrk"):
        return shutil.which("wrk") or "wrk"
    raise Missing(
        "wrk (the HTTP load generator) is missing and could not be installed here: "
        "install it (Debian/Ubuntu: `sudo apt-get install wrk`) and run `make bench` again"
    )


def wrk_version(wrk: str) -> str:
    out = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).splitlines()[0].strip() if (out.stdout or out.stderr) else ""


def node_major(node: str) -> int | None:
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = out.stdout.strip().lstrip("v")
    try:
        return int(text.split(".")[0])
    except ValueError:
        return None


def ensure_peers_node() -> tuple[str, str]:
    """(node binary ≥ 22, PostGraphile version) for bench/peers, running `npm ci` there when
    its node_modules are missing. Node 22 comes from the npm package `node@22` installed into
    bench/peers (the system Node is left alone)."""
    local_node = PEERS / "node_modules" / "node" / "bin" / "node"
    postgraphile = PEERS / "node_modules" / "postgraphile" / "package.json"
    if not (local_node.exists() and postgraphile.exists()):
        npm = shutil.which("npm")
        if npm is None:
            say("npm is not installed: installing Debian's nodejs and npm")
            apt_install("nodejs", "npm")
            npm = shutil.which("npm")
        if npm is None:
            raise Missing(
                "npm is missing: PostGraphile (bench/peers) is installed with `npm ci`; "
                "install Node.js and npm, or run with --skip-peers"
            )
        say("installing bench/peers (PostGraphile 5 and Node 22 from the npm registry): npm ci")
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=PEERS,
            check=False,
        )
        if done.returncode != 0:
            raise Missing(f"`npm ci` in bench/peers failed (exit {done.returncode})")
    candidates = [str(local_node)]
    if shutil.which("node"):
        candidates.append(shutil.which("node") or "node")
    for node in candidates:
        major = node_major(node)
        if major is not None and major >= NODE_MAJOR:
            version = json.loads(postgraphile.read_text())["version"]
            return node, version
    raise Missing(
        f"no Node ≥ {NODE_MAJOR} for PostGraphile: bench/peers/node_modules/node (the npm "
        "package node@22) did not install its binary; remove bench/peers/node_modules and "
        "run again, or run with --skip-peers"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- CPU time from /proc -----------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # after "pid (comm) ": field 3 (state) is index 0
    return text[text.rindex(")") + 2 :].split()


def process_cpu(pid: int) -> float:
    """utime + stime of one process (all its threads), seconds."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        fields = _stat_fields(pid)
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def tree_cpu(root: int) -> float:
    """CPU seconds of a process and all its descendants (uvicorn's workers)."""
    return sum(process_cpu(pid) for pid in process_tree(root))


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def children_cpu() -> float:
    """CPU seconds of this process's finished children (wrk runs, once waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def database_backends_cpu(database: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving `database` (by its process title)."""
    marker = f" {database} ".encode()
    found = {}
    for pid in _all_pids():
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if title.startswith(b"postgres:") and marker in title.replace(b"\0", b" "):
            found[pid] = process_cpu(pid)
    return found


def backends_cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


# -- servers -----------------------------------------------------------------------------


@dataclass
class Server:
    """A server under test, started in its own process group and stopped by its id."""

    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    cwd: Path = ROOT
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def wait_ready(self, probe: Callable[[], bool], timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise BenchFailure(
                    f"{self.name} exited with {self.process.returncode} while starting; "
                    f"its log:\n{self.log_tail()}"
                )
            try:
                if probe():
                    return
            except (OSError, urllib.error.URLError, ValueError):
                pass
            time.sleep(0.25)
        raise BenchFailure(f"{self.name} did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def cpu(self) -> float:
        return tree_cpu(self.process.pid) if self.process else 0.0

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        pgid = self.process.pid  # start_new_session: the group is the one we started
        for sig, wait in ((signal.SIGTERM, 8.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(line[:400] for line in text[-lines:])

    def logged_errors(self) -> int:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return 0
        return sum(
            1 for line in text.splitlines() if '"level": "ERROR"' in line or "Traceback" in line
        )


def post_json(
    url: str, body: bytes, headers: dict[str, str] | None = None, timeout: float = 30.0
) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# -- wrk ---------------------------------------------------------------------------------


def run_wrk(
    wrk: str,
    url: str,
    script: Path,
    *,
    seconds: float,
    env: dict[str, str],
    connections: int = 32,
    threads: int = 2,
) -> dict[str, Any]:
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(
        argv,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=False,
    )
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            result: dict[str, Any] = json.loads(line[len("BENCH_RESULT ") :])
            result["wrk_output"] = [
                text for text in done.stdout.splitlines() if not text.startswith("BENCH_RESULT")
            ]
            return result
    raise BenchFailure(
        f"wrk gave no result (exit {done.returncode}):\n"
        f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    )


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
