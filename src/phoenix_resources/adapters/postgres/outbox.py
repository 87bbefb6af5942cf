"""The relay's view of PostgreSQL: the leadership lock, outbox reads in commit-safe order,
deletes after delivery, parking of refused rows, and housekeeping.

One dedicated session holds ``pg_try_advisory_lock``; PostgreSQL releases it when the
session ends (process death included), which is what lets a standby take over.

A row the broker refused for good is *parked* (``parked_reason`` / ``parked_at`` set). The
fetch skips it and every later row of the same aggregate, so one resource's events never
overtake each other while the others keep flowing; ``parked_outbox`` lists, retries and
discards parked rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from phoenix_resources.adapters.postgres import NOTIFY_CHANNEL
from phoenix_resources.adapters.postgres.errors import translated

# The anti-join reads idx_outbox_parked (aggregateid, seq) WHERE parked_reason IS NOT NULL:
# an empty partial index when nothing is parked, so the usual fetch costs what it did.
FETCH = """
SELECT o.seq, o.id::text, o.aggregateid, o.type, o.topic, o.payload, o.occurred_at,
       o.traceparent
FROM outbox o
WHERE o.parked_reason IS NULL
  AND NOT EXISTS (SELECT 1 FROM outbox p
                  WHERE p.parked_reason IS NOT NULL
                    AND p.aggregateid = o.aggregateid AND p.seq < o.seq)
ORDER BY o.seq LIMIT %s
"""

PARK = """
UPDATE outbox SET parked_reason = r.reason, parked_at = now()
FROM unnest(%s::int8[], %s::text[]) AS r(seq, reason)
WHERE outbox.seq = r.seq
"""

PARKED_COUNT = "SELECT count(*) FROM outbox WHERE parked_reason IS NOT NULL"

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


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    id: Any
    """The event id (text as fetched: it is only ever written into a header)."""
    aggregateid: str
    type: str
    topic: str
    payload: bytes
    occurred_at: datetime
    traceparent: str | None


class OutboxSession:
    """A relay's own connection (autocommit). Not thread-safe: one per relay."""

    def __init__(self, url: str, lock_key: int, connect_timeout: float = 5.0) -> None:
        self._url = url
        self._lock_key = lock_key
        self._timeout = connect_timeout
        self._conn: psycopg.Connection[Any] | None = None

    def connect(self) -> None:
        with translated():
            self._conn = psycopg.connect(self._url, autocommit=True,
                                         connect_timeout=int(self._timeout))

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
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
                self.conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        return leading

    def fetch(self, limit: int) -> list[OutboxRow]:
        with translated():
            rows = self.conn.execute(FETCH, (limit,), prepare=True).fetchall()
        return [OutboxRow(*r) for r in rows]

    def delete(self, seqs: list[int]) -> None:
        with translated():
            self.conn.execute("DELETE FROM outbox WHERE seq = ANY(%s::int8[])", (seqs,),
                              prepare=True)

    def settle(self, delivered: list[int], parked: list[tuple[int, str]]) -> None:
        """In one transaction: delete the delivered rows, park the refused ones with their
        reason. Either both happen or neither (a crash in between repeats the batch)."""
        with translated(), self.conn.transaction():
            if delivered:
                self.conn.execute("DELETE FROM outbox WHERE seq = ANY(%s::int8[])",
                                  (delivered,))
            if parked:
                self.conn.execute(PARK, ([s for s, _ in parked], [r for _, r in parked]))

    def parked_count(self) -> int:
        """Rows parked now (not counting the rows waiting behind them)."""
        with translated():
            row = self.conn.execute(PARKED_COUNT).fetchone()
        return int(row[0]) if row else 0

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
