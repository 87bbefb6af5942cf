"""Validation rules shared by the worker's ``decide`` and the client library.

Each refusal carries a stable code; codes are part of the public contract (docs/errors.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from phoenix_resources.domain.model import (
    ALLOWED_TRANSITIONS,
    CONFIG_KEY_MAX,
    CONFIG_MAX_ENTRIES,
    CONFIG_VALUE_MAX,
    NAME_MAX,
    Status,
)
from phoenix_resources.errors import PhoenixError


class RejectionCode(StrEnum):
    INVALID_NAME = "CMD-001"
    INVALID_CONFIG = "CMD-002"
    ALREADY_EXISTS = "CMD-003"
    NOT_FOUND = "CMD-004"
    DELETED = "CMD-005"
    VERSION_CONFLICT = "CMD-006"
    INVALID_TRANSITION = "CMD-007"
    TOO_OLD = "CMD-008"
    """Issued before the dedupe retention: its first outcome may have been pruned, so it is
    refused rather than risk applying it twice (a replay of old offsets)."""
    KEY_MISMATCH = "CMD-009"
    """The record's key is not its ``resource_id``: it may sit on another partition than the
    resource's other commands, so its order could not be kept."""
    DISCARDED = "CMD-010"
    """An operator discarded the command from the parking lot; it will never be applied."""
    PARTITION_MISMATCH = "CMD-011"
    """The record sits in another partition than the Java client's partitioner puts its key
    in: a publisher with another partitioner, or a record produced to a chosen partition. Its
    order with the resource's other commands could not be kept."""
    COMMAND_ID_REUSED = "CMD-012"
    """The ``command_id`` already names a command for another resource or of another type
    (recorded, or earlier in the batch). An id names one command: this one is refused and
    announced, never recorded; the id's outcome stays the first command's."""


class ParkCode(StrEnum):
    """Why a command is parked (outcome ``parked``), waiting for a replay."""

    APPLY_FAILED = "PRK-001"
    """Applying it failed in a way no rule foresaw (a database refusal, a bug)."""
    BEHIND_PARKED = "PRK-002"
    """An earlier command of the same resource is parked; order per resource is kept."""


class Misplaced(NamedTuple):
    """A record in ``partition`` whose key belongs in ``home`` of the topic's
    ``partitions`` (CMD-011)."""

    partition: int
    home: int
    partitions: int


class RuleViolation(PhoenixError):
    """Raised by a rule; caught by ``decide`` and turned into a ``Rejected`` outcome."""

    def __init__(self, code: RejectionCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_name(name: str) -> None:
    if not name or not name.strip():
        raise RuleViolation(RejectionCode.INVALID_NAME, "name must not be empty")
    if len(name) > NAME_MAX:
        raise RuleViolation(RejectionCode.INVALID_NAME,
                            f"name is {len(name)} characters; at most {NAME_MAX} are allowed")


def check_config(config: Mapping[str, str]) -> None:
    if len(config) > CONFIG_MAX_ENTRIES:
        raise RuleViolation(RejectionCode.INVALID_CONFIG,
                            f"config has {len(config)} entries; at most {CONFIG_MAX_ENTRIES}")
    for key, value in config.items():
        if not key or len(key) > CONFIG_KEY_MAX:
            raise RuleViolation(RejectionCode.INVALID_CONFIG,
                                f"config key {key[:40]!r} must be 1..{CONFIG_KEY_MAX} characters")
        if len(value) > CONFIG_VALUE_MAX:
            raise RuleViolation(RejectionCode.INVALID_CONFIG,
                                f"config value of {key!r} exceeds {CONFIG_VALUE_MAX} characters")


def check_admission(command_id: object, issued_at: datetime, *, key_matches: bool,
                    oldest: datetime | None, misplaced: Misplaced | None = None) -> None:
    """Refusals that need no state: a record keyed by something other than its resource, or
    in another partition than its key's (either way its order with the resource's other
    commands is lost), and a command issued before ``oldest`` (the dedupe retention: its
    first outcome may be pruned, so it could apply twice)."""
    if not key_matches:
        raise RuleViolation(RejectionCode.KEY_MISMATCH,
                            f"command {command_id}: the record's key must be its resource_id "
                            "(canonical UUID text) so that all of a resource's commands share "
                            "one partition")
    if misplaced is not None:
        raise RuleViolation(RejectionCode.PARTITION_MISMATCH,
                            f"command {command_id}: the record is in partition "
                            f"{misplaced.partition}, but its key belongs in partition "
                            f"{misplaced.home} of {misplaced.partitions} (the Java client's "
                            "murmur2 partitioner, which every publisher must use); its order "
                            "with the resource's other commands cannot be kept")
    if oldest is not None and issued_at < oldest:
        raise RuleViolation(RejectionCode.TOO_OLD,
                            f"command {command_id} was issued at {issued_at.isoformat()}, "
                            f"before the dedupe retention window (from {oldest.isoformat()}); "
                            "it is refused so that a replay can never apply it twice")


def check_same_command(command_id: object, resource_id: object, command_type: str, *,
                       owner: tuple[object, str]) -> None:
    """A ``command_id`` is one command: a delivery of it for another resource or of another
    type than ``owner`` (the recorded command's, or the batch's first delivery's
    ``(resource_id, command_type)``) is another command reusing the id."""
    owner_resource, owner_type = owner
    if resource_id != owner_resource or command_type != owner_type:
        raise RuleViolation(RejectionCode.COMMAND_ID_REUSED,
                            f"command {command_id} already names the {owner_type} of resource "
                            f"{owner_resource}; this {command_type} of resource {resource_id} "
                            "is refused and not recorded (every command needs an id of its "
                            "own)")


def check_transition(current: Status, new: Status) -> None:
    if new != current and new not in ALLOWED_TRANSITIONS[current]:
        raise RuleViolation(RejectionCode.INVALID_TRANSITION,
                            f"status cannot change from {current} to {new}")
