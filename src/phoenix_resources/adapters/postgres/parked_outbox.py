"""Parked outbox rows: the events the broker refused for good, and what an operator does
with them.

* **list** — each parked row with its reason and how many later rows of its resource wait.
* **retry** — clear the park: the relay publishes the row on its next fetch and then the rows
  that waited behind it, in ``seq`` order. Retry after fixing the cause (topic created,
  ACL granted, topic's ``max.message.bytes`` raised), or the row is parked again.
* **discard** — delete the row: its event is never published (each is logged at warning
  level with its event id); the rows behind it flow on the relay's next fetch.

Rows are chosen by ``seq`` (the outbox row id shown by ``list``), by resource (aggregate)
id, or all at once; only parked rows are ever touched.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from phoenix_resources.adapters.postgres.errors import translated

log = logging.getLogger("phoenix_resources.outbox")


@dataclass(frozen=True, slots=True)
class ParkedRow:
    seq: int
    event_id: str
    aggregateid: str
    type: str
    topic: str
    size: int
    occurred_at: datetime
    parked_at: datetime | None
    reason: str
    waiting: int
    """Later rows of the same resource held back behind this one."""


@dataclass(frozen=True, slots=True)
class Selection:
    """Which parked rows: ``everything``, or those with one of ``seqs`` or ``resources``."""

    seqs: Sequence[int] = ()
    resources: Sequence[str] = ()
    everything: bool = False

    @property
    def empty(self) -> bool:
        return not (self.everything or self.seqs or self.resources)

    def where(self) -> tuple[str, list[Any]]:
        if self.everything:
            return "o.parked_reason IS NOT NULL", []
        return ("o.parked_reason IS NOT NULL AND (o.seq = ANY(%s::int8[]) "
                "OR o.aggregateid = ANY(%s::text[]))",
                [list(self.seqs), [r.lower() for r in self.resources]])


_COLUMNS = """o.seq, o.id::text, o.aggregateid, o.type, o.topic, length(o.payload),
    o.occurred_at, o.parked_at, o.parked_reason,
    (SELECT count(*) FROM outbox w WHERE w.aggregateid = o.aggregateid AND w.seq > o.seq
       AND w.parked_reason IS NULL)"""


def list_parked(conn: psycopg.Connection[Any], selection: Selection | None = None,
                limit: int | None = None) -> list[ParkedRow]:
    """Parked rows in ``seq`` order (all of them when ``selection`` is ``None``)."""
    where, args = (selection or Selection(everything=True)).where()
    sql = f"SELECT {_COLUMNS} FROM outbox o WHERE {where} ORDER BY o.seq"
    if limit is not None:
        sql += " LIMIT %s"
        args = [*args, limit]
    with translated():
        return [ParkedRow(*r) for r in conn.execute(sql, args).fetchall()]


def parked_count(conn: psycopg.Connection[Any]) -> int:
    with translated():
        row = conn.execute("SELECT count(*) FROM outbox WHERE parked_reason IS NOT NULL"
                           ).fetchone()
    return int(row[0]) if row else 0


def retry(conn: psycopg.Connection[Any], selection: Selection) -> list[int]:
    """Clear the park of the chosen rows; returns their ``seq`` in order. The relay picks
    them up on its next fetch (within its poll interval), oldest first."""
    if selection.empty:
        return []
    where, args = selection.where()
    with translated(), conn.transaction():
        rows = conn.execute(f"UPDATE outbox o SET parked_reason = NULL, parked_at = NULL "
                            f"WHERE {where} RETURNING o.seq", args).fetchall()
    seqs = sorted(int(r[0]) for r in rows)
    if seqs:
        log.info("parked outbox rows released for retry", extra={"rows": len(seqs),
                                                                 "seqs": seqs[:20]})
    return seqs


def discard(conn: psycopg.Connection[Any], selection: Selection) -> list[ParkedRow]:
    """Delete the chosen parked rows (their events are never published); returns them."""
    if selection.empty:
        return []
    where, args = selection.where()
    with translated(), conn.transaction():
        gone = [ParkedRow(*r) for r in conn.execute(
            f"DELETE FROM outbox o WHERE {where} RETURNING {_COLUMNS}", args).fetchall()]
    for row in sorted(gone, key=lambda r: r.seq):
        log.warning("parked outbox row discarded; its event is not published", extra={
            "seq": row.seq, "event_id": row.event_id, "resource_id": row.aggregateid,
            "type": row.type, "topic": row.topic, "parked_reason": row.reason})
    return sorted(gone, key=lambda r: r.seq)
