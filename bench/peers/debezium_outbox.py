"""The relay's peer: Debezium's PostgreSQL connector + the outbox EventRouter, same outbox rows.

Both read the *same* outbox table (our migrations, our column names) in the same throwaway
PostgreSQL cluster, started here with ``wal_level=logical`` (free port, temp dir, durable
settings like the local stack), and publish to the same broker:

* **ours**: the real ``phoenix-resources relay`` process with its defaults (LISTEN/NOTIFY
  wake-up, fetch in ``seq`` order, fire the batch, flush once, delete);
* **Debezium**: Kafka Connect standalone (-Xmx512m) + ``debezium-connector-postgres``
  (``pgoutput``; a publication on ``outbox`` and a replication slot created before it
  starts; a login role with ``REPLICATION``) and ``io.debezium.transforms.outbox.EventRouter``
  mapping our columns: ``aggregateid`` → key, ``id`` → the ``id`` header, ``type`` → a
  ``type`` header, ``payload`` (bytea, already Avro) → the value via ``ByteArrayConverter``,
  routed by our ``topic`` column. Its latency is measured twice in the same worker: with its
  defaults (``poll.interval.ms=500``), then reconfigured through the REST API to
  ``poll.interval.ms=5`` (the setting that bounds its latency at low rates).

One run of a contender = a fresh database (migrated) and fresh topics (LogAppendTime):

1. start the process; commit one row and wait until it is on the topic (start-up);
2. warm-up: commit as many rows again as will be measured and wait for them (a JVM needs
   ~100k events before its JIT settles: the first 20k cost Debezium 5-10 times the CPU of later
   ones); their rate is reported as the cold figure;
3. **throughput**: commit ``n`` realistic outbox rows (the workload's events, encoded by the
   event codec) in transactions of 1,000 rows with ``NOTIFY``, as the worker's batches do;
   events/s = n / (first transaction committed → last record appended, broker clock). Every
   record is then read back: every row id must be there (repeats are counted). CPU of the
   process and of its PostgreSQL backends (the relay's session; the walsender that decodes
   ``pgoutput``) over this phase;
4. **latency**: rows committed at a fixed rate in small transactions (10 rows per commit);
   each row's commit is stamped when ``COMMIT`` returns, a subscriber in a process of its
   own stamps each record as ``poll()`` hands it over; latency = receipt - commit, and
   commit → appended (the broker's LogAppendTime) without the subscriber's share.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import psycopg
from confluent_kafka import Consumer, KafkaException, TopicPartition

from bench.common import (
    ROOT,
    Proc,
    Series,
    Target,
    Watermarks,
    cli,
    percentile,
    pg_settings,
    proc_stats,
    progress,
    read_all,
)
from bench.peers.connect import CONNECT_HOME, LIBS, MAIN, POM, _check_task, _tail
from bench.workload import Workload
from phoenix_resources.adapters.postgres import NOTIFY_CHANNEL
from phoenix_resources.devstack._proc import free_port
from phoenix_resources.devstack.postgres import PostgresCluster
from phoenix_resources.wire.events import EventCodec
from phoenix_resources.wire.framing import Framing

HERE = Path(__file__).resolve().parent
PLUGINS = CONNECT_HOME / "cdc-plugins"  # its own plugin.path: the sink's worker never scans it
PLUGIN = PLUGINS / "debezium-postgres"
LOGS = ROOT / ".local" / "bench-logs"
CDC_ROLE = "phoenix_cdc"
LOGICAL = {"wal_level": "logical", "max_replication_slots": "10", "max_wal_senders": "10"}
TX_ROWS = 1000  # rows per transaction in the throughput fill (the worker's batch size)
LAT_TX_ROWS = 10  # rows per transaction at the fixed rate (100 commits/s at 1,000 rows/s)
COPY = ("COPY outbox (id, aggregatetype, aggregateid, type, topic, payload, occurred_at) "
        "FROM STDIN (FORMAT BINARY)")
COPY_TYPES = ["uuid", "varchar", "varchar", "varchar", "varchar", "bytea", "timestamptz"]

Row = tuple[uuid.UUID, str, str, str, bytes, datetime]
"""(id, aggregatetype, aggregateid, type, payload, occurred_at): the topic is per run."""


@dataclass(frozen=True)
class Contender:
    key: str
    label: str
    debezium: bool = False
    poll_interval_ms: int = 500

    @property
    def id_header(self) -> str:
        return "id" if self.debezium else "ce_id"


OURS = Contender("ours", "phoenix-resources relay")
DBZ = Contender("dbz", "Debezium outbox (defaults: poll.interval.ms=500)", True, 500)
DBZ_FAST = Contender("dbz5", "Debezium outbox, poll.interval.ms=5 (latency only)", True, 5)
"""Not a run of its own: the same Connect worker as DBZ, reconfigured through its REST API
after DBZ's latency phase (the task restarts, the JIT-compiled code stays)."""
CONTENDERS = (OURS, DBZ, DBZ_FAST)
ROUND = (OURS, DBZ)


class _Res(Protocol):
    failures: dict[str, str]
    extra: dict[str, Any]

    def s(self, key: str) -> Series: ...

    def med(self, key: str) -> float: ...


# --- jars, rows, the cluster -------------------------------------------------------------


def ensure_jars() -> None:
    """Connect's runtime and the PostgreSQL connector, from Maven Central, once."""
    needs = []
    if not any(LIBS.glob("connect-runtime-*.jar")):
        needs.append(("runtime", LIBS))
    if not any(PLUGIN.glob("debezium-connector-postgres-*.jar")):
        needs.append(("cdc", PLUGIN))
    if needs:
        progress("fetching Kafka Connect + Debezium PostgreSQL connector jars (Maven Central, "
                 "once)")
    for profile, out in needs:
        out.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["mvn", "-B", "-q", "-f", str(POM), "-P", profile,
                            "dependency:copy-dependencies", "-DincludeScope=runtime",
                            f"-DoutputDirectory={out}"], capture_output=True, text=True,
                           check=False)
        if r.returncode != 0:
            raise RuntimeError(f"mvn ({profile}) failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")


def versions() -> str:
    jars = sorted(p.name for p in PLUGIN.glob("debezium-*.jar")
                  if p.name.startswith(("debezium-connector-postgres", "debezium-core")))
    jars += sorted(p.name for p in PLUGIN.glob("postgresql-*.jar"))
    return ", ".join(n.removesuffix(".jar") for n in jars)


def outbox_rows(wl: Workload, n: int) -> list[Row]:
    """``n`` outbox rows as the worker writes them for the workload's events (cycled, fresh
    ids once the events run out)."""
    codec = EventCodec(Framing())
    base = [(e.event_id, "resource", str(e.resource_id), e.type_name, codec.encode_event(e),
             e.occurred_at) for e in wl.events_list]
    if not base:
        raise RuntimeError("the workload has no events")
    out: list[Row] = []
    for i in range(n):
        eid, at, aid, typ, payload, occ = base[i % len(base)]
        out.append((eid if i < len(base) else uuid.uuid4(), at, aid, typ, payload, occ))
    return out


@contextlib.contextmanager
def logical_cluster(kafka: Target) -> Iterator[Target]:
    """A throwaway PostgreSQL cluster with ``wal_level=logical`` (durable settings otherwise)
    and a login role with ``REPLICATION`` for the connector; yields a Target on it."""
    home = Path(tempfile.mkdtemp(prefix="bench-cdc-pg-"))
    cluster = PostgresCluster(home, port=free_port(), settings=LOGICAL)
    try:
        cluster.start()
        cluster.psql(f"CREATE ROLE {CDC_ROLE} LOGIN REPLICATION")
        yield Target(kafka.bootstrap, cluster.admin_url, port=cluster.port,
                     run_id=kafka.run_id)
    finally:
        with contextlib.suppress(Exception):
            cluster.destroy()
        shutil.rmtree(home, ignore_errors=True)


# --- one run of one contender ------------------------------------------------------------


@dataclass
class Latency:
    sent: int
    received: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    app_p50_ms: float = float("nan")
    """commit → appended to the topic (broker LogAppendTime, ms precision): the contender's
    own part, without the subscriber's fetch."""
    app_p99_ms: float = float("nan")


@dataclass
class RunResult:
    rows: int
    rate: float
    fill_s: float
    startup_s: float
    cpu_s: float | None
    pg_cpu_s: float | None
    rss_mib: float | None
    missing: int
    repeats: int
    latency: Latency | None = None
    notes: list[str] = field(default_factory=list)
    cold_rate: float | None = None
    latency_fast: Latency | None = None
    """Debezium only: the latency phase again with poll.interval.ms=5 (DBZ_FAST)."""


class _Process:
    """The contender's process: the relay, or a Connect worker with the connector."""

    def __init__(self, c: Contender, cdc: Target, db_url: str, name: str) -> None:
        self.c = c
        self.home: Path | None = None
        db = db_url.rsplit("/", 1)[1]
        self.slot = f"dbz_{name}"
        self.publication = f"dbz_{name}"
        self.rest_port = ""
        self.connector = f"outbox-{name}"
        if not c.debezium:
            env = {"PHOENIX_DATABASE_URL": db_url,
                   "PHOENIX_KAFKA_BOOTSTRAP_SERVERS": cdc.bootstrap,
                   "PHOENIX_CREATE_TOPICS": "false",
                   "PHOENIX_METRICS_PORT": "0",
                   "PHOENIX_LOG_LEVEL": "WARNING"}
            self.proc = Proc(cli("relay"), env, LOGS / f"{name}-relay.log")
            return
        # the publication (as the table's owner), the slot (superuser), SELECT for the role
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(f"CREATE PUBLICATION {self.publication} FOR TABLE outbox")
            conn.execute(f"GRANT SELECT ON outbox TO {CDC_ROLE}")
        admin_db = cdc.admin_url.rsplit("/", 1)[0] + f"/{db}"
        with psycopg.connect(admin_db, autocommit=True) as conn:
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')",
                         (self.slot,))
        self.admin_db = admin_db
        self.home = Path(tempfile.mkdtemp(prefix="bench-connect-cdc-"))
        self.rest_port = str(free_port())
        fill = {"bootstrap": cdc.bootstrap, "home": str(self.home), "plugins": str(PLUGINS),
                "rest_port": self.rest_port, "name": self.connector, "pg_port": str(cdc.port),
                "database": db, "user": CDC_ROLE, "prefix": f"bench-{name}",
                "publication": self.publication, "slot": self.slot,
                "poll_interval_ms": str(c.poll_interval_ms), "producer": "", "extra": ""}
        for src, dst in (("outbox-worker.properties", "worker.properties"),
                         ("outbox-connector.properties", "connector.properties"),
                         ("log4j2.properties", "log4j2.properties")):
            text = (HERE / src).read_text()
            for k, v in fill.items():
                text = text.replace("{" + k + "}", v)
            (self.home / dst).write_text(text)
        java = shutil.which("java") or "java"
        argv = [java, "-Xms128m", "-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
                "-cp", f"{LIBS}/*", MAIN, str(self.home / "worker.properties"),
                str(self.home / "connector.properties")]
        self.proc = Proc(argv, {}, self.home / "console.log")

    def check(self) -> None:
        if not self.proc.alive():
            log = _tail(self.home / "connect.log") if self.home else ""
            raise RuntimeError(f"{self.c.key} exited ({self.proc.p.returncode}); log tail:\n"
                               f"{self.proc.tail()}\n{log}")
        if self.c.debezium:
            _check_task(self.rest_port, self.connector)

    def reconfigure(self, **changes: str) -> None:
        """PUT a changed connector config to the worker's REST API (the task restarts)."""
        assert self.home is not None
        cfg = {}
        for line in (self.home / "connector.properties").read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                cfg[k.strip()] = v.strip()
        cfg.update(changes)
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.rest_port}/connectors/{self.connector}/config",
            data=json.dumps(cfg).encode(), method="PUT",
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            r.read()

    def errors(self) -> int:
        if not self.home:
            return 0
        return sum(" ERROR " in ln for ln in _tail(self.home / "connect.log", 4000).splitlines())

    def stop(self) -> None:
        self.proc.stop()
        if not self.c.debezium:
            return
        with contextlib.suppress(Exception), psycopg.connect(self.admin_db,
                                                             autocommit=True) as conn:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                active = conn.execute("SELECT active FROM pg_replication_slots WHERE "
                                      "slot_name = %s", (self.slot,)).fetchone()
                if not active or not active[0]:
                    break
                time.sleep(0.2)
            conn.execute("SELECT pg_drop_replication_slot(%s)", (self.slot,))
        if self.home:
            with contextlib.suppress(OSError):  # keep the connector's log with the others
                LOGS.mkdir(parents=True, exist_ok=True)
                shutil.copy(self.home / "connect.log", LOGS / f"{self.connector}-connect.log")
            shutil.rmtree(self.home, ignore_errors=True)


def _insert(conn: psycopg.Connection[Any], rows: Sequence[Row], topic: str) -> float:
    """One transaction: COPY the rows, NOTIFY (as the worker's batch does), commit; returns
    the wall-clock time at which COMMIT returned."""
    with conn.cursor() as cur:
        with cur.copy(COPY) as cp:
            cp.set_types(COPY_TYPES)
            for rid, agg, aid, typ, payload, occ in rows:
                cp.write_row((rid, agg, aid, typ, topic, payload, occ))
        cur.execute("SELECT pg_notify(%s, '')", (NOTIFY_CHANNEL,))
    conn.commit()
    return time.time()


@dataclass
class _Session:
    """What the phases of one run share: the filler's connection and the contender."""

    conn: psycopg.Connection[Any]
    proc: _Process
    cdc: Target
    db: str
    partitions: int


def _warm_up(s: _Session, topic: str, template: Row, timeout_s: float = 180) -> None:
    """Commit one row and wait until it is on ``topic``: the contender is streaming."""
    conn, proc = s.conn, s.proc
    marks = Watermarks(s.cdc.bootstrap, topic)
    try:
        _insert(conn, [(uuid.uuid4(), *template[1:])], topic)
        deadline = time.monotonic() + timeout_s
        last = time.monotonic()
        while _total(marks) < 1:
            if time.monotonic() - last > 2:
                proc.check()
                last = time.monotonic()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{proc.c.key}: the warm-up row did not arrive within "
                                   f"{timeout_s:.0f} s")
            time.sleep(0.05)
    finally:
        marks.close()


def _total(marks: Watermarks) -> int:
    """High watermarks summed; a fresh topic's partitions may answer "not leader" for a
    moment after creation, which is retried."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return marks.total()
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _backends(admin_url: str, db: str, exclude: int) -> list[int]:
    """The contender's PostgreSQL processes: client backends and walsenders on ``db``."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND "
                            "backend_type IN ('client backend', 'walsender') AND pid <> %s",
                            (db, exclude)).fetchall()
    return [r[0] for r in rows]


def _cpu(pids: Sequence[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        st = proc_stats(pid)
        if st:
            out[pid] = st.cpu_s
    return out


@dataclass
class _Burst:
    rows: int
    t_first: float  # wall clock when the first transaction's COMMIT returned
    t_commit: float  # ... the last one's
    t_last: float  # broker LogAppendTime of the last record
    cpu_s: float | None  # the process, over the burst
    pg_cpu_s: float | None  # its PostgreSQL backends, over the burst

    @property
    def rate(self) -> float:
        return self.rows / max(self.t_last - self.t_first, 1e-6)


def _last_append(bootstrap: str, topic: str) -> float:
    """The broker's LogAppendTime of the newest record of ``topic`` (seconds)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-last-{uuid.uuid4()}",
                  "enable.auto.commit": False, "log_level": "0"})
    try:
        tps = []
        for p in c.list_topics(topic, timeout=10).topics[topic].partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if hi > lo:
                tps.append(TopicPartition(topic, p, hi - 1))
        c.assign(tps)
        got: dict[int, int] = {}
        deadline = time.monotonic() + 30
        while len(got) < len(tps) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got[m.partition()] = max(got.get(m.partition(), 0), m.timestamp()[1])
        if len(got) < len(tps):
            raise RuntimeError(f"could not read the last record of {len(tps) - len(got)} "
                               f"partitions of {topic}")
        return max(got.values()) / 1000
    finally:
        c.close()


def _burst(s: _Session, topic: str, rows: list[Row], already: int, timeout_s: float
           ) -> _Burst:
    """Commit the rows in TX_ROWS transactions; wait until all are on the topic (which
    held ``already`` records before)."""
    conn, proc, cdc = s.conn, s.proc, s.cdc
    pids = _backends(cdc.admin_url, s.db, conn.info.backend_pid)
    pg0 = _cpu(pids)
    st0 = proc.proc.stats()
    marks = Watermarks(cdc.bootstrap, topic)
    want = already + len(rows)
    try:
        t_first = 0.0
        t_commit = 0.0
        for i in range(0, len(rows), TX_ROWS):
            t_commit = _insert(conn, rows[i:i + TX_ROWS], topic)
            if not i:
                t_first = t_commit
        deadline = time.monotonic() + timeout_s
        last_report = last_change = time.monotonic()
        before = -1
        while True:
            have = _total(marks)
            if have >= want:
                break
            if have != before:
                before, last_change = have, time.monotonic()
            elif time.monotonic() - last_change > 60:
                raise RuntimeError(f"{proc.c.key}: stuck at {have:,}/{want:,} records")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{proc.c.key}: timed out at {have:,}/{want:,} records")
            if time.monotonic() - last_report > 5:
                proc.check()
                progress(f"  {proc.c.key}: {have - already:,}/{len(rows):,} records on the "
                         "topic")
                last_report = time.monotonic()
            time.sleep(0.02)
    finally:
        marks.close()
    st1 = proc.proc.stats()
    pg1 = _cpu(pids)
    cpu = st1.cpu_s - st0.cpu_s if st0 and st1 else None
    pg = sum(pg1[p] - pg0[p] for p in pg1 if p in pg0) if pg0 else None
    return _Burst(len(rows), t_first, t_commit, _last_append(cdc.bootstrap, topic), cpu, pg)


def _subscribe(where: tuple[str, str, int, str], ready: Any, stop: Any, out: Any) -> None:
    """In a process of its own (no GIL shared with the filler): stamp each record as
    ``poll()`` hands it over, keyed by its id header; send the stamps when told to stop."""
    bootstrap, topic, partitions, header = where
    sub = Consumer({"bootstrap.servers": bootstrap, "group.id": f"lat-{uuid.uuid4()}",
                    "enable.auto.commit": False, "auto.offset.reset": "earliest",
                    "fetch.wait.max.ms": 5, "fetch.min.bytes": 1, "log_level": "0"})
    sub.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    received: dict[str, tuple[float, float]] = {}  # id → (received, appended by the broker)
    try:
        while not stop.is_set():
            m = sub.poll(0.05)
            if m is None or m.error() is not None:
                continue
            t = time.time()
            for k, v in m.headers() or ():
                if k == header and v is not None:
                    received.setdefault(v.decode(), (t, m.timestamp()[1] / 1000))
                    break
            ready.set()  # the warm-up record came through: the fetch path is live
    finally:
        sub.close()
        out.send(received)


def _latency(s: _Session, topic: str, template: list[Row], rate: int, seconds: float
             ) -> Latency:
    """Rows at ``rate``/s, LAT_TX_ROWS per transaction; commit → received by a subscriber."""
    conn, bootstrap = s.conn, s.cdc.bootstrap
    sent: dict[str, float] = {}
    ctx = multiprocessing.get_context("spawn")  # librdkafka threads do not survive fork()
    ready, stop = ctx.Event(), ctx.Event()
    parent, child = ctx.Pipe(duplex=False)
    where = (bootstrap, topic, s.partitions, s.proc.c.id_header)
    sub = ctx.Process(target=_subscribe, args=(where, ready, stop, child), daemon=True)
    sub.start()
    marks = Watermarks(bootstrap, topic)
    try:
        deadline = time.monotonic() + 60
        while not ready.wait(0.2):
            if not sub.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the latency subscriber did not receive the warm-up record")
        total = int(rate * seconds)
        batches = [[(uuid.uuid4(), *template[(i + j) % len(template)][1:])
                    for j in range(LAT_TX_ROWS)] for i in range(0, total, LAT_TX_ROWS)]
        t0 = time.monotonic()
        for i, batch in enumerate(batches):
            delay = t0 + i * LAT_TX_ROWS / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            t = _insert(conn, batch, topic)
            for r in batch:
                sent[str(r[0])] = t
        took = time.monotonic() - t0
        deadline = time.monotonic() + 30
        while _total(marks) < 1 + len(sent) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the subscriber's last fetch
    finally:
        marks.close()
        stop.set()
        received: dict[str, tuple[float, float]] = (
            parent.recv() if sub.is_alive() and parent.poll(30) else {})
        sub.join(10)
    lat = sorted((received[e][0] - t) * 1000 for e, t in sent.items() if e in received)
    app = sorted((received[e][1] - t) * 1000 for e, t in sent.items() if e in received)
    return Latency(len(sent), len(lat), took, percentile(lat, 0.50), percentile(lat, 0.95),
                   percentile(lat, 0.99), lat[-1] if lat else float("nan"),
                   percentile(app, 0.50), percentile(app, 0.99))


def run(cdc: Target, kafka: Target, c: Contender, rows: list[Row], partitions: int, *,
        warm_rows: int, lat_rate: int = 1000, lat_seconds: float = 15.0) -> RunResult:
    """One contender, one database: start-up, a warm-up burst of ``warm_rows`` (fresh ids),
    the measured burst of ``rows``, then latency (for Debezium: twice, the second time
    reconfigured to DBZ_FAST)."""
    db_url = cdc.fresh_db("obx")
    db = db_url.rsplit("/", 1)[1]
    name = kafka.next_name(f"obx_{c.key}")
    topic = f"bench.{name.replace('_', '.')}"
    tp_topic, lat_topics = f"{topic}.events", [f"{topic}.latency", f"{topic}.latency5"]
    kafka.create_topics([tp_topic, *lat_topics[:1 + c.debezium]], partitions,
                        {"message.timestamp.type": "LogAppendTime"})
    warm = [(uuid.uuid4(), *rows[i % len(rows)][1:]) for i in range(warm_rows)]
    timeout_s = max(300.0, len(rows) / 200)
    proc = _Process(c, cdc, db_url, name)
    t_spawn = time.monotonic()
    lat = lat_fast = None
    try:
        with psycopg.connect(db_url) as conn:
            s = _Session(conn, proc, cdc, db, partitions)
            _warm_up(s, tp_topic, rows[0])
            startup = time.monotonic() - t_spawn
            cold = _burst(s, tp_topic, warm, 1, timeout_s) if warm else None
            hot = _burst(s, tp_topic, rows, 1 + len(warm), timeout_s)
            stats = proc.proc.stats()
            if lat_seconds > 0:
                _warm_up(s, lat_topics[0], rows[0])
                lat = _latency(s, lat_topics[0], rows, lat_rate, lat_seconds)
            if lat_seconds > 0 and c.debezium:
                progress(f"  {c.key}: {lat.p50_ms if lat else 0:.1f} ms p50; now "
                         f"poll.interval.ms={DBZ_FAST.poll_interval_ms} (REST reconfigure)")
                proc.reconfigure(**{"poll.interval.ms": str(DBZ_FAST.poll_interval_ms)})
                _warm_up(s, lat_topics[1], rows[0])
                lat_fast = _latency(s, lat_topics[1], rows, lat_rate, lat_seconds)
            errors = proc.errors()
    finally:
        proc.stop()
    ids = [v.decode() for m in read_all(kafka.bootstrap, tp_topic)
           for k, v in m.headers() or () if k == c.id_header and v]
    got = set(ids)
    notes = [f"{errors} ERROR lines in connect.log"] if errors else []
    return RunResult(len(rows), hot.rate, hot.t_commit - hot.t_first, startup, hot.cpu_s,
                     hot.pg_cpu_s, stats.peak_rss_bytes / 2**20 if stats else None,
                     len({str(r[0]) for r in rows} - got), len(ids) - len(got), lat, notes,
                     cold.rate if cold else None, lat_fast)


# --- the session: cluster + rows + rounds, and its part of the report ---------------------


class OutboxBench:
    """Used by bench/run.py: ``prepare`` once, ``run_round`` per round, ``close`` at the end."""

    def __init__(self, kafka: Target, wl: Workload, n: int, partitions: int,
                 lat_seconds: float) -> None:
        self.kafka = kafka
        self.wl = wl
        self.n = n
        self.partitions = partitions
        self.lat_seconds = lat_seconds
        self.warm_rows = max(20_000, n)
        self.rounds = 0
        self._stack = contextlib.ExitStack()
        self.cdc: Target | None = None
        self.rows: list[Row] = []

    def prepare(self, res: _Res) -> None:
        ensure_jars()
        res.extra["obx_versions"] = versions()
        self.rows = outbox_rows(self.wl, self.n)
        self.cdc = self._stack.enter_context(logical_cluster(self.kafka))
        s = pg_settings(self.cdc.admin_url)
        res.extra["obx_pg"] = ", ".join(f"{k}={v}" for k, v in s.items())
        size = sum(len(r[4]) for r in self.rows) / len(self.rows)
        res.extra["obx_rows"] = (len(self.rows), size)
        res.extra["obx_warm_rows"] = self.warm_rows
        progress(f"outbox peer: logical cluster on port {self.cdc.port}; {len(self.rows):,} "
                 f"outbox rows, payload {size:.0f} B on average")

    def close(self) -> None:
        self._stack.close()

    def order(self) -> list[Contender]:
        """This round's order: rotated each round, so no contender always goes first."""
        k = self.rounds % len(ROUND)
        self.rounds += 1
        return [*ROUND[k:], *ROUND[:k]]

    def run_one(self, c: Contender, res: _Res) -> None:
        assert self.cdc is not None
        progress(f"outbox: {c.label}: {self.warm_rows:,} rows to warm up, {len(self.rows):,} "
                 "measured, then "
                 f"{self.lat_seconds:.0f} s at 1,000 rows/s")
        r = run(self.cdc, self.kafka, c, self.rows, self.partitions,
                warm_rows=self.warm_rows, lat_seconds=self.lat_seconds)
        k = f"obx_{c.key}"
        res.s(k).add(r.rate)
        if r.cold_rate is not None:
            res.s(f"{k}_cold").add(r.cold_rate)
        res.s(f"{k}_fill").add(r.rows / max(r.fill_s, 1e-6))
        res.s(f"{k}_start").add(r.startup_s)
        if r.cpu_s is not None:
            res.s(f"{k}_cpu").add(r.cpu_s / r.rows * 10_000)
        if r.pg_cpu_s is not None:
            res.s(f"{k}_pgcpu").add(r.pg_cpu_s / r.rows * 10_000)
        if r.rss_mib is not None:
            res.s(f"{k}_rss").add(r.rss_mib)
        checks = res.extra.setdefault(f"{k}_checks", [])
        checks.append("passed" if not r.missing else f"{r.missing:,} rows MISSING")
        res.extra[f"{k}_repeats"] = res.extra.get(f"{k}_repeats", 0) + r.repeats
        if r.notes:
            res.extra[f"{k}_notes"] = "; ".join(r.notes)
        msg = (f"  -> {r.rate:,.0f} events/s (fill {r.fill_s:.1f} s, start-up "
               f"{r.startup_s:.1f} s), {r.missing} missing, {r.repeats} repeated")
        for key, lt in ((k, r.latency), (f"obx_{DBZ_FAST.key}", r.latency_fast)):
            if lt is None:
                continue
            for q in ("p50", "p95", "p99", "max", "app_p50", "app_p99"):
                res.s(f"{key}_{q}").add(getattr(lt, f"{q}_ms"))
            res.extra.setdefault(f"{key}_lat_counts", []).append((lt.received, lt.sent,
                                                                   lt.seconds))
            msg += (f"; latency p50 {lt.p50_ms:.1f} ms, p99 {lt.p99_ms:.1f}, max "
                    f"{lt.max_ms:.1f} ({lt.received:,}/{lt.sent:,}; commit → appended p50 "
                    f"{lt.app_p50_ms:.1f}, p99 {lt.app_p99_ms:.1f})")
        progress(msg)


def report(res: _Res) -> tuple[list[str], list[str]]:
    """The section of the report (markdown lines) and the lines for the ratios table."""
    n, size = res.extra.get("obx_rows", (0, 0.0))
    warm = res.extra.get("obx_warm_rows", 0)

    def fig(key: str, digits: int = 0, unit: str = "") -> str:
        if key in res.failures:
            return f"FAILED ({res.failures[key][:120]})"
        return res.s(key).fmt(digits, unit)

    def r(a: str, b: str, *, higher_better: bool) -> str:
        x, y = res.med(a), res.med(b)
        if not (x > 0 and y > 0):
            return "n/a"
        q = x / y
        better = q > 1 if higher_better else q < 1
        return f"{q:.2f}x" + (" (ours better)" if better else " (Debezium better)")

    lines = ["", "## The relay vs Debezium outbox CDC", "",
             f"Same outbox table, same rows (the workload's events, Avro payload {size:.0f} B "
             "on average), same throwaway PostgreSQL cluster "
             f"({res.extra.get('obx_pg', '?')}), same broker. Debezium: "
             f"{res.extra.get('obx_versions', '?')}, Connect standalone, -Xmx512m, pgoutput, "
             "EventRouter (aggregateid → key, id → `id` header, type → `type` header, "
             "payload → value via ByteArrayConverter, routed by the topic column). Per run: "
             f"start, {warm:,} rows to warm up (the JVM's JIT needs ~100k events), then the "
             f"measured {n:,} rows, then the latency phase(s). Rounds interleaved, order "
             "rotated each round; medians (min-max, n).", "",
             "| measurement | " + " | ".join(c.label for c in CONTENDERS) + " |",
             "|---|" + "---|" * len(CONTENDERS)]

    def row(name: str, suffix: str, digits: int = 0, unit: str = "", *,
            who: Sequence[Contender] = ROUND) -> None:
        cells = [fig(f"obx_{c.key}{suffix}", digits, unit) if c in who
                 else "— (same worker as the column before)" for c in CONTENDERS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    row(f"**events/s**: {n:,} rows in {TX_ROWS:,}-row transactions, first commit → last "
        "record appended", "", 0, " ev/s")
    row("(the fill alone: rows committed/s)", "_fill", 0, "/s")
    row(f"events/s of the {warm:,} warm-up rows right after start-up (cold JIT for the JVM)",
        "_cold", 0, " ev/s")
    for q in ("p50", "p95", "p99", "max"):
        row(f"**latency {q}** @ 1,000 rows/s, {LAT_TX_ROWS} rows/commit (commit → received)",
            f"_{q}", 1, " ms", who=CONTENDERS)
    for q in ("p50", "p99"):
        row(f"latency {q}, commit → appended (broker LogAppendTime; no subscriber)",
            f"_app_{q}", 1, " ms", who=CONTENDERS)
    row(f"process CPU per 10k events (the measured {n:,})", "_cpu", 2, " s")
    row("PostgreSQL backend CPU per 10k events (relay session / walsender)", "_pgcpu", 2,
        " s")
    row("peak RSS (VmHWM)", "_rss", 0, " MiB")
    row("start-up: spawn → first record on the topic", "_start", 1, " s")
    cells = []
    for c in ROUND:
        checks = res.extra.get(f"obx_{c.key}_checks", [])
        rep = res.extra.get(f"obx_{c.key}_repeats", 0)
        cells.append((", ".join(checks) or "not run") + f"; {rep} repeated")
    lines.append("| every row id on the topic | " + " | ".join(cells) + " | — |")
    counts = []
    for c in CONTENDERS:
        cs = res.extra.get(f"obx_{c.key}_lat_counts", [])
        counts.append(", ".join(f"{a:,}/{b:,} in {s:.1f} s" for a, b, s in cs) or "—")
    lines.append("| latency samples received/sent, time to commit them | " + " | ".join(counts)
                 + " |")
    notes = [f"{c.label}: {res.extra[f'obx_{c.key}_notes']}" for c in ROUND
             if f"obx_{c.key}_notes" in res.extra]
    if notes:
        lines += ["", *[f"- {x}" for x in notes]]
    ratios = [
        f"| relay events/s: ours / Debezium outbox | "
        f"{r('obx_ours', 'obx_dbz', higher_better=True)} | — |",
        f"| relay CPU per event (process): ours / Debezium outbox | "
        f"{r('obx_ours_cpu', 'obx_dbz_cpu', higher_better=False)} | — |"]
    for c in (DBZ, DBZ_FAST):
        tag = f"poll.interval.ms={c.poll_interval_ms}"
        ratios += [
            f"| relay latency p50: ours / Debezium outbox {tag} | "
            f"{r('obx_ours_p50', f'obx_{c.key}_p50', higher_better=False)} | — |",
            f"| relay latency p99: ours / Debezium outbox {tag} | "
            f"{r('obx_ours_p99', f'obx_{c.key}_p99', higher_better=False)} | — |"]
    return lines, ratios
