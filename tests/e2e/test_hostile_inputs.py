"""What careless or foreign producers really send, against a running ``phoenix-resources run``
process: each hostile record is followed by good commands for other resources and for the
same resource. The process stays up, the good commands get their outcomes, nothing is lost,
and the DLQ or the parking lot holds each bad one with its reason."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from phoenix_resources import bootstrap
from phoenix_resources.config import Settings
from phoenix_resources.domain.commands import AnyCommand
from phoenix_resources.wire.commands import command_to_record
from tests.support.kafka import header, read_all
from tests.support.net import free_port
from tests.support.pipeline import (
    ACTIVE,
    create,
    outcomes,
    resources,
    update,
    wait_until,
)
from tests.support.processes import Process

pytestmark = pytest.mark.e2e

Headers = list[tuple[str, bytes]]
JSON = [("content-type", b"application/json")]
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

REFUSE_POISON = """
CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.name = 'poison' THEN
        RAISE EXCEPTION 'refusing a poison row' USING ERRCODE = '22023';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON resources
    FOR EACH ROW EXECUTE FUNCTION refuse_poison();
"""


def _json(command: AnyCommand, **override: Any) -> bytes:
    record = command_to_record(command)
    record.update(command_id=str(command.command_id), resource_id=str(command.resource_id),
                  issued_at=command.issued_at.isoformat())
    record.update(override)
    return json.dumps({k: v for k, v in record.items() if v is not None}).encode()


@dataclass
class Sender:
    settings: Settings

    def __post_init__(self) -> None:
        self.producer = bootstrap.producer(self.settings)
        self.codec = bootstrap.command_codec(self.settings)

    def raw(self, key: bytes | None, value: bytes | None, headers: Headers | None = None,
            ) -> None:
        self.producer.produce(self.settings.commands_topic, key=key, value=value,
                              headers=headers or [])

    def good(self, command: AnyCommand, headers: Headers | None = None) -> AnyCommand:
        value, content_type = self.codec.encode(command)
        self.raw(str(command.resource_id).encode(), value,
                 [("content-type", content_type.encode()), *(headers or [])])
        return command

    def flush(self) -> None:
        assert self.producer.flush(60) == 0


@pytest.fixture
def running(settings: Settings, database_url: str) -> Iterator[Process]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(REFUSE_POISON)  # type: ignore[arg-type]
    process = Process("run", settings, PHOENIX_HTTP_PORT=str(free_port()),
                      PHOENIX_READ_DATABASE_URL=database_url)
    try:
        process.wait_for_log("partitions assigned", timeout=90)
        yield process
    finally:
        assert process.alive(), f"the service stopped:\n{process.output()[-4000:]}"
        process.terminate()


def test_hostile_records_never_stop_the_service(settings: Settings, database_url: str,
                                                running: Process) -> None:
    send = Sender(settings)
    same = uuid.uuid4()
    good: list[AnyCommand] = [send.good(create(same, "same"))]
    hostile_first = create(uuid.uuid4(), "x")
    nested = b'{"a":' * 5000 + b"1" + b"}" * 5000

    # 1. Undecodable or unstorable: each goes to the DLQ with its reason.
    send.raw(str(same).encode(), _json(hostile_first, issued_at=1_795_000_000_000_000_000),
             JSON)                                                   # ns instead of µs
    send.raw(str(same).encode(), _json(create(same, "y"), issued_at=int("9" * 300)), JSON)
    send.raw(str(same).encode(), nested, JSON)                       # nesting 5000 deep
    send.raw(str(same).encode(), b"\xc3\x01" + b"\xff" * 998_600)    # at the 1 MB limit
    send.raw(str(same).encode(), _json(create(same, "z"), expected_version=2**70), JSON)
    send.raw(str(same).encode(), _json(create(same, "nul\u0000name")), JSON)
    send.raw(None, None)
    # 2. Valid commands with hostile headers: applied, the bad header dropped.
    long_header = create(uuid.uuid4(), "long-traceparent")
    send.good(long_header, [("traceparent", b"00-" + b"a" * 10_000)])
    good.append(long_header)
    good.append(send.good(update(same, status=ACTIVE), [("traceparent", TRACEPARENT.encode())]))
    # 3. Refused by the rules before state is read: key mismatch, older than the retention.
    mismatched = create(uuid.uuid4(), "elsewhere")
    value, content_type = send.codec.encode(mismatched)
    send.raw(b"not-the-resource-id", value, [("content-type", content_type.encode())])
    stale = replace(create(uuid.uuid4(), "stale"),
                    issued_at=datetime.now(UTC) - timedelta(days=30))
    send.good(stale)
    # 4. Refused by PostgreSQL: parked with the same resource's later commands.
    poisoned = uuid.uuid4()
    parked = [send.good(create(poisoned, "poison")),
              send.good(update(poisoned, status=ACTIVE))]
    good.append(send.good(update(same, name="same-2")))
    good.append(send.good(create(uuid.uuid4(), "other")))
    send.flush()

    recorded_ids = [c.command_id for c in (*good, mismatched, stale, *parked)]
    wait_until(lambda: set(recorded_ids) <= set(outcomes(database_url)), 120,
               "every decodable command recorded")
    recorded = outcomes(database_url)
    assert {recorded[c.command_id][0] for c in good} == {"applied"}
    assert recorded[mismatched.command_id][:2] == ("rejected", "CMD-009")
    assert recorded[stale.command_id][:2] == ("rejected", "CMD-008")
    assert [recorded[c.command_id][:2] for c in parked] == [("parked", "PRK-001"),
                                                            ("parked", "PRK-002")]
    assert resources(database_url)[same]["version"] == 3
    assert poisoned not in resources(database_url)

    dead = read_all(settings.kafka_bootstrap_servers, settings.dlq_topic, expected=7)
    reasons = sorted(header(m, "dlq.reason") or "" for m in dead)
    assert len(dead) == 7
    assert reasons.count("invalid-field") >= 2
    assert {"too-large", "empty"} <= set(reasons)
    big = next(m for m in dead if header(m, "dlq.reason") == "too-large")
    assert header(big, "dlq.original.value.size") == "998602"
    assert header(big, "dlq.truncated") == "true"  # the dead letter itself had to fit
    assert all(header(m, "__connect.errors.topic") == settings.commands_topic for m in dead)

    # The valid trace context travelled to the event; the over-long one was dropped.
    events = {(m.key() or b"").decode(): m for m in read_all(
        settings.kafka_bootstrap_servers, settings.events_topic, expected=5)}
    assert header(events[str(long_header.resource_id)], "traceparent") is None
    assert running.alive()
