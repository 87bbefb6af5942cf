"""Apply part of a batch decoded by the compiled hot path: :func:`apply_batch`'s transaction,
with the per-command work done by the extension.

The order is :func:`~phoenix_resources.services.apply_batch.apply_batch`'s, step for step:
the claim's read round trip (which ids are recorded, the resources ``FOR UPDATE``, which are
parked), the fold of the fresh commands in offset order (``split_repeats``, admission,
parking, ``decide``, :func:`~phoenix_resources.services.apply_batch.stored_rows`), one write
round trip, the commit. Only the fold and the making of the rows are compiled; every rule
there mirrors the Python reference, byte for byte (``tests/native``). The isolation around it
(``services/isolate.py``) is the same for both paths.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from phoenix_resources.errors import ConfigurationError
from phoenix_resources.services.apply_batch import BatchReport
from phoenix_resources.services.ports import BatchUnit
from phoenix_resources.services.ports_encoded import (
    EncodedBatch,
    EncodedItem,
    EncodedUnit,
    Prefixes,
)


def apply_encoded(unit: BatchUnit, batch: Sequence[EncodedItem], now: datetime, *,
                  source: EncodedBatch, prefixes: Prefixes, partitions: int | None = None,
                  oldest: datetime | None = None,
                  failed: Mapping[UUID, str] | None = None) -> BatchReport:
    """Claim, load, fold and write the commands ``batch`` names (items of ``source``, each
    with its record ``index``) in one transaction of ``unit``, then commit. With
    ``partitions`` (the commands topic's count), a record not in its key's partition is
    refused (CMD-011)."""
    plan = source.plan([item.index for item in batch])
    with unit:
        if not isinstance(unit, EncodedUnit):
            # A wiring mistake (PHOENIX_NATIVE with a unit of another kind), not a command's.
            raise ConfigurationError(f"{type(unit).__name__} cannot store an encoded batch")
        fmt = unit.outbox_format
        read = unit.read_encoded(plan.claim_ids, plan.resource_ids)
        written = plan.fold(read.known, read.parked, read.rows, now, oldest=oldest,
                            failed=failed, events_topic=fmt.events_topic,
                            rejections_topic=fmt.rejections_topic,
                            event_prefix=prefixes.event, rejection_prefix=prefixes.rejection,
                            partitions=partitions)
        unit.write_encoded(written, now)
        unit.commit()
    return report_of(written.report())


def report_of(fields: Mapping[str, Any]) -> BatchReport:
    """The :class:`BatchReport` of the extension's ``Written.report()``."""
    return BatchReport(
        applied=fields["applied"], rejected=fields["rejected"], unchanged=fields["unchanged"],
        duplicates=fields["duplicates"], parked=fields["parked"], events=fields["events"],
        duplicate_ids=[UUID(i) for i in fields["duplicate_ids"]],
        parked_ids=[UUID(i) for i in fields["parked_ids"]], codes=dict(fields["codes"]))
