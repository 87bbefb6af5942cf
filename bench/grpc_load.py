"""gRPC lookup load test beside the HTTP one: ``python -m bench.grpc_load [--duration 10]
[--rate 1000] [--repeat 3] [--processes 1 2] [--no-ceiling]``.

It starts a throwaway PostgreSQL (or uses ``PHOENIX_DATABASE_URL``, a role that may create
databases and roles), fills a fresh migrated database with 10,000 resources
(``http_load.prepare_database``), starts ``phoenix-resources grpc`` once per ``--processes``
value (``PHOENIX_GRPC_PROCESSES``) and ``phoenix-resources api`` (one worker) as separate
processes on the read-only role, and measures ``GetResource`` beside
``GET /api/v1/resources/{id}``, over random existing ids:

1. **calls/s**: closed loop, 32 calls in flight for ``--duration`` seconds — ``ghz`` (Go,
   over :data:`CONNECTIONS` connections) for gRPC when it is on ``PATH`` (``go install
   github.com/bojand/ghz/cmd/ghz@latest``), else a Python ``grpc.aio`` client (which is then
   likely the limit, and the table says so); ``wrk -t2 -c32`` for HTTP, as ``http_load`` does;
2. **latency at a fixed rate** (``--rate``, default 1,000 calls/s), open loop: ``ghz --rps
   --async`` for gRPC (each call leaves on schedule, whatever the calls before it are doing;
   without ``ghz``, the Python client of :func:`fixed_rate`), ``http_load.fixed_rate`` for
   HTTP (each request due at ``t0 + i / rate`` and timed from that instant);
3. the CPU time per call of the server's processes, of their PostgreSQL backends, and of the
   closed-loop client (``ghz`` or ``wrk``, which shares the cores with them);
4. the **ceiling** (unless ``--no-ceiling``): the same ``ghz`` loops against
   ``bench/grpc_noop.py``, ``grpc.aio`` answering a constant message from as many processes
   as each gRPC server has — what Python gRPC costs per call on this machine before it does
   any work.

Rounds rotate through every server, so load from other work hits all alike; the table shows
medians over ``--repeat`` rounds with their range. Everything started is stopped at the end;
nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from bench import http_load
from bench.common import python_server
from bench.http_load import RateResult, cpu_seconds, log
from phoenix_resources.grpc_gen.phoenix.resources.v1 import resources_pb2 as pb
from phoenix_resources.grpc_gen.phoenix.resources.v1 import resources_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
METHOD = "phoenix.resources.v1.ResourceService.GetResource"
CONCURRENCY = 32
CONNECTIONS = 8
"""ghz's connections. Processes sharing a port get connections, not calls: over 4
connections, 2 processes would find all of them on one in 1 round of 8."""


# --- the servers ---------------------------------------------------------------------------

@contextlib.contextmanager
def grpc_process(writer: str, reader: str, port: int, bootstrap: str,
                 processes: int = 1) -> Iterator[int]:
    """``phoenix-resources grpc`` on ``port`` with ``processes`` server processes; yields
    its pid once every one of them listens and the service answers."""
    env = {"PHOENIX_DATABASE_URL": writer, "PHOENIX_READ_DATABASE_URL": reader,
           "PHOENIX_GRPC_PORT": str(port), "PHOENIX_GRPC_PROCESSES": str(processes),
           "PHOENIX_DB_POOL_MIN": "2", "PHOENIX_DB_POOL_MAX": "8",
           "PHOENIX_LOG_LEVEL": "WARNING", "PHOENIX_METRICS_PORT": "0",
           "PHOENIX_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
           # Lookups never publish; without a broker its producer would only log retries.
           "PHOENIX_KAFKA_OPTIONS": json.dumps({"log_level": "0"})}
    with python_server("phoenix_resources.entrypoints.grpc.server:serve", env,
                       lambda proc: _wait_serving(port, proc, processes),
                       stop_timeout=30) as pid:
        yield pid


@contextlib.contextmanager
def noop_process(port: int, processes: int = 1) -> Iterator[int]:
    """``bench/grpc_noop.py`` (the ceiling) on ``port``, ``processes`` of them; yields the
    first one's pid once all listen."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.grpc_noop", str(port),
                             str(processes)], cwd=ROOT)
    try:
        _wait_serving(port, proc, processes)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _listeners(port: int) -> int:
    """Listening sockets on ``port`` (one per process sharing it)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                count += fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port
    return count


def _wait_serving(port: int, proc: subprocess.Popen[bytes], listeners: int) -> None:
    deadline = time.monotonic() + 60
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.ResourceServiceStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the gRPC server exited with {proc.returncode}")
            try:
                stub.GetResource(pb.GetResourceRequest(id=str(uuid.uuid4())), timeout=1)
                answered = True
            except grpc.RpcError as e:
                answered = e.code() == grpc.StatusCode.NOT_FOUND
            if answered and _listeners(port) >= listeners:
                return
            time.sleep(0.1)
    raise RuntimeError("the gRPC server did not answer in 60 s")


# --- ghz -----------------------------------------------------------------------------------

@dataclass
class LoopResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    calls: int
    client: str
    client_us: float = float("nan")
    """CPU of the client process per call (ghz, wrk), when it ran as a process of its own."""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _ghz(ghz: str, port: int, ids: list[str], duration: int,
         *extra: str) -> tuple[dict[str, Any], float]:
    """ghz's JSON report and its CPU seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp, "ids.json")
        # An array: ghz sends its messages round-robin.
        data.write_text(json.dumps([{"id": i} for i in random.sample(ids, min(2000, len(ids)))]))
        before = _children_cpu()
        out = subprocess.run(
            [ghz, "--insecure", "--call", METHOD, "--data-file", str(data),
             "-c", str(CONCURRENCY), "--connections", str(CONNECTIONS), "-z", f"{duration}s",
             "--format", "json", *extra, f"127.0.0.1:{port}"],
            capture_output=True, text=True, check=True).stdout
        return json.loads(out), _children_cpu() - before


def _percentiles(report: dict[str, Any]) -> dict[int, float]:
    return {int(d["percentage"]): d["latency"] / 1e6
            for d in report.get("latencyDistribution") or []}


CUT = ("the client connection is closing", "transport is closing")
"""How ghz reports the calls still in flight when its time is up: not the server's errors."""


def _errors(report: dict[str, Any]) -> int:
    errors: dict[str, int] = report.get("errorDistribution") or {}
    return sum(n for text, n in errors.items() if not any(c in text for c in CUT))


def run_ghz(ghz: str, port: int, ids: list[str], duration: int) -> LoopResult:
    """Closed loop: 32 calls in flight."""
    report, cpu = _ghz(ghz, port, ids, duration)
    pct = _percentiles(report)
    calls = int(report["count"])
    return LoopResult(float(report["rps"]), pct[50], pct[99], _errors(report), calls,
                      f"ghz -c{CONCURRENCY}, {CONNECTIONS} connections",
                      cpu / max(calls, 1) * 1e6)


def ghz_fixed_rate(ghz: str, port: int, ids: list[str], rate: int,
                   duration: int) -> RateResult:
    """Open loop: ``rate`` calls/s, each sent on schedule (``--async``)."""
    report, _ = _ghz(ghz, port, ids, duration, "--rps", str(rate), "--async")
    pct = _percentiles(report)
    return RateResult(int(report["count"]), float(report["rps"]), pct[50], pct[99],
                      float(report["slowest"]) / 1e6, _errors(report))


# --- the Python clients (without ghz) --------------------------------------------------------

async def closed_loop(port: int, ids: list[str], duration: float) -> LoopResult:
    """The fallback: Python ``grpc.aio``, 32 calls in flight over 4 channels."""
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(4)]
    stubs = [pb_grpc.ResourceServiceStub(c) for c in channels]
    latencies: list[float] = []
    errors = 0
    end = time.perf_counter() + duration

    async def worker(n: int) -> None:
        nonlocal errors
        stub = stubs[n % len(stubs)]
        while (start := time.perf_counter()) < end:
            try:
                await stub.GetResource(pb.GetResourceRequest(id=random.choice(ids)), timeout=10)
            except grpc.aio.AioRpcError:
                errors += 1
            latencies.append(time.perf_counter() - start)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(CONCURRENCY)))
    elapsed = time.perf_counter() - t0
    for c in channels:
        await c.close()
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return LoopResult(len(latencies) / elapsed, q[49] * 1000, q[98] * 1000, errors,
                      len(latencies), "Python grpc.aio c=32 (the client may be the limit)")


async def fixed_rate(port: int, ids: list[str], rate: int, duration: float) -> RateResult:
    """Call i is due at t0 + i/rate; its latency counts from that instant."""
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(4)]
    stubs = [pb_grpc.ResourceServiceStub(c) for c in channels]
    for c in channels:
        await c.channel_ready()
    latencies: list[float] = []
    errors = 0
    now = time.perf_counter

    async def fire(i: int, due: float, rid: str) -> None:
        nonlocal errors
        try:
            await stubs[i % len(stubs)].GetResource(pb.GetResourceRequest(id=rid), timeout=10)
        except grpc.aio.AioRpcError:
            errors += 1
        else:
            latencies.append(now() - due)

    total = int(rate * duration)
    t0 = now() + 0.05
    tasks = []
    for i in range(total):
        due = t0 + i / rate
        delay = due - now()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(i, due, random.choice(ids))))
    await asyncio.gather(*tasks)
    elapsed = now() - t0
    for c in channels:
        await c.close()
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return RateResult(total, total / elapsed, q[49] * 1000, q[98] * 1000,
                      max(latencies) * 1000, errors)


# --- one round each ------------------------------------------------------------------------

@dataclass
class Round:
    loop: LoopResult
    rate: RateResult
    cpu_us: float
    pg_us: float


def measure_grpc(port: int, pid: int, ids: list[str], duration: int, rate: int, *,
                 ghz: str | None, role: str = http_load.API_ROLE) -> Round:
    api0, pg0 = cpu_seconds(pid, role)
    loop = run_ghz(ghz, port, ids, duration) if ghz else \
        asyncio.run(closed_loop(port, ids, duration))
    api1, pg1 = cpu_seconds(pid, role)
    fixed = ghz_fixed_rate(ghz, port, ids, rate, duration) if ghz else \
        asyncio.run(fixed_rate(port, ids, rate, duration))
    return Round(loop, fixed, (api1 - api0) / loop.calls * 1e6, (pg1 - pg0) / loop.calls * 1e6)


def measure_http(port: int, pid: int, ids: list[str], duration: int, rate: int) -> Round:
    api0, pg0 = cpu_seconds(pid)
    client0 = _children_cpu()
    w = http_load.run_wrk(port, ids, duration)
    client = (_children_cpu() - client0) / max(w.requests, 1) * 1e6
    api1, pg1 = cpu_seconds(pid)
    fixed = http_load._run(http_load.fixed_rate(port, ids, rate, duration))
    loop = LoopResult(w.rps, w.p50_ms, w.p99_ms, w.errors, w.requests, "wrk -t2 -c32", client)
    return Round(loop, fixed, (api1 - api0) / w.requests * 1e6, (pg1 - pg0) / w.requests * 1e6)


def grpc_key(processes: int) -> str:
    return "grpc" if processes == 1 else f"grpc{processes}"


def noop_key(processes: int) -> str:
    return "noop" if processes == 1 else f"noop{processes}"


def role(key: str) -> str:
    """The database role a server reads as: its own, so that its backends' CPU is its own."""
    return f"{http_load.API_ROLE}_{key}" if key.startswith("grpc") else http_load.API_ROLE


def compare(server: str, bootstrap: str, *, duration: int, rate: int, repeat: int,
            ghz: str | None, rows: int = http_load.ROWS, http: bool = True,
            processes: tuple[int, ...] = (1,), ceiling: bool = False,
            ) -> dict[str, list[Round]]:
    """gRPC servers (one per ``processes`` value), the HTTP API (unless ``http=False``) and
    the ceiling (with ``ceiling`` and ghz) on one database; ``repeat`` rotating rounds.
    Keys: grpc (one process), grpc<n> (n processes), http, noop, noop<n>."""
    from tests.support.net import free_port

    writer, reader, ids = http_load.prepare_database(server, rows)
    found: dict[str, list[Round]] = {}
    try:
        with contextlib.ExitStack() as stack:
            servers: dict[str, tuple[int, int]] = {}  # key -> (port, pid)
            for n in processes:
                port = free_port()
                as_role = http_load.reader_as(writer, reader, role(grpc_key(n)))
                servers[grpc_key(n)] = (port, stack.enter_context(
                    grpc_process(writer, as_role, port, bootstrap, n)))
            if http:
                port = free_port()
                servers["http"] = (port, stack.enter_context(
                    http_load.api_process(writer, reader, port, 1)))
            for n in processes if ceiling and ghz else ():
                port = free_port()
                servers[noop_key(n)] = (port, stack.enter_context(noop_process(port, n)))
            for key, (port, _) in servers.items():  # connections, prepared statements
                if key == "http":
                    http_load.run_wrk(port, ids, 2)
                elif ghz:
                    run_ghz(ghz, port, ids, 2)
                else:
                    asyncio.run(closed_loop(port, ids, 2))
            keys = list(servers)
            for i in range(repeat):
                for key in keys[i % len(keys):] + keys[:i % len(keys)]:
                    port, pid = servers[key]
                    log(f"round {i + 1}/{repeat} (load average {os.getloadavg()[0]:.2f}): "
                        f"{key}")
                    found.setdefault(key, []).append(
                        measure_http(port, pid, ids, duration, rate) if key == "http"
                        else measure_grpc(port, pid, ids, duration, rate, ghz=ghz,
                                          role=role(key)))
    finally:
        http_load.drop_database(server, writer)
    return found


# --- the table -----------------------------------------------------------------------------

def _med(rounds: list[Round], pick: Callable[[Round], float], digits: int) -> str:
    values = [pick(r) for r in rounds]
    mid = statistics.median(values)
    if len(values) == 1:
        return f"{mid:,.{digits}f}"
    return f"{mid:,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def label(key: str) -> str:
    if key == "http":
        return "HTTP GET /api/v1/resources/{id} (1 API process)"
    kind = "noop" if key.startswith("noop") else "grpc"
    n = int(key.removeprefix(kind) or 1)
    processes = f"{n} process{'es' if n > 1 else ''}"
    if kind == "noop":
        return f"ceiling: grpc.aio answering a constant, {processes} (bench/grpc_noop.py)"
    return f"gRPC GetResource ({processes})"


def ratio(found: dict[str, list[Round]], key: str, base: str = "http") -> float:
    """Median closed-loop rate of ``key`` over ``base``'s (NaN when either is missing)."""
    if not found.get(key) or not found.get(base):
        return float("nan")
    return (statistics.median(r.loop.rps for r in found[key])
            / statistics.median(r.loop.rps for r in found[base]))


def table(found: dict[str, list[Round]], rate: int) -> str:
    lines = [f"| lookup by id | calls/s, closed loop (client) | @{rate:,}/s p50 ms | "
             f"@{rate:,}/s p99 ms | @{rate:,}/s max ms | errors | CPU µs/call: server + "
             "PostgreSQL; client |", "|---|---|---|---|---|---|---|"]
    for key, rounds in found.items():
        if not rounds:
            continue
        errors = sum(r.loop.errors + r.rate.errors for r in rounds)
        lines.append(
            f"| {label(key)} | {_med(rounds, lambda r: r.loop.rps, 0)} "
            f"({rounds[0].loop.client}) | {_med(rounds, lambda r: r.rate.p50_ms, 2)} | "
            f"{_med(rounds, lambda r: r.rate.p99_ms, 2)} | "
            f"{_med(rounds, lambda r: r.rate.max_ms, 1)} | {errors} | "
            f"{_med(rounds, lambda r: r.cpu_us, 0)} + {_med(rounds, lambda r: r.pg_us, 0)}; "
            f"{_med(rounds, lambda r: r.loop.client_us, 0)} |")
    for key in found:
        if key.startswith("grpc") and "http" in found:
            ceiling = "noop" + key.removeprefix("grpc")
            lines.append(f"\n{label(key)} / HTTP lookup, closed loop: "
                         f"**{ratio(found, key):.2f}x**"
                         + (f"; / its ceiling ({ceiling}): {ratio(found, key, ceiling):.2f}x"
                            if ceiling in found else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3, help="rotating rounds")
    ap.add_argument("--rows", type=int, default=http_load.ROWS)
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2],
                    help="a gRPC server per value, with that many processes")
    ap.add_argument("--no-ceiling", action="store_true",
                    help="skip the no-op grpc.aio server")
    ap.add_argument("--ghz", default=shutil.which("ghz"),
                    help="the ghz binary (default: from PATH; none: a Python client)")
    ap.add_argument("--bootstrap", default=os.environ.get("PHOENIX_KAFKA_BOOTSTRAP_SERVERS",
                                                          "127.0.0.1:9"),
                    help="Kafka for the server's publisher (lookups never use it)")
    args = ap.parse_args(argv)
    if not shutil.which("wrk"):
        log("wrk is not installed (apt-get install wrk)")
        return 1
    with http_load.server_url() as server:
        found = compare(server, args.bootstrap, duration=args.duration, rate=args.rate,
                        repeat=args.repeat, ghz=args.ghz, rows=args.rows,
                        processes=tuple(args.processes), ceiling=not args.no_ceiling)
    print()
    print(f"medians of {args.repeat} round(s), (min-max); {args.duration} s each; load "
          f"average now {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(table(found, args.rate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
