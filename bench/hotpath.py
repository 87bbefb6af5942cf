"""The worker's CPU path without the network: ``python -m bench.hotpath [--n 5000]``.

Runs what the worker does per batch — header validation, decoding, the claim, folding
``decide``, building every statement's parameters with psycopg's real dumpers, encoding the
events — over the benchmark workload, against an in-memory stand-in for the connection (its
``execute`` converts the query and parameters exactly as psycopg does before sending, then
answers from a dictionary). Nothing waits on PostgreSQL or Kafka, so the figure is the
worker's own CPU per command, and under ``valgrind --tool=callgrind`` (``--callgrind``) an
instruction count that is the same on a busy machine as on a quiet one: the way to compare
two versions of the hot path when the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
import psycopg
from confluent_kafka import Message
from psycopg._queries import PostgresQuery
from psycopg.adapt import AdaptersMap, Transformer

from bench.workload import generate
from phoenix_resources.adapters.dlq_delivery import DeadLetters
from phoenix_resources.adapters.postgres import arrays, batch_unit
from phoenix_resources.adapters.postgres.batch_unit import PostgresBatchUnit
from phoenix_resources.config import Settings
from phoenix_resources.entrypoints.worker import Worker, _InFlight
from phoenix_resources.observability import Metrics
from phoenix_resources.services.isolate import Isolation
from phoenix_resources.services.ports import OutboxFormat
from phoenix_resources.wire.commands import CommandCodec
from phoenix_resources.wire.events import EventCodec
from phoenix_resources.wire.framing import Framing


class Cursor:
    """What a statement answers: its rows and its row count."""

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows


class _Pipeline:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class ConvertingConnection:
    """A connection that converts every statement's parameters as psycopg does (with the
    array dumpers bootstrap's pools configure) and answers from memory; subclasses answer
    ``execute``."""

    closed = False

    def __init__(self) -> None:
        self.adapters = AdaptersMap(psycopg.adapters)
        self.connection = None
        for cls in arrays.ARRAY_TYPES:  # what bootstrap's pools configure
            self.adapters.register_dumper(cls, arrays._ArrayDumper)
        self.tx = Transformer(self)

    def pipeline(self) -> _Pipeline:
        return _Pipeline()

    def commit(self) -> None:
        return None

    def rollback(self) -> None:
        return None


class MemoryConnection(ConvertingConnection):
    """Converts every query and its parameters as psycopg does, then answers from memory:
    the ids recorded so far are known, loads return the rows written so far."""

    def __init__(self) -> None:
        super().__init__()
        self.claimed: dict[UUID, tuple[UUID, str]] = {}
        """Each recorded id's resource and type."""
        self.rows: dict[UUID, tuple[Any, ...]] = {}

    def execute(self, query: str, params: Sequence[Any] | None = None, **_: Any) -> Cursor:
        PostgresQuery(self.tx).convert(query, params)  # the dumping work psycopg does
        if query is batch_unit.KNOWN:
            known = [(cid, *self.claimed[cid])
                     for cid in params[0] if cid in self.claimed]  # type: ignore[index]
            return Cursor(known, len(known))
        if query is batch_unit.INSERT_OUTCOMES:
            self.claimed.update(zip(params[1], zip(params[2], params[3],  # type: ignore[index]
                                                   strict=True), strict=True))
            return Cursor([], len(params[1]))  # type: ignore[index]
        if query is batch_unit.LOAD:
            found = [self.rows[i] for i in params[0] if i in self.rows]  # type: ignore[index]
            return Cursor(found, len(found))
        if query in (batch_unit.INSERT_NEW, batch_unit.UPDATE_EXISTING):
            columns = params
            n = len(columns[0])  # type: ignore[index]
            for j in range(n):
                row = [c[j] for c in columns]  # type: ignore[union-attr]
                row[2] = orjson.loads(row[2])  # jsonb arrives as text, PostgreSQL returns a dict
                if query is batch_unit.INSERT_NEW:
                    self.rows[row[0]] = tuple(row)
                else:
                    rid, name, config, status, version, updated, last, deleted, _ = row
                    old = self.rows[rid]
                    self.rows[rid] = (rid, name, config, status, version, old[5], updated,
                                      last, deleted)
            return Cursor([], n)
        return Cursor([], 0)


class Pool:
    """A pool of one connection."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def getconn(self, timeout: float | None = None) -> Any:
        return self.conn

    def putconn(self, conn: Any) -> None:
        return None


def _messages(n: int, topic: str) -> list[Message]:
    wl = generate(n)
    return [Message(topic=topic, partition=0, offset=i, key=m.key, value=m.value,
                    headers=[("content-type", b"application/avro")])
            for i, m in enumerate(wl.messages)]


def run(n: int, batch: int = 1000, *, apply: bool = True,
        profile: Any = None) -> tuple[int, float]:
    """Apply ``n`` workload messages through the worker's CPU path; (commands, seconds).
    With ``apply=False`` only the set-up runs (what ``--callgrind`` subtracts)."""
    settings = Settings(commands_topic="hot", log_format="console")
    conn = MemoryConnection()
    events = EventCodec(Framing())
    pool = Pool(conn)

    def unit() -> PostgresBatchUnit:
        return PostgresBatchUnit(pool, OutboxFormat(events, "events",  # type: ignore[arg-type]
                                                    "rejections"))

    worker = Worker(settings, consumer=None, producer=None,  # type: ignore[arg-type]
                    codec=CommandCodec(Framing()), unit_factory=unit, metrics=Metrics())
    messages = _messages(n, "hot")
    now = datetime.now(UTC)
    if profile is not None:
        profile.enable()
    started = time.process_time()
    for i in range(0, len(messages) if apply else 0, batch):
        chunk = messages[i:i + batch]
        flight = _InFlight(chunk, DeadLetters("dlq"), worker.watch.batch(chunk))
        incoming = worker._decode(flight)
        flight.watch.decoded(incoming)
        isolation = Isolation(incoming)
        isolation.run(unit, now)
        flight.watch.counted(isolation.report)
    seconds = time.process_time() - started
    if profile is not None:
        profile.disable()
    return len(messages), seconds


def _instructions(n: int, setup_only: bool) -> int:
    out = f"/tmp/callgrind.hotpath.{os.getpid()}.{int(setup_only)}"
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
           "-m", "bench.hotpath", "--n", str(n), *(["--setup-only"] if setup_only else [])]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    total = next(line for line in result.stderr.splitlines() if "Collected" in line)
    os.unlink(out)
    return int(total.split()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--callgrind", action="store_true",
                    help="count instructions under valgrind (slow, but load-independent)")
    ap.add_argument("--setup-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.callgrind:
        full, setup = _instructions(args.n, False), _instructions(args.n, True)
        print(f"{(full - setup) / args.n / 1e3:,.1f}k instructions per message "
              f"(callgrind, {args.n:,} messages, set-up subtracted)")
        return 0
    count, seconds = run(args.n, apply=not args.setup_only)
    print(f"{count:,} messages: {seconds:.2f} s CPU, {seconds / count * 1e6:.1f} µs per message")
    return 0


if __name__ == "__main__":
    sys.exit(main())
