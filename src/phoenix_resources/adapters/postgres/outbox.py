"""The relay's view of PostgreSQL: the leadership lock, outbox reads in commit-safe order,
deletes after delivery, parking of refused rows, and housekeeping —
:class:`PostgresOutboxReader`, the :class:`~phoenix_resources.services.ports.OutboxReader`
(``tests/contract/test_outbox_reader.py`` checks it against the port's guarantees).

One dedicated session holds ``pg_try_advisory_lock``; PostgreSQL releases it when the
session ends (process death included), which is what lets a standby take over.

The session is built to *end* when its relay stops answering, so a hung leader cannot keep
the lock (:func:`session_options`): PostgreSQL ends it after ``session_timeout`` without a
statement (``idle_session_timeout`` — a SIGSTOPped or wedged process), or when TCP probes
go unanswered either way (server and client keepalives, ``tcp_user_timeout`` — a cut-off
host), and no statement may run longer than ``statement_timeout``. A leading session never
reconnects behind its owner's back: a new connection would not hold the lock, so losing the
connection while leading raises :class:`DatabaseUnavailable` and the relay steps down. An
advisory lock is held until its session ends (or is unlocked, which nothing here does), and
the relay confirms on its own session that it holds the lock right before each publish.

A row the broker refused for good is *parked* (``parked_reason`` / ``parked_at`` set). The
fetch skips it and every later row of the same aggregate, so one resource's events never
overtake each other while the others keep flowing; ``parked_outbox`` lists, retries and
discards parked rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from phoenix_resources.adapters.postgres import NOTIFY_CHANNEL
from phoenix_resources.adapters.postgres.errors import translated
from phoenix_resources.errors import DatabaseUnavailable
from phoenix_resources.services.ports import OutboxRow

# A row is fetched when it is not parked and comes before every parked row of its
# aggregate (``< ALL`` of none is true; seq is unique, so it never equals a parked row's).
# Written so the plan does not hang on statistics the outbox may not have yet: the rows come
# in order from idx_outbox_unparked_seq (0004) and each one's check probes idx_outbox_parked
# (aggregateid, seq) WHERE parked_reason IS NOT NULL, empty while nothing is parked.
# PostgreSQL turns a NOT EXISTS into an anti-join, which it planned as a sort of the whole
# outbox, or as a join scanning the outbox once per row; it never turns ``< ALL`` into a
# join (docs/performance.md, item 6).
FETCH = """
SELECT o.seq, o.id::text, o.aggregateid, o.type, o.topic, o.payload, o.occurred_at,
       o.traceparent
FROM outbox o
WHERE o.parked_reason IS NULL
  AND o.seq < ALL (SELECT p.seq FROM outbox p
                   WHERE p.parked_reason IS NOT NULL AND p.aggregateid = o.aggregateid)
ORDER BY o.seq LIMIT %s
"""

PARK = """
UPDATE outbox SET parked_reason = r.reason, parked_at = now()
FROM unnest(%s::int8[], %s::text[]) AS r(seq, reason)
WHERE outbox.seq = r.seq
"""

HOLDS_LOCK = """
SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
               AND pid = pg_backend_pid() AND objsubid = 1
               AND classid::int8 = (%(k)s::int8 >> 32) & 4294967295
               AND objid::int8 = %(k)s::int8 & 4294967295)
"""

BACKLOG = """
SELECT count(*) FILTER (WHERE parked_reason IS NULL),
       count(*) FILTER (WHERE parked_reason IS NOT NULL)
FROM outbox
"""

PRUNE = """
DELETE FROM processed_commands WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM processed_commands
    WHERE processed_at < now() - make_interval(secs => %s)
      AND (issued_at IS NULL OR issued_at < now() - make_interval(secs => %s))
      AND outcome <> 'parked'
    LIMIT %s))
"""
# issued_at too: a command stamped by a clock running ahead stays deduped until the worker
# would refuse it as too old (CMD-008). Parked commands keep their row until replayed.


def session_options(session_timeout: float, statement_timeout_ms: int) -> dict[str, Any]:
    """libpq connection parameters of the relay's session (see the module's docstring).

    Client side: TCP keepalives every ``session_timeout / 5`` s after ``session_timeout / 3``
    s idle, and ``tcp_user_timeout`` (unacknowledged data) of ``session_timeout``. Server
    side, through ``options``: the same keepalives on PostgreSQL's socket, an
    ``idle_session_timeout`` and ``idle_in_transaction_session_timeout`` of
    ``session_timeout``, the statement timeout, and ``plan_cache_mode=force_custom_plan``:
    a generic plan of the fetch made while the outbox was vacuumed empty scans it once per
    row until the next VACUUM or ANALYZE; planned for its parameters the fetch reads
    ``idx_outbox_unparked_seq`` in order (migration 0004). (``idle_session_timeout`` needs
    PostgreSQL 14 or later.)"""
    ms = int(session_timeout * 1000)
    idle = max(1, int(session_timeout / 3))
    interval = max(1, int(session_timeout / 5))
    server = {"idle_session_timeout": ms, "idle_in_transaction_session_timeout": ms,
              "statement_timeout": statement_timeout_ms, "tcp_keepalives_idle": idle,
              "tcp_keepalives_interval": interval, "tcp_keepalives_count": 3,
              "tcp_user_timeout": ms, "plan_cache_mode": "force_custom_plan"}
    return {"keepalives": 1, "keepalives_idle": idle, "keepalives_interval": interval,
            "keepalives_count": 3, "tcp_user_timeout": ms,
            "application_name": "phoenix-resources-relay",
            "options": " ".join(f"-c {k}={v}" for k, v in server.items())}


class PostgresOutboxReader:
    """A relay's own connection (autocommit). Not thread-safe: one per relay.

    The lead is ``pg_try_advisory_lock(lock_key)`` on this connection; commits are heard
    through ``LISTEN`` once leading. The connection opens on first use.
    """

    def __init__(self, url: str, lock_key: int, connect_timeout: float = 5.0, *,
                 session_timeout: float = 10.0, statement_timeout_ms: int = 30_000) -> None:
        self._url = url
        self._lock_key = lock_key
        self._timeout = connect_timeout
        self._options = session_options(session_timeout, statement_timeout_ms)
        self._conn: psycopg.Connection[Any] | None = None
        self._leading = False

    def connect(self) -> None:
        with translated():
            self._conn = psycopg.connect(self._url, autocommit=True,
                                         connect_timeout=int(self._timeout), **self._options)

    def close(self) -> None:
        """End the session (and with it the lock)."""
        self._leading = False
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            if self._leading:
                # A fresh connection would not hold the lock: never lead on one unknowingly.
                raise DatabaseUnavailable("the leader's session ended; its lock went with it")
            self.connect()
        assert self._conn is not None
        return self._conn

    def try_lead(self) -> bool:
        """Take the leadership lock if free; start listening for commits when taken."""
        with translated():
            row = self.conn.execute("SELECT pg_try_advisory_lock(%s)",
                                    (self._lock_key,)).fetchone()
            leading = bool(row and row[0])
            if leading:
                self._leading = True
                self.conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        return leading

    def holds_lead(self) -> bool:
        """Whether this session holds the leadership lock now (one cheap round trip)."""
        with translated():
            row = self.conn.execute(HOLDS_LOCK, {"k": self._lock_key}, prepare=True).fetchone()
        return bool(row and row[0])

    def fetch(self, limit: int) -> list[OutboxRow]:
        with translated():
            rows = self.conn.execute(FETCH, (limit,), prepare=True).fetchall()
        return [OutboxRow(*r) for r in rows]

    def delete(self, seqs: Sequence[int]) -> None:
        with translated():
            self.conn.execute("DELETE FROM outbox WHERE seq = ANY(%s::int8[])", (list(seqs),),
                              prepare=True)

    def settle(self, delivered: Sequence[int], parked: Sequence[tuple[int, str]]) -> None:
        """In one transaction: delete the delivered rows, park the refused ones with their
        reason. Either both happen or neither (a crash in between repeats the batch)."""
        with translated(), self.conn.transaction():
            if delivered:
                self.conn.execute("DELETE FROM outbox WHERE seq = ANY(%s::int8[])",
                                  (list(delivered),))
            if parked:
                self.conn.execute(PARK, ([s for s, _ in parked], [r for _, r in parked]))

    def backlog(self) -> tuple[int, int]:
        """(rows waiting to be published, rows parked) now; one scan of the outbox, which
        the relay keeps short."""
        with translated():
            row = self.conn.execute(BACKLOG).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def wait_for_commit(self, timeout: float) -> None:
        """Return on the first NOTIFY from a worker's commit, or after ``timeout``."""
        with translated():
            for _ in self.conn.notifies(timeout=timeout, stop_after=1):
                pass

    def prune_processed(self, older_than_s: float, chunk: int = 10_000) -> int:
        """Delete processed_commands older than the window, in chunks (short locks)."""
        total = 0
        with translated():
            while True:
                n = self.conn.execute(PRUNE, (older_than_s, older_than_s, chunk)).rowcount
                total += n
                if n < chunk:
                    return total
