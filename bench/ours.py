"""phoenix-resources end to end: the real ``worker`` and ``relay`` processes.

Throughput: the commands topic is pre-loaded; worker and relay start; the run ends when the
events, rejections and DLQ topics hold what the reference model says they must. Two rates:

* *sustained*: messages / (last event appended - first batch committed), i.e. from the first
  ``processed_at`` in PostgreSQL to the broker's LogAppendTime of the last event — process
  start-up (Python imports, group join) excluded, as it is for the Debezium figure;
* *wall*: messages / (spawn → last expected event seen), start-up included.

Then effectively-once is checked: the database equals the reference model, every expected
event id was published (repeats from the at-least-once relay are counted, not hidden).

Latency: an empty topic, worker and relay running, creates produced at a fixed rate; a
subscriber on the events topic stamps each event on receipt; latency = receipt - produce call.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition

from bench.common import (
    Proc,
    ProcStats,
    Target,
    Watermarks,
    cli,
    percentile,
    progress,
    read_all,
    tree_cpu_s,
)
from bench.workload import Workload
from phoenix_resources.domain.commands import CreateResource
from phoenix_resources.domain.events import event_id_for
from phoenix_resources.wire.commands import CommandCodec
from phoenix_resources.wire.events import EventCodec
from phoenix_resources.wire.framing import Framing

LOGS = Path(__file__).resolve().parents[1] / ".local" / "bench-logs"


@dataclass
class OursResult:
    messages: int
    sustained_rate: float
    wall_rate: float
    worker: ProcStats | None
    relay: ProcStats | None
    ok: bool
    postgres_cpu_s: float = 0.0
    """CPU of the whole PostgreSQL cluster (postmaster, backends, WAL writer …) during the run."""
    broker_cpu_s: float = 0.0
    problems: list[str] = field(default_factory=list)
    event_repeats: int = 0


@dataclass
class Pipeline:
    """Worker + relay processes on one database and one set of topics."""

    target: Target
    commands_topic: str
    partitions: int
    batch_size: int | None = None
    batch_wait_ms: int | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    db_settings: dict[str, str] = field(default_factory=dict)
    workers: int = 1

    def __post_init__(self) -> None:
        name = self.target.next_name("ours").replace("_", ".")
        self.events = f"bench.{name}.events"
        self.rejections = f"bench.{name}.rejections"
        self.dlq = f"bench.{name}.dlq"
        self.group = f"bench-{name}"
        self.db_url = self.target.fresh_db("ours")
        if self.db_settings:
            db = self.db_url.rsplit("/", 1)[1]
            with psycopg.connect(self.target.admin_url, autocommit=True) as conn:
                for k, v in self.db_settings.items():
                    conn.execute(f'ALTER DATABASE "{db}" SET {k} = {v}')
        self.target.create_topics([self.events, self.rejections], self.partitions,
                                  {"message.timestamp.type": "LogAppendTime"})
        self.target.create_topics([self.dlq], 1)
        self.procs: list[Proc] = []

    def env(self) -> dict[str, str]:
        env = {"PHOENIX_DATABASE_URL": self.db_url,
               "PHOENIX_KAFKA_BOOTSTRAP_SERVERS": self.target.bootstrap,
               "PHOENIX_COMMANDS_TOPIC": self.commands_topic,
               "PHOENIX_EVENTS_TOPIC": self.events,
               "PHOENIX_REJECTIONS_TOPIC": self.rejections,
               "PHOENIX_DLQ_TOPIC": self.dlq,
               "PHOENIX_CONSUMER_GROUP": self.group,
               "PHOENIX_CREATE_TOPICS": "false",
               "PHOENIX_METRICS_PORT": "0",
               "PHOENIX_LOG_LEVEL": "WARNING"}
        if self.batch_size:
            env["PHOENIX_BATCH_SIZE"] = str(self.batch_size)
        if self.batch_wait_ms is not None:
            env["PHOENIX_BATCH_MAX_WAIT_MS"] = str(self.batch_wait_ms)
        return {**env, **self.extra_env}

    def start(self) -> None:
        env = self.env()
        self.relay = Proc(cli("relay"), env, LOGS / f"{self.group}-relay.log")
        self.workers_procs = [Proc(cli("worker"), env, LOGS / f"{self.group}-worker{i}.log")
                              for i in range(self.workers)]
        self.worker = self.workers_procs[0]
        self.procs = [self.relay, *self.workers_procs]

    def check_alive(self) -> None:
        for p in self.procs:
            if not p.alive():
                raise RuntimeError(f"{p.argv[-1]} exited ({p.p.returncode}); log tail:\n"
                                   f"{p.tail()}")

    def stop(self) -> None:
        for p in self.procs:
            p.stop()


def throughput(target: Target, wl: Workload, commands_topic: str, partitions: int, *,
               batch_size: int | None = None, timeout_s: float | None = None,
               stall_s: float = 15.0, db_settings: dict[str, str] | None = None,
               workers: int = 1, batch_wait_ms: int | None = None,
               extra_env: dict[str, str] | None = None) -> OursResult:
    pipe = Pipeline(target, commands_topic, partitions, batch_size=batch_size,
                    batch_wait_ms=batch_wait_ms, db_settings=db_settings or {},
                    workers=workers, extra_env=extra_env or {})
    want = {pipe.events: wl.events, pipe.rejections: wl.rejected, pipe.dlq: wl.poison}
    marks = {t: Watermarks(target.bootstrap, t) for t in want}
    timeout_s = timeout_s or max(60.0, wl.n / 300)
    pg0, kafka0 = tree_cpu_s(target.postmaster_pid), tree_cpu_s(target.broker_pid)
    try:
        t_spawn = time.time()
        pipe.start()
        deadline = time.monotonic() + timeout_s
        last_report = last_change = time.monotonic()
        before: dict[str, int] = {}
        while True:
            pipe.check_alive()
            have = {t: m.total() for t, m in marks.items()}
            if all(have[t] >= want[t] for t in want):
                break
            if have != before:
                before, last_change = have, time.monotonic()
            elif have[pipe.events] and time.monotonic() - last_change > stall_s:
                # stuck short of the reference: stop and let verify() say what differs
                progress(f"  ours: no progress for {stall_s:.0f} s at {have}, want {want}")
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout_s:.0f}s: have {have}, "
                                   f"want {want}")
            if time.monotonic() - last_report > 5:
                progress(f"  ours: {have[pipe.events]:,}/{wl.events:,} events")
                last_report = time.monotonic()
            time.sleep(0.05)
        t_seen = time.time()
        worker_stats, relay_stats = pipe.worker.stats(), pipe.relay.stats()
        pg_cpu = tree_cpu_s(target.postmaster_pid) - pg0
        kafka_cpu = tree_cpu_s(target.broker_pid) - kafka0
    finally:
        for m in marks.values():
            m.close()
        pipe.stop()
    problems, repeats, t_last = verify(target, pipe, wl)
    with psycopg.connect(pipe.db_url) as conn:
        first = conn.execute("SELECT extract(epoch FROM min(processed_at)) "
                             "FROM processed_commands").fetchone()
    t_first = float(first[0]) if first and first[0] is not None else t_spawn
    sustained = wl.n / max(t_last - t_first, 1e-6)
    return OursResult(wl.n, sustained, wl.n / (t_seen - t_spawn), worker_stats, relay_stats,
                      ok=not problems, problems=problems, event_repeats=repeats,
                      postgres_cpu_s=pg_cpu, broker_cpu_s=kafka_cpu)


def verify(target: Target, pipe: Pipeline, wl: Workload) -> tuple[list[str], int, float]:
    """Compare the database with the reference and the events with the expected ids."""
    problems: list[str] = []
    with psycopg.connect(pipe.db_url) as conn:
        rows = conn.execute("SELECT id, name, config, status, version, deleted_at IS NOT NULL,"
                            " last_command_id FROM resources").fetchall()
        outcomes = dict(conn.execute("SELECT outcome, count(*) FROM processed_commands "
                                     "GROUP BY outcome").fetchall())
    got = {r[0]: r for r in rows}
    if len(got) != len(wl.final):
        problems.append(f"{len(got)} resource rows, reference has {len(wl.final)}")
    wrong = 0
    for rid, ref in wl.final.items():
        r = got.get(rid)
        if r is None or (r[1], dict(r[2]), r[3], r[4], r[5], r[6]) != (
                ref.name, dict(ref.config), ref.status.value, ref.version, ref.deleted,
                ref.last_command_id):
            wrong += 1
    if wrong:
        problems.append(f"{wrong} resources differ from the reference model")
    if outcomes.get("applied", 0) != wl.applied or outcomes.get("rejected", 0) != wl.rejected:
        problems.append(f"outcomes {outcomes}, reference applied={wl.applied} "
                        f"rejected={wl.rejected}")
    codec = EventCodec(Framing())
    msgs = read_all(target.bootstrap, pipe.events)
    ids = [codec.decode_event(m.value()).event_id for m in msgs]
    seen = set(ids)
    if seen != wl.event_ids:
        problems.append(f"events: {len(seen & wl.event_ids):,} of {wl.events:,} expected ids, "
                        f"{len(seen - wl.event_ids)} unexpected")
    t_last = max((m.timestamp()[1] for m in msgs), default=0) / 1000
    return problems, len(ids) - len(seen), t_last


@dataclass
class LatencyResult:
    rate: int
    seconds: float
    sent: int
    received: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    to_db_p50_ms: float = float("nan")
    to_db_p99_ms: float = float("nan")
    batch_wait_ms: int | None = None


def latency(target: Target, partitions: int, rate: int = 1000, seconds: float = 20.0,  # noqa: PLR0915
            batch_wait_ms: int | None = None, *, publisher_linger_ms: float = 5,
            extra_env: dict[str, str] | None = None) -> LatencyResult:
    """Creates at ``rate``/s for ``seconds``; produce call → event received by a subscriber.
    ``publisher_linger_ms``: the publisher's ``linger.ms`` (5: the client library's);
    ``extra_env``: more settings of the worker and the relay."""
    topic = f"bench.{target.next_name('lat').replace('_', '.')}.commands"
    target.create_topics([topic], partitions)
    pipe = Pipeline(target, topic, partitions, batch_wait_ms=batch_wait_ms,
                    extra_env=dict(extra_env or {}))
    codec = CommandCodec(Framing())
    sent: dict[uuid.UUID, float] = {}
    received: dict[uuid.UUID, float] = {}
    stop = threading.Event()
    sub = Consumer({"bootstrap.servers": target.bootstrap, "group.id": f"lat-{uuid.uuid4()}",
                    "enable.auto.commit": False, "auto.offset.reset": "earliest",
                    "fetch.wait.max.ms": 5, "fetch.min.bytes": 1, "log_level": "0"})
    sub.assign([TopicPartition(pipe.events, p, 0) for p in range(partitions)])
    ev_codec = EventCodec(Framing())

    def subscribe() -> None:
        # poll() hands over each record as soon as it is fetched; consume(n, timeout) would
        # hold records until n arrived or the timeout ran out, adding up to that timeout.
        while not stop.is_set():
            m = sub.poll(0.05)
            if m is not None and m.error() is None:
                received.setdefault(ev_codec.decode_event(m.value()).event_id, time.time())

    producer = Producer({"bootstrap.servers": target.bootstrap,
                         "linger.ms": publisher_linger_ms,
                         "partitioner": "murmur2_random",  # the Java client's (CMD-011)
                         "enable.idempotence": True, "acks": "all", "log_level": "0"})

    command_of: dict[uuid.UUID, uuid.UUID] = {}

    def create() -> tuple[uuid.UUID, bytes, bytes]:
        rid = uuid.uuid4()
        cmd = CreateResource(command_id=uuid.uuid4(), resource_id=rid,
                             issued_at=datetime.now(UTC), name="lat", config={"k": "v"})
        value, _ = codec.encode(cmd)
        command_of[event_id_for(cmd.command_id)] = cmd.command_id
        return event_id_for(cmd.command_id), str(rid).encode(), value

    thread = threading.Thread(target=subscribe, daemon=True)
    thread.start()
    hdrs = [("content-type", b"application/avro")]
    try:
        pipe.start()
        # warm up: wait until one command makes it all the way through
        eid, key, value = create()
        producer.produce(topic, value, key, headers=hdrs)
        producer.flush(10)
        deadline = time.monotonic() + 60
        while eid not in received:
            pipe.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError("the warm-up command produced no event within 60 s")
            time.sleep(0.05)
        total = int(rate * seconds)
        batch = [create() for _ in range(total)]
        t0 = time.monotonic()
        for i, (eid, key, value) in enumerate(batch):
            due = t0 + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent[eid] = time.time()
            producer.produce(topic, value, key, headers=hdrs)
            producer.poll(0)
        producer.flush(30)
        deadline = time.monotonic() + 30
        while sum(1 for e in sent if e in received) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(5)
        sub.close()
        pipe.stop()
    lat = sorted((received[e] - t) * 1000 for e, t in sent.items() if e in received)
    # where the time goes: produce → the worker's database commit (processed_at)
    with psycopg.connect(pipe.db_url) as conn:
        done = dict(conn.execute("SELECT command_id, extract(epoch FROM processed_at)::float8 "
                                 "FROM processed_commands").fetchall())
    to_db = sorted((done[command_of[e]] - t) * 1000 for e, t in sent.items()
                   if command_of[e] in done)
    return LatencyResult(rate, seconds, len(sent), len(lat), percentile(lat, 0.50),
                         percentile(lat, 0.95), percentile(lat, 0.99),
                         lat[-1] if lat else float("nan"), percentile(to_db, 0.5),
                         percentile(to_db, 0.99), batch_wait_ms)


def dump(result: object) -> str:
    return json.dumps(result, default=lambda o: o.__dict__, indent=1)
