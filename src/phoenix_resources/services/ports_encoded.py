"""The ports of the compiled hot path (``native/``): the same batch as
:mod:`~phoenix_resources.services.ports` describes, decoded, folded and encoded by the
extension, and the unit that stores it (``docs/decisions/0014-the-compiled-hot-path.md``).

The isolation takes any :class:`BatchItem`; :func:`~phoenix_resources.services.
apply_encoded.apply_encoded` drives an :class:`EncodedBatch` through an :class:`EncodedUnit`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol, runtime_checkable
from uuid import UUID


class CommandIds(Protocol):
    """The ids of a command, as the isolation reads them."""

    @property
    def command_id(self) -> UUID: ...

    @property
    def resource_id(self) -> UUID: ...


class BatchItem(Protocol):
    """What the isolation (``services/isolate.py``) needs of one command of a batch:
    :class:`Incoming` is one; the compiled path's items are another."""

    @property
    def command(self) -> CommandIds: ...

    @property
    def partition(self) -> int: ...


class EncodedItem(BatchItem, Protocol):
    """A command of an :class:`EncodedBatch`: its record's index in the batch."""

    @property
    def index(self) -> int: ...


class EncodedWrite(Protocol):
    """A batch's write made by the compiled hot path: the statements of
    :meth:`BatchUnit.write` (by name, in its order) with every array parameter already in
    PostgreSQL's binary form (``native/README.md``, ``Written``)."""

    def statements(self) -> list[str]: ...

    def params(self) -> dict[str, list[bytes]]: ...

    @property
    def notify(self) -> bool: ...

    @property
    def expected_rowcounts(self) -> tuple[int, int, int]:
        """``(claims, inserts, updates)`` the statements must report."""
        ...

    def report(self) -> dict[str, Any]:
        """:class:`~phoenix_resources.services.apply_batch.BatchReport`'s fields (ids as
        text)."""
        ...


class EncodedRead(NamedTuple):
    """The claim's read round trip, for the compiled fold."""

    known: list[tuple[Any, ...]]
    """The claimed ids already recorded, with whose each is: ``(command_id, resource_id,
    command_type)`` rows, as the ``KNOWN`` query returns them."""
    parked: list[UUID]
    rows: list[tuple[Any, ...]]
    """The ``resources`` rows, as the ``LOAD`` query returns them."""


class EncodedPlan(Protocol):
    """The claim of some commands of an encoded batch (``split_repeats`` done)."""

    @property
    def claim_ids(self) -> bytes: ...

    @property
    def resource_ids(self) -> bytes: ...

    def fold(self, known: list[tuple[Any, ...]], parked: list[UUID],
             rows: list[tuple[Any, ...]], now: datetime, *, oldest: datetime | None,
             failed: Mapping[UUID, str] | None, events_topic: str, rejections_topic: str,
             event_prefix: bytes, rejection_prefix: bytes,
             partitions: int | None) -> EncodedWrite:
        """With ``partitions``, a record not in its key's partition is refused (CMD-011). A
        command reusing an id (``known``, or earlier in the plan) for another resource or
        type is refused (CMD-012) and announced, not recorded."""
        ...


class EncodedBatch(Protocol):
    """A batch decoded by the compiled hot path; ``plan`` takes record indices."""

    def plan(self, select: Sequence[int]) -> EncodedPlan: ...

    def misplaced(self, partitions: int) -> list[int]:
        """The commands (record indices) not in their key's partition among
        ``partitions``."""
        ...


@runtime_checkable
class EncodedUnit(Protocol):
    """A batch unit that also stores what the compiled hot path encoded (the PostgreSQL unit
    sends the bytes as they are; the in-memory fake reads them back). Same transaction, same
    guarantees as :class:`BatchUnit`."""

    def read_encoded(self, claim_ids: bytes, resource_ids: bytes) -> EncodedRead:
        """The claim's round trip: ``KNOWN``, ``PARKED_AMONG`` and ``LOAD`` (binary
        ``uuid[]`` parameters)."""
        ...

    def write_encoded(self, written: EncodedWrite, processed_at: datetime) -> None:
        """:meth:`BatchUnit.write` of ``written`` (made at ``processed_at``), with the same
        row-count check."""
        ...


@dataclass(frozen=True, slots=True)
class Prefixes:
    """What the outbox payloads start with: each schema's framing header (the single-object
    fingerprint, or the registry id)."""

    event: bytes
    rejection: bytes
