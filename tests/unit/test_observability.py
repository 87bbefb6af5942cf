"""The observability package on its own: lag, metrics, health, logs, sampling."""

from __future__ import annotations

import io
import json
import logging
import random
import re
from pathlib import Path

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, TraceFlags
from prometheus_client import generate_latest

from phoenix_resources.client.commands import new_traceparent, sampled_at
from phoenix_resources.config import Settings
from phoenix_resources.observability import JsonFormatter, Metrics, log_context
from phoenix_resources.observability.health import CachedCheck, Health, HealthServer
from phoenix_resources.observability.lag import ConsumerLag
from phoenix_resources.observability.metrics import DLQ_REASONS, OTHER, BulkHistogram
from phoenix_resources.observability.tracing import ParentOrLinksSampler, is_sampled
from phoenix_resources.observability.worker_watch import WorkerWatch
from tests.fakes import FakeConsumer

pytestmark = pytest.mark.unit

T = "commands"


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- lag ------------------------------------------------------------------------------------

def test_lag_counts_from_the_batch_in_hand_and_returns_to_zero() -> None:
    wall = Clock(1000.0)
    lag = ConsumerLag(wall)
    lag.assign([(T, 0), (T, 1)])
    lag.update({(T, 0): 10, (T, 1): 4}, {})
    assert lag.snapshot() == [(T, 0, 0, 0.0), (T, 1, 0, 0.0)], "no position known yet: 0"
    lag.update({}, {(T, 1): 4})  # partition 1: nothing to consume
    assert lag.snapshot() == [(T, 0, 0, 0.0), (T, 1, 0, 0.0)]
    lag.taken({(T, 0): (0, 990.0)})  # records 0.. of partition 0 in hand, the first 10 s old
    assert lag.snapshot() == [(T, 0, 10, 10.0), (T, 1, 0, 0.0)]
    wall.now = 1030.0  # a fault: the batch stays in hand and its age keeps growing
    assert lag.snapshot()[0] == (T, 0, 10, 40.0)
    lag.finished({(T, 0): (5, 995.0)})  # 0..5 done, 6..9 wait
    assert lag.snapshot()[0] == (T, 0, 4, 35.0)  # bounded by the last finished record
    lag.taken({(T, 0): (6, 1020.0)})
    assert lag.snapshot()[0] == (T, 0, 4, 10.0)
    lag.finished({(T, 0): (9, 1021.0)})
    assert lag.snapshot() == [(T, 0, 0, 0.0), (T, 1, 0, 0.0)]
    assert lag.total() == 0
    lag.remove([(T, 0)])
    assert [p for _, p, _, _ in lag.snapshot()] == [1]


def test_abandoning_a_batch_keeps_the_last_finished_position() -> None:
    lag = ConsumerLag(Clock(100.0))
    lag.assign([(T, 0)])
    lag.update({(T, 0): 8}, {(T, 0): 3})
    lag.taken({(T, 0): (3, 50.0)})
    lag.abandoned()
    assert lag.snapshot() == [(T, 0, 5, 0.0)]  # 3..7 wait; their age is not known yet


def test_the_worker_watch_reads_cached_watermarks_and_judges_readiness() -> None:
    consumer = FakeConsumer({T: 2})
    for i in range(3):
        consumer.append(T, 0, b"x", key=str(i).encode())
    clock = Clock(0.0)
    metrics = Metrics(component="worker")
    watch = WorkerWatch(metrics, consumer, stuck_after_s=60, monotonic=clock)  # type: ignore[arg-type]
    assert watch.readiness()["ok"] is False, "not in the group yet"
    consumer.positions = {(T, 0): 0, (T, 1): 0}
    watch.rebalanced("assigned", {(T, 0), (T, 1)}, {(T, 0), (T, 1)})
    watch.polled()
    assert metrics.consumer_lag.snapshot() == [(T, 0, 3, 0.0), (T, 1, 0, 0.0)]
    assert watch.readiness()["ok"] is True
    clock.now = 61.0  # three records wait and nothing finished for a minute: stuck
    state = watch.readiness()
    assert (state["ok"], state["stuck"], state["lag_messages"]) == (False, True, 3)
    value = metrics.registry.get_sample_value
    assert value("phoenix_rebalances_total", {"event": "assigned"}) == 1
    assert value("phoenix_assigned_partitions") == 2
    watch.paused()
    clock.now = 71.0
    watch.resumed()
    assert value("phoenix_consumer_paused_seconds_total") == 10.0


# --- metrics --------------------------------------------------------------------------------

def test_every_known_outcome_code_and_reason_starts_at_zero() -> None:
    m = Metrics(component="worker")
    value = m.registry.get_sample_value
    assert value("phoenix_commands_total", {"outcome": "applied", "code": "none"}) == 0
    assert value("phoenix_commands_total", {"outcome": "rejected", "code": "CMD-004"}) == 0
    assert value("phoenix_commands_total", {"outcome": "parked", "code": "PRK-002"}) == 0
    for reason in DLQ_REASONS:
        assert value("phoenix_commands_total", {"outcome": "dead_lettered", "code": reason}) == 0
    assert value("phoenix_transient_errors_total",
                 {"component": "worker", "kind": "DatabaseUnavailable"}) == 0
    assert value("phoenix_build_info", {"component": "worker", "version": "0.1.0",
                                        "python": __import__("platform").python_version()}) == 1
    assert value("process_cpu_seconds_total") is not None
    assert value("python_gc_collections_total", {"generation": "0"}) is not None


def test_label_values_stay_bounded() -> None:
    m = Metrics(component="worker")
    m.count_outcomes("rejected", {"CMD-004": 2, "CMD-999": 1})
    m.count_outcomes("dead_lettered", {"malformed-json": 1, "a-new-reason": 3})
    value = m.registry.get_sample_value
    assert value("phoenix_commands_total", {"outcome": "rejected", "code": "CMD-004"}) == 2
    assert value("phoenix_commands_total", {"outcome": "rejected", "code": OTHER}) == 1
    assert value("phoenix_commands_total", {"outcome": "dead_lettered", "code": OTHER}) == 3


def test_a_relay_exports_no_worker_label_sets() -> None:
    text = generate_latest(Metrics(component="relay").registry).decode()
    assert "phoenix_commands_total{" not in text
    assert 'phoenix_transient_errors_total{component="relay"' in text


def test_the_dead_letter_reasons_are_the_documented_ones() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "errors.md").read_text()
    section = doc.split("## Dead-letter reasons", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"^\| `([a-z-]+)` \|", section, re.MULTILINE)) == set(DLQ_REASONS)


def test_a_bulk_histogram_is_a_prometheus_histogram() -> None:
    m = Metrics(component="worker")
    h: BulkHistogram = m.command_latency
    h.observe_many([0.001, 0.01, 0.3, 1000.0])
    value = m.registry.get_sample_value
    name = "phoenix_command_latency_seconds"
    assert value(f"{name}_bucket", {"le": "0.005"}) == 1
    assert value(f"{name}_bucket", {"le": "0.01"}) == 2
    assert value(f"{name}_bucket", {"le": "0.5"}) == 3
    assert value(f"{name}_bucket", {"le": "+Inf"}) == 4
    assert value(f"{name}_count") == 4
    assert value(f"{name}_sum") == pytest.approx(1000.311)


def test_worker_and_relay_ports_differ_unless_one_is_forced() -> None:
    s = Settings()
    assert s.metrics_port_for("worker") == 9464
    assert s.metrics_port_for("relay") == 9465
    forced = Settings(metrics_port=9100)
    assert forced.metrics_port_for("worker") == forced.metrics_port_for("relay") == 9100
    assert Settings(metrics_port=0).metrics_port_for("relay") == 0


# --- health ---------------------------------------------------------------------------------

def test_a_cached_check_runs_at_most_once_per_ttl_and_turns_errors_into_not_ok() -> None:
    clock = Clock(0.0)
    calls: list[int] = []

    def check() -> dict[str, object]:
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("database gone")
        return {"ok": True}

    cached = CachedCheck(check, ttl=1.0, clock=clock)
    assert cached() == {"ok": True}
    assert cached() == {"ok": True}
    assert len(calls) == 1
    clock.now = 1.5
    assert cached() == {"ok": False, "error": "database gone"}


def test_the_health_server_answers_metrics_liveness_and_readiness() -> None:
    metrics = Metrics(component="relay")
    ready = {"ok": True}
    health = Health(checks={"relay": lambda: dict(ready)}, alive=[lambda: True])
    metrics.set_readiness("relay", health.is_ready)
    server = HealthServer("127.0.0.1", 0, metrics.exposition, health).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        assert httpx.get(f"{base}/readyz").status_code == 200
        assert 'phoenix_ready{component="relay"} 1.0' in httpx.get(f"{base}/metrics").text
        ready["ok"] = False
        answer = httpx.get(f"{base}/readyz")
        assert answer.status_code == 503
        assert answer.json() == {"status": "not ready", "checks": {"relay": {"ok": False}}}
        assert 'phoenix_ready{component="relay"} 0.0' in httpx.get(f"{base}/metrics").text
    finally:
        server.stop()


# --- logs -----------------------------------------------------------------------------------

def _logged(fn: object) -> dict[str, object]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("phoenix_resources.test-logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        fn(logger)  # type: ignore[operator]
    finally:
        logger.removeHandler(handler)
    result: dict[str, object] = json.loads(stream.getvalue())
    return result


def test_log_lines_carry_the_bound_context_and_the_current_trace() -> None:
    span = NonRecordingSpan(SpanContext(0xABC, 0xDEF, is_remote=False,
                                        trace_flags=TraceFlags(1)))

    def emit(logger: logging.Logger) -> None:
        with log_context(topic="t", partition=2), trace.use_span(span):
            logger.warning("dead-lettered", extra={"offset": 7, "partition": 3})

    line = _logged(emit)
    assert line["msg"] == "dead-lettered"
    assert (line["topic"], line["partition"], line["offset"]) == ("t", 3, 7)
    assert line["trace_id"] == f"{0xABC:032x}"
    assert line["span_id"] == f"{0xDEF:016x}"


def test_log_lines_without_a_span_have_no_trace_id() -> None:
    line = _logged(lambda logger: logger.info("x"))
    assert "trace_id" not in line


# --- sampling -------------------------------------------------------------------------------

def test_new_traces_are_sampled_at_the_ratio() -> None:
    random.seed(7)
    sampled = sum(is_sampled(new_traceparent(0.1)) for _ in range(5000))
    assert 400 <= sampled <= 600
    assert not any(is_sampled(new_traceparent(0.0)) for _ in range(100))
    assert all(is_sampled(new_traceparent(1.0)) for _ in range(100))


def test_a_command_published_inside_a_span_joins_its_trace() -> None:
    tracer = TracerProvider().get_tracer("app")
    with tracer.start_as_current_span("app") as span:
        tp = new_traceparent(0.0)  # the application's decision stands, not the ratio
    ctx = span.get_span_context()
    assert tp[:53] == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-"
    assert is_sampled(tp)


def test_the_server_samples_parent_based_and_by_link() -> None:
    sampler = ParentOrLinksSampler(0.25)
    rng = random.Random(3)
    roots = [rng.getrandbits(128) for _ in range(4000)]
    decided = [sampler.should_sample(None, t, "x").decision == Decision.RECORD_AND_SAMPLE
               for t in roots]
    assert 800 <= sum(decided) <= 1200
    # the same decision as the client's, on the same id
    assert decided == [sampled_at(t, 0.25) for t in roots]
    unsampled_parent = trace.set_span_in_context(NonRecordingSpan(
        SpanContext(1, 2, is_remote=True, trace_flags=TraceFlags(0))))
    sampled_parent = trace.set_span_in_context(NonRecordingSpan(
        SpanContext(1, 2, is_remote=True, trace_flags=TraceFlags(1))))
    never = ParentOrLinksSampler(0.0)
    always = ParentOrLinksSampler(1.0)
    assert always.should_sample(unsampled_parent, 5, "x").decision == Decision.DROP
    assert never.should_sample(sampled_parent, 5, "x").decision == Decision.RECORD_AND_SAMPLE
    link = Link(SpanContext(9, 9, is_remote=True, trace_flags=TraceFlags(1)))
    assert never.should_sample(None, 5, "x", links=[link]).decision == \
        Decision.RECORD_AND_SAMPLE


def test_a_worker_paused_by_a_fault_past_the_stuck_threshold_is_not_ready() -> None:
    """A pause holds its batch in flight, which the lag does not count as waiting: the
    pause itself must turn readiness off, and say what paused it."""
    consumer = FakeConsumer({T: 1})
    clock = Clock(0.0)
    watch = WorkerWatch(Metrics(component="worker"), consumer, stuck_after_s=30,
                        monotonic=clock)  # type: ignore[arg-type]
    consumer.positions = {(T, 0): 0}
    watch.rebalanced("assigned", {(T, 0)}, {(T, 0)})
    watch.polled()
    watch.paused("DatabaseReadOnly")
    clock.now = 29.0
    state = watch.readiness()
    assert (state["ok"], state["paused"], state["paused_by"]) == (True, True, "DatabaseReadOnly")
    clock.now = 31.0
    state = watch.readiness()
    assert (state["ok"], state["stuck"], state["seconds_paused"]) == (False, True, 31.0)
    watch.resumed()
    state = watch.readiness()
    assert (state["ok"], state["paused"]) == (True, False)
    assert "paused_by" not in state


def test_lag_series_exist_at_zero_from_assignment_and_leave_on_revoke_or_loss() -> None:
    """An idle worker's partitions are on the scrape (0 records, 0 s) before it has a
    position in any of them; revoked and lost ones leave it."""
    consumer = FakeConsumer({T: 6})
    metrics = Metrics(component="worker")
    watch = WorkerWatch(metrics, consumer)  # type: ignore[arg-type]
    all_six = {(T, p) for p in range(6)}
    watch.rebalanced("assigned", all_six, all_six)
    watch.polled()

    def series(name: str) -> dict[int, float]:
        return {int(s.labels["partition"]): s.value for f in metrics.registry.collect()
                for s in f.samples if s.name == name}

    assert series("phoenix_consumer_lag_messages") == dict.fromkeys(range(6), 0)
    assert series("phoenix_consumer_lag_seconds") == dict.fromkeys(range(6), 0.0)
    watch.rebalanced("revoked", {(T, 4), (T, 5)}, all_six - {(T, 4), (T, 5)})
    watch.rebalanced("lost", {(T, 3)}, {(T, 0), (T, 1), (T, 2)})
    assert set(series("phoenix_consumer_lag_messages")) == {0, 1, 2}
    assert set(series("phoenix_consumer_lag_seconds")) == {0, 1, 2}
    watch.rebalanced("assigned", {(T, 5)}, {(T, 0), (T, 1), (T, 2), (T, 5)})
    assert series("phoenix_consumer_lag_messages") == dict.fromkeys((0, 1, 2, 5), 0)
