"""Offsets follow the database (and the dead letters): a worker killed in the window loses
nothing. Real worker processes (kill -9), the real broker and PostgreSQL.

The windows are made wide and exact on the PostgreSQL side or the broker side, never by
sleeping: the worker's transaction is frozen inside PostgreSQL (a trigger waits for a lock
the test holds), or its dead letters wait for a DLQ topic that does not exist yet. Offsets
are auto-committed every 100 ms here, so a worker that had *stored* an offset early (automatic
offset storing, storing before the commit or before the DLQ acknowledgement) would have it
committed long before the kill — and the restarted worker would skip those commands.
"""

from __future__ import annotations

import contextlib

import pytest

from phoenix_resources.config import Settings
from phoenix_resources.soak import check as soak_check
from phoenix_resources.soak.publish import Publisher
from phoenix_resources.soak.workload import generate
from tests.support.faults import committed_offsets, held_writers, hold_transactions
from tests.support.kafka import create_topics
from tests.support.pipeline import Pipeline, outcomes, scalar, wait_until
from tests.support.processes import Process

pytestmark = pytest.mark.e2e

EAGER_COMMITS = {"auto.commit.interval.ms": "100",
                 # the killed worker leaves the group within 6 s, not librdkafka's 45 s
                 "session.timeout.ms": "6000",
                 # an absent DLQ topic is known for absent within a second, not 30 s
                 "topic.metadata.propagation.max.ms": "1000"}
WATCH_S = 3.0
"""How long the test watches for an early commit before it kills (30 auto-commit rounds)."""


def _no_commit_within(settings: Settings, partitions: int) -> dict[int, int]:
    """The committed offsets after watching for a commit for up to WATCH_S (returns as soon
    as one appears, so a correct worker costs WATCH_S and a broken one less)."""
    with contextlib.suppress(AssertionError):
        wait_until(lambda: max(committed_offsets(settings, partitions).values()) >= 0,
                   WATCH_S, "an offset commit")
    return committed_offsets(settings, partitions)


def _finish_and_check(settings: Settings, database_url: str, workload) -> None:  # type: ignore[no-untyped-def]
    with Pipeline(settings):
        wait_until(lambda: len(outcomes(database_url)) == len(workload.commands), 90,
                   "every command has an outcome after the restart")
        wait_until(lambda: scalar(database_url, "SELECT count(*) FROM outbox") == 0, 60,
                   "the relay drained the outbox")
        wait_until(lambda: len(soak_check.read_to_end(settings.kafka_common(),
                                                      settings.dlq_topic))
                   >= len(workload.poison_keys), 60, "the poison dead-lettered")
    failed = [c for c in soak_check.check(workload, soak_check.observe(settings, database_url))
              if not c.ok]
    assert failed == []


def test_worker_killed_inside_its_transaction_commits_no_offset_and_loses_nothing(
        settings: Settings, database_url: str) -> None:
    eager = settings.model_copy(update={"kafka_options": EAGER_COMMITS})
    workload = generate(21, resources=30, commands_each=6, poison=2)
    Publisher(eager).send(workload.records)
    with hold_transactions(database_url, "processed_commands"):
        worker = Process("worker", eager)
        try:
            wait_until(lambda: held_writers(database_url) >= 1, 60,
                       "the worker's transaction frozen inside PostgreSQL")
            committed = _no_commit_within(eager, 3)
        finally:
            worker.kill()
    assert scalar(database_url, "SELECT count(*) FROM processed_commands") == 0
    assert max(committed.values()) < 0, f"offsets committed before the database: {committed}"
    _finish_and_check(eager, database_url, workload)


def test_dead_letters_are_acknowledged_before_offsets_are_stored(
        settings: Settings, database_url: str) -> None:
    """The DLQ topic is missing: the batch's database work commits, its dead letters wait.
    Killed there, the restarted worker must meet the poison again and dead-letter it."""
    eager = settings.model_copy(update={"kafka_options": EAGER_COMMITS,
                                        "dlq_topic": f"{settings.dlq_topic}.late"})
    workload = generate(22, resources=30, commands_each=6, poison=3)
    Publisher(eager).send(workload.records)
    worker = Process("worker", eager)
    try:
        worker.wait_for_log("dlq_blocked", timeout=90)
        assert outcomes(database_url), "the batch's database work committed"
        committed = _no_commit_within(eager, 3)
    finally:
        worker.kill()
    # Each poison's partition waits for its dead letter: its offset may reach the first
    # poison record, never pass it (the other partitions move on).
    first_poison = _first_offsets_of(eager, workload.poison_keys)
    early = {p: o for p, o in committed.items() if p in first_poison and o > first_poison[p]}
    assert early == {}, f"offsets past undelivered dead letters were committed: {committed}"
    create_topics(eager.kafka_bootstrap_servers, {eager.dlq_topic: 1})
    _finish_and_check(eager, database_url, workload)


def _first_offsets_of(settings: Settings, keys: set[bytes]) -> dict[int, int]:
    """Per partition, the offset of the first record with one of these keys (read back, not
    computed)."""
    first: dict[int, int] = {}
    for m in soak_check.read_to_end(settings.kafka_common(), settings.commands_topic):
        if m.key() in keys:
            partition, offset = m.partition() or 0, m.offset() or 0
            first[partition] = min(offset, first.get(partition, offset))
    return first
