"""Side-by-side benchmarks: ``python -m bench.run --mode quick|full|peers``.

* ``quick`` (``make bench-quick``, ~2 minutes): 20k messages, one repetition, short naive and
  latency windows, no Debezium;
* ``full`` (``make bench``): 100k messages, 3 repetitions of every throughput figure, the
  Debezium JDBC sink peer, 20 s latency window, HTTP;
* ``peers`` (``make bench-peers``): phoenix-resources and the Debezium JDBC sink only;
* ``full`` and ``peers`` also pit the relay against Debezium's PostgreSQL connector with the
  outbox EventRouter on the same outbox rows (``--only outbox`` for that alone).

It prints progress, then a markdown table, and writes it to ``bench/results/<date>-<host>.md``.
Figures are printed, never asserted. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata as md
import importlib.util
import math
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import ceilings, grpc_load, naive, ours
from bench import tracing as tracing_bench
from bench.common import (
    ROOT,
    Series,
    Target,
    machine,
    pg_settings,
    progress,
    stack_target,
)
from bench.workload import Workload, generate, produce
from phoenix_resources.config import Settings

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_WAIT_MS = Settings.model_fields["batch_max_wait_ms"].default
HTTP_ENDPOINTS = {"http": "GET /resources/{id}", "http_list": "GET /resources?limit=50"}
"""Result key → endpoint measured by ``run_http`` (the list: its first page)."""

MODES: dict[str, dict[str, Any]] = {
    "quick": {"n": 20_000, "reps": 1, "naive_s": 8.0, "latency_s": 5.0, "peers": False,
              "http": True, "http_s": 3, "ours": True, "naive": True, "ceilings": True,
              "latency": True, "outbox": False, "outbox_lat_s": 5.0},
    "full": {"n": 100_000, "reps": 3, "naive_s": 25.0, "latency_s": 20.0, "peers": True,
             "http": True, "http_s": 10, "ours": True, "naive": True, "ceilings": True,
             "latency": True, "outbox": True, "outbox_lat_s": 15.0, "scaleout": True},
    "peers": {"n": 100_000, "reps": 3, "naive_s": 0.0, "latency_s": 0.0, "peers": True,
              "http": False, "http_s": 0, "ours": True, "naive": False, "ceilings": False,
              "latency": False, "outbox": True, "outbox_lat_s": 15.0},
}


class Results:
    def __init__(self) -> None:
        self.series: dict[str, Series] = {}
        self.notes: dict[str, str] = {}
        self.failures: dict[str, str] = {}
        self.extra: dict[str, Any] = {}

    def s(self, key: str) -> Series:
        return self.series.setdefault(key, Series())

    def med(self, key: str) -> float:
        s = self.series.get(key)
        return s.median if s and s.values else float("nan")


def attempt(res: Results, key: str, fn: Callable[[], None]) -> None:
    """Run one measurement; a failure is recorded (and shown in the table), not fatal."""
    try:
        fn()
    except Exception as e:
        res.failures[key] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        progress(f"!! {key} failed: {res.failures[key]}")
        traceback.print_exc(file=sys.stdout)


def versions(target: Target) -> dict[str, str]:
    import confluent_kafka

    kafka_jars = sorted((ROOT / ".local" / "kafka" / "libs").glob("kafka_2.13-*.jar"))
    v = {"kafka broker": kafka_jars[-1].stem.split("-", 1)[1] if kafka_jars else "?",
         "confluent-kafka / librdkafka": f"{confluent_kafka.version()[0]} / "
                                         f"{confluent_kafka.libversion()[0]}",
         "psycopg": md.version("psycopg"),
         "phoenix-resources": md.version("phoenix-resources")}
    with contextlib.suppress(Exception):
        import subprocess

        v["git commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                         capture_output=True, text=True,
                                         check=False).stdout.strip()
    return v


# --- the measurements --------------------------------------------------------------------


def run_ceilings(target: Target, wl: Workload, topic: str, reps: int, res: Results) -> None:
    for i in range(max(reps, 3)):  # cheap, and noisy: always 3
        rate = ceilings.consume_rate(target.bootstrap, topic, wl.n, batch=1000)
        res.s("consume").add(rate)
        progress(f"ceiling consume(1000) rep {i + 1}: {rate:,.0f} msg/s")
    rate = ceilings.consume_rate(target.bootstrap, topic, wl.n, batch=1)
    res.s("poll").add(rate)
    progress(f"ceiling poll() loop: {rate:,.0f} msg/s")
    for i in range(reps):
        url = target.fresh_db("copy")
        rate, rows = ceilings.copy_rate(url, wl)
        res.s("copy").add(rate)
        res.extra["copy_rows"] = rows
        progress(f"ceiling binary COPY rep {i + 1}: {rate:,.0f} commands/s ({rows:,} rows)")


NATIVE_BUILT = importlib.util.find_spec("phoenix_resources_native") is not None
PATHS = {"": {"PHOENIX_NATIVE": "on"}, "_pure": {"PHOENIX_NATIVE": "off"}}
"""The worker's two per-command paths, measured side by side in every round: the compiled
one (suffix ``""``: what ``make deps`` installs when cargo is there) and the Python one."""


def run_ours(target: Target, wl: Workload, topic: str, partitions: int, *, reps: int,
             res: Results, round_no: int = 0) -> None:
    """Each repetition runs the worker on both paths, in an order that alternates by round
    (a burst of load from elsewhere hits both alike); without the extension, pure only."""
    paths = [s for s in PATHS if NATIVE_BUILT or s]
    if not NATIVE_BUILT:
        res.notes["native"] = "phoenix_resources_native is not built (make deps with cargo)"
    for _ in range(reps):
        for suffix in paths if round_no % 2 == 0 else paths[::-1]:
            run_one(target, wl, topic, partitions, res=res, suffix=suffix)


def run_one(target: Target, wl: Workload, topic: str, partitions: int, *, res: Results,
            suffix: str) -> None:
    path = "pure Python" if suffix else "compiled hot path"
    progress(f"phoenix-resources ({path}): worker + relay on {wl.n:,} messages")
    r = ours.throughput(target, wl, topic, partitions, extra_env=PATHS[suffix])
    res.s("ours" + suffix).add(r.sustained_rate)
    res.s("ours_wall" + suffix).add(r.wall_rate)
    if r.worker:
        res.s("worker_rss" + suffix).add(r.worker.peak_rss_bytes / 2**20)
        res.s("worker_cpu" + suffix).add(r.worker.cpu_s / wl.n * 10_000)
    if r.relay:
        res.s("relay_rss" + suffix).add(r.relay.peak_rss_bytes / 2**20)
        res.s("relay_cpu" + suffix).add(r.relay.cpu_s / wl.n * 10_000)
    if r.postgres_cpu_s:
        res.s("pg_cpu" + suffix).add(r.postgres_cpu_s / wl.n * 10_000)
    if r.broker_cpu_s:
        res.s("kafka_cpu" + suffix).add(r.broker_cpu_s / wl.n * 10_000)
    res.extra.setdefault("ours_checks" + suffix, []).append(
        "passed" if r.ok else "FAILED: " + "; ".join(r.problems))
    res.extra["event_repeats"] = res.extra.get("event_repeats", 0) + r.event_repeats
    progress(f"  -> {r.sustained_rate:,.0f} commands/s sustained, {r.wall_rate:,.0f}/s "
             f"wall; worker CPU {res.s('worker_cpu' + suffix).values[-1]:.2f} s per 10k; "
             f"effectively-once check: {'passed' if r.ok else r.problems}")


def run_scaleout(target: Target, wl: Workload, topic: str, partitions: int, *,
                 res: Results) -> None:
    """Two worker processes in one group (and one relay), in the same round as one worker."""
    progress(f"phoenix-resources, 2 worker processes: {wl.n:,} messages")
    r = ours.throughput(target, wl, topic, partitions, workers=2)
    res.s("ours2").add(r.sustained_rate)
    res.extra.setdefault("ours2_checks", []).append(
        "passed" if r.ok else "FAILED: " + "; ".join(r.problems))
    progress(f"  -> {r.sustained_rate:,.0f} commands/s sustained; effectively-once check: "
             f"{'passed' if r.ok else r.problems}")


def run_knobs(target: Target, wl: Workload, topic: str, partitions: int, res: Results) -> None:
    """One run per setting, against the same input: what each knob is worth here."""
    variants: list[tuple[str, dict[str, Any]]] = [
        ("defaults (batch 1000, synchronous_commit=on)", {}),
        ("PHOENIX_BATCH_MAX_WAIT_MS=50", {"batch_wait_ms": 50}),
        ("PHOENIX_BATCH_SIZE=200", {"batch_size": 200}),
        ("PHOENIX_BATCH_SIZE=5000", {"batch_size": 5000}),
        ("synchronous_commit=off (database setting)",
         {"db_settings": {"synchronous_commit": "off"}}),
        ("2 worker processes in the group (scale-out)", {"workers": 2}),
    ]
    for label, kw in variants:
        progress(f"knob: {label}")
        r = ours.throughput(target, wl, topic, partitions, **kw)
        res.extra.setdefault("knobs", []).append((label, r))
        progress(f"  -> {r.sustained_rate:,.0f} commands/s sustained; check "
                 f"{'passed' if r.ok else r.problems}")


def run_naive(target: Target, wl: Workload, topic: str, seconds: float, *, reps: int,
              res: Results, async_variant: bool = True) -> None:
    for _ in range(reps):
        url = target.fresh_db("naive")
        name = target.next_name("naive").replace("_", ".")
        events, dlq = f"bench.{name}.events", f"bench.{name}.dlq"
        target.create_topics([events, dlq], 1)
        progress(f"naive: {seconds:.0f} s time box")
        r = naive.run(target.bootstrap, db_url=url, topic=topic, events_topic=events,
                      dlq_topic=dlq, seconds=seconds, limit=wl.n)
        res.s("naive").add(r.rate)
        progress(f"  -> {r.rate:,.0f} commands/s ({r.processed:,} in {r.seconds:.1f} s)")
    if not async_variant:
        return
    # the cheaper variant: asynchronous offset commits (one run)
    url = target.fresh_db("naive")
    name = target.next_name("naive").replace("_", ".")
    events, dlq = f"bench.{name}.events", f"bench.{name}.dlq"
    target.create_topics([events, dlq], 1)
    progress(f"naive, async offset commit: {seconds:.0f} s time box")
    r = naive.run(target.bootstrap, db_url=url, topic=topic, events_topic=events,
                  dlq_topic=dlq, seconds=seconds, limit=wl.n, sync_commit=False)
    res.s("naive_async").add(r.rate)
    progress(f"  -> {r.rate:,.0f} commands/s ({r.processed:,} in {r.seconds:.1f} s)")


def run_latency(target: Target, partitions: int, seconds: float, res: Results) -> None:
    for wait in (None, 50):
        label = (f"default batch wait ({DEFAULT_WAIT_MS} ms)" if wait is None
                 else f"batch wait {wait} ms")
        progress(f"latency: 1,000 commands/s for {seconds:.0f} s, {label}")
        r = ours.latency(target, partitions, rate=1000, seconds=seconds, batch_wait_ms=wait)
        res.extra.setdefault("latency", []).append(r)
        progress(f"  -> p50 {r.p50_ms:.1f} ms, p95 {r.p95_ms:.1f}, p99 {r.p99_ms:.1f}, "
                 f"max {r.max_ms:.1f} ({r.received:,}/{r.sent:,} received); produce -> "
                 f"worker decided p50 {r.to_db_p50_ms:.1f} ms")


def prepare_peers(target: Target, wl: Workload, partitions: int, res: Results) -> None:
    from bench.peers import connect

    connect.ensure_jars()
    res.extra["connect_versions"] = connect.versions()
    res.extra["dbz_topic"], res.extra["dbz_records"] = connect.load_topic(target, wl,
                                                                          partitions)


def run_peers(target: Target, wl: Workload, partitions: int, *, reps: int, res: Results,
              variant: bool = True) -> None:
    from bench.peers import connect

    topic, records = res.extra["dbz_topic"], res.extra["dbz_records"]
    for _ in range(reps):
        progress(f"Debezium JDBC sink: {records:,} records "
                 "(JVM start-up excluded from the rate)")
        r = connect.run(target, wl, topic, records, partitions)
        res.s("dbz").add(r.rate)
        res.s("dbz_wall").add(r.wall_s)
        res.extra["dbz_mismatch"] = r.mismatches
        if r.notes:
            res.notes["dbz"] = "; ".join(r.notes)
        progress(f"  -> {r.rate:,.0f} records/s; {r.wall_s:.1f} s wall incl. JVM start; "
                 f"{r.mismatches} rows differ from the reference")
    if not variant:
        return
    progress("Debezium JDBC sink, reduction buffer off (one run)")
    r = connect.run(target, wl, topic, records, partitions, reduction=False)
    res.s("dbz_noreduce").add(r.rate)
    progress(f"  -> {r.rate:,.0f} records/s")


def run_http(target: Target, seconds: int, res: Results) -> None:
    try:
        from bench import http_load
    except ImportError:
        res.notes["http"] = "bench/http_load.py is not there"
        return
    if not shutil.which("wrk"):
        res.notes["http"] = "wrk is not installed (apt-get install wrk)"
        return
    from tests.support.net import free_port

    writer, reader, ids = http_load.prepare_database(target.admin_url, 10_000)
    try:
        port = free_port()
        targets = {"http": ("/api/v1/resources/", ids), "http_list": (http_load.LIST_PATH, [""])}
        with http_load.api_process(writer, reader, port, 1):
            http_load.run_wrk(port, ids, 2)  # warm-up
            for key, (prefix, keys) in targets.items():
                progress(f"HTTP: wrk -t2 -c32 {seconds}s, then 1,000 req/s, on "
                         f"{HTTP_ENDPOINTS[key]}")
                w = http_load.run_wrk(port, keys, seconds, prefix=prefix)
                r = asyncio.run(http_load.fixed_rate(port, keys, 1000, seconds, prefix=prefix))
                res.extra[key] = (w, r)
                progress(f"  -> {w.rps:,.0f} req/s max (p99 {w.p99_ms:.1f} ms); at 1,000/s "
                         f"p50 {r.p50_ms:.1f} ms p99 {r.p99_ms:.1f} ms")
    finally:
        http_load.drop_database(target.admin_url, writer)


def run_grpc(target: Target, seconds: int, res: Results) -> None:
    """gRPC GetResource (one and two server processes) with ghz, beside the HTTP lookup and
    the grpc.aio ceiling, in the same rounds (bench/grpc_load.py, one round)."""
    ghz = shutil.which("ghz")
    progress(f"gRPC: GetResource closed loop {seconds}s, then 1,000 calls/s, beside the HTTP "
             f"lookup ({'ghz' if ghz else 'Python clients: ghz is not on PATH'})")
    found = grpc_load.compare(target.admin_url, target.bootstrap, duration=seconds,
                              rate=1000, repeat=1, ghz=ghz, processes=(1, 2),
                              ceiling=True)
    res.extra["grpc"] = found
    for key, (r,) in found.items():
        progress(f"  {grpc_load.label(key)}: {r.loop.rps:,.0f} calls/s max; at 1,000/s "
                 f"p50 {r.rate.p50_ms:.1f} ms p99 {r.rate.p99_ms:.1f} ms")


# --- the report --------------------------------------------------------------------------


def ratio(a: float, b: float) -> str:
    if not (a > 0 and b > 0) or math.isnan(a) or math.isnan(b):
        return "n/a"
    return f"{a / b:.2f}x" if a / b < 10 else f"{a / b:.0f}x"


def report(mode: str, cfg: dict[str, Any], wl: Workload, res: Results, *,  # noqa: PLR0915
           mach: dict[str, str], vers: dict[str, str], pgs: dict[str, str], started: datetime,
           partitions: int) -> str:
    def fig(key: str, digits: int = 0, unit: str = "") -> str:
        if key in res.failures:
            return f"FAILED ({res.failures[key]})"
        return res.s(key).fmt(digits, unit)

    lat = res.extra.get("latency")
    lines = [f"# Benchmark results: {mode} mode, {started:%Y-%m-%d %H:%M} UTC", ""]
    lines += ["## Machine and versions", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in {**mach, **vers}.items()]
    if "connect_versions" in res.extra:
        lines.append(f"| Kafka Connect / Debezium | {res.extra['connect_versions']} |")
    lines.append("| PostgreSQL | " + ", ".join(f"{k}={v}" for k, v in pgs.items()) + " |")
    lines += ["", "## Settings", "",
              f"- workload: {wl.summary()} (seed {wl.seed})",
              f"- commands topic: {partitions} partitions, pre-loaded; one worker process, "
              "one relay process, default settings (PHOENIX_BATCH_SIZE=1000, "
              f"PHOENIX_BATCH_MAX_WAIT_MS={DEFAULT_WAIT_MS})",
              f"- repetitions: {cfg['reps']} rounds; each round runs phoenix-resources, the "
              "naive worker and Debezium once, in that order (interleaved, so load from "
              "other work hits all alike); figures are medians (min-max, n); latency, "
              "poll() loop, the variants and HTTP: one run each",
              "- figures measured on a shared 2-core machine while other engineers built and "
              "tested: treat them as noisy (see load average above)", ""]
    lines += ["## Results", "", "| measurement | figure | notes |", "|---|---|---|"]

    def row(name: str, figure: str, note: str = "") -> None:
        lines.append(f"| {name} | {figure} | {note} |")

    if cfg["ours"]:
        for suffix, path in (("", "compiled hot path"), ("_pure", "pure Python")):
            row(f"**phoenix-resources** end to end, sustained ({path})",
                fig("ours" + suffix, 0, " cmd/s"), "messages / (first batch committed → "
                "last event appended); worker + relay; both paths in every round")
            row(f"phoenix-resources, wall incl. start-up ({path})",
                fig("ours_wall" + suffix, 0, " cmd/s"), "spawn of both processes → last "
                "event seen")
            row(f"effectively-once check ({path})",
                ", ".join(res.extra.get("ours_checks" + suffix, [])) or "not run",
                "DB equals the `decide` reference; every expected event id published")
        row("repeated events (both paths)", str(res.extra.get("event_repeats", 0)), "")
    if cfg.get("scaleout"):
        row("phoenix-resources, **2 worker processes** (scale-out), sustained",
            fig("ours2", 0, " cmd/s"), "same round as one worker; effectively-once check: "
            + (", ".join(res.extra.get("ours2_checks", [])) or "not run"))
    if cfg["naive"]:
        row("naive worker (1 tx + 1 sync produce + sync offset commit per message)",
            fig("naive", 0, " cmd/s"), f"time box {cfg['naive_s']:.0f} s, same schema/rules")
        row("naive worker, asynchronous offset commit", fig("naive_async", 0, " cmd/s"),
            "same, but commit(asynchronous=True): the cheaper variant")
    if cfg["ceilings"]:
        row("ceiling: bare `consume(1000)`", fig("consume", 0, " msg/s"), "no decoding")
        row("ceiling: bare `poll()` loop", fig("poll", 0, " msg/s"), "for comparison")
        row("ceiling: PostgreSQL binary COPY", fig("copy", 0, " cmd/s"),
            f"{res.extra.get('copy_rows', 0):,} rows (inbox + outbox + resources) per run, "
            "one transaction")
    if cfg["peers"]:
        row("**Debezium JDBC sink** (Connect standalone, upsert + delete)", fig("dbz", 0,
            " records/s"), f"{res.extra.get('dbz_records', 0):,} records; batch.size=2000, "
            "reduction buffer on; does less work: no dedupe, no rules, no outbox/events; "
            f"{res.extra.get('dbz_mismatch', '?')} rows end stale/wrong vs the reference "
            "(re-delivered duplicates overwrite newer rows)" + (
                f"; {res.notes['dbz']}" if "dbz" in res.notes else ""))
        row("Debezium wall time incl. JVM start", fig("dbz_wall", 1, " s"), "")
        row("Debezium JDBC sink, `use.reduction.buffer=false`", fig("dbz_noreduce", 0,
            " records/s"), "the buffer collapses records of one key within a batch; the hot "
            "keys of a Zipf workload make it worth a lot")
    if cfg["latency"]:
        for lt in lat or []:
            wait = (f"PHOENIX_BATCH_MAX_WAIT_MS={DEFAULT_WAIT_MS} (default)"
                    if lt.batch_wait_ms is None
                    else f"PHOENIX_BATCH_MAX_WAIT_MS={lt.batch_wait_ms}")
            row(f"latency @ 1,000 cmd/s, {wait} (produce → event received)",
                f"p50 {lt.p50_ms:.1f} ms, p95 {lt.p95_ms:.1f}, p99 {lt.p99_ms:.1f}, "
                f"max {lt.max_ms:.1f}", f"{lt.seconds:.0f} s, {lt.received:,}/{lt.sent:,} "
                f"received; produce → worker decided (processed_at): p50 "
                f"{lt.to_db_p50_ms:.1f} ms, p99 {lt.to_db_p99_ms:.1f} ms")
        if not lat:
            row("latency @ 1,000 cmd/s", fig("latency"), "")
    if cfg["http"]:
        for key, label in HTTP_ENDPOINTS.items():
            if key not in res.extra:
                row(f"HTTP {label}", "**not measured**",
                    res.failures.get("http", res.notes.get("http", "")))
                continue
            w, r = res.extra[key]
            row(f"HTTP {label}: max throughput (wrk -t2 -c32)", f"{w.rps:,.0f} req/s",
                f"p50 {w.p50_ms:.1f} ms, p99 {w.p99_ms:.1f} ms, {w.errors} errors; "
                "1 API process, 10,000 live rows (bench/http_load.py)")
            row(f"HTTP {label} @ 1,000 req/s (open loop)",
                f"p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f}, max {r.max_ms:.1f}",
                f"achieved {r.achieved_rps:,.0f} req/s, {r.errors} errors")
    if "grpc" in res.failures:
        row("gRPC GetResource", fig("grpc"), "")
    for key, rounds in res.extra.get("grpc", {}).items():
        g = rounds[0]
        row(f"{grpc_load.label(key)}: max throughput (closed loop)",
            f"{g.loop.rps:,.0f} calls/s",
            f"p50 {g.loop.p50_ms:.1f} ms, p99 {g.loop.p99_ms:.1f} ms; {g.loop.client}; CPU per "
            f"call: server {g.cpu_us:.0f} µs, PostgreSQL {g.pg_us:.0f} µs, client "
            f"{g.loop.client_us:.0f} µs; bench/grpc_load.py, same rounds as the rows beside")
        row(f"{grpc_load.label(key)} @ 1,000 calls/s (open loop)",
            f"p50 {g.rate.p50_ms:.1f} ms, p99 {g.rate.p99_ms:.1f}, max {g.rate.max_ms:.1f}",
            f"achieved {g.rate.achieved_rps:,.0f} calls/s, {g.rate.errors} errors")
    if cfg["ours"]:
        for suffix, path in (("", "compiled"), ("_pure", "pure")):
            row(f"worker peak RSS (VmHWM), {path}", fig("worker_rss" + suffix, 0, " MiB"), "")
            row(f"relay peak RSS (VmHWM), {path}", fig("relay_rss" + suffix, 0, " MiB"), "")
            row(f"worker CPU per 10k commands, {path}", fig("worker_cpu" + suffix, 2, " s"),
                "user+system, includes start-up")
            row(f"relay CPU per 10k commands, {path}", fig("relay_cpu" + suffix, 2, " s"), "")
            row(f"PostgreSQL CPU per 10k commands, {path}", fig("pg_cpu" + suffix, 2, " s"),
                "the whole cluster (every backend, WAL writer, checkpointer) during the run")
            row(f"Kafka broker CPU per 10k commands, {path}",
                fig("kafka_cpu" + suffix, 2, " s"),
                "includes the benchmark's own readers of the topics")
    for label, r in res.extra.get("knobs", []):
        row(f"knob: {label}", f"{r.sustained_rate:,.0f} cmd/s (1 run)",
            "effectively-once check " + ("passed" if r.ok else "FAILED"))
    if "tracing" in res.extra:
        for label, value, note in tracing_bench.report_rows(res.extra["tracing"]):
            row(label, value, note + ("" if res.extra["tracing"].ok
                                      else "; effectively-once check FAILED"))
    if lines[-1] == "|---|---|---|":  # nothing but the outbox peer ran (--only outbox)
        del lines[-4:]
    outbox_ratios: list[str] = []
    if cfg.get("outbox"):
        from bench.peers import debezium_outbox

        section, outbox_ratios = debezium_outbox.report(res)
        lines += section
    o = res.med("ours")
    lines += ["", "## Ratios (medians) and goals", "", "| ratio | value | goal |", "|---|---|---|"]
    if cfg["naive"]:
        lines.append(f"| ours / naive | {ratio(o, res.med('naive'))} | ≥ 30x |")
        lines.append(f"| ours / naive with async offset commits | "
                     f"{ratio(o, res.med('naive_async'))} | (≥ 30x) |")
    if cfg["ours"]:
        lines.append(f"| worker CPU per 10k, compiled / pure (same rounds) | "
                     f"{ratio(res.med('worker_cpu'), res.med('worker_cpu_pure'))} | — |")
        lines.append(f"| sustained cmd/s, compiled / pure | "
                     f"{ratio(o, res.med('ours_pure'))} | — |")
    if cfg["peers"]:
        for suffix, path in (("", "compiled"), ("_pure", "pure")):
            mine = res.med("ours" + suffix)
            lines.append(f"| ours ({path}, cmd/s) / Debezium JDBC sink, reduction buffer on | "
                         f"{ratio(mine, res.med('dbz'))} | ≥ 1.0x |")
            lines.append(f"| ours ({path}) / Debezium JDBC sink, reduction buffer off | "
                         f"{ratio(mine, res.med('dbz_noreduce'))} | ≥ 2x |")
    if cfg.get("scaleout"):
        lines.append(f"| 2 workers / 1 worker | {ratio(res.med('ours2'), o)} | reported |")
    if cfg["ceilings"]:
        lines.append(f"| ours / consume(1000) ceiling | {ratio(o, res.med('consume'))} "
                     "| — |")
        lines.append(f"| ours / binary COPY ceiling | {ratio(o, res.med('copy'))} | — |")
    if cfg["ours"]:
        lines.append(f"| ours absolute | {o:,.0f} cmd/s | ≈ 30,000 cmd/s |")
        lines.append(f"| worker CPU per 10k | {res.med('worker_cpu'):.2f} s | ≤ 0.25 s |")
        lines.append(f"| relay CPU per 10k | {res.med('relay_cpu'):.2f} s | ≤ 0.25 s |")
        lines.append(f"| worker peak RSS | {res.med('worker_rss'):,.0f} MiB | ≤ 150 MB |")
    for lt in lat or []:
        wait = "default" if lt.batch_wait_ms is None else f"wait {lt.batch_wait_ms} ms"
        lines.append(f"| latency p50 / p99 @ 1,000/s ({wait}) | {lt.p50_ms:.1f} / "
                     f"{lt.p99_ms:.1f} ms | ≤ 10 / ≤ 25 ms |")
    grpc = res.extra.get("grpc", {})
    if grpc:
        for key in grpc:
            if key.startswith("grpc"):
                lines.append(f"| {grpc_load.label(key)} / HTTP lookup, closed loop (same "
                             f"rounds) | {grpc_load.ratio(grpc, key):.2f}x | ≥ 0.5x |")
                lines.append(f"| {grpc_load.label(key)} p99 @ 1,000 calls/s | "
                             f"{grpc[key][0].rate.p99_ms:.1f} ms | < 100 ms |")
    goals = {"http": "≥ 12,000", "http_list": "≥ 5,000"}
    for key, label in HTTP_ENDPOINTS.items():
        if key in res.extra:
            lines.append(f"| HTTP {label} max | {res.extra[key][0].rps:,.0f} req/s | "
                         f"{goals[key]} |")
    if outbox_ratios:
        lines += outbox_ratios
    if res.failures:
        lines += ["", "## Failures", ""]
        lines += [f"- {k}: {v}" for k, v in res.failures.items()]
    return "\n".join(lines) + "\n"


def one_round(target: Target, wl: Workload, topic: str, cfg: dict[str, Any], p: int, *,
              res: Results, first: bool, obx: Any = None) -> None:
    """ours, naive, Debezium once each; the one-off variants only in the first round."""
    if cfg["ours"] and "ours" not in res.failures:
        attempt(res, "ours", lambda: run_ours(target, wl, topic, p, reps=1, res=res,
                                              round_no=len(res.s("ours_pure").values)))
    if cfg.get("scaleout") and "ours2" not in res.failures:
        attempt(res, "ours2", lambda: run_scaleout(target, wl, topic, p, res=res))
    if cfg["naive"] and "naive" not in res.failures:
        attempt(res, "naive", lambda: run_naive(target, wl, topic, cfg["naive_s"], reps=1,
                                                res=res, async_variant=first))
    if cfg["peers"] and "dbz" not in res.failures:
        attempt(res, "dbz", lambda: run_peers(target, wl, p, reps=1, res=res, variant=first))
    if obx is not None and "outbox" not in res.failures:
        for c in obx.order():  # relay vs Debezium outbox CDC, order rotated per round
            attempt(res, f"obx_{c.key}", lambda c=c: obx.run_one(c, res))


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0915
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=sorted(MODES), default="quick")
    ap.add_argument("--n", type=int, help="messages in the workload")
    ap.add_argument("--reps", type=int, help="repetitions of each throughput figure")
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--ephemeral", action="store_true",
                    help="use a throwaway durable stack instead of the local one")
    ap.add_argument("--only", nargs="*", default=None,
                    help="subset: ours naive ceilings latency peers outbox http grpc knobs "
                    "tracing scaleout")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks
    cfg = dict(MODES[args.mode])
    if args.n:
        cfg["n"] = args.n
    if args.reps:
        cfg["reps"] = args.reps
    if args.only is not None:
        for k in ("ours", "naive", "ceilings", "latency", "peers", "outbox", "http", "grpc",
                  "knobs", "tracing", "scaleout"):
            cfg[k] = k in args.only
    started = datetime.now(UTC)
    mach = machine()
    progress(f"mode {args.mode}: {cfg['n']:,} messages, {cfg['reps']} repetition(s); "
             f"{mach['cores']} cores, load {mach['loadavg at start']}")
    res = Results()
    obx = None
    with stack_target(args.ephemeral) as target:
        try:
            vers = versions(target)
            pgs = pg_settings(target.admin_url)
            t = time.monotonic()
            wl = generate(cfg["n"], args.seed)
            progress(f"workload in {time.monotonic() - t:.1f} s: {wl.summary()}")
            topic = f"bench.{target.run_id}.commands"
            target.create_topics([topic], args.partitions)
            secs = produce(target.bootstrap, topic, wl.messages)
            progress(f"pre-loaded {topic} in {secs:.1f} s")
            p, reps = args.partitions, cfg["reps"]
            if cfg["ceilings"]:
                attempt(res, "consume", lambda: run_ceilings(target, wl, topic, reps, res))
            if cfg["peers"]:
                attempt(res, "dbz", lambda: prepare_peers(target, wl, p, res))
            if cfg["outbox"]:
                from bench.peers.debezium_outbox import OutboxBench

                obx = OutboxBench(target, wl, cfg["n"], p, cfg["outbox_lat_s"])
                attempt(res, "outbox", lambda: obx.prepare(res))
            # Rounds, not blocks: each round runs ours, naive and Debezium once, so a burst
            # of load from other work on the machine hits every contender alike.
            for i in range(reps):
                progress(f"--- round {i + 1}/{reps} (load {os.getloadavg()[0]:.2f})")
                one_round(target, wl, topic, cfg, p, res=res, first=i == 0, obx=obx)
            if cfg["latency"]:
                attempt(res, "latency", lambda: run_latency(target, p, cfg["latency_s"], res))
            if cfg["http"]:
                attempt(res, "http", lambda: run_http(target, cfg["http_s"], res))
            if cfg.get("grpc", cfg["http"]):
                attempt(res, "grpc", lambda: run_grpc(target, cfg["http_s"], res))
            if cfg.get("knobs"):
                attempt(res, "knobs", lambda: run_knobs(target, wl, topic, p, res))
            if cfg.get("tracing"):
                # Tracing off / 10 % / 100 %, interleaved rounds (bench/tracing.py).
                attempt(res, "tracing", lambda: res.extra.__setitem__(
                    "tracing", tracing_bench.run(target, wl, p, max(reps, 3))))
        finally:
            progress("cleaning up (topics, databases)")
            if obx is not None:
                obx.close()
            target.cleanup()
    text = report(args.mode, cfg, wl, res, mach=mach, vers=vers, pgs=pgs, started=started,
                  partitions=args.partitions)
    RESULTS.mkdir(exist_ok=True)
    custom = args.only is not None or args.n or args.reps
    subset = "-".join(args.only) if args.only else "custom"
    suffix = ("" if args.mode == "full" else f"-{args.mode}") + (f"-{subset}" if custom else "")
    out = RESULTS / f"{started:%Y-%m-%d}-{mach['host']}{suffix}.md"
    out.write_text(text)
    print()
    print(text)
    progress(f"written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
