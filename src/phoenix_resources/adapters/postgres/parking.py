"""Reading the parking lot: which resources wait, and their parked commands in order.

Read-only; replays and discards go through the batch unit (``services/replay.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from phoenix_resources.adapters.postgres.errors import translated

RESOURCES = """
SELECT c.resource_id, count(*), min(c.parked_at), (array_agg(c.command_id ORDER BY c.seq))[1],
       (array_agg(c.error ORDER BY c.seq))[1]
FROM parked_commands c GROUP BY c.resource_id ORDER BY min(c.seq) LIMIT %s
"""

COLUMNS = ("seq, command_id, resource_id, command_type, reason, error, parked_at, attempts, "
           "last_error, last_attempt_at, source_partition, source_offset, traceparent")

COMMANDS = f"""
SELECT {COLUMNS} FROM parked_commands
WHERE (%(rid)s::uuid IS NULL OR resource_id = %(rid)s::uuid) ORDER BY seq LIMIT %(limit)s
"""

ONE = f"SELECT {COLUMNS}, payload FROM parked_commands WHERE command_id = %s"

COUNT = "SELECT count(*), count(DISTINCT resource_id) FROM parked_commands"


@dataclass(frozen=True, slots=True)
class ParkedResource:
    resource_id: UUID
    commands: int
    since: datetime
    head: UUID
    """The command at the front of the queue (the one that failed first)."""
    error: str


@dataclass(frozen=True, slots=True)
class ParkedRow:
    seq: int
    command_id: UUID
    resource_id: UUID
    command_type: str
    reason: str
    error: str
    parked_at: datetime
    attempts: int
    last_error: str | None
    last_attempt_at: datetime | None
    source_partition: int | None
    source_offset: int | None
    traceparent: str | None
    payload: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__slots__ if k != "payload"}
        for k, v in out.items():
            if isinstance(v, UUID | datetime):
                out[k] = str(v) if isinstance(v, UUID) else v.isoformat()
        if self.payload is not None:
            out["payload"] = bytes(self.payload).decode("utf-8", "replace")
        return out


class ParkingLot:
    """One short connection per call (an operator's tool, not a hot path)."""

    def __init__(self, url: str, connect_timeout: float = 5.0) -> None:
        self._url = url
        self._timeout = connect_timeout

    def _query(self, sql: str, params: Any) -> list[tuple[Any, ...]]:
        with translated(), psycopg.connect(self._url, connect_timeout=int(self._timeout),
                                           autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def resources(self, limit: int = 1000) -> list[ParkedResource]:
        """Parked resources, the longest-waiting first."""
        return [ParkedResource(*r) for r in self._query(RESOURCES, (limit,))]

    def commands(self, resource_id: UUID | None = None, limit: int = 1000) -> list[ParkedRow]:
        """Parked commands in parking order (of one resource, or all)."""
        rows = self._query(COMMANDS, {"rid": resource_id, "limit": limit})
        return [ParkedRow(*r) for r in rows]

    def command(self, command_id: UUID) -> ParkedRow | None:
        rows = self._query(ONE, (command_id,))
        return ParkedRow(*rows[0]) if rows else None

    def counts(self) -> tuple[int, int]:
        """(parked commands, parked resources)."""
        (commands, resources), = self._query(COUNT, ())
        return int(commands), int(resources)
