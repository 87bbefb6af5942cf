"""The relay's view of PostgreSQL: the leadership lock, outbox reads in commit-safe order,
deletes after delivery, and housekeeping.

One dedicated session holds ``pg_try_advisory_lock``; PostgreSQL releases it when the
session ends (process death included), which is what lets a standby take over.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from phoenix_resources.adapters.postgres import NOTIFY_CHANNEL
from phoenix_resources.adapters.postgres.errors import translated

FETCH = """
SELECT seq, id, aggregateid, type, topic, payload, occurred_at, traceparent
FROM outbox ORDER BY seq LIMIT %s
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
