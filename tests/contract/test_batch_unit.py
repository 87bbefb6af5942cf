"""One set of tests for every :class:`~phoenix_resources.services.ports.BatchUnit`: the
in-memory fake the unit tests rely on, and ``PostgresBatchUnit``. If the fake drifts from
PostgreSQL, the same assertion fails on one side only.

:class:`BatchUnitContract` holds the tests and asks its subclass for a fresh unit on a shared
database and for a view of what that database has committed (read outside any unit).
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar
from uuid import UUID

import psycopg
import psycopg.sql
import pytest

from phoenix_resources import bootstrap
from phoenix_resources.adapters.postgres.batch_unit import PostgresBatchUnit
from phoenix_resources.config import Settings
from phoenix_resources.domain.commands import (
    AnyCommand,
    CreateResource,
    DeleteResource,
    UpdateResource,
)
from phoenix_resources.domain.events import (
    event_id_for,
    rejection_id_for,
    reuse_rejection_id_for,
)
from phoenix_resources.domain.model import Resource, Status
from phoenix_resources.domain.rules import RejectionCode
from phoenix_resources.errors import ConcurrentModification, DatabaseReadOnly, DatabaseUnavailable
from phoenix_resources.services import ports
from phoenix_resources.services.apply_batch import apply_batch, fold, stored_rows
from phoenix_resources.services.ports import BatchRows, Claim, Incoming, OutboxFormat, ReplayUnit
from phoenix_resources.wire.events import EventCodec
from phoenix_resources.wire.framing import Framing
from tests.fakes import FakeStore

T = TypeVar("T")

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
EVENTS = "contract.events"
REJECTIONS = "contract.rejections"


@dataclass(frozen=True)
class Outcome:
    outcome: str
    error_code: str | None
    resulting_version: int | None
    duplicate_deliveries: int


@dataclass(frozen=True)
class OutboxEntry:
    id: UUID
    aggregateid: str
    type: str
    topic: str


def create(rid: UUID, name: str = "r") -> CreateResource:
    return CreateResource(command_id=uuid.uuid4(), resource_id=rid, issued_at=T0, name=name,
                          config={"k": "v"})


def update(rid: UUID, **kw: object) -> UpdateResource:
    return UpdateResource(command_id=uuid.uuid4(), resource_id=rid, issued_at=T0,
                          **kw)  # type: ignore[arg-type]


def delete(rid: UUID) -> DeleteResource:
    return DeleteResource(command_id=uuid.uuid4(), resource_id=rid, issued_at=T0)


def incoming(commands: Sequence[AnyCommand]) -> list[Incoming]:
    return [Incoming(c, partition=0, offset=i) for i, c in enumerate(commands)]


def claims(commands: Sequence[AnyCommand], repeats: int = 0) -> list[Claim]:
    return [Claim(i, repeats) for i in incoming(commands)]


class BatchUnitContract(abc.ABC):
    """The guarantees ``BatchUnit``'s docstring lists, as tests."""

    format: OutboxFormat
    """The outbox format of this test's units (set by the subclass)."""

    @abc.abstractmethod
    def unit(self) -> ReplayUnit:
        """A new unit on this test's database."""

    @abc.abstractmethod
    def outcomes(self) -> dict[UUID, Outcome]:
        """Committed ``processed_commands``."""

    @abc.abstractmethod
    def outbox(self) -> list[OutboxEntry]:
        """Committed outbox rows in ``seq`` order."""

    @abc.abstractmethod
    def resources(self) -> dict[UUID, Resource]:
        """Committed resources (read without locking)."""

    @abc.abstractmethod
    def outcome_rows(self) -> dict[UUID, tuple[ports.OutcomeRow, datetime]]:
        """Committed ``processed_commands``, every column: the row and its ``processed_at``."""

    @abc.abstractmethod
    def outbox_rows(self) -> list[ports.OutboxEntry]:
        """Committed outbox rows in ``seq`` order, every column but ``seq``."""

    @abc.abstractmethod
    def set_read_only(self, on: bool) -> None:
        """Make the database answer writes like a standby (or a demoted primary) does."""

    def answered(self, action: Callable[[], T]) -> T:
        """``action``'s result; a unit that meets a connection whose server session ended
        (the test ended it) raises DatabaseUnavailable and discards it: try another."""
        for _ in range(4):
            try:
                return action()
            except DatabaseUnavailable as e:
                if isinstance(e, DatabaseReadOnly):
                    raise
        return action()

    # --- helpers ---------------------------------------------------------------------------

    def apply(self, commands: Sequence[AnyCommand], now: datetime = T0) -> set[UUID]:
        """Claim, load, fold, write and commit, as ``apply_batch`` does; return the new ids."""
        with self.unit() as unit:
            known = unit.claim(claims(commands))
            fresh = [c for c in commands if c.command_id not in known]
            states = unit.load({c.resource_id for c in fresh}).states
            unit.write(self.decided(states, fresh, now))
            unit.commit()
        return {c.command_id for c in fresh}

    def decided(self, states: dict[UUID, Resource], commands: Sequence[AnyCommand],
                now: datetime = T0, repeats: int = 0) -> BatchRows:
        """The rows ``apply_batch`` makes when it claimed ``commands`` (each with ``repeats``
        further deliveries)."""
        outcomes, changes = fold(states, incoming(commands), now)
        return stored_rows(outcomes, changes, now, self.format,
                           claimed=claims(commands, repeats))

    def fail_after_write(self, cmd: AnyCommand) -> None:
        with self.unit() as unit:
            assert unit.claim(claims([cmd])) == {}
            unit.write(self.decided({}, [cmd]))
            raise RuntimeError("the batch failed")

    # --- claims ----------------------------------------------------------------------------

    def test_claim_finds_the_ids_committed_units_recorded_and_whose_they_are(self) -> None:
        a, b, c = (create(uuid.uuid4()) for _ in range(3))
        with self.unit() as first:
            assert first.claim(claims([a, b])) == {}
            first.write(self.decided({}, [a, b]))
            first.commit()
        with self.unit() as second:
            # Whose: another command with b's id (for another resource) finds b's.
            reuse = replace(update(uuid.uuid4()), command_id=b.command_id)
            assert second.claim(claims([reuse, c])) == {
                b.command_id: ports.Recorded(b.resource_id, "CREATE")}
            second.write(self.decided({}, [c]))
            second.commit()
        assert set(self.outcomes()) == {a.command_id, b.command_id, c.command_id}

    def test_a_claim_that_is_never_written_records_nothing(self) -> None:
        a = create(uuid.uuid4())
        with self.unit() as unit:
            assert unit.claim(claims([a])) == {}
            unit.commit()
        assert self.outcomes() == {}

    def test_duplicate_deliveries_count_in_batch_repeats_and_later_claims(self) -> None:
        a = create(uuid.uuid4())
        with self.unit() as first:
            first.claim(claims([a], repeats=2))
            first.write(self.decided({}, [a], repeats=2))
            first.commit()
        assert self.outcomes()[a.command_id].duplicate_deliveries == 2
        with self.unit() as second:
            assert second.claim(claims([a], repeats=1)) == {
                a.command_id: ports.Recorded(a.resource_id, "CREATE")}
            second.write(BatchRows(T0, repeated={a.command_id: 2}))
            second.commit()
        assert self.outcomes()[a.command_id].duplicate_deliveries == 4

    def test_a_command_claimed_by_two_units_is_recorded_once(self) -> None:
        """Both find it new; the second to write (after the first committed) is refused."""
        rid = uuid.uuid4()
        a = create(rid)
        with self.unit() as slow:
            assert slow.claim(claims([a])) == {}
            assert self.apply([a]) == {a.command_id}  # a faster unit commits it first

            def finish() -> None:  # PostgreSQL refuses at the write, the fake at commit
                slow.write(self.decided({}, [a]))
                slow.commit()

            with pytest.raises(ConcurrentModification):
                finish()
        assert self.outcomes()[a.command_id].outcome == "applied"
        assert [e.id for e in self.outbox()] == [event_id_for(a.command_id)]

    def test_a_rolled_back_unit_forgets_its_claims_and_writes(self) -> None:
        rid = uuid.uuid4()
        cmd = create(rid)
        with self.unit() as unit:
            assert unit.claim(claims([cmd])) == {}
            unit.write(self.decided({}, [cmd]))
            # no commit
        with pytest.raises(RuntimeError):
            self.fail_after_write(cmd)
        assert (self.outcomes(), self.outbox(), self.resources()) == ({}, [], {})
        assert self.apply([cmd]) == {cmd.command_id}
        assert self.resources()[rid].version == 1

    # --- load --------------------------------------------------------------------------------

    def test_load_returns_committed_rows_including_tombstones(self) -> None:
        live, dead, unknown = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        self.apply([create(live, "live"), create(dead, "dead")])
        self.apply([delete(dead)], now=T0 + timedelta(seconds=1))
        with self.unit() as unit:
            rows = unit.load({live, dead, unknown}).states
        assert set(rows) == {live, dead}
        assert rows[live].name == "live"
        assert rows[live].version == 1
        assert rows[live].config == {"k": "v"}
        assert rows[live].status is Status.PENDING
        assert not rows[live].deleted
        assert rows[dead].deleted
        assert rows[dead].deleted_at == T0 + timedelta(seconds=1)
        assert rows[dead].version == 2
        assert rows == {rid: r for rid, r in self.resources().items() if rid in rows}

    # --- the version guard -------------------------------------------------------------------

    def test_write_refuses_an_update_of_a_row_that_moved_on(self) -> None:
        rid = uuid.uuid4()
        self.apply([create(rid)])
        with self.unit() as unit:
            stale = unit.load({rid}).states
        self.apply([update(rid, name="newer")])  # version 2, committed by someone else
        late = update(rid, name="late")
        with self.unit() as unit:
            unit.claim(claims([late]))
            with pytest.raises(ConcurrentModification):
                unit.write(self.decided(stale, [late]))
        assert self.resources()[rid].name == "newer"
        assert self.resources()[rid].version == 2
        assert late.command_id not in self.outcomes()

    def test_write_refuses_to_insert_a_row_that_exists(self) -> None:
        rid = uuid.uuid4()
        first, second = create(rid, "first"), create(rid, "second")
        self.apply([first])
        with self.unit() as unit:
            unit.claim(claims([second]))
            with pytest.raises(ConcurrentModification):
                unit.write(self.decided({}, [second]))  # as if the row were absent
        assert self.resources()[rid].name == "first"
        assert second.command_id not in self.outcomes()
        assert [e.id for e in self.outbox()] == [event_id_for(first.command_id)]

    # --- visibility --------------------------------------------------------------------------

    def test_state_outcomes_and_outbox_rows_become_visible_together_at_commit(self) -> None:
        rid, missing = uuid.uuid4(), uuid.uuid4()
        made, refused = create(rid), update(missing, name="x")
        with self.unit() as unit:
            unit.claim(claims([made, refused]))
            unit.write(self.decided(unit.load({rid, missing}).states, [made, refused]))
            assert (self.outcomes(), self.outbox(), self.resources()) == ({}, [], {})
            unit.commit()
        assert self.outcomes() == {
            made.command_id: Outcome("applied", None, 1, 0),
            refused.command_id: Outcome("rejected", RejectionCode.NOT_FOUND.value, None, 0)}
        assert self.outbox() == [
            OutboxEntry(event_id_for(made.command_id), str(rid), "ResourceCreated", EVENTS),
            OutboxEntry(rejection_id_for(refused.command_id), str(missing), "CommandRejected",
                        REJECTIONS)]
        assert set(self.resources()) == {rid}

    # --- what is stored is what was given --------------------------------------------------

    def test_outcome_rows_are_stored_as_given(self) -> None:
        made, refused, parked = create(uuid.uuid4()), update(uuid.uuid4()), delete(uuid.uuid4())
        rows = [
            ports.OutcomeRow(made.command_id, made.resource_id, "CREATE", "applied", None, None,
                             1, 3, "correlation-1", 5, 2**40 + 1, T0 - timedelta(microseconds=7)),
            ports.OutcomeRow(refused.command_id, refused.resource_id, "UPDATE", "rejected",
                             "CMD-004", "résumé \\ 'quoted' \"text\"", None, 0, None, 0, 0, T0),
            ports.OutcomeRow(parked.command_id, parked.resource_id, "DELETE", "parked",
                             "PRK-001", "ValueError: refused", None, 0, None, 2, 7, T0)]
        with self.unit() as unit:
            unit.claim(claims([made, refused, parked]))
            unit.write(BatchRows(T0, claimed=rows))
            unit.commit()
        assert self.outcome_rows() == {r.command_id: (r, T0) for r in rows}

        later = T0 + timedelta(hours=1)
        replayed = rows[2]._replace(outcome="applied", error_code=None, error_message=None,
                                    resulting_version=4, duplicate_deliveries=9,
                                    source_offset=99)
        with self.unit() as unit:
            unit.write(BatchRows(later, recorded=[replayed]))
            unit.commit()
        # Only the outcome columns and processed_at are replaced.
        assert self.outcome_rows()[parked.command_id] == (
            rows[2]._replace(outcome="applied", error_code=None, error_message=None,
                             resulting_version=4), later)

    def test_outbox_rows_are_stored_as_given_in_order(self) -> None:
        rid = uuid.uuid4()
        entries = [
            ports.OutboxEntry(uuid.uuid4(), str(rid), "ResourceCreated", EVENTS,
                              b"\xc3\x01\x00payload\x00", T0, TRACEPARENT),
            ports.OutboxEntry(uuid.uuid4(), str(uuid.uuid4()), "CommandRejected", REJECTIONS,
                              bytes(range(256)), T0 + timedelta(microseconds=1), None),
            ports.OutboxEntry(uuid.uuid4(), str(rid), "ResourceUpdated", EVENTS, b"", T0,
                              None)]
        with self.unit() as unit:
            unit.write(BatchRows(T0, outbox=entries[:2]))
            unit.write(BatchRows(T0, outbox=entries[2:]))
            assert self.outbox_rows() == []
            unit.commit()
        assert self.outbox_rows() == entries

    def test_parked_commands_are_stored_as_given(self) -> None:
        rid = uuid.uuid4()
        first = Incoming(create(rid), partition=3, offset=41, traceparent=TRACEPARENT)
        second = Incoming(update(rid, name="n", config={"a": "b"}, status=Status.ACTIVE,
                                 expected_version=1), partition=3, offset=42)
        with self.unit() as unit:
            unit.write(BatchRows(T0, parked=[
                ports.ParkingEntry(first, "PRK-001", "ValueError: refused"),
                ports.ParkingEntry(second, "PRK-002", "waits behind")]))
            unit.commit()
        with self.unit() as unit:
            assert unit.load({rid}).parked == frozenset({rid})
            stored = [(p.incoming, p.code, p.error, p.attempts) for p in unit.lock_queue(rid)]
        assert stored == [(first, "PRK-001", "ValueError: refused", 0),
                          (second, "PRK-002", "waits behind", 0)]

    def test_the_rows_made_for_a_batch_are_stored_exactly(self) -> None:
        """What ``apply_batch`` makes (events and announcements encoded, in decision order)
        reads back unchanged, payload bytes included."""
        rid, missing = uuid.uuid4(), uuid.uuid4()
        commands = [create(rid), update(rid, name="renamed"), update(missing, name="x"),
                    delete(rid)]
        rows = self.decided({}, commands, repeats=1)
        with self.unit() as unit:
            unit.claim(claims(commands, repeats=1))
            unit.write(rows)
            unit.commit()
        assert self.outcome_rows() == {r.command_id: (r, T0) for r in rows.claimed}
        assert self.outbox_rows() == list(rows.outbox)
        assert [e.type for e in rows.outbox] == [
            "ResourceCreated", "ResourceUpdated", "CommandRejected", "ResourceDeleted"]

    # --- an id names one command ----------------------------------------------------------

    def test_a_reused_id_is_refused_and_announced_and_its_first_outcome_stays(self) -> None:
        """Through ``apply_batch``: another command with a recorded id (another resource, or
        another type), or with an id taken earlier in the batch, is refused (CMD-012) and
        announced under an id of its own; nothing records it, and the id's row stays the
        first command's (only a true repeat counts on it)."""
        rid, other = uuid.uuid4(), uuid.uuid4()
        first = create(rid, "first")
        assert self.apply([first]) == {first.command_id}
        (before, at), = self.outcome_rows().values()
        elsewhere = replace(create(other, "elsewhere"), command_id=first.command_id)
        retyped = replace(update(rid, name="renamed"), command_id=first.command_id)
        fresh = create(uuid.uuid4(), "fresh")
        taken = replace(delete(rid), command_id=fresh.command_id)
        later = T0 + timedelta(seconds=1)
        report = apply_batch(self.unit(), incoming([elsewhere, first, retyped, fresh, taken]),
                             later)
        assert (report.applied, report.rejected, report.duplicates) == (1, 3, 1)
        assert report.codes == {RejectionCode.COMMAND_ID_REUSED.value: 3}
        rows = self.outcome_rows()
        assert rows[first.command_id] == (before._replace(duplicate_deliveries=1), at)
        assert rows[fresh.command_id][0].resource_id == fresh.resource_id
        assert set(rows) == {first.command_id, fresh.command_id}
        assert set(self.resources()) == {rid, fresh.resource_id}
        assert self.resources()[rid].name == "first"
        announced = [r for r in self.outbox_rows() if r.topic == REJECTIONS]
        refused = [elsewhere, retyped, taken]
        assert [r.event_id for r in announced] == [
            reuse_rejection_id_for(c.command_id, c.resource_id, c.type.value) for c in refused]
        assert [r.aggregate_id for r in announced] == [str(c.resource_id) for c in refused]
        codec = EventCodec(Framing())
        decoded = [codec.decode_rejection(r.payload) for r in announced]
        assert [(d.command_id, d.command_type, d.code) for d in decoded] == [
            (c.command_id, c.type, "CMD-012") for c in refused]
        assert f"already names the CREATE of resource {rid}" in decoded[0].message

    # --- the parking lot ---------------------------------------------------------------------

    def park(self, commands: Sequence[AnyCommand]) -> None:
        """Claim the commands and park the first as failed (PRK-001), the rest behind it."""
        with self.unit() as unit:
            unit.claim(claims(commands))
            snapshot = unit.load({c.resource_id for c in commands})
            failed = {commands[0].command_id: "ValueError: refused"}
            outcomes, changes = fold(snapshot.states, incoming(commands), T0,
                                     parked=snapshot.parked, failed=failed)
            unit.write(stored_rows(outcomes, changes, T0, self.format,
                                   claimed=claims(commands)))
            unit.commit()

    def test_parked_commands_wait_in_order_and_leave_the_lot_when_unparked(self) -> None:
        rid, other = uuid.uuid4(), uuid.uuid4()
        first, second = create(rid), update(rid, name="later")
        self.park([first, second])
        assert {c: o.outcome for c, o in self.outcomes().items()} == {
            first.command_id: "parked", second.command_id: "parked"}
        assert self.outcomes()[second.command_id].error_code == "PRK-002"
        assert self.outbox() == []
        with self.unit() as unit:
            assert unit.load({rid, other}).parked == frozenset({rid})
            queue = unit.lock_queue(rid)
            assert [p.incoming.command.command_id for p in queue] == [
                first.command_id, second.command_id]
            assert [p.code for p in queue] == ["PRK-001", "PRK-002"]
            assert queue[1].incoming.command == second
            unit.unpark(rid, [first.command_id])
            unit.commit()
        with self.unit() as unit:
            assert unit.load({rid}).parked == frozenset({rid})  # the second still waits
            assert [p.incoming.command.command_id for p in unit.lock_queue(rid)] == [
                second.command_id]
            unit.unpark(rid, [second.command_id])
            unit.commit()
        with self.unit() as unit:
            assert unit.load({rid}).parked == frozenset()
            assert unit.lock_queue(rid) == []

    def test_a_read_only_database_is_told_apart_and_the_unit_recovers_with_it(self) -> None:
        """``check_writable`` and every write answer DatabaseReadOnly (waited out, never
        charged to a command); once writable again, the next units work."""

        def check() -> None:
            with self.unit() as unit:
                unit.check_writable()

        check()
        self.set_read_only(True)
        with pytest.raises(DatabaseReadOnly):
            self.answered(check)
        command = create(uuid.uuid4())
        with pytest.raises(DatabaseReadOnly):
            self.answered(lambda: self.apply([command]))
        assert command.command_id not in self.outcomes()
        self.set_read_only(False)
        self.answered(check)
        assert self.answered(lambda: self.apply([command])) == {command.command_id}

    def test_a_failed_replay_attempt_is_counted_on_the_parked_command(self) -> None:
        rid = uuid.uuid4()
        command = create(rid)
        self.park([command])
        with self.unit() as unit:
            unit.note_attempt(command.command_id, "still refused")
            unit.commit()
        with self.unit() as unit:
            assert unit.lock_queue(rid)[0].attempts == 1


class TestFakeBatchUnit(BatchUnitContract):
    pytestmark = pytest.mark.unit

    @pytest.fixture(autouse=True)
    def _store(self) -> None:
        self.store = FakeStore()
        self.format = self.unit().outbox_format

    def unit(self) -> ReplayUnit:
        return self.store.unit(events_topic=EVENTS, rejections_topic=REJECTIONS)

    def set_read_only(self, on: bool) -> None:
        self.store.writable = not on

    def outcomes(self) -> dict[UUID, Outcome]:
        return {cid: Outcome(r.outcome, r.error_code, r.resulting_version,
                             r.duplicate_deliveries)
                for cid, r in self.store.processed.items()}

    def outbox(self) -> list[OutboxEntry]:
        return [OutboxEntry(r.id, r.aggregateid, r.type, r.topic)
                for r in sorted(self.store.outbox, key=lambda r: r.seq)]

    def resources(self) -> dict[UUID, Resource]:
        return dict(self.store.resources)

    def outcome_rows(self) -> dict[UUID, tuple[ports.OutcomeRow, datetime]]:
        return {cid: (ports.OutcomeRow(
                    r.command_id, r.resource_id, r.command_type, r.outcome, r.error_code,
                    r.error_message, r.resulting_version, r.duplicate_deliveries,
                    r.correlation_id, r.source_partition, r.source_offset, r.issued_at),
                      r.processed_at)
                for cid, r in self.store.processed.items()}

    def outbox_rows(self) -> list[ports.OutboxEntry]:
        return [ports.OutboxEntry(r.id, r.aggregateid, r.type, r.topic, r.payload,
                                  r.occurred_at, r.traceparent)
                for r in sorted(self.store.outbox, key=lambda r: r.seq)]


class TestPostgresBatchUnit(BatchUnitContract):
    pytestmark = pytest.mark.integration

    @pytest.fixture(autouse=True)
    def _database(self, database_url: str) -> Iterator[None]:
        settings = Settings(database_url=database_url, events_topic=EVENTS,
                            rejections_topic=REJECTIONS)
        self.format = OutboxFormat(bootstrap.event_codec(settings), EVENTS, REJECTIONS)
        self.pool = bootstrap.db_pool(settings, min_size=1, max_size=2, name="contract")
        self.pool.open(wait=True)
        self.reader = psycopg.connect(database_url, autocommit=True)
        try:
            yield
        finally:
            self.reader.close()
            self.pool.close()

    def unit(self) -> ReplayUnit:
        return PostgresBatchUnit(self.pool, self.format)

    def set_read_only(self, on: bool) -> None:
        """For new sessions of this test's database; the pool's are ended, as a demotion
        (a restart of the old primary) ends them."""
        name = self.reader.info.dbname
        self.reader.execute(psycopg.sql.SQL(
            "ALTER DATABASE {} SET default_transaction_read_only = {}").format(
                psycopg.sql.Identifier(name), psycopg.sql.SQL("on" if on else "off")))
        self.reader.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))

    def outcomes(self) -> dict[UUID, Outcome]:
        rows = self.reader.execute(
            "SELECT command_id, outcome, error_code, resulting_version, duplicate_deliveries "
            "FROM processed_commands").fetchall()
        return {r[0]: Outcome(*r[1:]) for r in rows}

    def outbox(self) -> list[OutboxEntry]:
        rows = self.reader.execute(
            "SELECT id, aggregateid, type, topic FROM outbox ORDER BY seq").fetchall()
        return [OutboxEntry(*r) for r in rows]

    def resources(self) -> dict[UUID, Resource]:
        rows = self.reader.execute(
            "SELECT id, name, config, status, version, created_at, updated_at, "
            "last_command_id, deleted_at FROM resources").fetchall()
        return {r[0]: Resource(id=r[0], name=r[1], config=r[2], status=Status(r[3]),
                               version=r[4], created_at=r[5], updated_at=r[6],
                               last_command_id=r[7], deleted_at=r[8]) for r in rows}

    def outcome_rows(self) -> dict[UUID, tuple[ports.OutcomeRow, datetime]]:
        rows = self.reader.execute(
            "SELECT command_id, resource_id, command_type, outcome, error_code, error_message, "
            "resulting_version, duplicate_deliveries, correlation_id, source_partition, "
            "source_offset, issued_at, processed_at FROM processed_commands").fetchall()
        return {r[0]: (ports.OutcomeRow(*r[:-1]), r[-1]) for r in rows}

    def outbox_rows(self) -> list[ports.OutboxEntry]:
        rows = self.reader.execute(
            "SELECT id, aggregateid, type, topic, payload, occurred_at, traceparent "
            "FROM outbox ORDER BY seq").fetchall()
        return [ports.OutboxEntry(*r) for r in rows]
