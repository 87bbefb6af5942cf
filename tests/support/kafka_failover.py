"""Kafka cluster faults under a live stream: the pieces of ``tests/e2e/test_failover_kafka.py``.

* :func:`replicated_topics` — the test's topics on a :class:`KafkaCluster`, replication 3,
  ``min.insync.replicas=2`` (Kafka caps ``min.insync.replicas`` at a topic's replication, so a
  topic with replication 1 would test nothing), every replica in sync before the test starts.
* :class:`Deployment` — two workers (static members of their group) and two relays as
  ``phoenix-resources`` processes.
* :class:`ClientStream` — creates and updates over many resources, published from a thread
  through the client library (``CommandPublisher``: idempotent, ``acks=all``) in chunks whose
  delivery is awaited; it records when each command was handed over and acknowledged.
  :meth:`ClientStream.workload` is the reference (``decide`` folded per resource) in the shape
  the fault kit's checks read (:mod:`phoenix_resources.soak.check`).
* :func:`measure` — what the fault did to the stream: fault → first command applied again on
  the partitions it hit, the stall, the commands that waited through it.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import psycopg
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from phoenix_resources.adapters.kafka import new_producer
from phoenix_resources.client.publisher import CommandPublisher
from phoenix_resources.config import Settings
from phoenix_resources.devstack.kafka_cluster import KafkaCluster
from phoenix_resources.domain.commands import AnyCommand, CreateResource, UpdateResource
from phoenix_resources.domain.model import Status
from phoenix_resources.soak import check as soak_check
from phoenix_resources.soak.workload import Record, Workload
from tests.support.failover import all_applied
from tests.support.kafka import Topics
from tests.support.net import free_port
from tests.support.processes import Process

PARTITIONS = 3
DELIVERY_TIMEOUT_S = 300.0
"""The stream's publisher waits this long for an acknowledgement: through every fault here
(a chunk that still fails would leave the reference unknown, so the test fails)."""

TRANSIENT = re.compile(r'^phoenix_transient_errors_total\{component="(\w+)",kind="(\w+)"\}'
                       r"\s+(\S+)$", re.MULTILINE)


def replicated_topics(cluster: KafkaCluster) -> Topics:
    """Fresh topics of this test: commands and events with :data:`PARTITIONS` partitions,
    rejections and the DLQ with one; all replication 3 and ``min.insync.replicas=2``. Events
    carry the broker's append time (``LogAppendTime``): when each was published."""
    topics = Topics.unique()
    layout = {topics.commands: PARTITIONS, topics.events: PARTITIONS, topics.rejections: 1,
              topics.dlq: 1}
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    config = {"min.insync.replicas": "2"}
    appended = {**config, "message.timestamp.type": "LogAppendTime"}
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=n, replication_factor=3,
                  config=appended if t == topics.events else config)
         for t, n in layout.items()], operation_timeout=30)
    for future in futures.values():
        future.result(timeout=60)
    for topic, n in layout.items():
        cluster.wait_until_isr(topic, range(n), 3)
    return topics


def all_in_sync(cluster: KafkaCluster, topics: Topics, timeout: float = 120.0) -> None:
    """Until every partition of the test's topics has its three replicas in sync again."""
    for topic, n in ((topics.commands, PARTITIONS), (topics.events, PARTITIONS),
                     (topics.rejections, 1), (topics.dlq, 1)):
        cluster.wait_until_isr(topic, range(n), 3, timeout=timeout)


def on_cluster(database_url: str, cluster: KafkaCluster, topics: Topics,
               **updates: Any) -> Settings:
    return Settings(
        database_url=database_url, kafka_bootstrap_servers=cluster.bootstrap_servers,
        commands_topic=topics.commands, events_topic=topics.events,
        rejections_topic=topics.rejections, dlq_topic=topics.dlq,
        consumer_group=f"g-{topics.commands}", create_topics=False, batch_max_wait_ms=20,
        retry_initial_s=0.05, retry_max_s=1.0, relay_poll_interval_s=0.2, log_format="json",
        metrics_port=0, http_port=free_port(), grpc_port=free_port(), **updates)


# --- the deployment -----------------------------------------------------------------------


@dataclass
class Deployment:
    """Two workers and two relays (one leads), each on its own metrics port."""

    settings: Settings
    members: list[tuple[Process, int]] = field(default_factory=list)

    @classmethod
    def start(cls, settings: Settings, workers: int = 2, relays: int = 2) -> Deployment:
        """Workers are static members of their group (``PHOENIX_GROUP_INSTANCE_ID``), as the
        Kubernetes StatefulSet makes them."""
        d = cls(settings)
        try:
            for kind, n in (("worker", workers), ("relay", relays)):
                for i in range(n):
                    port = free_port()
                    update: dict[str, Any] = {"metrics_port": port}
                    if kind == "worker":
                        update["group_instance_id"] = f"worker-{i}"
                    d.members.append((Process(kind, settings.model_copy(update=update)), port))
        except BaseException:
            d.stop()
            raise
        return d

    def stop(self) -> None:
        for p, _ in self.members:
            try:
                p.terminate()
            except Exception:
                p.kill()

    def settled(self) -> bool:
        """Every worker a steady member of the group, and every partition assigned."""
        assigned = 0
        with httpx.Client(timeout=3.0) as client:
            for p, port in self.members:
                if p.command != "worker":
                    continue
                try:
                    consumer = client.get(f"http://127.0.0.1:{port}/readyz").json()[
                        "checks"]["consumer"]
                except (httpx.HTTPError, ValueError, KeyError, TypeError):
                    return False
                if consumer.get("group_state") != "up/steady":
                    return False
                assigned += int(consumer.get("assigned_partitions", 0))
        return assigned == PARTITIONS

    def signal(self, kind: str, sig: int) -> None:
        """Send ``sig`` to every ``kind`` process (``worker`` or ``relay``)."""
        for p, _ in self.members:
            if p.command == kind and p.alive():
                os.killpg(p.pid, sig)

    def dead(self) -> list[str]:
        """Processes that exited by themselves (none should)."""
        return [f"{p.command} ({p.log_path}): exit {p.proc.returncode}"
                for p, _ in self.members if not p.alive()]

    def logs(self, tail: int = 2500) -> str:
        return "\n".join(f"--- {p.log_path}:\n{p.output()[-tail:]}" for p, _ in self.members)

    def transient_errors(self) -> dict[str, int]:
        """``component/kind`` → faults waited out, summed over the processes."""
        total: dict[str, int] = {}
        with httpx.Client(timeout=3.0) as client:
            for _, port in self.members:
                try:
                    text = client.get(f"http://127.0.0.1:{port}/metrics").text
                except httpx.HTTPError:
                    continue
                for component, kind, value in TRANSIENT.findall(text):
                    if float(value):
                        key = f"{component}/{kind}"
                        total[key] = total.get(key, 0) + int(float(value))
        return total


# --- the stream ---------------------------------------------------------------------------


def _script(rids: Sequence[UUID]) -> Callable[[int], AnyCommand]:
    """Command ``i``: round ``i // len(rids)`` over the resources; a create in round 0,
    then updates (every one applies: no expected version, nothing deleted)."""
    statuses = (Status.ACTIVE, Status.INACTIVE)

    def command(i: int) -> AnyCommand:
        round_, rid = divmod(i, len(rids))
        at = datetime.now(UTC)
        if round_ == 0:
            return CreateResource(command_id=uuid.uuid4(), resource_id=rids[rid], issued_at=at,
                                  name=f"r{rid}", config={})
        return UpdateResource(command_id=uuid.uuid4(), resource_id=rids[rid], issued_at=at,
                              name=f"n{round_}", status=statuses[round_ % 2],
                              config={"round": str(round_)})
    return command


class ClientStream:
    """Commands published in order through ``CommandPublisher``, ``chunk`` at a time (each
    chunk's delivery awaited) at about ``rate`` per second, from a thread, until
    :meth:`stop`."""

    def __init__(self, settings: Settings, *, resources: int = 150, rate: float = 50.0,
                 chunk: int = 25, seed: int = 11) -> None:
        rng = random.Random(seed)
        self._next = _script([UUID(int=rng.getrandbits(128), version=4)
                              for _ in range(resources)])
        self._publisher = CommandPublisher(settings, wire_format="avro",
                                           delivery_timeout_s=DELIVERY_TIMEOUT_S)
        self._rate = rate
        self._chunk = chunk
        self.commands: list[AnyCommand] = []
        """Every command acknowledged, in publishing order."""
        self.submitted_at: dict[UUID, float] = {}
        self.acked_at: dict[UUID, float] = {}
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="client-stream")

    def start(self) -> ClientStream:
        self._thread.start()
        return self

    def _run(self) -> None:
        counter = itertools.count()
        try:
            while not self._stop.is_set():
                began = time.time()
                chunk = [self._next(next(counter)) for _ in range(self._chunk)]
                for c in chunk:
                    self.submitted_at[c.command_id] = began
                result = self._publisher.send_many(chunk)
                if result.failed:
                    self.failures += [f.error for f in result.failed]
                    return
                done = time.time()
                self.commands += chunk
                for c in chunk:
                    self.acked_at[c.command_id] = done
                self._stop.wait(max(0.0, len(chunk) / self._rate - (done - began)))
        except BaseException as e:  # the test reports it
            self.failures.append(repr(e))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(DELIVERY_TIMEOUT_S + 30)
        assert not self._thread.is_alive(), "the publisher did not stop"
        self._publisher.close(10)

    def workload(self, poison: Collection[bytes] = ()) -> Workload:
        """The reference for what was acknowledged: every command applied, in order per
        resource; ``poison`` keys belong in the DLQ."""
        commands = self.commands
        records = [Record(str(c.resource_id).encode(), b"", "avro", "command", c.command_id)
                   for c in commands]
        records += [Record(key, b"", "application/json", "poison") for key in poison]
        return all_applied(commands, records)


def publish_poison(settings: Settings, keys: Sequence[bytes]) -> None:
    """Records that are no command (the worker dead-letters them), keyed ``keys``, written
    like any publisher's (idempotent, ``acks=all``)."""
    producer = new_producer(settings)
    for key in keys:
        producer.produce(settings.commands_topic, key=key, value=b"{not a command",
                         headers=[("content-type", b"application/json")])
    assert producer.flush(30) == 0, "the poison was not written"


# --- what the tests read back -------------------------------------------------------------


def applied(url: str) -> dict[UUID, tuple[float, int]]:
    """Command id → (``processed_at`` in epoch seconds, source partition) of every outcome."""
    with psycopg.connect(url, autocommit=True) as conn:
        return {r[0]: (r[1].timestamp(), r[2]) for r in conn.execute(
            "SELECT command_id, processed_at, source_partition FROM processed_commands "
            "WHERE outcome <> 'pending'")}


def count(url: str, sql: str) -> int:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class Measured:
    """What one fault did (times in seconds)."""

    fault: str
    lasted_s: float
    """From the fault to the moment it was healed (broker restarted, started, resumed)."""
    in_sync_s: float
    """From the fault to every replica of the test's topics in sync again."""
    recovery_s: float | None
    """From the fault to the first command applied again on the partitions it hit."""
    stalled_s: float
    """The longest stretch without a command applied on those partitions, around the fault."""
    waiting: int
    """Commands handed to the publisher before the recovery and applied after it."""
    events_recovery_s: float | None
    """From the fault to the first event published again on the events partitions it hit
    (the broker's append time)."""
    event_repeats: int
    """Events received more than once (the same event id: at least once, allowed)."""
    lost: int
    applied_twice: int
    parked: int
    dead_lettered: int
    """Good commands in the DLQ."""
    transient_errors: dict[str, int]

    def row(self) -> dict[str, Any]:
        return {k: round(v, 2) if isinstance(v, float) else v for k, v in asdict(self).items()}


def _gap(times: Sequence[float], start: float, end: float) -> tuple[float, float] | None:
    """The longest stretch between two consecutive ``times`` that ends after ``start`` and
    begins before ``end``."""
    ordered = sorted(times)
    best: tuple[float, float] | None = None
    for a, b in itertools.pairwise(ordered):
        if b > start and a < end and (best is None or b - a > best[1] - best[0]):
            best = (a, b)
    return best


def appended(settings: Settings) -> list[tuple[float, int]]:
    """(append time in epoch seconds, partition) of every record of the events topic."""
    return [((m.timestamp()[1] or 0) / 1000, m.partition() or 0)
            for m in soak_check.read_to_end(settings.kafka_common(), settings.events_topic)]


def measure(fault: str, window: tuple[float, float], in_sync: float, *, stream: ClientStream,
            outcomes: dict[UUID, tuple[float, int]], events: Sequence[tuple[float, int]],
            seen: soak_check.Observed, checks: Sequence[soak_check.Check],
            workload: Workload, transient_errors: dict[str, int],
            partitions: Collection[int] = range(PARTITIONS),
            event_partitions: Collection[int] = range(PARTITIONS)) -> Measured:
    """What the fault (``window`` = (injected, healed), epoch seconds; every replica in sync
    again at ``in_sync``) did to the stream's commands on ``partitions`` and to the events on
    ``event_partitions``."""
    start, healed = window
    mine = {c: t for c, (t, p) in outcomes.items()
            if p in partitions and c in stream.submitted_at}
    gap = _gap(list(mine.values()), start, healed)
    resumed = gap[1] if gap else None
    waiting = 0 if resumed is None else sum(
        1 for c, t in mine.items() if t >= resumed and stream.submitted_at[c] < resumed)
    arrivals = [t for t, p in events if p in event_partitions]
    event_gap = _gap(arrivals, start, healed)
    violations = {c.name: c.violations for c in checks}
    poison = workload.poison_keys
    return Measured(
        fault, healed - start, in_sync - start, None if resumed is None else resumed - start,
        0.0 if gap is None else gap[1] - gap[0], waiting,
        None if event_gap is None else event_gap[1] - start,
        len(seen.events) - len({e for _, _, e in seen.events}),
        violations.get("nothing lost", -1), violations.get("nothing applied twice", -1),
        violations.get("nothing parked", -1),
        sum(1 for k in seen.dead_letter_keys if k not in poison), transient_errors)
