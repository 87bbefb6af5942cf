"""The peer: Kafka Connect standalone + the Debezium JDBC sink connector, same workload.

The sink gets the *row* stream a producer would have to send for the same messages (see
``Workload.rows``): JSON with schemas, key ``{"id": …}``, value = the resource row after the
command, ``null`` (a tombstone) for a delete; duplicate deliveries re-send their original's
row. It does less work than phoenix-resources: no command dedupe, no rules (the stream is
already decided), no outbox and no events, no DLQ of undecodable input.

Completion: after the data, one sentinel row per partition; the run ends when every sentinel
row is in the table. Rate = records / (first row inserted - last sentinel inserted), both
stamped by PostgreSQL (``ins_at DEFAULT clock_timestamp()``), so JVM start-up is excluded.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from confluent_kafka import Producer
from tests.support.net import free_port

from bench.common import ROOT, Proc, Target, progress
from bench.workload import Workload

HERE = Path(__file__).resolve().parent
POM = ROOT / "deploy" / "local" / "connect-pom.xml"
CONNECT_HOME = ROOT / ".local" / "connect"
LIBS = CONNECT_HOME / "libs"
PLUGINS = CONNECT_HOME / "plugins"
MAIN = "org.apache.kafka.connect.cli.ConnectStandalone"
TABLE = "resources_sink"

KEY_SCHEMA = {"type": "struct", "optional": False, "name": "resource_key",
              "fields": [{"field": "id", "type": "string", "optional": False}]}
VALUE_SCHEMA = {"type": "struct", "optional": True, "name": "resource_row", "fields": [
    {"field": "name", "type": "string", "optional": False},
    {"field": "config", "type": "string", "optional": False},
    {"field": "status", "type": "string", "optional": False},
    {"field": "version", "type": "int64", "optional": False},
    {"field": "updated_at", "type": "int64", "optional": False},
]}
DDL = f"""
CREATE TABLE {TABLE} (
    id          TEXT PRIMARY KEY,
    name        VARCHAR(255) NOT NULL,
    config      TEXT NOT NULL,
    status      VARCHAR(50) NOT NULL,
    version     BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    ins_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()  -- not in the records
)
"""


def ensure_jars() -> None:
    """Resolve Connect and the connector from Maven Central once (into .local/connect)."""
    plugin = PLUGINS / "debezium-jdbc"
    if any(LIBS.glob("connect-runtime-*.jar")) and any(plugin.glob("debezium-connector-jdbc-*")):
        return
    progress("fetching Kafka Connect + Debezium JDBC sink jars (Maven Central, once)")
    for profile, out in (("runtime", LIBS), ("plugin", plugin)):
        out.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["mvn", "-B", "-q", "-f", str(POM), "-P", profile,
                            "dependency:copy-dependencies", "-DincludeScope=runtime",
                            f"-DoutputDirectory={out}"], capture_output=True, text=True,
                           check=False)
        if r.returncode != 0:
            raise RuntimeError(f"mvn ({profile}) failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")


def versions() -> str:
    rt = sorted(p.name for p in LIBS.glob("connect-runtime-*.jar"))
    dbz = sorted(p.name for p in (PLUGINS / "debezium-jdbc").glob("debezium-connector-jdbc-*"))
    return ", ".join(n.removesuffix(".jar") for n in rt + dbz)


def _record(rid: str, row: object) -> tuple[bytes, bytes | None]:
    key = json.dumps({"schema": KEY_SCHEMA, "payload": {"id": rid}}).encode()
    if row is None:
        return key, None
    r = row  # a domain Resource
    payload = {"name": r.name, "config": json.dumps(dict(r.config), sort_keys=True),  # type: ignore[attr-defined]
               "status": r.status.value, "version": r.version,  # type: ignore[attr-defined]
               "updated_at": int(r.updated_at.timestamp() * 1_000_000)}  # type: ignore[attr-defined]
    return key, json.dumps({"schema": VALUE_SCHEMA, "payload": payload}).encode()


def load_topic(target: Target, wl: Workload, partitions: int) -> tuple[str, int]:
    """A topic holding the row stream plus one sentinel per partition; returns (topic, n)."""
    topic = f"bench.{target.next_name('dbz').replace('_', '.')}.rows"
    target.create_topics([topic], partitions)
    p = Producer({"bootstrap.servers": target.bootstrap, "linger.ms": 20,
                  "batch.size": 1_000_000, "queue.buffering.max.messages": 2_000_000,
                  "queue.buffering.max.kbytes": 2_000_000, "compression.type": "lz4",
                  "enable.idempotence": True, "acks": "all", "log_level": "0"})

    def send(key: bytes, value: bytes | None, partition: int | None = None) -> None:
        while True:
            try:
                if partition is None:
                    p.produce(topic, value, key)
                else:
                    p.produce(topic, value, key, partition=partition)
                return
            except BufferError:
                p.poll(0.05)

    for rid, row in wl.rows:
        send(*_record(str(rid), row))
        p.poll(0)
    p.flush(60)  # sentinels strictly after the data of their partition
    for part in range(partitions):
        k, v = _record(f"sentinel-{part}", _Sentinel())
        send(k, v, part)
    if p.flush(60):
        raise RuntimeError("rows were not all delivered")
    return topic, len(wl.rows)


class _Sentinel:
    name = "sentinel"
    config: dict[str, str] = {}
    version = 1

    class status:
        value = "active"

    class updated_at:
        @staticmethod
        def timestamp() -> float:
            return 0.0


@dataclass
class ConnectResult:
    records: int
    rate: float
    wall_s: float
    mismatches: int
    notes: list[str] = field(default_factory=list)


def run(target: Target, wl: Workload, topic: str, records: int, partitions: int, *,
        batch_size: int = 2000, reduction: bool = True, timeout_s: float = 600) -> ConnectResult:
    ensure_jars()
    db_url = target.fresh_db("dbz", migrate=False)
    db = db_url.rsplit("/", 1)[1]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(DDL)
    home = Path(tempfile.mkdtemp(prefix="bench-connect-"))
    fill = {"bootstrap": target.bootstrap, "home": str(home), "plugins": str(PLUGINS),
            "rest_port": str(free_port()), "batch_size": str(batch_size),
            "name": f"dbz-sink-{db}", "topic": topic, "pg_port": str(target.port),
            "database": db, "user": target.app_user, "table": TABLE,
            "reduction": "true" if reduction else "false"}
    for name in ("worker.properties", "connector.properties", "log4j2.properties"):
        text = (HERE / name).read_text()
        for k, v in fill.items():
            text = text.replace("{" + k + "}", v)
        (home / name).write_text(text)
    java = shutil.which("java") or "java"
    argv = [java, "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}",
            "-cp", f"{LIBS}/*", MAIN, str(home / "worker.properties"),
            str(home / "connector.properties")]
    proc = Proc(argv, {}, home / "console.log")
    t_spawn = time.monotonic()
    try:
        with psycopg.connect(db_url, autocommit=True) as conn:
            deadline = time.monotonic() + timeout_s
            last = time.monotonic()
            while True:
                if not proc.alive():
                    raise RuntimeError(f"Connect exited; log tail:\n{proc.tail()}\n"
                                       f"{_tail(home / 'connect.log')}")
                done = conn.execute(f"SELECT count(*) FROM {TABLE} WHERE id LIKE "
                                    "'sentinel-%'").fetchone()[0]  # type: ignore[index]
                if done >= partitions:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Debezium sink timed out; log tail:\n"
                                       f"{_tail(home / 'connect.log')}")
                if time.monotonic() - last > 5:
                    _check_task(fill["rest_port"], fill["name"])
                    n = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]  # type: ignore[index]
                    progress(f"  debezium: {n:,} rows in the table so far")
                    last = time.monotonic()
                time.sleep(0.25)
            wall = time.monotonic() - t_spawn
            first, last_ts = conn.execute(
                f"SELECT extract(epoch FROM min(ins_at)), extract(epoch FROM "
                f"max(ins_at) FILTER (WHERE id LIKE 'sentinel-%')) FROM {TABLE}").fetchone()  # type: ignore[misc]
            rows = {r[0]: r for r in conn.execute(
                f"SELECT id, name, status, version FROM {TABLE}").fetchall()}
    finally:
        proc.stop()
    errors = [ln for ln in _tail(home / "connect.log", 4000).splitlines() if " ERROR " in ln]
    mismatches = 0
    for rid, ref in wl.final.items():
        r = rows.get(str(rid))
        if ref.deleted:
            mismatches += r is not None
        elif r is None or (r[1], r[2], r[3]) != (ref.name, ref.status.value, ref.version):
            mismatches += 1
    elapsed = max(float(last_ts) - float(first), 1e-6)
    notes = [f"{len(errors)} ERROR lines in connect.log"] if errors else []
    shutil.rmtree(home, ignore_errors=True)
    return ConnectResult(records, (records + partitions) / elapsed, wall, mismatches, notes)


def _check_task(port: str, name: str) -> None:
    """Raise when the connector's task has FAILED (Connect itself stays up)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/connectors/{name}/status",
                                    timeout=5) as r:
            status = json.load(r)
    except OSError:
        return
    for task in status.get("tasks", []):
        if task.get("state") == "FAILED":
            raise RuntimeError(f"the Debezium sink task failed:\n{task.get('trace', '')[:3000]}")


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""
