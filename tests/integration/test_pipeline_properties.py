"""Property: for any command sequence with repeats, the database equals the pure reference
model, every command has exactly one outcome, and the events replay to the database state."""

from __future__ import annotations

import collections
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from phoenix_resources.config import Settings
from phoenix_resources.domain.commands import AnyCommand
from phoenix_resources.domain.decide import Applied, decide
from phoenix_resources.domain.model import Status
from tests.support.pipeline import (
    Pipeline,
    create,
    delete,
    events,
    outcomes,
    publish,
    resources,
    update,
    wait_until,
)

pytestmark = pytest.mark.integration

OPS = st.lists(st.tuples(
    st.sampled_from(["create", "update", "update", "delete"]),
    st.integers(0, 2),                                   # which resource
    st.sampled_from(["a", "b", "", "x" * 300]),          # name (some invalid)
    st.sampled_from([None, *Status]),                    # status
    st.one_of(st.none(), st.integers(0, 4)),             # expected_version
    st.lists(st.integers(0, 40), max_size=2),            # re-deliver this one later, at +n
), min_size=1, max_size=25)


def _commands(ops: list[tuple[Any, ...]]) -> tuple[list[AnyCommand], list[AnyCommand]]:
    """(distinct commands in order, the delivery sequence with repeats inserted)."""
    rids = [uuid.uuid4() for _ in range(3)]
    commands: list[AnyCommand] = []
    for kind, r, name, status, expected, _ in ops:
        if kind == "create":
            commands.append(create(rids[r], name or "", status=status or Status.PENDING,
                                   expected_version=expected))
        elif kind == "update":
            commands.append(update(rids[r], name=name or None, status=status,
                                   expected_version=expected))
        else:
            commands.append(delete(rids[r], expected_version=expected))
    deliveries: list[AnyCommand] = list(commands)
    for i, (*_, repeats) in reversed(list(enumerate(ops))):
        for gap in repeats:
            deliveries.insert(min(len(deliveries), i + 1 + gap), commands[i])
    return commands, deliveries


@pytest.fixture
def pipeline(settings: Settings) -> Any:
    with Pipeline(settings) as p:
        yield p


@hyp_settings(max_examples=12, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
@given(ops=OPS)
def test_database_and_event_stream_equal_the_reference_model(
        ops: list[tuple[Any, ...]], settings: Settings, database_url: str,
        pipeline: Pipeline) -> None:
    commands, deliveries = _commands(ops)
    # Reference: first delivery of each command id, in delivery order.
    state: dict[uuid.UUID, Any] = {}
    expected_outcome: dict[uuid.UUID, str] = {}
    expected_events = 0
    now = datetime.now(UTC)
    for c in deliveries:
        if c.command_id in expected_outcome:
            continue
        d = decide(state.get(c.resource_id), c, now)
        expected_outcome[c.command_id] = "applied" if isinstance(d, Applied) else "rejected"
        if isinstance(d, Applied):
            state[c.resource_id] = d.state
            expected_events += d.event is not None
    repeats = collections.Counter(c.command_id for c in deliveries)
    mine = {c.resource_id for c in commands}

    publish(settings, deliveries)
    wait_until(lambda: all(outcomes(database_url).get(cid, ("", None, -1))[2] == n - 1
                           for cid, n in repeats.items()), 60,
               "every command and every repeat recorded")

    recorded = outcomes(database_url)
    assert {cid: recorded[cid][0] for cid in expected_outcome} == expected_outcome
    rows = {rid: row for rid, row in resources(database_url).items() if rid in mine}
    assert {rid: (s.name, s.status.value, s.version, s.deleted) for rid, s in state.items()} \
        == {rid: (r["name"], r["status"], r["version"], r["deleted_at"] is not None)
            for rid, r in rows.items()}

    def my_events() -> list[Any]:
        return [r for r in events(settings, idle=0.3) if r.event.resource_id in mine]

    wait_until(lambda: len({r.event.event_id for r in my_events()}) == expected_events, 30,
               "the example's events published")
    replay: dict[uuid.UUID, list[Any]] = collections.defaultdict(list)
    by_version: dict[tuple[uuid.UUID, int], uuid.UUID] = {}
    for r in my_events():
        e = r.event
        assert by_version.setdefault((e.resource_id, e.version), e.event_id) == e.event_id
        if not replay[e.resource_id] or e.version > replay[e.resource_id][-1].version:
            replay[e.resource_id].append(e)
    for rid, evs in replay.items():
        assert [e.version for e in evs] == list(range(1, len(evs) + 1))
        last, row = evs[-1], rows[rid]
        assert last.version == row["version"]
        if last.resource is None:
            assert row["deleted_at"] is not None
        else:
            assert (last.resource.name, last.resource.status.value,
                    dict(last.resource.config)) == (row["name"], row["status"], row["config"])
