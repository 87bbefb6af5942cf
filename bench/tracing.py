"""What tracing costs: worker + relay throughput with tracing off, at 10 % and at 100 %,
interleaved (one run of each per round, so load from elsewhere on the machine hits all three
alike), on the same workload.

``python -m bench.run --only tracing`` (or ``--mode quick --only ours tracing``). Each
setting reads its own pre-loaded copy of the commands; every copy carries a ``traceparent``
on every command, sampled at the setting's ratio (``off`` at 10 %, as publishers send them
whatever the server does). With tracing on, spans are exported over OTLP/HTTP to a sink in
this process that accepts and drops them, so the cost includes building, batching and
serializing spans — everything but a collector's network.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from confluent_kafka import Producer

from bench import ours
from bench.common import Target, progress
from bench.workload import Workload

SETTINGS: list[tuple[str, float | None]] = [("off", None), ("10 %", 0.1), ("100 %", 1.0)]
"""(label, PHOENIX_TRACE_SAMPLE_RATIO when tracing is on)."""


@dataclass
class TracingResult:
    rates: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    """Worker + relay CPU seconds (user + system) per 10,000 commands, start-up included:
    less sensitive than throughput to other work on a shared machine."""
    exported_bytes: dict[str, int] = field(default_factory=dict)
    ok: bool = True

    def median(self, label: str) -> float:
        return statistics.median(self.rates[label]) if self.rates.get(label) else float("nan")

    def cpu_median(self, label: str) -> float:
        return statistics.median(self.cpu[label]) if self.cpu.get(label) else float("nan")


class _Sink(BaseHTTPRequestHandler):
    received = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(size)
        with _Sink.lock:
            _Sink.received += size
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _traceparent(rng: random.Random, ratio: float) -> bytes:
    trace_id, span_id = rng.getrandbits(128) or 1, rng.getrandbits(64) or 1
    flags = "01" if (trace_id & ((1 << 64) - 1)) < round(ratio * (1 << 64)) else "00"
    return f"00-{trace_id:032x}-{span_id:016x}-{flags}".encode()


def _preload(target: Target, wl: Workload, topic: str, ratio: float, seed: int) -> None:
    rng = random.Random(seed)
    p = Producer({"bootstrap.servers": target.bootstrap, "linger.ms": 20,
                  "partitioner": "murmur2_random",  # the Java client's, as CMD-011 asks
                  "batch.size": 1_000_000, "queue.buffering.max.messages": 2_000_000,
                  "queue.buffering.max.kbytes": 2_000_000, "compression.type": "lz4",
                  "enable.idempotence": True, "acks": "all", "log_level": "0"})
    for m in wl.messages:
        headers = None if m.kind == "poison" else [
            ("content-type", b"application/avro"), ("traceparent", _traceparent(rng, ratio))]
        while True:
            try:
                p.produce(topic, m.value, m.key, headers=headers)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    if p.flush(120):
        raise RuntimeError(f"pre-loading {topic} did not finish")


def run(target: Target, wl: Workload, partitions: int, reps: int) -> TracingResult:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    result = TracingResult()
    try:
        for rep in range(reps):
            for label, ratio in SETTINGS:
                topic = f"bench.{target.run_id}.tracing.{rep}.{label.split()[0]}"
                target.create_topics([topic], partitions)
                _preload(target, wl, topic, ratio if ratio is not None else 0.1, seed=rep)
                env = ({} if ratio is None else
                       {"PHOENIX_OTLP_ENDPOINT": endpoint,
                        "PHOENIX_TRACE_SAMPLE_RATIO": str(ratio)})
                before = _Sink.received
                progress(f"tracing {label}, round {rep + 1}/{reps}")
                r = ours.throughput(target, wl, topic, partitions, extra_env=env)
                time.sleep(1)  # the last span batch
                result.rates.setdefault(label, []).append(r.sustained_rate)
                cpu = sum(p.cpu_s for p in (r.worker, r.relay) if p is not None)
                result.cpu.setdefault(label, []).append(cpu / wl.n * 10_000)
                result.exported_bytes[label] = (result.exported_bytes.get(label, 0)
                                                + _Sink.received - before)
                result.ok &= r.ok
                progress(f"  -> {r.sustained_rate:,.0f} commands/s; worker+relay CPU "
                         f"{result.cpu[label][-1]:.2f} s per 10k commands; "
                         f"{(_Sink.received - before) / 1024:,.0f} KiB of spans exported")
    finally:
        server.shutdown()
    return result


def report_rows(result: TracingResult) -> list[tuple[str, str, str]]:
    """(label, value, note) rows for bench/run.py's table."""
    off, off_cpu = result.median("off"), result.cpu_median("off")
    rows = []
    for label, _ in SETTINGS:
        med, cpu = result.median(label), result.cpu_median(label)
        vs = "" if label == "off" else (f"; throughput {(med / off - 1) * 100:+.1f} %, CPU "
                                        f"{(cpu / off_cpu - 1) * 100:+.1f} % vs off")
        runs = ", ".join(f"{v:,.0f}" for v in result.rates.get(label, []))
        cpus = ", ".join(f"{v:.2f}" for v in result.cpu.get(label, []))
        rows.append((f"tracing {label}: worker + relay (medians)",
                     f"{med:,.0f} cmd/s, {cpu:.2f} CPU-s/10k cmd",
                     f"runs {runs} cmd/s; CPU {cpus}{vs}; "
                     f"{result.exported_bytes.get(label, 0) / 1024:,.0f} KiB of spans"))
    return rows
