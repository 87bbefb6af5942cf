"""A change and its event commit together or not at all (real worker, relay, broker, database).

A trigger on ``outbox`` fails some of the worker's outbox inserts — after the same
transaction has already written the resources. If the outbox insert ever ran in a transaction
of its own, the state would commit without its event (and the redelivery, a duplicate, would
never write it): the checks below would find a version with no event.
"""

from __future__ import annotations

import pytest

from phoenix_resources.config import Settings
from phoenix_resources.soak import check as soak_check
from phoenix_resources.soak.publish import Publisher
from phoenix_resources.soak.workload import generate
from tests.support.faults import fail_every, injected_faults
from tests.support.pipeline import Pipeline, outcomes, scalar, wait_until

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("sqlstate", ["P0001", "40001"],
                         ids=["plain-error-isolated", "serialization-failure-retried"])
def test_a_failing_outbox_insert_takes_the_state_change_with_it(
        settings: Settings, database_url: str, sqlstate: str) -> None:
    workload = generate(11, resources=40, commands_each=6, poison=2)
    fail_every(database_url, "outbox", every=3, times=4, sqlstate=sqlstate)
    small = settings.model_copy(update={"batch_size": 25})
    Publisher(small).send(workload.records)
    with Pipeline(small):
        wait_until(lambda: len(outcomes(database_url)) == len(workload.commands), 90,
                   "every command has an outcome")
        wait_until(lambda: scalar(database_url, "SELECT count(*) FROM outbox") == 0, 60,
                   "the relay drained the outbox")
    assert injected_faults(database_url, "outbox") >= 12, "the faults were not all injected"
    seen = soak_check.observe(small, database_url)
    failed = [c for c in soak_check.check(workload, seen) if not c.ok]
    assert failed == []
    # Nothing was parked: each failure was transient or isolated, then applied whole.
    assert {o for o, _, _ in seen.outcomes.values()} <= {"applied", "rejected"}
