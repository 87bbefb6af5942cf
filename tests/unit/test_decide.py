"""The rules of ``decide``: one test per rule, each would fail if the rule broke."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from phoenix_resources.domain.commands import (
    CommandType,
    CreateResource,
    DeleteResource,
    UpdateResource,
)
from phoenix_resources.domain.decide import Applied, Rejected, decide, rejection_event
from phoenix_resources.domain.events import (
    CommandRejected,
    ResourceCreated,
    ResourceDeleted,
    ResourceUpdated,
    rejection_id_for,
)
from phoenix_resources.domain.model import Resource, Status
from phoenix_resources.domain.rules import RejectionCode

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RID = uuid.uuid4()


def create(**kw: object) -> CreateResource:
    args: dict[str, object] = {"command_id": uuid.uuid4(), "resource_id": RID,
                               "issued_at": T0, "name": "r", "config": {}}
    return CreateResource(**{**args, **kw})  # type: ignore[arg-type]


def update(**kw: object) -> UpdateResource:
    args: dict[str, object] = {"command_id": uuid.uuid4(), "resource_id": RID,
                               "issued_at": T0}
    return UpdateResource(**{**args, **kw})  # type: ignore[arg-type]


def delete(**kw: object) -> DeleteResource:
    args: dict[str, object] = {"command_id": uuid.uuid4(), "resource_id": RID,
                               "issued_at": T0}
    return DeleteResource(**{**args, **kw})  # type: ignore[arg-type]


def applied(state: Resource | None, cmd: object, now: datetime = T0) -> Applied:
    result = decide(state, cmd, now)  # type: ignore[arg-type]
    assert isinstance(result, Applied), result
    return result


def rejected(state: Resource | None, cmd: object) -> RejectionCode:
    result = decide(state, cmd, T0)  # type: ignore[arg-type]
    assert isinstance(result, Rejected), result
    return result.code


def existing(status: Status = Status.PENDING) -> Resource:
    return applied(None, create(status=status)).state


def test_create_makes_version_one_and_announces_it() -> None:
    cmd = create(name="db", config={"a": "1"})
    result = applied(None, cmd)
    assert result.state.version == 1
    assert result.state.status is Status.PENDING
    assert isinstance(result.event, ResourceCreated)
    assert result.event.resource == result.state
    assert result.event.command_id == cmd.command_id


def test_create_of_an_existing_id_is_rejected() -> None:
    assert rejected(existing(), create()) is RejectionCode.ALREADY_EXISTS


def test_deleted_id_is_never_reused_nor_updated_nor_deleted_again() -> None:
    tomb = applied(existing(), delete()).state
    assert tomb.deleted
    assert rejected(tomb, create()) is RejectionCode.DELETED
    assert rejected(tomb, update(name="late")) is RejectionCode.DELETED
    assert rejected(tomb, delete()) is RejectionCode.DELETED


def test_update_and_delete_need_an_existing_resource() -> None:
    assert rejected(None, update(name="x")) is RejectionCode.NOT_FOUND
    assert rejected(None, delete()) is RejectionCode.NOT_FOUND


def test_expected_version_mismatch_is_a_conflict() -> None:
    state = existing()
    assert rejected(state, update(name="x", expected_version=2)) is RejectionCode.VERSION_CONFLICT
    assert rejected(state, delete(expected_version=0)) is RejectionCode.VERSION_CONFLICT
    assert rejected(None, create(expected_version=4)) is RejectionCode.VERSION_CONFLICT
    assert applied(state, update(name="x", expected_version=1)).state.version == 2


@pytest.mark.parametrize("name", ["", "   ", "x" * 256])
def test_name_must_be_1_to_255_characters(name: str) -> None:
    assert rejected(None, create(name=name)) is RejectionCode.INVALID_NAME
    assert rejected(existing(), update(name=name)) is RejectionCode.INVALID_NAME


def test_name_of_255_characters_is_fine() -> None:
    assert applied(None, create(name="x" * 255)).state.name == "x" * 255


@pytest.mark.parametrize(("start", "target", "ok"), [
    (Status.PENDING, Status.ACTIVE, True),
    (Status.PENDING, Status.INACTIVE, True),
    (Status.ACTIVE, Status.INACTIVE, True),
    (Status.INACTIVE, Status.ACTIVE, True),
    (Status.ACTIVE, Status.PENDING, False),
    (Status.INACTIVE, Status.PENDING, False),
])
def test_status_transitions(start: Status, target: Status, ok: bool) -> None:
    result = decide(existing(start), update(status=target), T0)
    if ok:
        assert isinstance(result, Applied)
        assert result.state.status is target
    else:
        assert isinstance(result, Rejected)
        assert result.code is RejectionCode.INVALID_TRANSITION


def test_update_that_changes_nothing_is_applied_without_event_or_version_bump() -> None:
    state = existing()
    result = applied(state, update(name=state.name, config={}, status=state.status))
    assert result.event is None
    assert result.state == state


def test_each_applied_change_bumps_version_by_one_and_names_changed_fields() -> None:
    state = existing()
    later = T0 + timedelta(seconds=5)
    result = applied(state, update(config={"k": "v"}, name="new"), later)
    assert result.state.version == 2
    assert result.state.updated_at == later
    assert isinstance(result.event, ResourceUpdated)
    assert set(result.event.changed_fields) == {"name", "config"}
    gone = applied(result.state, delete())
    assert gone.state.version == 3
    assert isinstance(gone.event, ResourceDeleted)
    assert gone.event.resource is None


def test_invalid_config_is_rejected() -> None:
    assert rejected(None, create(config={"": "v"})) is RejectionCode.INVALID_CONFIG
    assert rejected(None, create(config={"k": "v" * 5000})) is RejectionCode.INVALID_CONFIG


def test_a_refusal_is_announced_with_an_id_derived_from_the_command() -> None:
    cmd = update(correlation_id="corr-7", name="x")
    refusal = decide(None, cmd, T0)
    assert isinstance(refusal, Rejected)
    later = T0 + timedelta(minutes=3)
    announced = rejection_event(refusal, later)
    assert announced == CommandRejected(
        rejection_id=rejection_id_for(cmd.command_id), command_id=cmd.command_id,
        command_type=CommandType.UPDATE, resource_id=RID, code="CMD-004",
        message=refusal.message, rejected_at=later, correlation_id="corr-7")
    assert rejection_event(refusal, later).rejection_id == announced.rejection_id
