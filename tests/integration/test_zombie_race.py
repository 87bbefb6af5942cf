"""Two writers on one resource at once — a zombie worker still applying a batch after a
rebalance handed its partition on, or a resource whose commands sit in two partitions after
the topic grew — keep exactly one effect per command. Real PostgreSQL, the real unit of work.

The interleaving is exact: writer A runs its transaction step by step and stops before its
commit, holding what it holds; writer B runs a whole batch on the same resource in a thread;
the test waits until PostgreSQL shows B waiting for a lock, then lets A commit.

* the row lock (``FOR UPDATE`` in the load) makes B wait for A *before* deciding, so B
  decides on A's result and applies at once — without it B decides on the old state;
* the version guard (``WHERE version = <loaded>``) refuses a write decided on a snapshot
  older than the row, whatever let that happen — without it the older decision overwrites;
* a create racing a create of the same new id: the second insert finds the row and the batch
  is redone (and then refused, CMD-003) — never two "created" events.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from phoenix_resources import bootstrap
from phoenix_resources.config import Settings
from phoenix_resources.domain.commands import AnyCommand
from phoenix_resources.domain.decide import Applied, decide
from phoenix_resources.domain.events import event_id_for
from phoenix_resources.errors import ConcurrentModification
from phoenix_resources.services.apply_batch import (
    BatchReport,
    apply_batch,
    fold,
    split_repeats,
    stored_rows,
)
from phoenix_resources.services.ports import Incoming, StateChange
from tests.support.pipeline import create, update, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def parts(settings: Settings) -> Iterator[bootstrap.WorkerParts]:
    p = bootstrap.worker_parts(settings)
    p.pool.open(wait=True)
    yield p
    p.pool.close()


def _incoming(*commands: AnyCommand) -> list[Incoming]:
    return [Incoming(c, 0, i) for i, c in enumerate(commands)]


def _apply(parts: bootstrap.WorkerParts, *commands: AnyCommand) -> BatchReport:
    return apply_batch(parts.unit_factory(), _incoming(*commands), datetime.now(UTC))


def _waiting_for_locks(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                           "current_database() AND wait_event_type = 'Lock'").fetchone()
    return int(row[0]) if row else 0


class _InThread:
    """Runs a batch in a thread; keeps its report or its error."""

    def __init__(self, parts: bootstrap.WorkerParts, *commands: AnyCommand) -> None:
        self.report: BatchReport | None = None
        self.error: BaseException | None = None

        def body() -> None:
            try:
                self.report = _apply(parts, *commands)
            except BaseException as e:
                self.error = e

        self._thread = threading.Thread(target=body, daemon=True)
        self._thread.start()

    def join(self) -> None:
        self._thread.join(30)
        assert not self._thread.is_alive()


def _outbox(url: str) -> list[tuple[str, Any]]:
    with psycopg.connect(url) as conn:
        return [(r[0], r[1]) for r in conn.execute(
            "SELECT type, id FROM outbox ORDER BY seq")]


def _version(url: str, rid: uuid.UUID) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT version FROM resources WHERE id = %s", (rid,)).fetchone()
    assert row is not None
    return int(row[0])


def test_second_writer_waits_for_the_first_and_applies_on_its_result(
        parts: bootstrap.WorkerParts, database_url: str) -> None:
    rid = uuid.uuid4()
    _apply(parts, create(rid, "v1"))
    mine, theirs = update(rid, name="from-a"), update(rid, name="from-b")
    zombie = parts.unit_factory()
    with zombie:  # A: claim, load (locks the row), write — and stop before the commit
        claims = split_repeats(_incoming(mine))
        zombie.claim(claims)
        snapshot = zombie.load({rid})
        now = datetime.now(UTC)
        outcomes, changes = fold(snapshot.states, _incoming(mine), now)
        zombie.write(stored_rows(outcomes, changes, now, zombie.outbox_format, claimed=claims))
        other = _InThread(parts, theirs)  # B: a whole batch on the same resource
        wait_until(lambda: _waiting_for_locks(database_url) >= 1, 30,
                   "the second writer waiting for the first one's lock")
        zombie.commit()
    other.join()
    assert other.error is None, f"the second writer had to be redone: {other.error!r}"
    assert other.report is not None
    assert other.report.applied == 1
    assert _version(database_url, rid) == 3
    assert _outbox(database_url)[1:] == [
        ("ResourceUpdated", event_id_for(mine.command_id)),
        ("ResourceUpdated", event_id_for(theirs.command_id))]


def test_a_write_decided_on_an_older_version_is_refused(
        parts: bootstrap.WorkerParts, database_url: str) -> None:
    rid = uuid.uuid4()
    _apply(parts, create(rid, "v1"))
    stale_unit = parts.unit_factory()
    with stale_unit:
        stale = stale_unit.load({rid}).states[rid]  # version 1, as a zombie last saw it
        stale_unit.commit()
    _apply(parts, update(rid, name="meanwhile"))  # the row is at version 2 now
    late = update(rid, name="late")
    decision = decide(stale, late, datetime.now(UTC))
    assert isinstance(decision, Applied)
    unit = parts.unit_factory()
    with unit:
        claims = split_repeats(_incoming(late))
        unit.claim(claims)
        rows = stored_rows([(_incoming(late)[0], decision)],
                           {rid: StateChange(stale, decision.state)}, datetime.now(UTC),
                           unit.outbox_format, claimed=claims)
        with pytest.raises(ConcurrentModification):
            unit.write(rows)
    assert _version(database_url, rid) == 2
    assert [t for t, _ in _outbox(database_url)] == ["ResourceCreated", "ResourceUpdated"]


def test_two_creates_of_one_new_resource_give_one_created_event(
        parts: bootstrap.WorkerParts, database_url: str) -> None:
    rid = uuid.uuid4()
    first, second = create(rid, "first"), create(rid, "second")
    unit = parts.unit_factory()
    with unit:  # A inserts the row and stops before the commit
        claims = split_repeats(_incoming(first))
        unit.claim(claims)
        snapshot = unit.load({rid})
        assert snapshot.states == {}
        now = datetime.now(UTC)
        outcomes, changes = fold(snapshot.states, _incoming(first), now)
        unit.write(stored_rows(outcomes, changes, now, unit.outbox_format, claimed=claims))
        other = _InThread(parts, second)  # B found no row to lock: it decides "create" too
        wait_until(lambda: _waiting_for_locks(database_url) >= 1, 30,
                   "the second insert waiting for the first one's row")
        unit.commit()
    other.join()
    assert isinstance(other.error, ConcurrentModification)
    retried = _apply(parts, second)  # what the worker does: redo the batch
    assert (retried.applied, retried.rejected) == (0, 1)
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT name, version FROM resources WHERE id = %s",
                           (rid,)).fetchone()
    assert row == ("first", 1)
    assert [t for t, _ in _outbox(database_url)] == ["ResourceCreated", "CommandRejected"]
