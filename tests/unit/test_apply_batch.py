"""The use case on the fake unit: repeats, duplicates, folding, rejections, races."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from uuid import UUID

import pytest

from phoenix_resources.domain.commands import AnyCommand, CreateResource, UpdateResource
from phoenix_resources.domain.decide import Applied, Rejected, rejection_event
from phoenix_resources.domain.events import (
    CommandRejected,
    ResourceChanged,
    ResourceCreated,
    event_id_for,
    rejection_id_for,
)
from phoenix_resources.domain.model import Resource, Status
from phoenix_resources.domain.rules import RejectionCode
from phoenix_resources.errors import ConcurrentModification
from phoenix_resources.services.apply_batch import apply_batch, fold, split_repeats, stored_rows
from phoenix_resources.services.ports import (
    BatchRows,
    Claim,
    Incoming,
    OutboxEntry,
    OutboxFormat,
    OutcomeRow,
    ParkingEntry,
    Snapshot,
)
from tests.fakes import FakeBatchUnit, FakeStore

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def create(rid: UUID, name: str = "r", **kw: object) -> CreateResource:
    return CreateResource(command_id=uuid.uuid4(), resource_id=rid, issued_at=T0, name=name,
                          config={}, **kw)  # type: ignore[arg-type]


def update(rid: UUID, **kw: object) -> UpdateResource:
    return UpdateResource(command_id=uuid.uuid4(), resource_id=rid, issued_at=T0,
                          **kw)  # type: ignore[arg-type]


def batch(*commands: AnyCommand, partition: int = 0) -> list[Incoming]:
    return [Incoming(c, partition, offset) for offset, c in enumerate(commands)]


# --- split_repeats -------------------------------------------------------------------------


def test_split_repeats_keeps_the_first_delivery_and_counts_the_rest() -> None:
    a, b, c = (create(uuid.uuid4()) for _ in range(3))
    items = batch(a, b, a, c, a)
    claims = split_repeats(items)
    assert [cl.incoming for cl in claims] == [items[0], items[1], items[3]]
    assert [cl.repeats for cl in claims] == [2, 0, 0]


def test_split_repeats_keeps_deliveries_reusing_an_id_apart_in_order() -> None:
    """A repeat is the same command: the same id, resource and type (other fields may
    differ); a delivery of the id for another resource or of another type reuses it."""
    rid = uuid.uuid4()
    first = create(rid, "a")
    elsewhere = replace(create(uuid.uuid4()), command_id=first.command_id)
    retyped = replace(update(rid), command_id=first.command_id)
    renamed = replace(first, name="b")
    items = batch(first, elsewhere, renamed, retyped, elsewhere)
    (claim,) = split_repeats(items)
    assert (claim.incoming, claim.repeats) == (items[0], 1)
    assert claim.reused == (items[1], items[3], items[4])


def test_a_refusal_for_a_reused_id_has_an_id_of_its_own() -> None:
    """``uuid5(rejection namespace, "<command_id>/<resource_id>/<TYPE>")``: never the id's
    own refusal's, the same for every delivery of the same reuse, another for another."""
    first = create(uuid.uuid4())
    reuse = replace(create(uuid.uuid4()), command_id=first.command_id)
    code = RejectionCode.COMMAND_ID_REUSED
    refusal = rejection_event(Rejected(reuse, code, "m"), T0)
    assert refusal.rejection_id == uuid.uuid5(
        UUID("0b8e7c4a-91d2-4f3e-8a0c-5c2d7e9f1b33"),
        f"{first.command_id}/{reuse.resource_id}/CREATE")
    assert refusal.rejection_id != rejection_id_for(first.command_id)
    assert refusal.rejection_id == rejection_event(Rejected(reuse, code, "n"), T0).rejection_id
    retyped = replace(update(reuse.resource_id), command_id=first.command_id)
    assert refusal.rejection_id != rejection_event(Rejected(retyped, code, "m"),
                                                   T0).rejection_id
    assert rejection_event(Rejected(reuse, RejectionCode.NOT_FOUND, "m"),
                           T0).rejection_id == rejection_id_for(first.command_id)


# --- fold ----------------------------------------------------------------------------------


def test_fold_applies_one_resources_commands_in_order_into_one_net_change() -> None:
    rid = uuid.uuid4()
    items = batch(create(rid, "a"), update(rid, name="b"), update(rid, status=Status.ACTIVE))
    decisions, changes = fold({}, items, T0)
    assert [type(d) for _, d in decisions] == [Applied, Applied, Applied]
    assert [d.state.version for _, d in decisions if isinstance(d, Applied)] == [1, 2, 3]
    assert changes[rid].before is None
    assert (changes[rid].after.name, changes[rid].after.status,
            changes[rid].after.version) == ("b", Status.ACTIVE, 3)


def test_fold_starts_from_the_loaded_state_and_sees_earlier_decisions() -> None:
    rid = uuid.uuid4()
    loaded = Resource(id=rid, name="a", config={}, status=Status.PENDING, version=4,
                      created_at=T0, updated_at=T0, last_command_id=uuid.uuid4())
    items = batch(update(rid, name="b", expected_version=4),
                  update(rid, name="c", expected_version=4))
    decisions, changes = fold({rid: loaded}, items, T0)
    assert isinstance(decisions[0][1], Applied)
    assert isinstance(decisions[1][1], Rejected)
    assert decisions[1][1].code is RejectionCode.VERSION_CONFLICT
    assert changes[rid].before == loaded
    assert (changes[rid].after.name, changes[rid].after.version) == ("b", 5)


def test_fold_records_no_change_for_rejections_and_unchanged_updates() -> None:
    rid = uuid.uuid4()
    loaded = Resource(id=rid, name="a", config={}, status=Status.ACTIVE, version=1,
                      created_at=T0, updated_at=T0, last_command_id=uuid.uuid4())
    items = batch(update(rid, name="a"), update(rid, status=Status.PENDING))
    decisions, changes = fold({rid: loaded}, items, T0)
    unchanged, refused = decisions[0][1], decisions[1][1]
    assert isinstance(unchanged, Applied)
    assert unchanged.event is None
    assert isinstance(refused, Rejected)
    assert refused.code is RejectionCode.INVALID_TRANSITION
    assert changes == {}


# --- stored_rows ---------------------------------------------------------------------------

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class Encoder:
    """Encodes to a marker and keeps what it was given."""

    def __init__(self) -> None:
        self.given: list[ResourceChanged | CommandRejected] = []

    def encode_event(self, event: ResourceChanged) -> bytes:
        self.given.append(event)
        return b"event %d" % len(self.given)

    def encode_rejection(self, rejection: CommandRejected) -> bytes:
        self.given.append(rejection)
        return b"rejection %d" % len(self.given)


def applied_event(decision: object) -> ResourceChanged | None:
    assert isinstance(decision, Applied)
    return decision.event


def test_stored_rows_make_every_row_of_a_claimed_batch_in_decision_order() -> None:
    rid, missing, stuck = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    made = create(rid, correlation_id="corr-1")
    refused = update(missing, name="x")
    failing, behind = create(stuck), update(stuck, name="later")
    items = [Incoming(made, 2, 10, TRACEPARENT), Incoming(refused, 2, 11),
             Incoming(failing, 2, 12), Incoming(behind, 2, 13)]
    decided, changes = fold({}, items, T0, failed={failing.command_id: "boom"})
    encoder = Encoder()
    rows = stored_rows(decided, changes, T0, OutboxFormat(encoder, "ev", "rej"),
                       claimed=[Claim(items[0], 2), *(Claim(i, 0) for i in items[1:])],
                       repeated={uuid.UUID(int=7): 3})

    created = changes[rid].after
    event, rejection = encoder.given
    assert isinstance(event, ResourceCreated)
    assert event == applied_event(decided[0][1])
    assert rejection == CommandRejected(
        rejection_id=rejection_id_for(refused.command_id), command_id=refused.command_id,
        command_type=refused.type, resource_id=missing, code="CMD-004",
        message=f"resource {missing} does not exist", rejected_at=T0, correlation_id=None)
    assert rows == BatchRows(
        processed_at=T0,
        claimed=[
            OutcomeRow(made.command_id, rid, "CREATE", "applied", None, None, 1, 2, "corr-1",
                       2, 10, T0),
            OutcomeRow(refused.command_id, missing, "UPDATE", "rejected", "CMD-004",
                       f"resource {missing} does not exist", None, 0, None, 2, 11, T0),
            OutcomeRow(failing.command_id, stuck, "CREATE", "parked", "PRK-001", "boom", None,
                       0, None, 2, 12, T0),
            OutcomeRow(behind.command_id, stuck, "UPDATE", "parked", "PRK-002",
                       f"waits behind parked commands of resource {stuck}", None, 0, None, 2,
                       13, T0)],
        repeated={uuid.UUID(int=7): 3},
        created=[created], changed=[],
        parked=[ParkingEntry(items[2], "PRK-001", "boom"),
                ParkingEntry(items[3], "PRK-002",
                             f"waits behind parked commands of resource {stuck}")],
        outbox=[OutboxEntry(event_id_for(made.command_id), str(rid), "ResourceCreated", "ev",
                            b"event 1", T0, TRACEPARENT),
                OutboxEntry(rejection_id_for(refused.command_id), str(missing),
                            "CommandRejected", "rej", b"rejection 2", T0, None)])


def test_stored_rows_of_recorded_commands_replace_their_outcome() -> None:
    rid = uuid.uuid4()
    loaded = Resource(id=rid, name="a", config={}, status=Status.PENDING, version=3,
                      created_at=T0, updated_at=T0, last_command_id=uuid.uuid4())
    renamed = update(rid, name="b")
    decided, changes = fold({rid: loaded}, batch(renamed), T0)
    rows = stored_rows(decided, changes, T0, OutboxFormat(Encoder(), "ev", "rej"))
    assert rows.claimed == ()
    assert rows.recorded == [OutcomeRow(renamed.command_id, rid, "UPDATE", "applied", None,
                                        None, 4, 0, None, 0, 0, T0)]
    assert rows.created == []
    assert rows.changed == [changes[rid]]
    assert [e.type for e in rows.outbox] == ["ResourceUpdated"]


# --- apply_batch ---------------------------------------------------------------------------


def test_in_batch_repeats_are_applied_once_and_counted() -> None:
    store = FakeStore()
    rid = uuid.uuid4()
    made, other = create(rid), create(uuid.uuid4())
    report = apply_batch(store.unit(), batch(made, made, other, made), T0)
    assert (report.applied, report.duplicates, report.events) == (2, 2, 2)
    assert store.processed[made.command_id].duplicate_deliveries == 2
    assert [r.id for r in store.outbox] == [event_id_for(made.command_id),
                                            event_id_for(other.command_id)]
    assert store.resources[rid].version == 1


def test_commands_already_committed_are_duplicates_and_change_nothing() -> None:
    store = FakeStore()
    rid = uuid.uuid4()
    made = create(rid)
    renamed = update(rid, name="renamed")
    apply_batch(store.unit(), batch(made, renamed), T0)
    before = (dict(store.resources), list(store.outbox))
    later = update(rid, status=Status.ACTIVE)
    report = apply_batch(store.unit(), batch(made, renamed, later), T0)
    assert report.duplicates == 2
    assert set(report.duplicate_ids) == {made.command_id, renamed.command_id}
    assert (report.applied, report.events) == (1, 1)
    assert store.resources[rid].version == 3  # the redelivered update was not applied twice
    assert store.outbox[:2] == before[1]
    assert [r.id for r in store.outbox[2:]] == [event_id_for(later.command_id)]
    assert store.processed[renamed.command_id].duplicate_deliveries == 1


def test_a_rejection_is_recorded_and_announced_but_changes_no_state() -> None:
    store = FakeStore()
    missing = uuid.uuid4()
    refused = update(missing, name="x")
    report = apply_batch(store.unit(), batch(refused), T0)
    assert (report.rejected, report.applied, report.events) == (1, 0, 0)
    row = store.processed[refused.command_id]
    assert (row.outcome, row.error_code) == ("rejected", RejectionCode.NOT_FOUND.value)
    assert [(r.id, r.type, r.topic) for r in store.outbox] == [
        (rejection_id_for(refused.command_id), "CommandRejected", "rejections")]
    assert store.resources == {}


def test_an_unchanged_update_is_applied_without_an_event() -> None:
    store = FakeStore()
    rid = uuid.uuid4()
    apply_batch(store.unit(), batch(create(rid, "same")), T0)
    same = update(rid, name="same")
    report = apply_batch(store.unit(), batch(same), T0)
    assert (report.unchanged, report.applied, report.events) == (1, 0, 0)
    row = store.processed[same.command_id]
    assert (row.outcome, row.resulting_version) == ("applied", 1)
    assert len(store.outbox) == 1
    assert store.resources[rid].version == 1


class RacedUnit(FakeBatchUnit):
    """A unit another worker beats: right after our load, a rival commits ``rival``."""

    def __init__(self, store: FakeStore, rival: AnyCommand) -> None:
        super().__init__(store)
        self.rival = rival

    def load(self, resource_ids: set[UUID]) -> Snapshot:
        states = super().load(resource_ids)
        apply_batch(self.store.unit(), batch(self.rival), T0)
        return states


def test_concurrent_modification_propagates_and_nothing_of_the_batch_commits() -> None:
    store = FakeStore()
    rid = uuid.uuid4()
    ours, rivals = create(rid, "ours"), create(rid, "theirs")
    bystander = create(uuid.uuid4())
    with pytest.raises(ConcurrentModification):
        apply_batch(RacedUnit(store, rivals), batch(ours, bystander), T0)
    assert store.resources[rid].name == "theirs"
    assert set(store.processed) == {rivals.command_id}
    assert [r.id for r in store.outbox] == [event_id_for(rivals.command_id)]
    assert bystander.resource_id not in store.resources
    # the retry (a fresh unit) sees the rival's row and rejects ours
    report = apply_batch(store.unit(), batch(ours, bystander), T0)
    assert (report.applied, report.rejected) == (1, 1)
