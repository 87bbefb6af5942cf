"""Shared plumbing of the benchmarks: the stack, fresh databases and topics, processes, stats.

Every measurement gets its own database (``CREATE DATABASE bench_<run>_<n>``, migrated) and its
own topics (``bench.<run>.<n>.*``), so repetitions never see each other's rows or events and
nothing the developers keep in the local stack is touched. Everything is dropped at the end.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]
T0 = time.monotonic()


def progress(msg: str) -> None:
    print(f"[bench {time.monotonic() - T0:7.1f}s] {msg}", flush=True)


# --- the stack ---------------------------------------------------------------------------


@dataclass
class Target:
    """Where the benchmark runs: a Kafka bootstrap and a PostgreSQL superuser URL."""

    bootstrap: str
    admin_url: str  # superuser, used to create and drop the per-measurement databases
    postmaster_pid: int | None = None
    broker_pid: int | None = None
    app_user: str = "phoenix"
    port: int = 55432
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    pg_settings: dict[str, str] = field(default_factory=dict)
    _seq: int = 0
    _topics: list[str] = field(default_factory=list)
    _dbs: list[str] = field(default_factory=list)
    _admin: AdminClient | None = None

    def next_name(self, what: str) -> str:
        self._seq += 1
        return f"{what}_{self.run_id}_{self._seq}"

    def db_url(self, db: str, user: str | None = None) -> str:
        return f"postgresql://{user or self.app_user}@127.0.0.1:{self.port}/{db}"

    # databases
    def fresh_db(self, what: str, migrate: bool = True) -> str:
        """A new, migrated database owned by the app role; returns its URL."""
        name = self.next_name(f"bench_{what}")
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" OWNER {self.app_user}')
        self._dbs.append(name)
        url = self.db_url(name)
        if migrate:
            from phoenix_resources.adapters.postgres.schema import upgrade

            upgrade(url)
        return url

    def drop_dbs(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in self._dbs:
                with contextlib.suppress(Exception):
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._dbs.clear()

    # topics
    def admin(self) -> AdminClient:
        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": "0"})
        return self._admin

    def create_topics(self, names: Sequence[str], partitions: int,
                      config: dict[str, str] | None = None) -> None:
        futures = self.admin().create_topics(
            [NewTopic(n, num_partitions=partitions, replication_factor=1,
                      config=config or {}) for n in names])
        for f in futures.values():
            f.result(timeout=30)
        self._topics.extend(names)
        # wait until metadata shows every partition with a leader
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            meta = self.admin().list_topics(timeout=5).topics
            if all(n in meta and len(meta[n].partitions) == partitions
                   and all(p.leader >= 0 for p in meta[n].partitions.values()) for n in names):
                return
            time.sleep(0.1)

    def drop_topics(self) -> None:
        if not self._topics:
            return
        with contextlib.suppress(Exception):
            futures = self.admin().delete_topics(list(self._topics), operation_timeout=30)
            for f in futures.values():
                with contextlib.suppress(Exception):
                    f.result(timeout=30)
        self._topics.clear()

    def cleanup(self) -> None:
        self.drop_topics()
        self.drop_dbs()


@contextlib.contextmanager
def stack_target(ephemeral: bool) -> Iterator[Target]:
    """The persistent local stack (``make stack-up``), or a throwaway durable one."""
    if ephemeral:
        from phoenix_resources.devstack.stack import ephemeral_stack

        with ephemeral_stack(fast=False) as stack:
            yield Target(stack.broker.bootstrap_servers, stack.postgres.admin_url,
                         port=stack.postgres.port, postmaster_pid=_postmaster(stack.postgres),
                         broker_pid=stack.broker.pid())
        return
    from phoenix_resources.devstack.stack import local_stack

    stack = local_stack()
    if not (stack.broker.is_running() and stack.postgres.is_running()):
        progress("local stack not running: starting it (make stack-up)")
        stack.up(progress=False)
    yield Target(stack.broker.bootstrap_servers, stack.postgres.admin_url,
                 port=stack.postgres.port, postmaster_pid=_postmaster(stack.postgres),
                 broker_pid=stack.broker.pid())


def _postmaster(cluster: Any) -> int | None:
    try:
        return int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def pg_settings(admin_url: str) -> dict[str, str]:
    names = ("server_version", "fsync", "synchronous_commit", "full_page_writes",
             "shared_buffers", "wal_level", "max_wal_size")
    with psycopg.connect(admin_url) as conn:
        return {n: str(conn.execute(f"SHOW {n}").fetchone()[0]) for n in names}  # type: ignore[index]


# --- Kafka helpers ----------------------------------------------------------------------


def end_offsets(bootstrap: str, topic: str) -> int:
    """Sum of the high watermarks of every partition of ``topic``."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-probe",
                  "enable.auto.commit": False, "log_level": "0"})
    try:
        meta = c.list_topics(topic, timeout=10).topics[topic]
        total = 0
        for p in meta.partitions:
            _, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += hi
        return total
    finally:
        c.close()


class Watermarks:
    """A long-lived consumer used only to read high watermarks cheaply and often."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-probe",
                           "enable.auto.commit": False, "log_level": "0"})
        self.parts = list(self.c.list_topics(topic, timeout=10).topics[topic].partitions)

    def total(self) -> int:
        return sum(self.c.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1]
                   for p in self.parts)

    def close(self) -> None:
        self.c.close()


def read_all(bootstrap: str, topic: str, expected: int | None = None,
             idle_s: float = 3.0) -> list[Any]:
    """Every message currently in ``topic`` (reads up to the high watermarks)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-read-{uuid.uuid4().hex}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "enable.partition.eof": True, "log_level": "0"})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        his = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
               for p in parts}
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        want = sum(his.values())
        out: list[Any] = []
        eof: set[int] = set()
        last = time.monotonic()
        while len(out) < want and time.monotonic() - last < idle_s:
            for m in c.consume(1000, timeout=0.5):
                if m.error():
                    if m.error().code() == -191:  # _PARTITION_EOF
                        eof.add(m.partition())
                    continue
                out.append(m)
                last = time.monotonic()
            if len(eof) == len(parts) and len(out) >= want:
                break
        return out
    finally:
        c.close()


# --- processes ---------------------------------------------------------------------------


@dataclass
class ProcStats:
    peak_rss_bytes: int
    cpu_s: float


def proc_stats(pid: int) -> ProcStats | None:
    """Peak RSS (VmHWM) and user+system CPU seconds of a live process."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    hwm = 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    fields = stat.rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return ProcStats(hwm, cpu)


def _ticks(pid: int, *, children: bool) -> int:
    """utime+stime of ``pid`` (plus cutime+cstime: its reaped children) in clock ticks."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    own = int(fields[11]) + int(fields[12])
    return own + (int(fields[13]) + int(fields[14]) if children else 0)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def tree_cpu_s(pid: int | None) -> float:
    """CPU seconds a process and its children used so far: its own, its reaped children's,
    and its live children's (a PostgreSQL postmaster and every backend; a JVM's threads)."""
    if pid is None:
        return 0.0
    ticks = _ticks(pid, children=True) + sum(_ticks(c, children=True) for c in _children(pid))
    return ticks / os.sysconf("SC_CLK_TCK")


class Proc:
    """A child in its own process group; ``stop`` ends the whole group."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.argv = list(argv)
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._fh = log.open("ab")
        self.p = subprocess.Popen(self.argv, env={**os.environ, **env}, stdout=self._fh,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  start_new_session=True, cwd=ROOT)

    @property
    def pid(self) -> int:
        return self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def stats(self) -> ProcStats | None:
        return proc_stats(self.p.pid)

    def stop(self, timeout: float = 10.0) -> None:
        if self.p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(10)
        self._fh.close()

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def python() -> str:
    return sys.executable


def cli(*args: str) -> list[str]:
    exe = Path(sys.executable).with_name("phoenix-resources")
    if exe.exists():
        return [str(exe), *args]
    return [sys.executable, "-m", "phoenix_resources.entrypoints.cli", *args]


# --- statistics --------------------------------------------------------------------------


@dataclass
class Series:
    """Repetitions of one figure: median and min-max."""

    values: list[float] = field(default_factory=list)

    def add(self, v: float) -> None:
        self.values.append(v)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def fmt(self, digits: int = 0, unit: str = "") -> str:
        if not self.values:
            return "not measured"
        f = f"{{:,.{digits}f}}"
        med = f.format(self.median) + unit
        if len(self.values) == 1:
            return f"{med} (1 run)"
        return (f"{med} ({f.format(min(self.values))}-{f.format(max(self.values))}, "
                f"n={len(self.values)})")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def machine() -> dict[str, str]:
    mem = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return {"host": platform.node(), "cores": str(os.cpu_count()), "cpu": cpu, "memory": mem,
            "kernel": platform.release(), "python": platform.python_version(),
            "loadavg at start": load}


@contextlib.contextmanager
def python_server(serve: str, env: dict[str, str],
                  ready: Callable[[subprocess.Popen[bytes]], None], *,
                  stop_timeout: float) -> Iterator[int]:
    """``serve(Settings())`` of ``serve`` (``"module:function"``) in a child Python process
    whose environment is this one's plus ``env``; yields its pid once ``ready(proc)`` returns.
    On exit: SIGTERM, then SIGKILL after ``stop_timeout`` seconds."""
    module, _, function = serve.partition(":")
    code = ("from phoenix_resources.config import Settings\n"
            f"from {module} import {function}\n"
            f"raise SystemExit({function}(Settings()))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, **env}, cwd=ROOT)
    try:
        ready(proc)
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
