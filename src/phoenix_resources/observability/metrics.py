"""Prometheus metrics: one :class:`Metrics` per process, on its own registry.

Nothing is registered at import time, so tests can run several workers in one process.

Guarantees:

* every label set that an alert or a dashboard counts with ``increase()``/``rate()`` exists
  from the start at 0 (every outcome with every known rejection code, park code and
  dead-letter reason; every transient fault kind; every rebalance event; the known HTTP
  routes), so the first dead letter after a restart is an increase, not a new series;
* label values are bounded: a code or reason this version does not know is counted as
  ``other``, an unknown HTTP path as the route ``other``;
* the process (CPU, memory, file descriptors) and Python (GC, version) collectors are on the
  registry, and ``phoenix_build_info`` names the version and the process kind;
* ``phoenix_ready{component}`` is the verdict of the readiness each process registers for its
  own kind (:meth:`Metrics.set_readiness`), evaluated at each scrape;
* under several API processes (``PHOENIX_HTTP_WORKERS`` > 1) every value is kept in
  ``PROMETHEUS_MULTIPROC_DIR`` and any process's scrape answers for all of them
  (:mod:`.multiprocess`: counters and histograms summed, the process figures one series per
  worker).
"""

from __future__ import annotations

import bisect
import importlib.metadata
import math
import platform
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from phoenix_resources.domain.rules import ParkCode, RejectionCode
from phoenix_resources.observability import multiprocess
from phoenix_resources.observability.lag import ConsumerLag

MULTIPROC_ENV = multiprocess.MULTIPROC_ENV
multiprocess_dir = multiprocess.multiprocess_dir
"""Also importable from here, where they used to live (:mod:`.multiprocess`)."""

OTHER = "other"
NO_CODE = "none"
"""The ``code`` of outcomes that have none (applied, duplicate)."""

REJECTION_CODES = tuple(c.value for c in RejectionCode)
PARK_CODES = tuple(c.value for c in ParkCode)
DLQ_REASONS = ("empty", "too-large", "unknown-format", "unknown-schema", "incompatible-schema",
               "malformed-avro", "malformed-json", "missing-field", "invalid-field",
               "issued-at-unit", "unparkable")
"""Every ``dlq.reason`` the worker writes (docs/errors.md; a unit test keeps them equal)."""

OUTCOME_CODES: dict[str, tuple[str, ...]] = {
    "applied": (NO_CODE,),
    "duplicate": (NO_CODE,),
    "rejected": (*REJECTION_CODES, OTHER),
    "parked": (*PARK_CODES, OTHER),
    "dead_lettered": (*DLQ_REASONS, OTHER),
}
TRANSIENT_KINDS = ("DatabaseUnavailable", "DatabaseReadOnly", "DatabaseRefused",
                   "BrokerUnavailable", "RegistryUnavailable", "ConcurrentModification")
REBALANCE_EVENTS = ("assigned", "revoked", "lost")
HTTP_ROUTES = ("/api/v1/resources/{id}", "/api/v1/commands/{command_id}", "/api/v1/resources",
               "/healthz", "/readyz", "/metrics")
INVALID_HEADERS = ("content-type", "traceparent")

LATENCY_BUCKETS = (.005, .01, .025, .05, .1, .25, .5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
"""End-to-end latencies (issued → committed, committed → published), in seconds."""


def code_label(outcome: str, code: str) -> str:
    """``code`` as a label value of ``outcome``: itself when known, else ``other``."""
    return code if code in OUTCOME_CODES.get(outcome, ()) else OTHER


def version() -> str:
    try:
        return importlib.metadata.version("phoenix-resources")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source checkout
        return "unknown"


class BulkHistogram(Collector):
    """A histogram fed a batch of observations at once: one lock per batch, not per value
    (the worker observes every command of a 1,000-command batch)."""

    def __init__(self, name: str, documentation: str, buckets: Iterable[float],
                 registry: CollectorRegistry) -> None:
        self._name = name
        self._doc = documentation
        self._bounds = sorted(float(b) for b in buckets)
        self._counts = [0] * (len(self._bounds) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: Iterable[float]) -> None:
        bounds, local, total = self._bounds, [0] * (len(self._bounds) + 1), 0.0
        for v in values:
            local[bisect.bisect_left(bounds, v)] += 1
            total += v
        with self._lock:
            for i, n in enumerate(local):
                self._counts[i] += n
            self._sum += total

    def observe_ages(self, now: float, stamps: list[float]) -> None:
        """Observe ``now - t`` for every ``t`` in ``stamps`` (epoch seconds; sorted in place),
        negative ages counted as 0. One sort and one bisection per bucket, in C: a
        1,000-command batch costs a fraction of a millisecond."""
        if not stamps:
            return
        stamps.sort()
        n = len(stamps)
        past = bisect.bisect_right(stamps, now)  # stamps[:past] are not in the future
        total = past * now - math.fsum(stamps[:past])
        cumulative = [n - bisect.bisect_left(stamps, now - bound) for bound in self._bounds]
        with self._lock:
            below = 0
            for i, up_to in enumerate(cumulative):
                self._counts[i] += up_to - below
                below = up_to
            self._counts[-1] += n - below
            self._sum += total

    def count(self) -> int:
        with self._lock:
            return sum(self._counts)

    def describe(self) -> Iterable[Metric]:
        return [HistogramMetricFamily(self._name, self._doc)]

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        buckets, running = [], 0
        for bound, n in zip([*self._bounds, float("inf")], counts, strict=True):
            running += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return [HistogramMetricFamily(self._name, self._doc, buckets=buckets,
                                      sum_value=total)]


class _LagCollector(Collector):
    def __init__(self, lag: ConsumerLag) -> None:
        self._lag = lag

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        messages, seconds = self._families()
        for topic, partition, behind, age in self._lag.snapshot():
            messages.add_metric([topic, str(partition)], behind)
            seconds.add_metric([topic, str(partition)], age)
        return [messages, seconds]

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        labels = ["topic", "partition"]
        return (GaugeMetricFamily("phoenix_consumer_lag_messages",
                                  "Records of an assigned partition not yet processed (high "
                                  "watermark minus the oldest unfinished offset)", labels=labels),
                GaugeMetricFamily("phoenix_consumer_lag_seconds",
                                  "Age of the oldest unprocessed record of an assigned "
                                  "partition (record timestamp); 0 when none waits",
                                  labels=labels))


class ReadyCollector(Collector):
    """``phoenix_ready{component}``: the same verdict as ``/readyz``, evaluated per scrape."""

    def __init__(self) -> None:
        self.checks: dict[str, Callable[[], bool]] = {}

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        for component, ready in sorted(self.checks.items()):
            try:
                ok = ready()
            except Exception:
                ok = False
            family.add_metric([component], 1.0 if ok else 0.0)
        return [family]

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily("phoenix_ready", "1 when the component is ready (/readyz "
                                 "answers 200), else 0", labels=["component"])


class Metrics:
    """Every metric of the service, on one registry per process.

    ``component`` names the process kind in ``phoenix_build_info`` (worker, relay, api, grpc,
    console, all for ``run``). In multiprocess mode (:mod:`.multiprocess`) this process's
    process and Python figures are copied into the shared directory at each of its scrapes,
    and every few seconds once :meth:`mirror_in_background` is called.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 component: str = "all") -> None:
        self.registry = registry or CollectorRegistry()
        self.component = component
        self.multiprocess = values.ValueClass is not values.MutexValue
        r = self.registry
        # Gauges state what a process sees now: in multiprocess mode (the API's processes)
        # the live processes' highest value; a dead process's value leaves with it.
        gauge_mode: Literal["livemax"] = "livemax"
        self.build_info = Gauge("phoenix_build_info", "Always 1: the version and process kind",
                                ["version", "component", "python"], registry=r,
                                multiprocess_mode=gauge_mode)
        self.build_info.labels(version(), component, platform.python_version()).set(1)
        self._mirror: multiprocess.ProcessMirror | None = None
        if self.multiprocess:
            self._mirror = multiprocess.ProcessMirror()
        else:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)
        # --- worker --------------------------------------------------------------------------
        self.commands = Counter("phoenix_commands", "Commands by recorded outcome; code is the "
                                "rejection code, park code or dead-letter reason ('none' for "
                                "applied and duplicate)", ["outcome", "code"], registry=r)
        self.invalid_headers = Counter("phoenix_invalid_headers",
                                       "Command record headers dropped as invalid (the "
                                       "command is still processed)", ["header"], registry=r)
        self.partition_mismatches = Counter(
            "phoenix_partition_mismatches", "Command records in another partition than their "
            "key's, applied anyway (PHOENIX_PARTITION_CHECK=warn; refused otherwise, CMD-011)",
            registry=r)
        self.batches = Counter("phoenix_batches", "Batches committed to PostgreSQL", registry=r)
        self.batch_size = Histogram("phoenix_batch_size", "Commands per batch", registry=r,
                                    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000))
        self.batch_seconds = Histogram("phoenix_batch_seconds",
                                       "Decode+decide+write+commit time per batch", registry=r,
                                       buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, 1,
                                                2.5, 10))
        self.command_latency = BulkHistogram(
            "phoenix_command_latency_seconds",
            "Command issued_at (publisher's clock) to its batch's commit", LATENCY_BUCKETS, r)
        self.consumer_lag = ConsumerLag()
        lag = _LagCollector(self.consumer_lag)
        r.register(lag)
        self.transient_errors = Counter("phoenix_transient_errors",
                                        "Transient faults waited out (each one a retry)",
                                        ["component", "kind"], registry=r)
        self.consumer_paused = Gauge("phoenix_consumer_paused",
                                     "1 while consumption is paused by a fault", registry=r,
                                     multiprocess_mode=gauge_mode)
        self.paused_seconds = Counter("phoenix_consumer_paused_seconds",
                                      "Time spent with consumption paused by a fault",
                                      registry=r)
        self.dlq_blocked = Gauge("phoenix_dlq_blocked",
                                 "Dead letters of a commands-topic partition that the DLQ "
                                 "topic refuses; the partition waits for them (0: none)",
                                 ["partition"], registry=r, multiprocess_mode=gauge_mode)
        self.assigned_partitions = Gauge("phoenix_assigned_partitions",
                                         "Partitions assigned to this worker", registry=r,
                                         multiprocess_mode=gauge_mode)
        self.rebalances = Counter("phoenix_rebalances", "Partitions assigned, revoked or lost "
                                  "(one count per rebalance callback)", ["event"], registry=r)
        self.consumer_replacements = Counter(
            "phoenix_consumer_replacements", "Consumers closed and replaced after being out of "
            "their group for consumer_replace_after_s", registry=r)
        # --- relay ---------------------------------------------------------------------------
        self.events_published = Counter("phoenix_events_published",
                                        "Outbox rows published by the relay", ["topic"],
                                        registry=r)
        self.events_parked = Counter("phoenix_events_parked",
                                     "Outbox rows parked by the relay after a permanent "
                                     "refusal by the broker", ["topic"], registry=r)
        self.publish_latency = BulkHistogram(
            "phoenix_event_publish_latency_seconds",
            "Outbox row written (its batch's commit) to its event acknowledged by the broker",
            LATENCY_BUCKETS, r)
        self.outbox_backlog = Gauge("phoenix_outbox_backlog_rows",
                                    "Outbox rows waiting to be published (parked ones not "
                                    "counted), as of the leader's last count", registry=r,
                                    multiprocess_mode=gauge_mode)
        self.outbox_parked = Gauge("phoenix_outbox_parked_rows",
                                   "Outbox rows parked now (their resource's later rows wait "
                                   "behind them)", registry=r, multiprocess_mode=gauge_mode)
        self.outbox_lag = Gauge("phoenix_outbox_lag_seconds",
                                "Age of the oldest outbox row in the relay's last fetch "
                                "(0 when the outbox is empty)", registry=r,
                                multiprocess_mode=gauge_mode)
        self.relay_active = Gauge("phoenix_relay_active",
                                  "1 when this relay holds the lock, 0 on standby", registry=r,
                                  multiprocess_mode=gauge_mode)
        self.outbox_pruned = Counter("phoenix_processed_commands_pruned",
                                     "processed_commands rows pruned", registry=r)
        # --- API -----------------------------------------------------------------------------
        self.http_requests = Counter("phoenix_http_requests", "HTTP requests",
                                     ["route", "status"], registry=r)
        self.http_seconds = Histogram("phoenix_http_request_seconds", "HTTP latency",
                                      ["route"], registry=r,
                                      buckets=(.001, .0025, .005, .01, .025, .05, .1, .2, .5, 1))
        self._ready = ReadyCollector()
        r.register(self._ready)
        self._own: list[Collector] = [self.command_latency, lag, self.publish_latency,
                                      self._ready]
        """What the multiprocess files do not hold: answered by the scraped process."""
        self._initialise_labels(component)

    def _initialise_labels(self, component: str) -> None:
        """The label sets of what this kind of process does (``all``: everything)."""
        every = component == "all"
        if every or component == "worker":
            for outcome, codes in OUTCOME_CODES.items():
                for code in codes:
                    self.commands.labels(outcome, code)
            for event in REBALANCE_EVENTS:
                self.rebalances.labels(event)
            for header in INVALID_HEADERS:
                self.invalid_headers.labels(header)
        for kind in TRANSIENT_KINDS:
            for part in ("worker", "relay"):
                if every or component == part:
                    self.transient_errors.labels(part, kind)
        if every or component == "api":
            for route in HTTP_ROUTES:
                self.http_seconds.labels(route)
                for status in ("200", "500"):
                    self.http_requests.labels(route, status)

    def init_topics(self, *topics: str) -> None:
        """Start the relay's per-topic series at 0."""
        for topic in topics:
            self.events_published.labels(topic)
            self.events_parked.labels(topic)

    def count_outcomes(self, outcome: str, by_code: Mapping[str, int]) -> None:
        """Add ``{code: n}`` to ``outcome`` (unknown codes go to ``other``)."""
        for code, n in by_code.items():
            if n:
                self.commands.labels(outcome, code_label(outcome, code)).inc(n)

    def set_readiness(self, component: str, ready: Callable[[], bool]) -> None:
        """Export ``phoenix_ready{component}`` from ``ready()``, evaluated at each scrape."""
        self._ready.checks[component] = ready

    def mirror_in_background(self) -> None:
        """In multiprocess mode, copy this process's figures into the shared directory every
        few seconds from now on (a worker that other workers answer scrapes for); else
        nothing."""
        if self._mirror is not None:
            self._mirror.start()

    def exposition(self) -> bytes:
        """The text a scrape answers: this registry, or in multiprocess mode every process's
        values (:func:`.multiprocess.exposition`) with this process's own collectors."""
        if self._mirror is None:
            return generate_latest(self.registry)
        self._mirror.sample()
        return multiprocess.exposition(self._own)


def family_names(metrics: Metrics) -> Iterator[str]:
    """Every sample name the registry can export (``_total``, ``_bucket`` … included)."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"],
                "gauge": [""], "info": ["_info"]}
    for family in metrics.registry.collect():
        for suffix in suffixes.get(family.type, [""]):
            yield family.name + suffix
