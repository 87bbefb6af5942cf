"""What the console reads and does, behind one port so its pages can be tested without a
database or a broker.

:class:`LiveOperations` calls the very functions the CLI calls — ``parked replay`` /
``discard`` (``services/replay.py`` on ``bootstrap.parking_parts``), ``outbox retry`` /
``discard`` (``adapters/postgres/parked_outbox.py``), ``dlq replay`` (``adapters/dlq_topic``'s
``select`` and ``Replayer``) — so an action in the console and the same action in a shell
have one behaviour and one set of guarantees. Every method blocks: the app calls them on a
worker thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

if TYPE_CHECKING:
    import psycopg
    from confluent_kafka import Producer

    from phoenix_resources.adapters.dlq import DeadLetter
    from phoenix_resources.adapters.dlq_topic import ReplayReport as LetterReport
    from phoenix_resources.adapters.postgres.parked_outbox import ParkedRow as ParkedEvent
    from phoenix_resources.adapters.postgres.parking import ParkedResource, ParkedRow
    from phoenix_resources.bootstrap import ParkingParts
    from phoenix_resources.config import Settings
    from phoenix_resources.services.replay import ReplayReport

DLQ_STALL_S = 5.0
"""A dead-letter page gives up on a silent broker after this long (the CLI waits 15 s)."""


@dataclass(frozen=True, slots=True)
class LetterPage:
    """One bounded page of a DLQ partition."""

    partition: int
    start: int
    letters: list[DeadLetter]
    next_offset: int | None
    """Where the next page starts, or ``None`` when this page reached the end."""


class Operations(Protocol):
    def parked_resources(self, limit: int) -> list[ParkedResource]: ...

    def parked_commands(self, resource_id: UUID, limit: int) -> list[ParkedRow]: ...

    def parked_counts(self) -> tuple[int, int]:
        """(parked commands, parked resources)."""
        ...

    def replay_parked(self, resource_id: UUID) -> ReplayReport: ...

    def discard_parked(self, resource_id: UUID, reason: str) -> list[UUID]: ...

    def parked_events(self, limit: int) -> list[ParkedEvent]: ...

    def parked_event_count(self) -> int: ...

    def parked_event(self, seq: int) -> ParkedEvent | None: ...

    def retry_event(self, seq: int) -> list[int]: ...

    def discard_event(self, seq: int) -> list[ParkedEvent]: ...

    def dead_letters(self, partition: int, start: int, limit: int) -> LetterPage: ...

    def dead_letter(self, partition: int, offset: int) -> DeadLetter | None: ...

    def replay_dead_letter(self, partition: int, offset: int, *, force: bool,
                           ) -> LetterReport: ...


class LiveOperations:
    """The real thing: PostgreSQL through the worker's (writing) role, the DLQ and commands
    topics through the broker. :meth:`open` before use, :meth:`close` after."""

    def __init__(self, settings: Settings, parts: ParkingParts, producer: Producer) -> None:
        self._settings = settings
        self._parts = parts
        self._producer = producer
        self._replaying = threading.Lock()
        """Dead-letter replays share the producer: one at a time (each flushes it)."""

    @classmethod
    def build(cls, settings: Settings) -> LiveOperations:
        from phoenix_resources import bootstrap

        return cls(settings, bootstrap.parking_parts(settings), bootstrap.producer(settings))

    def open(self) -> None:
        self._parts.pool.open(wait=False)

    def close(self) -> None:
        self._parts.pool.close()
        self._producer.flush(5)

    # --- parked commands (as `phoenix-resources parked`) ------------------------------------

    def parked_resources(self, limit: int) -> list[ParkedResource]:
        return self._parts.lot.resources(limit)

    def parked_commands(self, resource_id: UUID, limit: int) -> list[ParkedRow]:
        return self._parts.lot.commands(resource_id, limit)

    def parked_counts(self) -> tuple[int, int]:
        return self._parts.lot.counts()

    def replay_parked(self, resource_id: UUID) -> ReplayReport:
        from phoenix_resources.services.replay import replay_resource

        return replay_resource(self._parts.unit_factory, resource_id, lambda: datetime.now(UTC))

    def discard_parked(self, resource_id: UUID, reason: str) -> list[UUID]:
        from phoenix_resources.services.replay import discard

        return discard(self._parts.unit_factory, resource_id, None, datetime.now(UTC), reason)

    # --- parked outbox rows (as `phoenix-resources outbox`) ---------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        """One short connection per call, as the CLI's ``outbox`` commands open."""
        import psycopg

        from phoenix_resources.adapters.postgres.errors import translated

        with translated():
            return psycopg.connect(self._settings.database_url, autocommit=True,
                                   connect_timeout=10)

    def parked_events(self, limit: int) -> list[ParkedEvent]:
        from phoenix_resources.adapters.postgres.parked_outbox import list_parked

        with self._connect() as conn:
            return list_parked(conn, None, limit)

    def parked_event_count(self) -> int:
        from phoenix_resources.adapters.postgres.parked_outbox import parked_count

        with self._connect() as conn:
            return parked_count(conn)

    def parked_event(self, seq: int) -> ParkedEvent | None:
        from phoenix_resources.adapters.postgres.parked_outbox import Selection, list_parked

        with self._connect() as conn:
            rows = list_parked(conn, Selection(seqs=[seq]))
        return rows[0] if rows else None

    def retry_event(self, seq: int) -> list[int]:
        from phoenix_resources.adapters.postgres.parked_outbox import Selection, retry

        with self._connect() as conn:
            return retry(conn, Selection(seqs=[seq]))

    def discard_event(self, seq: int) -> list[ParkedEvent]:
        from phoenix_resources.adapters.postgres.parked_outbox import Selection, discard

        with self._connect() as conn:
            return discard(conn, Selection(seqs=[seq]))

    # --- dead letters (as `phoenix-resources dlq`) -------------------------------------------

    def dead_letters(self, partition: int, start: int, limit: int) -> LetterPage:
        from phoenix_resources.adapters.dlq_topic import read

        letters: list[DeadLetter] = []
        next_offset = None
        for letter in read(self._settings.kafka_config("consumer"), self._settings.dlq_topic,
                           partitions=[partition], start=start, stall_timeout=DLQ_STALL_S):
            if len(letters) == limit:
                next_offset = letter.offset
                break
            letters.append(letter)
        return LetterPage(partition, start, letters, next_offset)

    def dead_letter(self, partition: int, offset: int) -> DeadLetter | None:
        from phoenix_resources.adapters.dlq_topic import find

        return find(self._settings.kafka_config("consumer"), self._settings.dlq_topic,
                    partition, offset, stall_timeout=DLQ_STALL_S)

    def replay_dead_letter(self, partition: int, offset: int, *, force: bool,
                           ) -> LetterReport:
        from phoenix_resources.adapters.dlq_topic import Replayer, select

        chosen = select(self._settings.kafka_config("consumer"), self._settings.dlq_topic,
                        positions=[(partition, offset)], stall_timeout=DLQ_STALL_S)
        with self._replaying:
            replayer = Replayer(self._producer, self._settings.commands_topic, force=force)
            return replayer.replay(chosen)
