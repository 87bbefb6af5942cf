"""gRPC lookup load test beside the HTTP one: ``python -m bench.grpc_load [--duration 10]
[--rate 1000] [--repeat 3]``.

It starts a throwaway PostgreSQL (or uses ``PHOENIX_DATABASE_URL``, a role that may create
databases and roles), fills a fresh migrated database with 10,000 resources
(``http_load.prepare_database``), starts ``phoenix-resources grpc`` and
``phoenix-resources api`` (one worker) as separate processes on the read-only role, and
measures ``GetResource`` beside ``GET /api/v1/resources/{id}``, over random existing ids:

1. **calls/s**: closed loop, 32 calls in flight for ``--duration`` seconds — ``ghz`` (Go,
   over 4 connections) for gRPC when it is on ``PATH`` (``go install
   github.com/bojand/ghz/cmd/ghz@v0.120.0``), else a Python ``grpc.aio`` client (which is then
   likely the limit, and the table says so); ``wrk -t2 -c32`` for HTTP, as ``http_load`` does;
2. **latency at a fixed rate** (``--rate``, default 1,000 calls/s): open loop, each call due
   at ``t0 + i / rate`` and timed from that instant (no coordinated omission) — the same
   method for both (``http_load.fixed_rate`` for HTTP, :func:`fixed_rate` here);
3. the CPU time per call of the server process and of its PostgreSQL backends.

Rounds alternate gRPC and HTTP so load from other work hits both alike; the table shows
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
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from bench import http_load
from bench.common import python_server
from bench.http_load import RateResult, cpu_seconds, log
from phoenix_resources.grpc_gen.phoenix.resources.v1 import resources_pb2 as pb
from phoenix_resources.grpc_gen.phoenix.resources.v1 import resources_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
METHOD = "phoenix.resources.v1.ResourceService.GetResource"
CONCURRENCY = 32


# --- the gRPC server process ---------------------------------------------------------------

@contextlib.contextmanager
def grpc_process(writer: str, reader: str, port: int, bootstrap: str) -> Iterator[int]:
    """``phoenix-resources grpc`` on ``port``; yields its pid once it answers."""
    env = {"PHOENIX_DATABASE_URL": writer, "PHOENIX_READ_DATABASE_URL": reader,
           "PHOENIX_GRPC_PORT": str(port), "PHOENIX_DB_POOL_MIN": "2",
           "PHOENIX_DB_POOL_MAX": "8", "PHOENIX_LOG_LEVEL": "WARNING",
           "PHOENIX_METRICS_PORT": "0", "PHOENIX_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
           # Lookups never publish; without a broker its producer would only log retries.
           "PHOENIX_KAFKA_OPTIONS": json.dumps({"log_level": "0"})}
    with python_server("phoenix_resources.entrypoints.grpc.server:serve", env,
                       lambda proc: _wait_serving(port, proc), stop_timeout=30) as pid:
        yield pid


def _wait_serving(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.ResourceServiceStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the gRPC server exited with {proc.returncode}")
            try:
                stub.ListResources(pb.ListResourcesRequest(page_size=1), timeout=1)
                return
            except grpc.RpcError:
                time.sleep(0.1)
    raise RuntimeError("the gRPC server did not answer in 30 s")


# --- calls/s (closed loop) -----------------------------------------------------------------

@dataclass
class LoopResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    calls: int
    client: str


def run_ghz(ghz: str, port: int, ids: list[str], duration: int) -> LoopResult:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp, "ids.json")
        # An array: ghz sends its messages round-robin.
        data.write_text(json.dumps([{"id": i} for i in random.sample(ids, min(2000, len(ids)))]))
        out = subprocess.run(
            [ghz, "--insecure", "--call", METHOD, "--data-file", str(data),
             "-c", str(CONCURRENCY), "--connections", "4", "-z", f"{duration}s",
             "--format", "json", f"127.0.0.1:{port}"],
            capture_output=True, text=True, check=True).stdout
    report = json.loads(out)
    pct = {int(d["percentage"]): d["latency"] / 1e6 for d in report["latencyDistribution"]}
    codes = report.get("statusCodeDistribution", {})
    # ghz cuts the calls still in flight when the time is up (at most one per worker):
    # those are not the server's errors.
    cut = sum(n for code, n in codes.items() if code in ("Canceled", "Unavailable"))
    errors = sum(n for code, n in codes.items() if code != "OK") - min(cut, CONCURRENCY)
    return LoopResult(report["rps"], pct[50], pct[99], errors, report["count"],
                      "ghz -c32, 4 connections")


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


# --- latency at a fixed rate (open loop) ---------------------------------------------------

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
                 ghz: str | None) -> Round:
    api0, pg0 = cpu_seconds(pid)
    loop = run_ghz(ghz, port, ids, duration) if ghz else \
        asyncio.run(closed_loop(port, ids, duration))
    api1, pg1 = cpu_seconds(pid)
    fixed = asyncio.run(fixed_rate(port, ids, rate, duration))
    return Round(loop, fixed, (api1 - api0) / loop.calls * 1e6, (pg1 - pg0) / loop.calls * 1e6)


def measure_http(port: int, pid: int, ids: list[str], duration: int, rate: int) -> Round:
    api0, pg0 = cpu_seconds(pid)
    w = http_load.run_wrk(port, ids, duration)
    api1, pg1 = cpu_seconds(pid)
    fixed = http_load._run(http_load.fixed_rate(port, ids, rate, duration))
    loop = LoopResult(w.rps, w.p50_ms, w.p99_ms, w.errors, w.requests, "wrk -t2 -c32")
    return Round(loop, fixed, (api1 - api0) / w.requests * 1e6, (pg1 - pg0) / w.requests * 1e6)


def compare(server: str, bootstrap: str, *, duration: int, rate: int, repeat: int,
            ghz: str | None, rows: int = http_load.ROWS,
            http: bool = True) -> dict[str, list[Round]]:
    """Both servers (or gRPC alone: ``http=False``) on one database; ``repeat``
    alternating rounds. Keys: grpc, http."""
    from tests.support.net import free_port

    writer, reader, ids = http_load.prepare_database(server, rows)
    found: dict[str, list[Round]] = {"grpc": [], "http": []}
    try:
        gport, hport = free_port(), free_port()
        with contextlib.ExitStack() as stack:
            gpid = stack.enter_context(grpc_process(writer, reader, gport, bootstrap))
            hpid = stack.enter_context(http_load.api_process(writer, reader, hport, 1)) \
                if http else 0
            # Warm-up: connections, prepared statements, the loader's code paths.
            asyncio.run(closed_loop(gport, ids, 2))
            if http:
                http_load.run_wrk(hport, ids, 2)
            for i in range(repeat):
                log(f"round {i + 1}/{repeat} (load average {os.getloadavg()[0]:.2f}): gRPC")
                found["grpc"].append(measure_grpc(gport, gpid, ids, duration, rate, ghz=ghz))
                if http:
                    log(f"round {i + 1}/{repeat}: HTTP")
                    found["http"].append(measure_http(hport, hpid, ids, duration, rate))
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


def table(found: dict[str, list[Round]], rate: int) -> str:
    labels = {"grpc": "gRPC GetResource", "http": "HTTP GET /api/v1/resources/{id}"}
    lines = [f"| lookup by id | calls/s, closed loop (client) | @{rate:,}/s p50 ms | "
             f"@{rate:,}/s p99 ms | @{rate:,}/s max ms | errors | CPU µs/call server + "
             "PostgreSQL |", "|---|---|---|---|---|---|---|"]
    for key, rounds in found.items():
        if not rounds:
            continue
        errors = sum(r.loop.errors + r.rate.errors for r in rounds)
        lines.append(
            f"| {labels[key]} | {_med(rounds, lambda r: r.loop.rps, 0)} "
            f"({rounds[0].loop.client}) | {_med(rounds, lambda r: r.rate.p50_ms, 2)} | "
            f"{_med(rounds, lambda r: r.rate.p99_ms, 2)} | "
            f"{_med(rounds, lambda r: r.rate.max_ms, 1)} | {errors} | "
            f"{_med(rounds, lambda r: r.cpu_us, 0)} + {_med(rounds, lambda r: r.pg_us, 0)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3, help="alternating rounds")
    ap.add_argument("--rows", type=int, default=http_load.ROWS)
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
                        repeat=args.repeat, ghz=args.ghz, rows=args.rows)
    print()
    print(f"medians of {args.repeat} round(s), (min-max); {args.duration} s each; load "
          f"average now {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(table(found, args.rate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
