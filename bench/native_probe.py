"""The worker's CPU path, pure Python against the native extension, side by side:
``python -m bench.native_probe [--n 20000] [--runs 5]``.

Both paths take the same generated batches (the benchmark workload as consumed messages,
1,000 per batch) and do what the worker does per batch, up to what goes over the wire:

* **pure** — ``Worker._decode`` (headers, the codec, the key check, dead letters), then
  ``Isolation.run`` → ``apply_batch`` → ``PostgresBatchUnit`` (claim, load, fold, every
  statement's parameters, events and rejections encoded);
* **native** — ``phoenix_resources_native.decode_messages``, the Python codec for what the
  native reader hands back, the same dead letters, the claim and load queries with the
  plan's parameters, ``Plan.fold``, and the write's statements with the parameters it built.

Each statement goes through psycopg's own parameter conversion (``PostgresQuery.convert``)
on a connection that answers the reads from a script recorded once beforehand (so neither
path pays for an in-memory database). The figures are CPU seconds (``process_time``) per
10,000 commands, the median of ``--runs`` alternating runs, and their ratio; before timing,
one run of each path is captured and every statement's parameters compared (the native
path must send the same bytes). The extension must be importable (``native/build.sh``).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Message
from psycopg._queries import PostgresQuery
from psycopg.adapt import Dumper
from psycopg.pq import Format

from bench.hotpath import ConvertingConnection, Cursor, MemoryConnection, Pool, _messages
from phoenix_resources.adapters.dlq_delivery import DeadLetters
from phoenix_resources.adapters.postgres import NOTIFY_CHANNEL, arrays, batch_unit
from phoenix_resources.adapters.postgres.batch_unit import PostgresBatchUnit
from phoenix_resources.config import Settings
from phoenix_resources.entrypoints.worker import Worker, _InFlight
from phoenix_resources.errors import DecodeError, MessageTooLarge
from phoenix_resources.observability import Metrics
from phoenix_resources.services.isolate import Isolation
from phoenix_resources.services.ports import OutboxFormat
from phoenix_resources.wire.commands import CommandCodec
from phoenix_resources.wire.events import EventCodec
from phoenix_resources.wire.framing import Framing

try:
    import phoenix_resources_native as native

    BUILT = True
except ImportError:  # reported by main()
    BUILT = False

BATCH = 1000
EVENTS, REJECTIONS = "events", "rejections"


# --- pre-encoded array parameters ------------------------------------------------------------

class _Encoded(bytes):
    """An array parameter already in PostgreSQL's binary form."""

    array_oid = 0


def _encoded(kind: type[arrays._TypedArray]) -> type[_Encoded]:
    return type(f"Encoded{kind.__name__}", (_Encoded,), {"array_oid": kind.array_oid})


ENCODED = {kind: _encoded(kind) for kind in arrays.ARRAY_TYPES}


class _EncodedDumper(Dumper):
    format = Format.BINARY

    def __init__(self, cls: type, context: Any = None) -> None:
        super().__init__(cls, context)
        self.oid = cls.array_oid  # type: ignore[attr-defined]

    def dump(self, obj: Any) -> bytes:
        return obj  # type: ignore[no-any-return]


QUERIES: dict[str, tuple[str, tuple[type[arrays._TypedArray], ...], list[Any]]] = {
    "insert_outcomes": (batch_unit.INSERT_OUTCOMES, batch_unit.OUTCOME_COLUMNS, ["now"]),
    "bump_duplicates": (batch_unit.BUMP_DUPLICATES, (arrays.UuidArray, arrays.Int4Array), []),
    "insert_new": (batch_unit.INSERT_NEW, batch_unit.NEW_COLUMNS, []),
    "update_existing": (batch_unit.UPDATE_EXISTING, batch_unit.UPDATE_COLUMNS, []),
    "park": (batch_unit.PARK, batch_unit.PARK_COLUMNS, []),
    "park_resources": (batch_unit.PARK_RESOURCES, (arrays.UuidArray,), []),
    "insert_outbox": (batch_unit.INSERT_OUTBOX, batch_unit.OUTBOX_COLUMNS,
                      [batch_unit.AGGREGATE]),
}
READS = (batch_unit.KNOWN, batch_unit.PARKED_AMONG, batch_unit.LOAD)


# --- connections ---------------------------------------------------------------------------

def _length(param: Any) -> int:
    if isinstance(param, _Encoded):
        return 0 if param[:4] == b"\0\0\0\0" else int.from_bytes(param[12:16], "big")
    return len(param)


class ScriptedConnection(ConvertingConnection):
    """Converts every statement's parameters as psycopg does; answers the reads from a
    script (one answer per read, in order) and each write with its row count. With
    ``capture``, keeps every statement's parameters in their binary form."""

    def __init__(self, answers: Sequence[list[tuple[Any, ...]]], capture: bool = False) -> None:
        super().__init__()
        for encoded in ENCODED.values():
            self.adapters.register_dumper(encoded, _EncodedDumper)
        self.answers = deque(answers)
        self.captured: list[tuple[str, list[Any]]] | None = [] if capture else None

    def execute(self, query: str, params: Sequence[Any] = ()) -> Cursor:
        PostgresQuery(self.tx).convert(query, params)
        if self.captured is not None:
            self.captured.append((query, [bytes(arrays.encode(p)) if isinstance(
                p, arrays._TypedArray) else p for p in params]))
        if query in READS:
            return Cursor(self.answers.popleft(), 0)
        first = next((p for p in params if isinstance(p, list | _Encoded)), [])
        return Cursor([], _length(first))


class _RecordingConnection(MemoryConnection):
    """``bench.hotpath``'s in-memory database, keeping each read's answer."""

    def __init__(self) -> None:
        super().__init__()
        self.script: list[list[tuple[Any, ...]]] = []

    def execute(self, query: str, params: Sequence[Any] | None = None, **kw: Any) -> Any:
        cursor = super().execute(query, params, **kw)
        if query in READS:
            self.script.append(list(cursor.fetchall()))
        return cursor


# --- the two paths -------------------------------------------------------------------------

class Paths:
    def __init__(self, messages: list[Message]) -> None:
        self.settings = Settings(commands_topic="hot", log_format="console")
        self.codec = CommandCodec(Framing())
        self.events = EventCodec(Framing())
        self.worker = Worker(self.settings, consumer=None, producer=None,  # type: ignore[arg-type]
                             codec=self.codec, unit_factory=lambda: None,  # type: ignore[arg-type,return-value]
                             metrics=Metrics())
        self.batches = [messages[i:i + BATCH] for i in range(0, len(messages), BATCH)]
        self.now = datetime.now(UTC)
        self.oldest = self.now - timedelta(hours=self.settings.processed_retention_hours)
        known = {s.fingerprint for s in self.codec.framing._known.values()}
        known.discard(self.codec.schema.fingerprint)
        self.max_bytes = self.codec.max_bytes
        self.known_fingerprints = sorted(known)

    def _flight(self, chunk: list[Message]) -> _InFlight:
        return _InFlight(chunk, DeadLetters("dlq"), None)  # type: ignore[arg-type]

    def pure(self, conn: Any) -> int:
        pool = Pool(conn)

        def unit() -> PostgresBatchUnit:
            return PostgresBatchUnit(pool,  # type: ignore[arg-type]
                                     OutboxFormat(self.events, EVENTS, REJECTIONS))

        commands = 0
        for chunk in self.batches:
            flight = self._flight(chunk)
            incoming = self.worker._decode(flight)
            Isolation(incoming, oldest=self.oldest).run(unit, self.now)
            commands += len(chunk)
        return commands

    def native(self, conn: Any) -> int:
        commands = 0
        for chunk in self.batches:
            flight = self._flight(chunk)
            batch = native.decode_messages(chunk, max_bytes=self.max_bytes,
                                           known_fingerprints=self.known_fingerprints)
            for i in batch.fallbacks():
                try:
                    batch.supply(i, self.codec.decode(chunk[i].value(), batch.headers(i)[0]))
                except DecodeError as e:
                    batch.refuse(i, e.reason, e.detail)
            for i, reason, detail in batch.dead_letters():
                kind = MessageTooLarge if reason == "too-large" else DecodeError
                self.worker._dead_letter(flight, chunk[i], reason, detail, kind(reason, detail))
            self._apply(batch.plan(), conn)
            commands += len(chunk)
        return commands

    def _apply(self, plan: Any, conn: Any) -> None:
        uuids = ENCODED[arrays.UuidArray]
        with conn.pipeline():
            known = conn.execute(batch_unit.KNOWN, (uuids(plan.claim_ids),))
            parked = conn.execute(batch_unit.PARKED_AMONG, (uuids(plan.resource_ids),))
            rows = conn.execute(batch_unit.LOAD, (uuids(plan.resource_ids),))
        written = plan.fold(known.fetchall(), [r[0] for r in parked.fetchall()],
                            rows.fetchall(), self.now, oldest=self.oldest,
                            events_topic=EVENTS, rejections_topic=REJECTIONS)
        params = written.params()
        counts: dict[str, int] = {}
        with conn.pipeline():
            for name in written.statements():
                query, kinds, scalars = QUERIES[name]
                values = [self.now if s == "now" else s for s in scalars]
                values += [ENCODED[k](p) for k, p in zip(kinds, params[name], strict=True)]
                counts[name] = conn.execute(query, values).rowcount
            if written.notify:
                conn.execute("SELECT pg_notify(%s, '')", (NOTIFY_CHANNEL,))
        got = tuple(counts.get(n, 0) for n in ("insert_outcomes", "insert_new",
                                                "update_existing"))
        assert got == written.expected_rowcounts, (got, written.expected_rowcounts)
        conn.commit()


def _timed(run: Callable[[Any], int], script: list[Any]) -> float:
    conn = ScriptedConnection(script)
    started = time.process_time()
    count = run(conn)
    seconds = time.process_time() - started
    return seconds / count * 10_000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    if not BUILT:
        print("phoenix_resources_native is not importable: build it with native/build.sh and "
              "put native/target/site on PYTHONPATH (native/README.md)", file=sys.stderr)
        return 2
    # Dead letters are logged one by one, alike on both paths; not on the terminal.
    logging.getLogger("phoenix_resources").setLevel(logging.ERROR)
    messages = _messages(args.n, "hot")
    paths = Paths(messages)
    recording = _RecordingConnection()
    paths.pure(recording)
    script = recording.script

    captured: list[list[tuple[str, list[Any]]]] = []
    for run in (paths.pure, paths.native):
        conn = ScriptedConnection(script, capture=True)
        run(conn)
        captured.append(conn.captured or [])
    same = captured[0] == captured[1]
    statements = sum(1 for q, _ in captured[0] if q not in READS)
    print(f"parity: {len(captured[0]):,} statements of each path compared, "
          f"{'identical' if same else 'DIFFERENT'} parameters ({statements:,} writes)")
    if not same:
        return 1

    pure: list[float] = []
    compiled: list[float] = []
    for _ in range(args.runs):
        pure.append(_timed(paths.pure, script))
        compiled.append(_timed(paths.native, script))
    p, c = statistics.median(pure), statistics.median(compiled)
    print(f"{args.n:,} messages in batches of {BATCH:,}, {args.runs} alternating runs")
    print(f"pure   CPU per 10k commands: {p:.3f} s  (runs {min(pure):.3f}-{max(pure):.3f})")
    print(f"native CPU per 10k commands: {c:.3f} s  (runs {min(compiled):.3f}-"
          f"{max(compiled):.3f})")
    print(f"native/pure: {c / p:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
