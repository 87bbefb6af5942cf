"""A deployment of real processes on a PostgreSQL primary/standby pair, a stream published
through a failover, and what failover tests sample, check and measure.

* :class:`Deployment` — two workers, two relays and the API as ``phoenix-resources``
  processes, each with its own metrics (or HTTP) port.
* :class:`Stream` — creates and updates over many resources, published from a thread at a
  steady rate until stopped; it records when each command was acknowledged by the broker.
  :meth:`Stream.workload` is the reference for what was sent (the domain's ``decide`` folded
  per resource), in the shape the fault kit's checks read (:mod:`phoenix_resources.soak.check`).
* :class:`Sampler` — every few tenths of a second: each relay's ``phoenix_relay_active``
  (read A, B, A so a handover between two reads is not mistaken for two leaders), a lookup
  through the API, and the workers' readiness.
* :func:`measure` — from the recorded outcomes' ``processed_at`` and the events' broker
  timestamps: when the stream stopped and resumed around the fault, and how many commands
  waited through it.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import psycopg

from phoenix_resources.adapters.codecs import event_codec
from phoenix_resources.adapters.kafka import new_producer
from phoenix_resources.config import Settings
from phoenix_resources.domain.commands import AnyCommand
from phoenix_resources.domain.decide import Applied, decide
from phoenix_resources.domain.model import Resource
from phoenix_resources.soak.check import read_to_end
from phoenix_resources.soak.workload import Expected, Record, Workload
from phoenix_resources.wire.commands import CommandCodec
from phoenix_resources.wire.framing import Framing
from tests.support.net import free_port
from tests.support.processes import Process

ACTIVE = re.compile(r"^phoenix_relay_active\s+(\S+)$", re.MULTILINE)
TRANSIENT = re.compile(r'^phoenix_transient_errors_total\{component="(\w+)",kind="(\w+)"\}'
                       r"\s+(\S+)$", re.MULTILINE)


def _get(client: httpx.Client, url: str) -> httpx.Response | None:
    try:
        return client.get(url)
    except httpx.HTTPError:
        return None


@dataclass
class Deployment:
    """The processes of one deployment; :meth:`stop` ends them all."""

    settings: Settings
    workers: list[tuple[Process, int]] = field(default_factory=list)
    relays: list[tuple[Process, int]] = field(default_factory=list)
    api: Process | None = None

    @classmethod
    def start(cls, settings: Settings, workers: int = 2, relays: int = 2) -> Deployment:
        d = cls(settings)
        try:
            for kind, members in (("worker", d.workers), ("relay", d.relays)):
                for _ in range(workers if kind == "worker" else relays):
                    port = free_port()
                    members.append((Process(kind, settings.model_copy(
                        update={"metrics_port": port})), port))
            d.api = Process("api", settings)
        except BaseException:
            d.stop()
            raise
        return d

    def processes(self) -> list[Process]:
        return [p for p, _ in self.workers + self.relays] + ([self.api] if self.api else [])

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every process (SIGKILL after 30 s); their exit codes by log name."""
        codes: dict[str, int | None] = {}
        for p in self.processes():
            try:
                codes[p.log_path.name] = p.terminate()
            except Exception:
                p.kill()
                codes[p.log_path.name] = None
        return codes

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(f"--- {p.log_path}:\n{p.output()[-tail:]}" for p in self.processes())

    def relay_active(self, client: httpx.Client, index: int) -> int | None:
        """``phoenix_relay_active`` of relay ``index``: 1, 0, or None when it did not answer."""
        r = _get(client, f"http://127.0.0.1:{self.relays[index][1]}/metrics")
        found = ACTIVE.search(r.text) if r is not None and r.status_code == 200 else None
        return int(float(found.group(1))) if found else None

    def leaders(self, client: httpx.Client) -> list[int | None]:
        return [self.relay_active(client, i) for i in range(len(self.relays))]

    def ready(self, client: httpx.Client) -> bool:
        """Every worker and the API ready, and one relay leading."""
        urls = [f"http://127.0.0.1:{port}/readyz" for _, port in self.workers]
        urls.append(f"{self.api_url}/readyz")
        answers = [_get(client, u) for u in urls]
        return all(a is not None and a.status_code == 200 for a in answers) \
            and self.leaders(client).count(1) == 1

    def transient_errors(self, client: httpx.Client) -> dict[str, int]:
        """``component/kind`` → faults waited out, summed over the workers and relays."""
        total: Counter[str] = Counter()
        for _, port in self.workers + self.relays:
            r = _get(client, f"http://127.0.0.1:{port}/metrics")
            for component, kind, value in TRANSIENT.findall(r.text if r is not None else ""):
                if float(value):
                    total[f"{component}/{kind}"] += int(float(value))
        return dict(total)


class Stream:
    """``commands`` published in order, ``chunk`` at a time at about ``rate`` per second,
    from a thread, until all are sent or :meth:`stop`."""

    def __init__(self, settings: Settings, commands: Sequence[AnyCommand], *, rate: float,
                 chunk: int = 20) -> None:
        codec = CommandCodec(Framing())
        self.commands = list(commands)
        self.records = [Record(str(c.resource_id).encode(), *codec.encode(c, "avro"),
                               "command", c.command_id) for c in self.commands]
        self.published_at: dict[UUID, float] = {}
        """Command id → when the broker acknowledged it (epoch seconds)."""
        self._topic = settings.commands_topic
        self._rate = rate
        self._chunk = chunk
        self._producer = new_producer(settings, **{"linger.ms": 5})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="stream")
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            for start in range(0, len(self.records), self._chunk):
                if self._stop.is_set():
                    return
                chunk = self.records[start:start + self._chunk]
                for r in chunk:
                    self._producer.produce(self._topic, key=r.key, value=r.value,
                                           headers=[("content-type", r.content_type.encode())])
                # A chunk is sent whole or the test fails: what was sent is the reference.
                assert self._producer.flush(60) == 0, "the broker did not take the stream"
                now = time.time()
                for r in chunk:
                    assert r.command_id is not None
                    self.published_at[r.command_id] = now
                self._stop.wait(len(chunk) / self._rate)
        except BaseException as e:
            self.error = e

    def start(self) -> Stream:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(120)
        assert not self._thread.is_alive(), "the publisher did not stop"
        assert self.error is None, self.error

    @property
    def sent(self) -> int:
        return len(self.published_at)

    def workload(self) -> Workload:
        """The reference for what was sent: every command applied, in order per resource."""
        return all_applied(self.commands[:self.sent], self.records[:self.sent])


@dataclass
class Samples:
    leaders: list[tuple[float, tuple[int | None, ...]]] = field(default_factory=list)
    """(time, each relay's phoenix_relay_active), A-B-A reads folded into one sample."""
    overlaps: list[tuple[float, tuple[int | None, ...]]] = field(default_factory=list)
    lookups: list[tuple[float, int | None]] = field(default_factory=list)
    """(time, HTTP status of a lookup through the API; None: no answer)."""
    readiness: list[tuple[float, str, int | None, str | None]] = field(default_factory=list)
    """(time, worker, /readyz status, ``paused_by``)."""
    recorded: list[tuple[float, int]] = field(default_factory=list)
    """(time, recorded outcomes), read through the standby-first URL, which keeps a node
    through each of these faults."""


class _Counter:
    """``count(*)`` of the recorded outcomes on one kept connection, made again when lost."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: psycopg.Connection[Any] | None = None

    def count(self) -> int | None:
        try:
            if self.conn is None or self.conn.closed:
                self.conn = psycopg.connect(self.url, connect_timeout=2, autocommit=True)
            row = self.conn.execute("SELECT count(*) FROM processed_commands").fetchone()
            return int(row[0]) if row else None
        except psycopg.Error:
            self.close()
            return None

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
            self.conn = None


class Sampler:
    """Samples the deployment from a thread until :meth:`stop` (see the module docstring)."""

    def __init__(self, deployment: Deployment, resource_id: UUID, *, count_url: str,
                 interval: float = 0.2) -> None:
        self.d = deployment
        self.resource_id = resource_id
        self.count_url = count_url
        self.interval = interval
        self.samples = Samples()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="sampler")

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> Samples:
        self._stop.set()
        self._thread.join(30)
        return self.samples

    def _run(self) -> None:
        counter = _Counter(self.count_url)
        with httpx.Client(timeout=2.0) as client:
            turn = 0
            while not self._stop.wait(self.interval):
                count = counter.count()
                if count is not None:
                    self.samples.recorded.append((time.time(), count))
                self._leaders(client, turn)
                self._lookup(client)
                if turn % 3 == 0:
                    self._readiness(client)
                turn += 1
        counter.close()

    def _leaders(self, client: httpx.Client, turn: int) -> None:
        first, second = (0, 1) if turn % 2 == 0 else (1, 0)
        a = self.d.relay_active(client, first)
        b = self.d.relay_active(client, second)
        again = self.d.relay_active(client, first)
        now = time.time()
        # The first relay led throughout the three reads only if both of its reads say so.
        values = [0, 0]
        values[first] = int(a == 1 and again == 1)
        values[second] = int(b == 1)
        self.samples.leaders.append((now, tuple(values)))
        if all(values):
            self.samples.overlaps.append((now, (a, b, again)))

    def _lookup(self, client: httpx.Client) -> None:
        r = _get(client, f"{self.d.api_url}/api/v1/resources/{self.resource_id}")
        self.samples.lookups.append((time.time(), r.status_code if r is not None else None))

    def _readiness(self, client: httpx.Client) -> None:
        for i, (_, port) in enumerate(self.d.workers):
            r = _get(client, f"http://127.0.0.1:{port}/readyz")
            paused_by = None
            if r is not None:
                with contextlib.suppress(ValueError):
                    paused_by = r.json().get("checks", {}).get("consumer", {}).get("paused_by")
            self.samples.readiness.append((time.time(), f"worker-{i}",
                                           r.status_code if r is not None else None,
                                           paused_by))


def event_times(settings: Settings) -> dict[UUID, float]:
    """Command id → when the broker first took its event (the record's timestamp)."""
    codec = event_codec(settings)
    first: dict[UUID, float] = {}
    for m in read_to_end(settings.kafka_common(), settings.events_topic):
        command_id = codec.decode_event(m.value() or b"").command_id
        first.setdefault(command_id, m.timestamp()[1] / 1000)
    return first


def largest_gap(times: Sequence[float], fault: tuple[float, float]) -> tuple[float, float]:
    """The longest stretch without an entry that began while the fault lasted and ended
    after it began: (last entry before it, first entry after it). A later hiccup of the
    stream, longer than a short outage, is not taken for it."""
    ordered = sorted(times)
    best = (fault[0], fault[0])
    for before, nxt in itertools.pairwise(ordered):
        if nxt > fault[0] and before <= fault[1] and nxt - before > best[1] - best[0]:
            best = (before, nxt)
    return best


def progress_times(recorded: Sequence[tuple[float, int]]) -> list[float]:
    """The sample times at which the count had grown since the sample before."""
    return [t for (_, before), (t, now) in itertools.pairwise(recorded) if now > before]


@dataclass(frozen=True)
class Measured:
    """What one fault did to the stream; times are epoch seconds."""

    kind: str
    fault_started: float
    fault_ended: float
    """When the call that made the fault returned (read-only: lifted; switchover: the old
    primary streams again as the synchronous standby; crash: the standby promoted)."""
    stalled_from: float
    """The last sample that saw a new outcome before the longest stall."""
    resumed_at: float
    """The first sample that saw one after it."""
    events_resumed_at: float | None
    """The first event published after the longest pause of the events."""
    paused: int
    """Commands the broker had taken and no outcome recorded when the stream resumed."""
    longest_wait_s: float
    """The longest from a command taken by the broker to its event taken by the broker."""
    lost: int
    applied_twice: int
    parked: int
    dead_lettered: int

    def row(self) -> dict[str, Any]:
        def since(t: float | None, start: float) -> float | None:
            return None if t is None else round(t - start, 2)

        return {"kind": self.kind,
                "fault_lasted_s": since(self.fault_ended, self.fault_started),
                "fault_to_applied_s": since(self.resumed_at, self.fault_started),
                "applied_after_fault_ended_s": since(self.resumed_at, self.fault_ended),
                "stream_stalled_s": since(self.resumed_at, self.stalled_from),
                "fault_to_event_s": since(self.events_resumed_at, self.fault_started),
                "commands_paused": self.paused, "longest_wait_s": round(self.longest_wait_s, 2),
                "lost": self.lost, "applied_twice": self.applied_twice,
                "parked": self.parked, "dead_lettered": self.dead_lettered}


def measure(kind: str, fault: tuple[float, float], *, recorded: Sequence[tuple[float, int]],
            published: dict[UUID, float], events: dict[UUID, float],
            counts: dict[str, int]) -> Measured:
    """What the fault did to the stream (see :class:`Measured`); ``recorded`` are the
    sampled counts of outcomes, ``counts`` the checks' violations (``lost``,
    ``applied_twice``, ``parked``, ``dead_lettered``)."""
    stalled_from, resumed_at = largest_gap(progress_times(recorded), fault)
    _, events_resumed = largest_gap(list(events.values()), fault) if events else (0, None)
    before = max((n for t, n in recorded if t < resumed_at), default=0)
    paused = sum(1 for t in published.values() if t < resumed_at) - before
    waited = [events[c] - t for c, t in published.items() if c in events]
    return Measured(kind, fault[0], fault[1], stalled_from, resumed_at, events_resumed,
                    max(0, paused), max(waited, default=0.0), **counts)


def all_applied(commands: Sequence[AnyCommand], records: list[Record]) -> Workload:
    """The soak checks' reference for a stream of ``commands`` (sent as ``records``) that
    must all be applied, in order per resource: their outcomes, the final states and every
    event's id."""
    state: dict[UUID, Resource] = {}
    expected: dict[UUID, Expected] = {}
    events: dict[tuple[UUID, int], UUID] = {}
    for c in commands:
        d = decide(state.get(c.resource_id), c, datetime.now(UTC))
        assert isinstance(d, Applied), f"the stream holds a command that is refused: {d}"
        state[c.resource_id] = d.state
        expected[c.command_id] = Expected("applied", None, d.state.version)
        if d.event is not None:
            events[(c.resource_id, d.event.version)] = d.event.event_id
    return Workload(0, records, {c.command_id: c for c in commands}, expected, state, events,
                    set())
