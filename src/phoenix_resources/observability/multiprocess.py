"""prometheus-client's multiprocess mode: the metrics of the API's worker processes
(``PHOENIX_HTTP_WORKERS`` > 1), whichever of them answers a scrape.

uvicorn's worker processes share nothing, and a scrape reaches the one that accepts it. Set
``PROMETHEUS_MULTIPROC_DIR`` before a process first imports prometheus-client and every
metric value lives in a file of that directory; :func:`exposition` reads them all:

* **counters and histograms** (requests, latency) are summed over every process that wrote to
  the directory: a worker that died and was replaced keeps its counts, so a total never goes
  down;
* **the process and Python figures** (``process_*``, ``python_gc_*``, ``python_info``), which
  prometheus-client's collectors read only for the process they run in, are copied into the
  directory by each worker (:class:`ProcessMirror`, every :data:`SAMPLE_S` seconds, and by the
  answering worker at each scrape): its counters (CPU seconds, garbage collections and
  objects) are summed like the request counters; its gauges (memory, file descriptors, start
  time, ``python_info``) are one series per live worker, labelled ``pid``;
* **a worker that exits or is replaced** is marked dead by the process that supervises the
  workers (:func:`forget`): its gauges leave the scrape, its counts stay in the sums;
* what is not in the files — ``phoenix_ready``, evaluated at each scrape — comes from the
  answering process (every worker serves the same database, so its verdict is theirs).

The directory is a fresh temporary one per start, removed at the end, or the one
``PROMETHEUS_MULTIPROC_DIR`` already names, emptied at start (:func:`multiprocess_dir`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, multiprocess
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus-client's own variable: set, it keeps metric values in files of that directory
(read when a process first imports prometheus_client)."""

SAMPLE_S = 5.0
"""How often each worker copies its process and Python figures into the directory."""

LabelKey = tuple[str, tuple[tuple[str, str], ...]]


class ProcessMirror:
    """This process's ``process_*``, ``python_gc_*`` and ``python_info``, copied into the
    multiprocess directory by :meth:`sample` (counters by their increase since the last
    copy; gauges as they are, in ``liveall`` mode: one series per live process)."""

    def __init__(self) -> None:
        self._source = CollectorRegistry()
        ProcessCollector(registry=self._source)
        PlatformCollector(registry=self._source)
        GCCollector(registry=self._source)
        self._counters: dict[str, Counter] = {}
        self._gauges: dict[str, Gauge] = {}
        self._copied: dict[LabelKey, float] = {}
        self._lock = threading.Lock()

    def sample(self) -> None:
        """Copy the figures now (thread-safe)."""
        with self._lock:
            for family in self._source.collect():
                for sample in family.samples:
                    labels = tuple(sorted(sample.labels.items()))
                    if family.type == "counter" and sample.name.endswith("_total"):
                        self._add(family, labels, sample.value)
                    elif family.type == "gauge":
                        self._gauge(family, labels).set(sample.value)

    def _add(self, family: Metric, labels: tuple[tuple[str, str], ...], value: float) -> None:
        key = (family.name, labels)
        grown = value - self._copied.get(key, 0.0)
        if grown > 0:
            counter = self._counters.get(family.name)
            if counter is None:
                counter = self._counters[family.name] = Counter(
                    family.name, family.documentation, [k for k, _ in labels], registry=None)
            (counter.labels(*(v for _, v in labels)) if labels else counter).inc(grown)
            self._copied[key] = value

    def _gauge(self, family: Metric, labels: tuple[tuple[str, str], ...]) -> Gauge:
        gauge = self._gauges.get(family.name)
        if gauge is None:
            gauge = self._gauges[family.name] = Gauge(
                family.name, family.documentation, [k for k, _ in labels], registry=None,
                multiprocess_mode="liveall")
        return gauge.labels(*(v for _, v in labels)) if labels else gauge

    def start(self, every_s: float = SAMPLE_S) -> Callable[[], None]:
        """Sample now and then every ``every_s`` seconds on a daemon thread; returns the
        function that stops it."""
        self.sample()
        stopped = threading.Event()

        def keep_sampling() -> None:
            while not stopped.wait(every_s):
                self.sample()

        threading.Thread(target=keep_sampling, name="metrics-mirror", daemon=True).start()
        return stopped.set


def exposition(own: Iterable[Collector]) -> bytes:
    """What a scrape answers: the directory's metrics, merged over every process, with the
    answering process's ``own`` collectors (what the files do not hold)."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    for collector in own:
        registry.register(collector)
    return generate_latest(registry)


def forget(pid: int) -> None:
    """Process ``pid`` has exited: its live gauges leave the scrape (its counts stay)."""
    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


@contextmanager
def multiprocess_dir() -> Iterator[str]:
    """For processes started inside the block (the API's uvicorn workers): a fresh directory
    for prometheus-client's multiprocess mode, removed afterwards. A directory already set in
    ``PROMETHEUS_MULTIPROC_DIR`` (e.g. a Kubernetes emptyDir) is emptied and kept."""
    given = os.environ.get(MULTIPROC_ENV)
    path = given or tempfile.mkdtemp(prefix="phoenix-metrics-")
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.unlink(os.path.join(path, name))
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        if not given:
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(path, ignore_errors=True)
