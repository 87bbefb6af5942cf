"""Static membership: a worker killed and restarted under the same ``PHOENIX_GROUP_INSTANCE_ID``
within the session timeout is back at once — nobody waits for the dead member's eviction —
and the other worker loses no partition (real worker processes and broker)."""

from __future__ import annotations

import time

import pytest

from phoenix_resources.config import Settings
from phoenix_resources.soak.publish import Publisher
from phoenix_resources.soak.workload import generate
from tests.support.pipeline import outcomes, wait_until
from tests.support.processes import Process

pytestmark = pytest.mark.e2e

ASSIGNED, REVOKED = "partitions assigned", "partitions revoked"
SESSION_MS = 60_000
"""Long: a dynamic member's partitions would wait this long for the dead one to be evicted;
a static member's come back on its rejoin."""


def test_a_worker_restarted_under_its_instance_id_causes_no_rebalance(
        settings: Settings, database_url: str) -> None:
    static = settings.model_copy(update={
        "kafka_consumer_options": {"session.timeout.ms": SESSION_MS}})
    a = static.model_copy(update={"group_instance_id": "worker-a"})
    b = static.model_copy(update={"group_instance_id": "worker-b"})
    first, other = Process("worker", a), Process("worker", b)
    again: Process | None = None
    try:
        wait_until(lambda: ASSIGNED in first.output() and ASSIGNED in other.output(), 60,
                   "both workers own partitions")
        wait_until(lambda: _settled(other) and _settled(first), 60, "the group settled")
        mark = len(other.output())
        first.kill()
        again = Process("worker", a)  # within the session: the same member
        workload = generate(41, resources=30, commands_each=4, poison=0)
        Publisher(static).send(workload.records)
        # Well inside the session timeout: nobody waited for the dead member's eviction.
        wait_until(lambda: len(outcomes(database_url)) == len(workload.commands),
                   SESSION_MS / 2000, "every command applied, the restarted worker's "
                   "partitions included, before the old session could expire")
        assert ASSIGNED in again.output()
        later = other.output()[mark:]
        # The other worker loses nothing. (When the restarted worker was the group's leader,
        # the broker runs one round so that it can assign again; a fresh leader does not know
        # what it owned, so the sticky assignor may hand one of its partitions to the other
        # worker — a gain, never a revocation.)
        assert REVOKED not in later, f"the other worker lost partitions:\n{later}"
    finally:
        for p in (other, again):
            if p is not None:
                p.terminate()


def _settled(worker: Process) -> bool:
    """Nothing logged by the worker for a second: the join's rebalances are over."""
    before = worker.output()
    time.sleep(1.0)
    return worker.output() == before
