"""One set of tests for every :class:`~phoenix_resources.services.ports.OutboxReader`: the
in-memory fake the relay's unit tests rely on, and ``PostgresOutboxReader``. If the fake
drifts from PostgreSQL, the same assertion fails on one side only.

:class:`OutboxReaderContract` holds the tests (the guarantees the port's docstring lists) and
asks its subclass for readers on one shared database, for ways to put rows there as a worker
and an operator would, and for ways to end a reader's session under it.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from phoenix_resources.adapters.postgres.outbox import PostgresOutboxReader
from phoenix_resources.errors import DatabaseUnavailable, TransientError
from phoenix_resources.services.ports import OutboxReader, OutboxRow
from tests.fakes import FakeOutboxReader, FakeStore, ProcessedCommand

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
WEEK_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class Recorded:
    """A ``processed_commands`` row to put in place: how long ago it was processed, and
    issued (None: not recorded)."""

    age: timedelta
    issued_age: timedelta | None = None
    outcome: str = "applied"


def row(aggregate: str, **kw: Any) -> OutboxRow:
    """An outbox row as a worker commits it (``seq`` is given by the database)."""
    values: dict[str, Any] = {
        "seq": 0, "id": str(uuid.uuid4()), "aggregateid": aggregate,
        "type": "ResourceUpdated", "topic": "contract.events", "payload": b"\x00\x01",
        "occurred_at": T0, "traceparent": None}
    return OutboxRow(**(values | kw))


class OutboxReaderContract(abc.ABC):
    """The guarantees ``OutboxReader``'s docstring lists, as tests."""

    @abc.abstractmethod
    def reader(self) -> OutboxReader:
        """A new reader (its own session) on this test's database."""

    @abc.abstractmethod
    def commit_rows(self, rows: Sequence[OutboxRow]) -> list[int]:
        """Commit these rows, in this order (as the worker does); return their ``seq``."""

    @abc.abstractmethod
    def outbox(self) -> dict[int, str | None]:
        """Committed rows: ``seq`` → parked reason (None: not parked)."""

    @abc.abstractmethod
    def retry(self, seq: int) -> None:
        """An operator clears a row's park (``phoenix-resources outbox retry``)."""

    @abc.abstractmethod
    def end_session(self, reader: OutboxReader) -> None:
        """The reader's session ends under it (killed, timed out, cut off)."""

    @abc.abstractmethod
    def release_lead(self, reader: OutboxReader) -> None:
        """The lead is released on the reader's session, which goes on."""

    @abc.abstractmethod
    def fail_parking(self, reader: OutboxReader) -> None:
        """The database fails the reader's next park, after the delete in its transaction."""

    @abc.abstractmethod
    def record(self, outcomes: Sequence[Recorded]) -> None:
        """Commit these ``processed_commands`` rows."""

    @abc.abstractmethod
    def recorded(self) -> int:
        """How many ``processed_commands`` rows there are."""

    @pytest.fixture
    def readers(self) -> Iterator[list[OutboxReader]]:
        """The test's readers (see :meth:`open`), closed when it ends."""
        made: list[OutboxReader] = []
        yield made
        for reader in made:
            reader.close()

    def open(self, readers: list[OutboxReader]) -> OutboxReader:
        made = self.reader()
        readers.append(made)
        return made

    # --- fetch -------------------------------------------------------------------------------

    def test_fetch_returns_committed_rows_in_seq_order_as_they_were_written(
            self, readers: list[OutboxReader]) -> None:
        written = [row("a", type="ResourceCreated", traceparent="00-" + "1" * 32 + "-"
                       + "2" * 16 + "-01"),
                   row("b", topic="contract.rejections", type="CommandRejected",
                       payload=b"\xc3\x01" + bytes(range(40)), occurred_at=T0 + DAY),
                   row("a")]
        seqs = self.commit_rows(written)
        assert seqs == sorted(seqs)
        reader = self.open(readers)
        assert reader.fetch(10) == [replace(r, seq=s) for r, s in zip(written, seqs, strict=True)]
        assert [r.seq for r in reader.fetch(2)] == seqs[:2]
        assert reader.fetch(10) == reader.fetch(3)  # a fetch takes nothing away

    def test_fetch_of_an_empty_outbox_is_empty(self, readers: list[OutboxReader]) -> None:
        assert self.open(readers).fetch(10) == []

    def test_fetch_skips_parked_rows_and_the_later_rows_of_their_resource_only(
            self, readers: list[OutboxReader]) -> None:
        seqs = self.commit_rows([row(a) for a in ["a", "b", "a", "c", "b", "a", "c", "b"]])
        reader = self.open(readers)
        assert reader.try_lead()
        # a: seqs[0] flows; seqs[2] parked; seqs[5] waits behind it.
        # b: seqs[1] and seqs[4] flow (b's parked row comes after them); seqs[7] parked.
        # c: nothing parked, both flow.
        reader.settle([], [(seqs[2], "refused"), (seqs[7], "refused")])
        fetched = [r.seq for r in reader.fetch(100)]
        assert fetched == [seqs[0], seqs[1], seqs[3], seqs[4], seqs[6]]
        assert [r.seq for r in reader.fetch(2)] == fetched[:2]
        self.retry(seqs[2])  # a's rows flow again, in order
        assert [r.seq for r in reader.fetch(100)] == seqs[:7]

    def test_a_parked_row_is_parked_for_every_reader(self, readers: list[OutboxReader]) -> None:
        seqs = self.commit_rows([row("a"), row("a"), row("b")])
        first = self.open(readers)
        assert first.try_lead()
        first.settle([], [(seqs[0], "refused")])
        first.close()
        second = self.open(readers)
        assert second.try_lead()
        assert [r.seq for r in second.fetch(10)] == [seqs[2]]
        assert second.backlog() == (2, 1)

    # --- delete and settle -------------------------------------------------------------------

    def test_delete_removes_the_given_rows_and_ignores_those_already_gone(
            self, readers: list[OutboxReader]) -> None:
        seqs = self.commit_rows([row("a"), row("b"), row("c")])
        reader = self.open(readers)
        reader.delete([seqs[0], seqs[2]])
        reader.delete([seqs[0]])
        assert self.outbox() == {seqs[1]: None}
        assert [r.seq for r in reader.fetch(10)] == [seqs[1]]

    def test_settle_deletes_the_delivered_and_parks_the_refused_with_their_reason(
            self, readers: list[OutboxReader]) -> None:
        seqs = self.commit_rows([row("a"), row("b"), row("b"), row("c")])
        reader = self.open(readers)
        assert reader.try_lead()
        reader.settle([seqs[0], seqs[3]], [(seqs[1], "MSG_SIZE_TOO_LARGE: too big")])
        assert self.outbox() == {seqs[1]: "MSG_SIZE_TOO_LARGE: too big", seqs[2]: None}
        assert reader.fetch(10) == []  # seqs[2] is held behind its resource's parked row

    def test_settle_is_all_or_nothing(self, readers: list[OutboxReader]) -> None:
        seqs = self.commit_rows([row("a"), row("b")])
        reader = self.open(readers)
        assert reader.try_lead()
        self.fail_parking(reader)
        with pytest.raises(DatabaseUnavailable):
            reader.settle([seqs[0]], [(seqs[1], "refused")])
        assert self.outbox() == {seqs[0]: None, seqs[1]: None}

    # --- backlog -----------------------------------------------------------------------------

    def test_backlog_counts_rows_waiting_and_parked(self, readers: list[OutboxReader]) -> None:
        reader = self.open(readers)
        assert reader.backlog() == (0, 0)
        seqs = self.commit_rows([row("a"), row("a"), row("b"), row("c")])
        assert reader.try_lead()
        assert reader.backlog() == (4, 0)
        reader.settle([seqs[3]], [(seqs[0], "refused")])
        assert reader.backlog() == (2, 1)  # a's later row waits behind the parked one
        reader.delete([seqs[0]])  # an operator's discard, in effect
        assert reader.backlog() == (2, 0)

    # --- leadership --------------------------------------------------------------------------

    def test_one_reader_leads_at_a_time(self, readers: list[OutboxReader]) -> None:
        first, second = self.open(readers), self.open(readers)
        assert first.try_lead()
        assert not second.try_lead()
        assert first.try_lead()  # still ours
        assert first.holds_lead()
        assert not second.holds_lead()

    def test_closing_the_leader_frees_the_lead_for_another(
            self, readers: list[OutboxReader]) -> None:
        first, second = self.open(readers), self.open(readers)
        assert first.try_lead()
        first.close()
        assert not first.holds_lead()
        assert second.try_lead()
        assert not first.try_lead()

    def test_a_leader_whose_session_ended_holds_nothing_and_goes_on_only_after_close(
            self, readers: list[OutboxReader]) -> None:
        self.commit_rows([row("a")])
        first, second = self.open(readers), self.open(readers)
        assert first.try_lead()
        self.end_session(first)
        assert second.try_lead()
        for call in (first.holds_lead, lambda: first.fetch(1), first.holds_lead):
            with pytest.raises(TransientError):
                call()
        first.close()
        assert not first.holds_lead()
        assert not first.try_lead()
        assert second.holds_lead()

    def test_a_standby_whose_session_ended_fails_once_then_goes_on(
            self, readers: list[OutboxReader]) -> None:
        reader = self.open(readers)
        assert reader.backlog() == (0, 0)  # the session is open
        self.end_session(reader)
        with pytest.raises(TransientError):
            reader.backlog()
        assert reader.backlog() == (0, 0)
        assert reader.try_lead()

    def test_a_reader_whose_lead_was_released_says_so(
            self, readers: list[OutboxReader]) -> None:
        reader = self.open(readers)
        assert reader.try_lead()
        self.release_lead(reader)
        assert not reader.holds_lead()

    # --- pruning -----------------------------------------------------------------------------

    def test_prune_deletes_outcomes_older_than_the_window_only(
            self, readers: list[OutboxReader]) -> None:
        self.record([Recorded(10 * DAY)] * 25 + [Recorded(timedelta(hours=1))] * 3)
        reader = self.open(readers)
        assert reader.prune_processed(WEEK_S) == 25
        assert self.recorded() == 3
        assert reader.prune_processed(WEEK_S) == 0

    def test_prune_keeps_parked_commands_and_commands_issued_inside_the_window(
            self, readers: list[OutboxReader]) -> None:
        self.record([Recorded(10 * DAY, outcome="parked")] * 3
                    + [Recorded(10 * DAY, issued_age=timedelta(0))]  # a clock ran ahead
                    + [Recorded(10 * DAY, issued_age=10 * DAY)] * 2
                    + [Recorded(10 * DAY, outcome="rejected")])
        assert self.open(readers).prune_processed(WEEK_S) == 3
        assert self.recorded() == 4


class TestFakeOutboxReader(OutboxReaderContract):
    pytestmark = pytest.mark.unit

    @pytest.fixture(autouse=True)
    def _store(self) -> None:
        self.store = FakeStore()
        self._next_seq = 1

    def reader(self) -> FakeOutboxReader:
        return FakeOutboxReader(self.store)

    def commit_rows(self, rows: Sequence[OutboxRow]) -> list[int]:
        seqs = list(range(self._next_seq, self._next_seq + len(rows)))
        self._next_seq += len(rows)
        # the fake batch unit keeps the event id as a UUID, like the outbox's column
        self.store.outbox.extend(replace(r, seq=s, id=uuid.UUID(r.id))  # type: ignore[arg-type]
                                 for r, s in zip(rows, seqs, strict=True))
        return seqs

    def outbox(self) -> dict[int, str | None]:
        return {r.seq: self.store.outbox_parked.get(r.seq) for r in self.store.outbox}

    def retry(self, seq: int) -> None:
        del self.store.outbox_parked[seq]

    def end_session(self, reader: OutboxReader) -> None:
        assert isinstance(reader, FakeOutboxReader)
        reader.end_session()

    def release_lead(self, reader: OutboxReader) -> None:
        self.store.relay_lock = None

    def fail_parking(self, reader: OutboxReader) -> None:
        assert isinstance(reader, FakeOutboxReader)
        reader.fail_parking()

    def record(self, outcomes: Sequence[Recorded]) -> None:
        now = self.store.clock()
        for o in outcomes:
            cid = uuid.uuid4()
            self.store.processed[cid] = ProcessedCommand(
                command_id=cid, resource_id=uuid.uuid4(), command_type="CREATE",
                outcome=o.outcome, error_code=None, error_message=None, resulting_version=None,
                duplicate_deliveries=0, correlation_id=None, source_partition=0,
                source_offset=0, processed_at=now - o.age,
                issued_at=None if o.issued_age is None else now - o.issued_age)

    def recorded(self) -> int:
        return len(self.store.processed)


class TestPostgresOutboxReader(OutboxReaderContract):
    pytestmark = pytest.mark.integration

    @pytest.fixture(autouse=True)
    def _database(self, database_url: str) -> Iterator[None]:
        self.url = database_url
        self.lock_key = uuid.uuid4().int % 2**31
        self.db = psycopg.connect(database_url, autocommit=True)
        try:
            yield
        finally:
            self.db.close()

    def reader(self) -> PostgresOutboxReader:
        return PostgresOutboxReader(self.url, self.lock_key)

    def commit_rows(self, rows: Sequence[OutboxRow]) -> list[int]:
        with self.db.transaction():
            return [self.db.execute(
                "INSERT INTO outbox (id, aggregatetype, aggregateid, type, topic, payload, "
                "occurred_at, traceparent) VALUES (%s, 'resource', %s, %s, %s, %s, %s, %s) "
                "RETURNING seq", (r.id, r.aggregateid, r.type, r.topic, r.payload,
                                  r.occurred_at, r.traceparent)).fetchone()[0]  # type: ignore[index]
                for r in rows]

    def outbox(self) -> dict[int, str | None]:
        return dict(self.db.execute("SELECT seq, parked_reason FROM outbox").fetchall())

    def retry(self, seq: int) -> None:
        self.db.execute("UPDATE outbox SET parked_reason = NULL, parked_at = NULL "
                        "WHERE seq = %s", (seq,))

    def end_session(self, reader: OutboxReader) -> None:
        assert isinstance(reader, PostgresOutboxReader)
        pid = reader.conn.info.backend_pid
        ended = self.db.execute("SELECT pg_terminate_backend(%s, 30000)", (pid,)).fetchone()
        assert ended == (True,)

    def release_lead(self, reader: OutboxReader) -> None:
        assert isinstance(reader, PostgresOutboxReader)
        reader.conn.execute("SELECT pg_advisory_unlock_all()")

    def fail_parking(self, reader: OutboxReader) -> None:
        self.db.execute("""
            CREATE FUNCTION fail_park() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'injected fault' USING ERRCODE = '57P01'; END $$""")
        self.db.execute("CREATE TRIGGER fail_park BEFORE UPDATE ON outbox "
                        "FOR EACH STATEMENT EXECUTE FUNCTION fail_park()")

    def record(self, outcomes: Sequence[Recorded]) -> None:
        with self.db.transaction():
            for o in outcomes:
                self.db.execute(
                    "INSERT INTO processed_commands (command_id, resource_id, command_type, "
                    "outcome, processed_at, issued_at) VALUES (gen_random_uuid(), "
                    "gen_random_uuid(), 'CREATE', %s, now() - %s::interval, now() - %s::interval)",
                    (o.outcome, o.age, o.issued_age))

    def recorded(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM processed_commands"
                                   ).fetchone()[0])  # type: ignore[index]
