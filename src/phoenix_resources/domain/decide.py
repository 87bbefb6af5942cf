"""``decide(state, command, now)``: the one place the rules are applied. Pure and total.

Ordering guarantee relied on by the worker: folding ``decide`` over one resource's commands in
offset order gives the same result as applying them one by one in separate transactions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from phoenix_resources.domain.commands import (
    AnyCommand,
    CreateResource,
    DeleteResource,
    UpdateResource,
)
from phoenix_resources.domain.events import (
    CommandRejected,
    ResourceChanged,
    ResourceCreated,
    ResourceDeleted,
    ResourceUpdated,
    event_id_for,
    rejection_id_for,
    reuse_rejection_id_for,
)
from phoenix_resources.domain.model import Resource
from phoenix_resources.domain.rules import (
    RejectionCode,
    RuleViolation,
    check_config,
    check_name,
    check_transition,
)


@dataclass(frozen=True, slots=True)
class Applied:
    """The command took effect. ``event`` is ``None`` for an update that changed nothing."""

    command: AnyCommand
    state: Resource
    event: ResourceChanged | None


@dataclass(frozen=True, slots=True)
class Rejected:
    command: AnyCommand
    code: RejectionCode
    message: str


Decision = Applied | Rejected


def rejection_event(rejected: Rejected, at: datetime) -> CommandRejected:
    """The announcement of a refusal, made at ``at``: its id is derived from the command's,
    so it is the same however often the command is redelivered or refused again. A command
    reusing another's id (CMD-012) is told apart by its resource and type as well."""
    command = rejected.command
    rid = (reuse_rejection_id_for(command.command_id, command.resource_id, command.type.value)
           if rejected.code is RejectionCode.COMMAND_ID_REUSED
           else rejection_id_for(command.command_id))
    return CommandRejected(rejection_id=rid,
                           command_id=command.command_id, command_type=command.type,
                           resource_id=command.resource_id, code=rejected.code.value,
                           message=rejected.message, rejected_at=at,
                           correlation_id=command.correlation_id)


def decide(state: Resource | None, command: AnyCommand, now: datetime) -> Decision:
    try:
        _check_target(state, command)
        if isinstance(command, CreateResource):
            return _create(command, now)
        assert state is not None
        if isinstance(command, UpdateResource):
            return _update(state, command, now)
        return _delete(state, command, now)
    except RuleViolation as v:
        return Rejected(command, v.code, v.message)


def _check_target(state: Resource | None, command: AnyCommand) -> None:
    if state is not None and state.deleted:
        raise RuleViolation(RejectionCode.DELETED,
                            f"resource {command.resource_id} was deleted at version "
                            f"{state.version}; its id cannot be reused")
    if isinstance(command, CreateResource):
        if state is not None:
            raise RuleViolation(RejectionCode.ALREADY_EXISTS,
                                f"resource {command.resource_id} already exists")
        if command.expected_version not in (None, 0):
            raise RuleViolation(RejectionCode.VERSION_CONFLICT,
                                f"expected version {command.expected_version}, "
                                "but the resource does not exist yet")
        return
    if state is None:
        raise RuleViolation(RejectionCode.NOT_FOUND,
                            f"resource {command.resource_id} does not exist")
    if command.expected_version is not None and command.expected_version != state.version:
        raise RuleViolation(RejectionCode.VERSION_CONFLICT,
                            f"expected version {command.expected_version}, "
                            f"current version is {state.version}")


def _event(
    cls: type[ResourceChanged],
    command: AnyCommand,
    state: Resource,
    changed_fields: tuple[str, ...],
) -> ResourceChanged:
    return cls(event_id=event_id_for(command.command_id), resource_id=command.resource_id,
               version=state.version, occurred_at=state.updated_at,
               command_id=command.command_id, correlation_id=command.correlation_id,
               changed_fields=changed_fields, resource=None if state.deleted else state)


def _create(command: CreateResource, now: datetime) -> Applied:
    check_name(command.name)
    check_config(command.config)
    state = Resource(id=command.resource_id, name=command.name, config=dict(command.config),
                     status=command.status, version=1, created_at=now, updated_at=now,
                     last_command_id=command.command_id)
    return Applied(command, state, _event(ResourceCreated, command, state,
                                          ("name", "config", "status")))


def _update(state: Resource, command: UpdateResource, now: datetime) -> Applied:
    name, config, status = state.name, state.config, state.status
    changed: list[str] = []
    if command.name is not None and command.name != name:
        check_name(command.name)
        name = command.name
        changed.append("name")
    if command.config is not None and command.config != config:
        check_config(command.config)
        config = dict(command.config)
        changed.append("config")
    if command.status is not None and command.status != status:
        check_transition(status, command.status)
        status = command.status
        changed.append("status")
    if not changed:
        return Applied(command, state, None)
    # Built field by field, not with dataclasses.replace: this runs once per applied update.
    new = Resource(id=state.id, name=name, config=config, status=status,
                   version=state.version + 1, created_at=state.created_at, updated_at=now,
                   last_command_id=command.command_id)
    return Applied(command, new, _event(ResourceUpdated, command, new, tuple(changed)))


def _delete(state: Resource, command: DeleteResource, now: datetime) -> Applied:
    new = Resource(id=state.id, name=state.name, config=state.config, status=state.status,
                   version=state.version + 1, created_at=state.created_at, updated_at=now,
                   last_command_id=command.command_id, deleted_at=now)
    return Applied(command, new, _event(ResourceDeleted, command, new, ()))
