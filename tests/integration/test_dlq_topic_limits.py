"""Dead letters fit the DLQ topic as it is configured, and a DLQ topic that cannot take one
holds only the partition it came from — the real worker, broker and PostgreSQL.

The DLQ topic is created with a small ``max.message.bytes``: at 16 KiB a 100 KB poison's
dead letter is cut to fit and delivered, and at 1 KiB too (its value cut away, its own
headers kept: the producer compresses them well under the limit). Below what any dead letter
takes — 128 bytes, 67 after the record batch header, where this service's header names alone
take more, compressed — it cannot be delivered, so its partition waits (offsets not
committed past the poison, the worker not ready) while the other partitions keep applying
commands, until an operator raises the topic's limit (``incremental_alter_configs``): then
the dead letter is delivered and the partition resumes.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest

from phoenix_resources.adapters.dlq import RECORD_BATCH_OVERHEAD, build_dead_letter
from phoenix_resources.adapters.records import header_pairs, wire_size
from phoenix_resources.config import Settings
from phoenix_resources.domain.commands import AnyCommand
from phoenix_resources.errors import DecodeError
from phoenix_resources.wire.commands import CommandCodec
from phoenix_resources.wire.framing import Framing
from phoenix_resources.wire.partitioner import partition_for
from tests.support.faults import committed_offsets
from tests.support.kafka import (
    create_limited_topic,
    header,
    read_all,
    set_max_message_bytes,
)
from tests.support.pipeline import Pipeline, create, outcomes, publish, publish_raw, wait_until

pytestmark = pytest.mark.integration

PARTITIONS = 3
"""The commands topic's partitions (``conftest.topics``)."""
JSON = [("content-type", b"application/json")]


def with_dlq_limit(settings: Settings, limit: int) -> Settings:
    """The settings with a DLQ topic of their own, created with ``max.message.bytes``."""
    name = create_limited_topic(settings.kafka_bootstrap_servers,
                                f"{settings.dlq_topic}.{limit}", limit)
    return settings.model_copy(update={"dlq_topic": name})


def key_on(partition: int) -> uuid.UUID:
    """A resource id whose records land on ``partition``."""
    while True:
        rid = uuid.uuid4()
        if partition_for(str(rid).encode(), PARTITIONS) == partition:
            return rid


def on_every_partition_but(held: int) -> list[uuid.UUID]:
    return [key_on(p) for p in range(PARTITIONS) if p != held for _ in range(2)]


def creates(rids: list[uuid.UUID]) -> list[AnyCommand]:
    return [create(rid) for rid in rids]


def applied(settings: Settings, commands: list[AnyCommand]) -> bool:
    done = outcomes(settings.database_url)
    return all(c.command_id in done for c in commands)


def blocked_partitions(readiness: dict[str, Any]) -> list[int]:
    return list(readiness.get("dlq_blocked", {}).get("partitions", []))


@pytest.mark.parametrize("limit", [16 * 1024, 1024])
def test_a_dead_letter_is_cut_to_fit_a_small_dlq_topic(settings: Settings, limit: int) -> None:
    settings = with_dlq_limit(settings, limit)
    rid = key_on(0)
    poison = b"\xc3\x01" + os.urandom(100_000)  # an unknown schema fingerprint, 100 KB
    publish_raw(settings, [(str(rid).encode(), poison, [("x-origin", b"importer")])])
    good = creates([rid, key_on(1)])
    publish(settings, good)
    with Pipeline(settings, relay=False) as p:
        [dead] = read_all(settings.kafka_bootstrap_servers, settings.dlq_topic, expected=1,
                          timeout=60)
        wait_until(lambda: applied(settings, good), what="the good commands")
        assert p.worker.readiness()["ok"] is True
    assert header(dead, "dlq.reason") == "unknown-schema"
    assert header(dead, "dlq.truncated") == "true"
    assert header(dead, "dlq.original.value.size") == str(len(poison))
    assert (header(dead, "dlq.source.partition"), header(dead, "dlq.source.offset")) == \
        ("0", "0")
    value = dead.value() or b""
    assert poison.startswith(value)
    if limit > 1024:
        assert header(dead, "x-origin") == "importer"  # original headers kept while they fit
        assert len(value) > 12_000  # as much as fits, not a fixed cut
        assert RECORD_BATCH_OVERHEAD + wire_size(dead.key(), value, header_pairs(dead)) \
            <= limit


TOO_SMALL = 128
"""Below any dead letter: 67 bytes after the batch header, compressed or not."""


def test_a_dlq_topic_too_small_for_the_dead_letter_holds_only_its_partition_until_raised(
        settings: Settings) -> None:
    settings = with_dlq_limit(settings, TOO_SMALL)
    held = 0
    poisoned, before, after = key_on(held), key_on(held), key_on(held)
    # Epoch milliseconds where microseconds are expected.
    poison = (b'{"command_id": "%s", "command_type": "CREATE", "resource_id": "%s", '
              b'"issued_at": 1795000000000, "name": "x", "config": {}}'
              % (str(uuid.uuid4()).encode(), str(poisoned).encode()))
    with pytest.raises(DecodeError) as why:
        CommandCodec(Framing()).decode(poison, "application/json")
    smallest = build_dead_letter(settings.dlq_topic, source=(settings.commands_topic, held, 1),
                                 key=str(poisoned).encode(), value=poison, headers=JSON,
                                 reason=why.value.reason, detail=why.value.detail,
                                 error=why.value, max_bytes=TOO_SMALL)
    assert wire_size(smallest.key, smallest.value, smallest.headers) > 5 * TOO_SMALL, \
        "the test's premise: far over the limit, even compressed"

    first = creates([before])
    publish(settings, first)                                          # offset 0
    publish_raw(settings, [(str(poisoned).encode(), poison, JSON)])   # offset 1
    behind = creates([after])
    publish(settings, behind)                                         # offset 2
    others = creates(on_every_partition_but(held))
    publish(settings, others)

    with Pipeline(settings, relay=False) as p:
        wait_until(lambda: blocked_partitions(p.worker.readiness()) == [held], 60,
                   "the poison's partition held")
        state = p.worker.readiness()
        assert (state["ok"], state["reason"]) == (False, "dlq_blocked")
        assert state["dlq_blocked"]["refusal"].startswith("MSG_SIZE_TOO_LARGE")
        assert p.metrics.registry.get_sample_value(
            "phoenix_dlq_blocked", {"partition": str(held)}) == 1
        # The batch committed before its dead letter was refused.
        assert applied(settings, first + behind + others)

        # The other partitions keep applying commands; the held one does not.
        later_elsewhere = creates(on_every_partition_but(held))
        later_here = creates([key_on(held)])
        publish(settings, later_here + later_elsewhere)
        wait_until(lambda: applied(settings, later_elsewhere), 60, "the other partitions")
        assert not applied(settings, later_here)
        wait_until(lambda: all(o == 4 for n, o in committed_offsets(settings, PARTITIONS)
                               .items() if n != held), 30, "the others' offsets committed")
        committed = committed_offsets(settings, PARTITIONS)
        assert committed[held] <= 1, f"committed past the undelivered dead letter: {committed}"
        assert read_all(settings.kafka_bootstrap_servers, settings.dlq_topic, idle=1.0) == []

        set_max_message_bytes(settings.kafka_bootstrap_servers, settings.dlq_topic,
                              16 * 1024)  # the operator's fix
        [dead] = read_all(settings.kafka_bootstrap_servers, settings.dlq_topic, expected=1,
                          timeout=60)
        wait_until(lambda: applied(settings, later_here), 60, "the held partition resumed")
        wait_until(lambda: p.worker.readiness()["ok"] is True, 30, "ready again")
        assert p.metrics.registry.get_sample_value(
            "phoenix_dlq_blocked", {"partition": str(held)}) == 0
    assert header(dead, "dlq.reason") == "issued-at-unit"
    assert (header(dead, "dlq.source.partition"), header(dead, "dlq.source.offset")) == \
        (str(held), "1")
    assert dead.value() == poison  # the raised limit takes it whole
    assert committed_offsets(settings, PARTITIONS)[held] == 4
