"""HTTP API load test: ``python -m bench.http_load [--workers 1 2] [--duration 10]``.

For each worker count it starts a throwaway PostgreSQL (or uses ``PHOENIX_DATABASE_URL``, a
role that may create databases and roles), fills a fresh migrated database with resources,
starts ``phoenix-resources api`` (``entrypoints.http.server.serve``) as a separate process on the
read-only role, and measures ``GET /api/v1/resources/{id}``:

1. **throughput**: ``wrk -t2 -c32`` for ``--duration`` seconds over random existing ids;
2. **latency at a fixed rate** (``--rate``, default 1,000 req/s): an open-loop asyncio client
   on raw keep-alive sockets. Each request has a scheduled start time and its latency is
   counted from that time, so a stalled server cannot hide queueing (no coordinated omission).

Everything it starts is stopped at the end. Figures print as one table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench.common import python_server

ROOT = Path(__file__).resolve().parents[1]
ROWS = 10_000
API_ROLE = "phoenix_api"


def log(msg: str) -> None:
    print(f"[http-load] {msg}", flush=True)


# --- the database --------------------------------------------------------------------------

@contextlib.contextmanager
def server_url() -> Iterator[str]:
    env = os.environ.get("PHOENIX_DATABASE_URL")
    if env:
        yield env
        return
    from tests.support.net import free_port

    from phoenix_resources.devstack import PostgresCluster

    home = Path(tempfile.mkdtemp(prefix="phoenix-http-load-"))
    cluster = PostgresCluster(home, port=free_port())
    cluster.start()
    try:
        yield cluster.url()
    finally:
        cluster.destroy()
        shutil.rmtree(home, ignore_errors=True)


def prepare_database(server: str, rows: int) -> tuple[str, str, list[str]]:
    """A migrated database with ``rows`` live resources: (writer URL, reader URL, ids)."""
    from urllib.parse import urlsplit, urlunsplit

    from phoenix_resources.adapters.postgres import schema

    name = f"httpload_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    parts = urlsplit(server)
    writer = urlunsplit(parts._replace(path=f"/{name}"))
    host = parts.netloc.rsplit("@", 1)[-1]
    reader = urlunsplit(parts._replace(path=f"/{name}", netloc=f"{API_ROLE}@{host}"))
    schema.upgrade(writer)
    with psycopg.connect(writer, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (API_ROLE,)).fetchone():
            conn.execute(f"CREATE ROLE {API_ROLE} LOGIN IN ROLE phoenix_reader")
        ids = [uuid.uuid4() for _ in range(rows)]
        with conn.cursor().copy(
                "COPY resources (id, name, config, status, version, last_command_id)"
                " FROM STDIN") as copy:
            for i, rid in enumerate(ids):
                copy.write_row((rid, f"resource-{i:06d}",
                                '{"region": "eu-west-1", "tier": "gold", "replicas": "3"}',
                                "active", 1 + i % 7, uuid.uuid4()))
        conn.execute("ANALYZE resources")
    return writer, reader, [str(i) for i in ids]


def reader_as(writer: str, reader: str, role: str) -> str:
    """``reader`` for a login role of its own (in ``phoenix_reader``), so that the CPU of
    its PostgreSQL backends can be told apart from another server's (:func:`cpu_seconds`)."""
    from urllib.parse import urlsplit, urlunsplit

    with psycopg.connect(writer, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            with contextlib.suppress(psycopg.errors.DuplicateObject):
                conn.execute(f"CREATE ROLE {role} LOGIN IN ROLE phoenix_reader")
    parts = urlsplit(reader)
    return urlunsplit(parts._replace(netloc=f"{role}@{parts.netloc.rsplit('@', 1)[-1]}"))


def drop_database(server: str, writer: str) -> None:
    name = writer.rsplit("/", 1)[-1]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# --- the API process -----------------------------------------------------------------------

def _cpu_ticks(pid: int) -> int:
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    return 0


def _ppid_and_cmd(pid: int) -> tuple[int, str]:
    try:
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError, IndexError):
        return 0, ""
    return ppid, cmd


def cpu_seconds(api_pid: int, role: str = API_ROLE) -> tuple[float, float]:
    """CPU time so far of (the API process tree, PostgreSQL backends of ``role``)."""
    procs = {int(d.name): _ppid_and_cmd(int(d.name)) for d in Path("/proc").iterdir()
             if d.name.isdigit()}
    tree = {api_pid}
    for pid, (ppid, _) in procs.items():
        if ppid in tree:
            tree.add(pid)
    hz = os.sysconf("SC_CLK_TCK")
    api = sum(_cpu_ticks(p) for p in tree) / hz
    pg = sum(_cpu_ticks(p) for p, (_, cmd) in procs.items()
             if cmd.startswith(f"postgres: {role} ")) / hz
    return api, pg


@contextlib.contextmanager
def api_process(writer: str, reader: str, port: int, workers: int) -> Iterator[int]:
    env = {"PHOENIX_DATABASE_URL": writer, "PHOENIX_READ_DATABASE_URL": reader,
           "PHOENIX_HTTP_PORT": str(port), "PHOENIX_HTTP_WORKERS": str(workers),
           "PHOENIX_DB_POOL_MIN": "2", "PHOENIX_DB_POOL_MAX": "8", "PHOENIX_LOG_LEVEL": "WARNING"}
    with python_server("phoenix_resources.entrypoints.http.server:serve", env,
                       lambda proc: wait_ready(port, proc), stop_timeout=15) as pid:
        yield pid


def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited with {proc.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(
                f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            if r.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError("the API did not become ready in 30 s")


# --- wrk (throughput) ----------------------------------------------------------------------

WRK_SCRIPT = """
local ids = {}
for line in io.lines("%s") do ids[#ids + 1] = line end
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "%s" .. ids[math.random(#ids)])
end
"""


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


LIST_PATH = "/api/v1/resources?limit=50"
"""The list endpoint's first page (keyset pagination: every page costs the same)."""


def run_wrk(port: int, ids: list[str], duration: int,
            prefix: str = "/api/v1/resources/") -> WrkResult:
    """``prefix`` + a random element of ``ids`` per request (ids=[""] for a fixed path)."""
    with tempfile.TemporaryDirectory() as tmp:
        id_file = Path(tmp, "ids.txt")
        id_file.write_text("\n".join(ids[:2000]) + "\n")
        script = Path(tmp, "ids.lua")
        script.write_text(WRK_SCRIPT % (id_file, prefix))
        out = subprocess.run(["wrk", "-t2", "-c32", f"-d{duration}s", "--latency", "-s",
                              str(script), f"http://127.0.0.1:{port}/"],
                             capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = dict(re.findall(r"^\s+(\d+)%\s+([\d.]+\w+)$", out, re.M))
    p50 = re.match(r"([\d.]+)(\w+)", pct["50"])
    p99 = re.match(r"([\d.]+)(\w+)", pct["99"])
    if p50 is None or p99 is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0)
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return WrkResult(rps, _ms(*p50.groups()), _ms(*p99.groups()), errors, total)


# --- fixed-rate open-loop client (latency) -------------------------------------------------

@dataclass
class RateResult:
    sent: int
    achieved_rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
    await reader.readexactly(length)
    return status


async def fixed_rate(port: int, ids: list[str], rate: int, duration: float,
                     *, connections: int = 64, prefix: str = "/api/v1/resources/",
                     ) -> RateResult:
    """Open loop: request i is due at t0 + i/rate; latency is measured from that instant."""
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    errors = 0
    # time.perf_counter, not loop.time(): uvloop's clock ticks in whole milliseconds.
    now = time.perf_counter

    async def fire(due: float, rid: str) -> None:
        nonlocal errors
        conn = await pool.get()
        req = f"GET {prefix}{rid} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        try:
            status = await _one(*conn, req)
        except (OSError, asyncio.IncompleteReadError):
            errors += 1
            conn = await asyncio.open_connection("127.0.0.1", port)
        else:
            if status != 200:
                errors += 1
            latencies.append(now() - due)
        pool.put_nowait(conn)

    total = int(rate * duration)
    t0 = now() + 0.05
    tasks = []
    for i in range(total):
        due = t0 + i / rate
        delay = due - now()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(due, random.choice(ids))))
    await asyncio.gather(*tasks)
    elapsed = now() - t0
    while not pool.empty():
        _, w = pool.get_nowait()
        w.close()
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return RateResult(total, total / elapsed, q[49] * 1000, q[98] * 1000,
                      max(latencies) * 1000, errors)


def _run(coro: Coroutine[Any, Any, RateResult]) -> RateResult:
    """uvloop when installed (it is, with uvicorn[standard]): the client should cost little."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# --- main ----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--rows", type=int, default=ROWS)
    ap.add_argument("--repeat", type=int, default=1, help="measurements per worker count")
    ap.add_argument("--control", action="store_true",
                    help="also run the fixed rate against /healthz (no database): the tail "
                         "the machine itself adds")
    args = ap.parse_args(argv)
    if not shutil.which("wrk"):
        log("wrk is not installed (apt-get install wrk)")
        return 1
    from tests.support.net import free_port

    rows = []
    with server_url() as server:
        writer, reader, ids = prepare_database(server, args.rows)
        try:
            for workers in args.workers:
                port = free_port()
                with api_process(writer, reader, port, workers) as pid:
                    run_wrk(port, ids, 2)  # warm-up: connections, prepared statements
                    for _ in range(args.repeat):
                        log(f"workers={workers}: wrk -t2 -c32 -d{args.duration}s "
                            f"(load average before: {os.getloadavg()[0]:.2f})")
                        api0, pg0 = cpu_seconds(pid)
                        w = run_wrk(port, ids, args.duration)
                        api1, pg1 = cpu_seconds(pid)
                        log(f"  CPU per request: API {(api1 - api0) / w.requests * 1e6:.0f} us,"
                            f" PostgreSQL {(pg1 - pg0) / w.requests * 1e6:.0f} us")
                        log(f"workers={workers}: fixed rate {args.rate}/s for {args.duration}s")
                        r = _run(fixed_rate(port, ids, args.rate, args.duration))
                        rows.append((workers, w, r))
                        if args.control:
                            c = _run(fixed_rate(port, [""], args.rate, args.duration,
                                                prefix="/healthz"))
                            log(f"  control /healthz @{args.rate}/s: p50 {c.p50_ms:.2f} ms, "
                                f"p99 {c.p99_ms:.2f} ms, max {c.max_ms:.1f} ms")
        finally:
            drop_database(server, writer)
    print()
    print("workers | wrk req/s | wrk p50 ms | wrk p99 ms | wrk errors "
          f"| @{args.rate}/s achieved | p50 ms | p99 ms | max ms | errors")
    for workers, w, r in rows:
        print(f"{workers:7d} | {w.rps:9.0f} | {w.p50_ms:10.2f} | {w.p99_ms:10.2f} | "
              f"{w.errors:10d} | {r.achieved_rps:14.0f} | {r.p50_ms:6.2f} | {r.p99_ms:6.2f} | "
              f"{r.max_ms:6.1f} | {r.errors:6d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
